//! Recognition of decomposed forms the exporters emit, rewritten to the IR operator that
//! computes them in one kernel.

use super::predicates::{is_float, ty};
use super::{Rule, add_op};
use crate::analysis::EG;
use crate::lang::Node;
use egg::{Id, Language};
use slmtvm_ir::ops::{BinaryOp, ReduceKind, UnaryOp};
use slmtvm_ir::{Op, Tensor};

/// The recognition rule set.
pub fn rules() -> Vec<Rule> {
    vec![
        Rule { name: "gelu-erf", kind: "Mul", rewrite: gelu_erf },
        Rule { name: "gelu-tanh", kind: "Mul", rewrite: gelu_tanh },
        Rule { name: "silu", kind: "Mul", rewrite: silu },
        Rule { name: "rmsnorm", kind: "Mul", rewrite: rmsnorm },
        Rule { name: "layernorm", kind: "Div", rewrite: layernorm },
        Rule { name: "layernorm-scale", kind: "Mul", rewrite: layernorm_scale },
        Rule { name: "layernorm-affine", kind: "Add", rewrite: layernorm_affine },
        Rule { name: "softmax", kind: "Div", rewrite: softmax },
    ]
}

/// The first axis of a keepdims Reduce of `kind` over the trailing axes of a rank-`rank`
/// operand (axes contiguous up to the last; `None` for any other reduction).
fn trailing_reduce(r: &slmtvm_ir::ops::Reduce, kind: ReduceKind, rank: i64) -> Option<i64> {
    if r.kind != kind || !r.keepdims {
        return None;
    }
    let mut ax: Vec<i64> = match &r.axes {
        Some(a) => a.iter().map(|&a| if a < 0 { a + rank } else { a }).collect(),
        None => (0..rank).collect(),
    };
    ax.sort_unstable();
    let first = *ax.first()?;
    let contiguous = ax.iter().enumerate().all(|(i, &a)| a == first + i as i64) && *ax.last()? == rank - 1;
    contiguous.then_some(first)
}

/// The operands of the keepdims trailing-axes Reduce-`kind` nodes of class `c`, with their first axis.
fn reductions(egraph: &EG, c: Id, kind: ReduceKind, rank: i64) -> Vec<(Id, i64)> {
    egraph[c]
        .nodes
        .iter()
        .filter_map(|n| match (n.op(), n.children()) {
            (Some(Op::Reduce(r)), [x]) => Some((egraph.find(*x), trailing_reduce(r, kind, rank)?)),
            _ => None,
        })
        .collect()
}

/// The value of a one-element constant class.
fn scalar(egraph: &EG, c: Id) -> Option<f64> {
    egraph[c].data.konst.as_deref().filter(|t| t.len() == 1).and_then(|t| t.to_f64().iter().next().copied())
}

/// The (x, first normalized axis, epsilon) of `(x − mean(x)) / sqrt(mean((x − mean(x))²) + eps)`
/// at class `c` (a Div), the means over the same trailing axes with keepdims, the square as
/// `d^2` or `d·d`.
fn ln_core(egraph: &EG, c: Id) -> Option<(Id, i64, f32)> {
    for (d, s) in binaries(egraph, c, BinaryOp::Div) {
        for (x, m) in binaries(egraph, d, BinaryOp::Sub) {
            let Some(rank) = ty(egraph, x).map(|t| t.shape.rank() as i64) else { continue };
            for (mx, axis) in reductions(egraph, m, ReduceKind::Mean, rank) {
                if mx != x {
                    continue;
                }
                for sum in unaries(egraph, s, &UnaryOp::Sqrt) {
                    for (v, e) in binaries(egraph, sum, BinaryOp::Add) {
                        let Some(eps) = scalar(egraph, e) else { continue };
                        for (sq, ax2) in reductions(egraph, v, ReduceKind::Mean, rank) {
                            let squares = binaries(egraph, sq, BinaryOp::Pow)
                                .into_iter()
                                .any(|(b, p)| b == d && near(egraph, p, 2.0))
                                || binaries(egraph, sq, BinaryOp::Mul).into_iter().any(|(a, b)| a == d && b == d);
                            if ax2 == axis && squares {
                                return Some((x, axis, eps as f32));
                            }
                        }
                    }
                }
            }
        }
    }
    None
}

