//! Import-time simplification: constant folding (including shape computations on static
//! shapes) and dead-code removal, iterated with shape inference to a fixed point.

use crate::ops::Op;
use crate::{Graph, Result, Tensor};

/// Largest tensor (in elements) that folding materializes; bigger results stay computed at run
/// time so that folding never inflates the weights.
pub const FOLD_MAX_ELEMENTS: usize = 1 << 16;

/// Folds every node whose inputs are all constants (and every `Shape` of a static shape) into
/// constants, as long as the results are at most [`FOLD_MAX_ELEMENTS`] large. Returns the
/// number of nodes folded.
pub fn fold_constants(g: &mut Graph) -> Result<usize> {
    let mut folded = 0;
    let mut keep = Vec::with_capacity(g.nodes.len());
    let nodes = std::mem::take(&mut g.nodes);
    for n in nodes {
        let all_const = n.inputs.iter().flatten().all(|i| g.consts.contains_key(i));
        let static_shape = matches!(n.op, Op::Shape(_))
            && n.inputs.first().copied().flatten().is_some_and(|i| g.ty(i).shape.is_known());
        let small = n.outputs.iter().all(|&o| {
            g.ty(o).shape.numel().is_some_and(|k| k <= FOLD_MAX_ELEMENTS)
        });
        if !(small && (all_const || static_shape)) {
            keep.push(n);
            continue;
        }
        let outs: Vec<Tensor> = if let (Op::Shape(_), false) = (&n.op, all_const) {
            // Shape of a non-constant with a static shape: evaluate on a zero tensor of it.
            let i = n.inputs[0].unwrap_or(crate::ValueId(0));
            let ty = g.ty(i);
            let dims = ty.shape.as_known().unwrap_or_default();
            let probe = Tensor::zeros(ty.dtype, &dims);
            n.op.eval(&[Some(&probe)])
        } else {
            let args: Vec<Option<&Tensor>> = n.inputs.iter().map(|i| i.and_then(|i| g.consts.get(&i))).collect();
            n.op.eval(&args)
        }
        .map_err(|source| crate::Error::Node { node: n.name.clone(), op: n.op.name().into(), source })?;
        for (&o, t) in n.outputs.iter().zip(outs) {
            g.values[o.index()].ty = crate::TypeInfo::new(t.dtype(), t.static_shape());
            g.consts.insert(o, t);
        }
        folded += 1;
    }
    g.nodes = keep;
    Ok(folded)
}

/// Infers types and folds constants until nothing changes, then removes dead code and puts
/// the graph in canonical order.
pub fn simplify(g: &mut Graph) -> Result<()> {
    loop {
        g.infer()?;
        if fold_constants(g)? == 0 {
            break;
        }
    }
    g.remove_dead();
    Ok(())
}
