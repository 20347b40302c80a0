//! Import-time simplification: constant folding (including shape computations on static
//! shapes) and dead-code removal, iterated with shape inference to a fixed point.

use crate::{Graph, Result, Tensor};

/// Largest tensor (in elements) that folding materializes; bigger results stay computed at run
/// time so that folding never inflates the weights.
pub const FOLD_MAX_ELEMENTS: usize = 1 << 16;

/// Evaluates node `ni` if it can be folded: all inputs constant (or a `Shape`/`Size` of a
/// static shape) and every output at most [`FOLD_MAX_ELEMENTS`] large. Returns the outputs.
pub fn eval_if_constant(g: &Graph, ni: usize) -> Result<Option<Vec<Tensor>>> {
    let n = &g.nodes[ni];
    let all_const = n.inputs.iter().flatten().all(|i| g.consts.contains_key(i));
    let shape_of = match n.inputs.first().copied().flatten() {
        Some(i) if !all_const => g.ty(i).shape.as_known().and_then(|d| n.op.eval_on_shape(&d)),
        _ => None,
    };
    let small = n.outputs.iter().all(|&o| g.ty(o).shape.numel().is_some_and(|k| k <= FOLD_MAX_ELEMENTS));
    if !small {
        return Ok(None);
    }
    if let Some(t) = shape_of {
        return Ok(Some(vec![t]));
    }
    if let [o] = n.outputs.as_slice()
        && let Some(t) = constant_sym_value(g, *o)
    {
        return Ok(Some(vec![t]));
    }
    if !all_const {
        return Ok(None);
    }
    let args: Vec<Option<&Tensor>> = n.inputs.iter().map(|i| i.and_then(|i| g.consts.get(&i))).collect();
    n.op.eval(&args).map(Some).map_err(|source| crate::Error::Node {
        node: n.name.clone(),
        op: n.op.name().into(),
        source,
    })
}

/// The value of `v` when its symbolic value (see [`crate::symeval`]) is all constants.
fn constant_sym_value(g: &Graph, v: crate::ValueId) -> Option<Tensor> {
    let vals: Vec<i64> = g.sym_values.get(&v)?.iter().map(crate::Poly::as_const).collect::<Option<_>>()?;
    let ty = g.ty(v);
    let dims = ty.shape.as_known()?;
    let t = Tensor::from_vec(&dims, vals).ok()?;
    if ty.dtype == crate::DType::I64 {
        Some(t)
    } else {
        crate::Op::Cast(crate::ops::Cast { to: ty.dtype, saturate: false }).eval(&[Some(&t)]).ok()?.pop()
    }
}

/// Folds node `ni` into constants if [`eval_if_constant`] allows; returns whether it did. The
/// node is removed and its outputs become constants of the types they evaluated to.
pub fn fold_node(g: &mut Graph, ni: usize) -> Result<bool> {
    let Some(outs) = eval_if_constant(g, ni)? else { return Ok(false) };
    let n = g.nodes.remove(ni);
    for (&o, t) in n.outputs.iter().zip(outs) {
        g.values[o.index()].ty = crate::TypeInfo::new(t.dtype(), t.static_shape());
        g.consts.insert(o, t);
    }
    Ok(true)
}

/// Folds every foldable node (see [`eval_if_constant`]); returns how many were folded.
pub fn fold_constants(g: &mut Graph) -> Result<usize> {
    let mut folded = 0;
    let mut ni = 0;
    while ni < g.nodes.len() {
        if fold_node(g, ni)? {
            folded += 1;
        } else {
            ni += 1;
        }
    }
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