/// Constant `p` broadcasts onto x's normalized axes `axis..` only (right-aligned, 1s allowed)
/// with x's dtype.
fn fits_tail(egraph: &EG, x: Id, axis: i64, p: Id) -> bool {
    let (Some(xt), Some(pt)) = (ty(egraph, x), egraph[p].data.konst.as_deref()) else { return false };
    let tail = &xt.shape.0[axis as usize..];
    let dims = pt.shape();
    pt.dtype() == xt.dtype
        && dims.len() <= tail.len()
        && dims.iter().rev().zip(tail.iter().rev()).all(|(&d, t)| d == 1 || t.known() == Some(d))
}

/// Output 0 of `LayerNorm(x, scale, bias)` when it has class `c`'s type.
fn layernorm_of(egraph: &mut EG, c: Id, x: Id, axis: i64, eps: f32, scale: Id, bias: Option<Id>) -> Option<Id> {
    if !is_float(egraph, x) || ty(egraph, x) != ty(egraph, c) {
        return None;
    }
    let mut ins = vec![x, scale];
    ins.extend(bias);
    let ln = add_op(egraph, Op::LayerNorm(slmtvm_ir::ops::LayerNorm { axis, epsilon: eps }), ins);
    let y = egraph.add(Node::Get(0, [ln]));
    (egraph[ln].data.valid && ty(egraph, y) == ty(egraph, c)).then_some(y)
}

/// `(x − mean(x)) / sqrt(var(x) + eps)` (no scale, no bias) → LayerNorm(x, ones).
fn layernorm(egraph: &mut EG, c: Id, _n: &Node) -> Option<Id> {
    let (x, axis, eps) = ln_core(egraph, c)?;
    let xt = ty(egraph, x)?.clone();
    let tail: Vec<usize> = xt.shape.0[axis as usize..].iter().map(|d| d.known()).collect::<Option<_>>()?;
    let n = tail.iter().product();
    let ones = Tensor::from_f64(xt.dtype, Tensor::from_vec(&tail, vec![1f32; n]).ok()?.to_f64());
    let k = egraph.analysis.add_const(ones);
    let k = egraph.add(k);
    layernorm_of(egraph, c, x, axis, eps, k, None)
}

/// `γ · LayerNorm-core(x)` with a constant γ over the normalized axes → LayerNorm(x, γ).
fn layernorm_scale(egraph: &mut EG, c: Id, _n: &Node) -> Option<Id> {
    for (normed, g) in binaries(egraph, c, BinaryOp::Mul) {
        let Some((x, axis, eps)) = ln_core(egraph, normed) else { continue };
        if fits_tail(egraph, x, axis, g) {
            return layernorm_of(egraph, c, x, axis, eps, g, None);
        }
    }
    None
}

/// `γ · LayerNorm-core(x) + β` with constants γ, β over the normalized axes → LayerNorm(x, γ, β).
fn layernorm_affine(egraph: &mut EG, c: Id, _n: &Node) -> Option<Id> {
    for (scaled, b) in binaries(egraph, c, BinaryOp::Add) {
        for (normed, g) in binaries(egraph, scaled, BinaryOp::Mul) {
            let Some((x, axis, eps)) = ln_core(egraph, normed) else { continue };
            if fits_tail(egraph, x, axis, g) && fits_tail(egraph, x, axis, b) {
                return layernorm_of(egraph, c, x, axis, eps, g, Some(b));
            }
        }
    }
    None
}

