//! Fusions into one kernel.

use super::predicates::{constant, ty};
use super::{Rule, add_op};
use crate::analysis::EG;
use crate::lang::Node;
use egg::{Id, Language};
use slmtvm_ir::ops::{BinaryOp, Gemm, Reshape};
use slmtvm_ir::{DType, Op, Tensor};

/// The fusion rule set.
pub fn rules() -> Vec<Rule> {
    vec![Rule { name: "matmul-bias", kind: "Add", rewrite: matmul_bias }]
}

/// `MatMul(x, W) + b` with a constant f32 matrix W [K, N] and a constant bias b that only
/// varies along the last axis ([N], or [1, …, 1, N]) → one Gemm with the bias as C (its
/// epilogue adds it as the result is stored), x viewed as [M, K] for a static x of rank > 2.
fn matmul_bias(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::Binary(BinaryOp::Add)), [p, q]) = (n.op(), n.children()) else { return None };
    for (mm, b) in [(*p, *q), (*q, *p)] {
        let Some(bt) = constant(egraph, b).cloned() else { continue };
        let out = ty(egraph, c)?.clone();
        let dims = out.shape.as_known()?;
        let nn = *dims.last()?;
        if out.dtype != DType::F32 || bt.dtype() != DType::F32 || bt.len() != nn || bt.shape().last() != Some(&nn) {
            continue;
        }
        let mms: Vec<(Id, Id)> = egraph[mm]
            .nodes
            .iter()
            .filter_map(|m| match (m.op(), m.children()) {
                (Some(Op::MatMul(_)), [x, w]) => Some((*x, *w)),
                _ => None,
            })
            .collect();
        for (x, w) in mms {
            let (Some(wt), Some(xt)) = (ty(egraph, w).cloned(), ty(egraph, x).cloned()) else { continue };
            let (Some(xd), Some(wd)) = (xt.shape.as_known(), wt.shape.as_known()) else { continue };
            if wd.len() != 2 || xd.len() < 2 || constant(egraph, w).is_none() || xt.dtype != DType::F32 {
                continue;
            }
            let k = wd[0];
            if *xd.last()? != k || wd[1] != nn {
                continue;
            }
            let m: usize = xd[..xd.len() - 1].iter().product();
            let flat_b = bt.reshaped(&[nn]).ok()?;
            let bnode = egraph.analysis.add_const(flat_b);
            let bid = egraph.add(bnode);
            let gemm = Op::Gemm(Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false });
            if xd.len() == 2 {
                return Some(add_op(egraph, gemm, vec![x, w, bid]));
            }
            let shape = |eg: &mut EG, d: &[usize]| -> Option<Id> {
                let v: Vec<i64> = d.iter().map(|&e| e as i64).collect();
                let t = Tensor::from_vec(&[v.len()], v).ok()?;
                let node = eg.analysis.add_const(t);
                Some(eg.add(node))
            };
            let s1 = shape(egraph, &[m, k])?;
            let x2 = add_op(egraph, Op::Reshape(Reshape { allowzero: false }), vec![x, s1]);
            let g2 = add_op(egraph, gemm, vec![x2, w, bid]);
            let s2 = shape(egraph, &dims)?;
            return Some(add_op(egraph, Op::Reshape(Reshape { allowzero: false }), vec![g2, s2]));
        }
    }
    None
}
