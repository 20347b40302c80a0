//! The reference interpreter: executes a graph node by node on the host.
//!
//! It is the oracle for every rewrite and every kernel, so it is plain: each operator's
//! [`crate::ops::OpDef::eval`] on whole tensors, values freed after their last use.

use crate::{Dim, Error, Graph, Result, Tensor, ValueId};
use std::collections::BTreeMap;

/// Checks `t` against the static type of graph input `id`, binding symbols in `syms`.
fn check_input(g: &Graph, id: ValueId, t: &Tensor, syms: &mut BTreeMap<String, usize>) -> Result<()> {
    let v = g.value(id);
    if t.dtype() != v.ty.dtype {
        return Err(Error::tensor(&v.name, format!("expects dtype {}, got {}", v.ty.dtype, t.dtype())));
    }
    let dims = t.shape();
    let bad = || Error::tensor(&v.name, format!("expects shape {}, got {:?}", v.ty.shape, dims));
    if dims.len() != v.ty.shape.rank() {
        return Err(bad());
    }
    for (d, &n) in v.ty.shape.0.iter().zip(dims) {
        match d {
            Dim::Known(k) if *k != n => return Err(bad()),
            Dim::Known(_) => {}
            Dim::Sym { name, bound } => {
                if let Some(b) = bound
                    && n > *b
                {
                    return Err(Error::tensor(&v.name, format!("dim {name} = {n} exceeds its bound {b}")));
                }
                if let Some(&prev) = syms.get(name)
                    && prev != n
                {
                    return Err(Error::tensor(&v.name, format!("dim {name} is {n} here but {prev} in another input")));
                }
                syms.insert(name.clone(), n);
            }
        }
    }
    Ok(())
}

/// Runs `g` on `inputs` (one per graph input, in order) and returns the graph outputs.
pub fn run(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    run_observed(g, inputs, &mut |_, _| {})
}

/// [`run`], calling `observe(value, tensor)` on every graph input and every node output as it
/// is computed (calibration reads activation ranges this way).
pub fn run_observed(g: &Graph, inputs: &[Tensor], observe: &mut dyn FnMut(ValueId, &Tensor)) -> Result<Vec<Tensor>> {
    if inputs.len() != g.inputs.len() {
        return Err(Error::Graph(format!("expects {} inputs, got {}", g.inputs.len(), inputs.len())));
    }
    let mut syms = BTreeMap::new();
    let mut env: BTreeMap<ValueId, Tensor> = BTreeMap::new();
    for (&id, t) in g.inputs.iter().zip(inputs) {
        check_input(g, id, t, &mut syms)?;
        observe(id, t);
        env.insert(id, t.clone());
    }
    // Last node index using each value; graph outputs live to the end.
    let mut last_use: BTreeMap<ValueId, usize> = BTreeMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        for &v in n.inputs.iter().flatten() {
            last_use.insert(v, i);
        }
    }
    for &o in &g.outputs {
        last_use.insert(o, usize::MAX);
    }
    for (i, n) in g.nodes.iter().enumerate() {
        let outs = {
            let args: Vec<Option<&Tensor>> = n
                .inputs
                .iter()
                .map(|i| i.map(|i| env.get(&i).or_else(|| g.consts.get(&i))))
                .map(|o| o.flatten())
                .collect();
            if args.iter().zip(&n.inputs).any(|(a, i)| a.is_none() && i.is_some()) {
                return Err(Error::Graph(format!("node '{}' runs before its inputs exist", n.name)));
            }
            n.op.eval(&args).map_err(|source| Error::Node { node: n.name.clone(), op: n.op.name().into(), source })?
        };
        if outs.len() < n.outputs.len() {
            return Err(Error::Graph(format!("node '{}' produced too few outputs", n.name)));
        }
        for (&o, t) in n.outputs.iter().zip(outs) {
            let want = g.ty(o);
            if t.dtype() != want.dtype || t.shape().len() != want.shape.rank() {
                return Err(Error::Node {
                    node: n.name.clone(),
                    op: n.op.name().into(),
                    source: crate::OpError::Invalid(format!(
                        "output '{}' evaluated to {}{:?}, inferred {}",
                        g.value(o).name,
                        t.dtype(),
                        t.shape(),
                        want
                    )),
                });
            }
            observe(o, &t);
            env.insert(o, t);
        }
        for &v in n.inputs.iter().flatten() {
            if last_use.get(&v) == Some(&i) {
                env.remove(&v);
            }
        }
    }
    g.outputs
        .iter()
        .map(|o| {
            env.get(o)
                .or_else(|| g.consts.get(o))
                .cloned()
                .ok_or_else(|| Error::tensor(&g.value(*o).name, "graph output was not computed"))
        })
        .collect()
}

/// Runs `g` with inputs given by name; every graph input must be present.
pub fn run_named(g: &Graph, inputs: &BTreeMap<String, Tensor>) -> Result<Vec<Tensor>> {
    run(g, &inputs_in_order(g, inputs)?)
}

/// The tensors of `inputs` (by name) in the order of `g`'s inputs, as [`run`] takes them; every
/// graph input must be present.
pub fn inputs_in_order(g: &Graph, inputs: &BTreeMap<String, Tensor>) -> Result<Vec<Tensor>> {
    g.inputs
        .iter()
        .map(|&i| {
            let name = &g.value(i).name;
            inputs.get(name).cloned().ok_or_else(|| Error::tensor(name, "no value was given for this graph input"))
        })
        .collect()
}