/// The axis of a keepdims Reduce-`kind` of class `c` over exactly one axis of a rank-`rank`
/// operand, with its operand.
fn one_axis(egraph: &EG, c: Id, kind: ReduceKind, rank: i64) -> Vec<(Id, i64)> {
    egraph[c]
        .nodes
        .iter()
        .filter_map(|n| match (n.op(), n.children()) {
            (Some(Op::Reduce(r)), [x]) if r.kind == kind && r.keepdims => {
                let axis = match r.axes.as_deref() {
                    Some([a]) => *a,
                    None if rank == 1 => 0,
                    _ => return None,
                };
                let axis = if axis < 0 { axis + rank } else { axis };
                (0..rank).contains(&axis).then(|| (egraph.find(*x), axis))
            }
            _ => None,
        })
        .collect()
}

/// `exp(x − max(x)) / sum(exp(x − max(x)))` or `exp(x) / sum(exp(x))`, max and sum along the
/// same one axis with keepdims → Softmax(x, axis).
fn softmax(egraph: &mut EG, c: Id, _n: &Node) -> Option<Id> {
    for (e, s) in binaries(egraph, c, BinaryOp::Div) {
        let Some(rank) = ty(egraph, e).map(|t| t.shape.rank() as i64) else { continue };
        for (summed, axis) in one_axis(egraph, s, ReduceKind::Sum, rank) {
            if summed != e {
                continue;
            }
            for z in unaries(egraph, e, &UnaryOp::Exp) {
                let mut xs = vec![z];
                for (x, m) in binaries(egraph, z, BinaryOp::Sub) {
                    if one_axis(egraph, m, ReduceKind::Max, rank).contains(&(x, axis)) {
                        xs.push(x);
                    }
                }
                for x in xs.into_iter().rev() {
                    if is_float(egraph, x) && ty(egraph, x) == ty(egraph, c) {
                        return Some(add_op(egraph, Op::Softmax(slmtvm_ir::ops::Softmax { axis }), vec![x]));
                    }
                }
            }
        }
    }
    None
}

/// `x·sigmoid(x)` → Silu(x).
fn silu(egraph: &mut EG, c: Id, _n: &Node) -> Option<Id> {
    for (x, s) in binaries(egraph, c, BinaryOp::Mul) {
        if unaries(egraph, s, &UnaryOp::Sigmoid).contains(&x) && is_float(egraph, x) && ty(egraph, x) == ty(egraph, c) {
            return Some(add_op(egraph, Op::Unary(UnaryOp::Silu), vec![x]));
        }
    }
    None
}

/// The (x, first normalized axis, epsilon) of `x / sqrt(mean(x², trailing axes) + eps)` at
/// class `c`: `x · (1/sqrt(…))`, `x · reciprocal(sqrt(…))` or `x / sqrt(…)`; x² as `x^2` or
/// `x·x`; the mean over the trailing axes with keepdims.
fn rms_core(egraph: &EG, c: Id) -> Option<(Id, i64, f32)> {
    let mut cands: Vec<(Id, Id)> = binaries(egraph, c, BinaryOp::Div); // (x, sqrt)
    for (x, inv) in binaries(egraph, c, BinaryOp::Mul) {
        cands.extend(unaries(egraph, inv, &UnaryOp::Reciprocal).into_iter().map(|s| (x, s)));
        cands.extend(
            binaries(egraph, inv, BinaryOp::Div)
                .into_iter()
                .filter(|&(one, _)| near(egraph, one, 1.0))
                .map(|(_, s)| (x, s)),
        );
    }
    for (x, s) in cands {
        let rank = ty(egraph, x)?.shape.rank() as i64;
        for sum in unaries(egraph, s, &UnaryOp::Sqrt) {
            for (m, e) in binaries(egraph, sum, BinaryOp::Add) {
                let Some(eps) = egraph[e]
                    .data
                    .konst
                    .as_deref()
                    .filter(|t| t.len() == 1)
                    .and_then(|t| t.to_f64().iter().next().copied())
                    .map(|v| v as f32)
                else {
                    continue;
                };
                for node in &egraph[m].nodes {
                    let (Some(Op::Reduce(r)), [sq]) = (node.op(), node.children()) else { continue };
                    if r.kind != slmtvm_ir::ops::ReduceKind::Mean || !r.keepdims {
                        continue;
                    }
                    let Some(axes) = &r.axes else { continue };
                    let mut ax: Vec<i64> = axes.iter().map(|&a| if a < 0 { a + rank } else { a }).collect();
                    ax.sort_unstable();
                    let first = *ax.first()?;
                    if ax.iter().enumerate().any(|(i, &a)| a != first + i as i64) || *ax.last()? != rank - 1 {
                        continue;
                    }
                    let sq = egraph.find(*sq);
                    let squares =
                        binaries(egraph, sq, BinaryOp::Pow).into_iter().any(|(b, p)| b == x && near(egraph, p, 2.0))
                            || binaries(egraph, sq, BinaryOp::Mul).into_iter().any(|(a, b)| a == x && b == x);
                    if squares {
                        return Some((x, first, eps));
                    }
                }
            }
        }
    }
    None
}

