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
    vec![
        Rule { name: "matmul-bias", kind: "Add", rewrite: matmul_bias },
        Rule { name: "attention", kind: "MatMul", rewrite: attention },
        Rule { name: "attention-gqa", kind: "Attention", rewrite: attention_gqa },
    ]
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

/// `Softmax(Q·Kᵀ · scale [+ mask]) · V` over rank-4 tensors, softmax along the last axis →
/// one Attention(Q, K, V, mask) with K = Transpose(Kᵀ) (which the transpose rules cancel
/// against the exporter's own transpose). The new class only stands if Attention's inference
/// accepts the shapes (else it is invalid and extraction never picks it).
fn attention(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::MatMul(_)), [p, v]) = (n.op(), n.children()) else { return None };
    let (p, v) = (egraph.find(*p), egraph.find(*v));
    if ty(egraph, p)?.shape.rank() != 4 || ty(egraph, v)?.shape.rank() != 4 || ty(egraph, c)?.dtype != DType::F32 {
        return None;
    }
    // Softmax over the last axis (a Cast to f32 between is allowed: exporters add one).
    let mut logits = None;
    for node in &egraph[p].nodes {
        if let (Some(Op::Softmax(s)), [z]) = (node.op(), node.children())
            && (s.axis == -1 || s.axis == 3)
        {
            logits = Some(egraph.find(*z));
        }
    }
    let z = logits?;
    // Optional additive mask, optional scale.
    let mut forms: Vec<(Id, Option<Id>)> = vec![(z, None)];
    for node in &egraph[z].nodes {
        if let (Some(Op::Binary(BinaryOp::Add)), [a, b]) = (node.op(), node.children()) {
            forms.push((egraph.find(*a), Some(egraph.find(*b))));
            forms.push((egraph.find(*b), Some(egraph.find(*a))));
        }
    }
    for (y, mask) in forms {
        let mut scaled: Vec<(Id, f32)> = vec![(y, 1.0)];
        for node in &egraph[y].nodes {
            if let (Some(Op::Binary(BinaryOp::Mul)), [a, b]) = (node.op(), node.children()) {
                for (qk, k) in [(*a, *b), (*b, *a)] {
                    if let Some(s) =
                        constant(egraph, k).filter(|t| t.len() == 1).and_then(|t| t.to_f64().iter().next().copied())
                    {
                        scaled.push((egraph.find(qk), s as f32));
                    }
                }
            }
        }
        for (qk, scale) in scaled {
            let mms: Vec<(Id, Id)> = egraph[qk]
                .nodes
                .iter()
                .filter_map(|m| match (m.op(), m.children()) {
                    (Some(Op::MatMul(_)), [q, kt]) => Some((*q, *kt)),
                    _ => None,
                })
                .collect();
            for (q, kt) in mms {
                if ty(egraph, q).map(|t| t.shape.rank()) != Some(4) || ty(egraph, kt).map(|t| t.shape.rank()) != Some(4)
                {
                    continue;
                }
                if let Some(m) = mask
                    && ty(egraph, m).is_none_or(|t| t.dtype != DType::F32)
                {
                    continue;
                }
                let k =
                    add_op(egraph, Op::Transpose(slmtvm_ir::ops::Transpose { perm: Some(vec![0, 1, 3, 2]) }), vec![kt]);
                let mut ins = vec![q, k, v];
                ins.extend(mask);
                let op = Op::Attention(slmtvm_ir::ops::Attention { scale: Some(scale), causal: false });
                let a = add_op(egraph, op, ins);
                if egraph[a].data.valid && ty(egraph, a) == ty(egraph, c) {
                    return Some(a);
                }
            }
        }
    }
    None
}

/// The un-repeated K/V of class `c` when it is the exporters' `repeat_kv`:
/// `Reshape(Expand(Unsqueeze(x, axes=[2]), [B, Hkv, r, T, D]), [B, Hkv·r, T, D])`. The head
/// counts must be static; batch, sequence and head size may be symbolic (compared as
/// polynomials of the symbols).
fn unrepeated(egraph: &EG, c: Id) -> Option<Id> {
    let out = &ty(egraph, c)?.shape.0;
    let same = |a: &slmtvm_ir::Dim, b: &slmtvm_ir::Dim| a == b || a.poly() == b.poly();
    for n in &egraph[c].nodes {
        let (Some(Op::Reshape(_)), [e, _]) = (n.op(), n.children()) else { continue };
        for m in &egraph[*e].nodes {
            let (Some(Op::Expand(_)), [u, _]) = (m.op(), m.children()) else { continue };
            for k in &egraph[*u].nodes {
                let (Some(Op::Unsqueeze(un)), [x]) = (k.op(), k.children()) else { continue };
                let xd = &ty(egraph, *x)?.shape.0;
                let ed = &ty(egraph, *e)?.shape.0;
                if un.axes != [2] || xd.len() != 4 || ed.len() != 5 || out.len() != 4 {
                    continue;
                }
                let heads = match (xd[1].known(), ed[2].known(), out[1].known()) {
                    (Some(h), Some(r), Some(o)) => h * r == o && ed[1].known() == Some(h),
                    _ => false,
                };
                let ok = heads
                    && same(&ed[0], &xd[0])
                    && same(&ed[3], &xd[2])
                    && same(&ed[4], &xd[3])
                    && same(&out[0], &xd[0])
                    && same(&out[2], &xd[2])
                    && same(&out[3], &xd[3]);
                if ok {
                    return Some(egraph.find(*x));
                }
            }
        }
    }
    None
}

/// Attention over K and V repeated per query head group (`repeat_kv`) → Attention over the
/// un-repeated K and V (grouped-query heads share them in the kernel, no copies).
fn attention_gqa(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::Attention(a)), ch) = (n.op(), n.children()) else { return None };
    let (q, k, v) = (*ch.first()?, *ch.get(1)?, *ch.get(2)?);
    let (k0, v0) = (unrepeated(egraph, egraph.find(k))?, unrepeated(egraph, egraph.find(v))?);
    let mut ins = vec![q, k0, v0];
    ins.extend(ch.get(3).copied());
    let new = add_op(egraph, Op::Attention(a.clone()), ins);
    (egraph[new].data.valid && ty(egraph, new) == ty(egraph, c)).then_some(new)
}