/// `w · (x / sqrt(mean(x²) + eps))` with a constant scale w over the normalized axes →
/// RmsNorm(x, w).
fn rmsnorm(egraph: &mut EG, c: Id, _n: &Node) -> Option<Id> {
    for (normed, w) in binaries(egraph, c, BinaryOp::Mul) {
        let Some(wt) = egraph[w].data.konst.clone() else { continue };
        let Some((x, axis, eps)) = rms_core(egraph, normed) else { continue };
        let xt = ty(egraph, x)?.clone();
        let tail: Vec<slmtvm_ir::Dim> = xt.shape.0[axis as usize..].to_vec();
        let w_dims = wt.shape();
        // The scale covers the normalized axes only (right-aligned, possibly with 1s).
        let fits = w_dims.len() <= tail.len()
            && w_dims.iter().rev().zip(tail.iter().rev()).all(|(&d, t)| d == 1 || t.known() == Some(d));
        if !fits || !is_float(egraph, x) || ty(egraph, c) != Some(&xt) || wt.dtype() != xt.dtype {
            continue;
        }
        let op = Op::RmsNorm(slmtvm_ir::ops::RmsNorm { axis, epsilon: eps });
        return Some(add_op(egraph, op, vec![x, w]));
    }
    None
}

/// The operand pairs of the `op` nodes of class `c` (both orders for a commutative `op`).
fn binaries(egraph: &EG, c: Id, op: BinaryOp) -> Vec<(Id, Id)> {
    let commutes = matches!(op, BinaryOp::Add | BinaryOp::Mul);
    let mut v = Vec::new();
    for n in &egraph[c].nodes {
        if let (Some(Op::Binary(b)), [x, y]) = (n.op(), n.children())
            && *b == op
        {
            v.push((egraph.find(*x), egraph.find(*y)));
            if commutes {
                v.push((egraph.find(*y), egraph.find(*x)));
            }
        }
    }
    v
}

/// The operands of the `op` nodes of class `c`.
fn unaries(egraph: &EG, c: Id, op: &UnaryOp) -> Vec<Id> {
    egraph[c]
        .nodes
        .iter()
        .filter_map(|n| match (n.op(), n.children()) {
            (Some(Op::Unary(u)), [x]) if u == op => Some(egraph.find(*x)),
            _ => None,
        })
        .collect()
}

/// Class `c` is a constant whose every element is within 1e-6 (relative) of `v`.
fn near(egraph: &EG, c: Id, v: f64) -> bool {
    egraph[c]
        .data
        .konst
        .as_deref()
        .is_some_and(|t| !t.is_empty() && t.to_f64().iter().all(|&e| (e - v).abs() <= 1e-6 * v.abs().max(1.0)))
}

/// `c` = x·0.5 for some x: the x's.
fn halves(egraph: &EG, c: Id) -> Vec<Id> {
    binaries(egraph, c, BinaryOp::Mul).into_iter().filter(|&(_, h)| near(egraph, h, 0.5)).map(|(x, _)| x).collect()
}

/// `c` = 1 + t: the t's.
fn one_plus(egraph: &EG, c: Id) -> Vec<Id> {
    binaries(egraph, c, BinaryOp::Add).into_iter().filter(|&(_, one)| near(egraph, one, 1.0)).map(|(t, _)| t).collect()
}

/// The x of GELU's `0.5·x·(1 + f)` at class `c` (a Mul), for the f's `inner` accepts
/// (`inner(f) → x`): `(x·0.5)·(1+f)` or `(x·(1+f))·0.5`, either operand order.
fn gelu_x(egraph: &EG, c: Id, inner: &dyn Fn(&EG, Id) -> Vec<Id>) -> Option<Id> {
    for (p, q) in binaries(egraph, c, BinaryOp::Mul) {
        // (x·0.5)·(1 + f(x))
        for x in halves(egraph, p) {
            if one_plus(egraph, q).into_iter().any(|f| inner(egraph, f).contains(&x)) {
                return Some(x);
            }
        }
        // (x·(1 + f(x)))·0.5
        if near(egraph, q, 0.5) {
            for (x, r) in binaries(egraph, p, BinaryOp::Mul) {
                if one_plus(egraph, r).into_iter().any(|f| inner(egraph, f).contains(&x)) {
                    return Some(x);
                }
            }
        }
    }
    None
}

/// Replaces class `c` by `Gelu(x)` when x has c's type (no broadcast).
fn gelu_of(egraph: &mut EG, c: Id, x: Id, tanh_approx: bool) -> Option<Id> {
    if !is_float(egraph, x) || ty(egraph, x) != ty(egraph, c) {
        return None;
    }
    Some(add_op(egraph, Op::Unary(UnaryOp::Gelu { tanh_approx }), vec![x]))
}

/// `0.5·x·(1 + erf(x/√2))` (or `x·(1/√2)`) → Gelu(x).
fn gelu_erf(egraph: &mut EG, c: Id, _n: &Node) -> Option<Id> {
    let erf_arg = |eg: &EG, f: Id| -> Vec<Id> {
        let mut xs = Vec::new();
        for z in unaries(eg, f, &UnaryOp::Erf) {
            xs.extend(
                binaries(eg, z, BinaryOp::Div).into_iter().filter(|&(_, k)| near(eg, k, 2f64.sqrt())).map(|(x, _)| x),
            );
            xs.extend(
                binaries(eg, z, BinaryOp::Mul).into_iter().filter(|&(_, k)| near(eg, k, 0.5f64.sqrt())).map(|(x, _)| x),
            );
        }
        xs
    };
    let x = gelu_x(egraph, c, &erf_arg)?;
    gelu_of(egraph, c, x, false)
}

/// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` → Gelu(x, tanh approximation).
fn gelu_tanh(egraph: &mut EG, c: Id, _n: &Node) -> Option<Id> {
    let tanh_arg = |eg: &EG, f: Id| -> Vec<Id> {
        let mut xs = Vec::new();
        for z in unaries(eg, f, &UnaryOp::Tanh) {
            for (s, k) in binaries(eg, z, BinaryOp::Mul) {
                if !near(eg, k, (2.0 / std::f64::consts::PI).sqrt()) {
                    continue;
                }
                for (x, cube) in binaries(eg, s, BinaryOp::Add) {
                    let ok = binaries(eg, cube, BinaryOp::Mul).into_iter().any(|(p, a)| {
                        near(eg, a, 0.044715)
                            && binaries(eg, p, BinaryOp::Pow).into_iter().any(|(b, e)| b == x && near(eg, e, 3.0))
                    });
                    if ok {
                        xs.push(x);
                    }
                }
            }
        }
        xs
    };
    let x = gelu_x(egraph, c, &tanh_arg)?;
    gelu_of(egraph, c, x, true)
}
