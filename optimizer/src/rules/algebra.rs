//! Algebraic simplifications. Each keeps every value's dtype and shape, and equals the
//! original up to float rounding where noted.

use super::predicates::{cast_is_exact, constant, is_all, is_float, same_type, ty};
use super::{Rule, add_op, same_typed};
use crate::analysis::EG;
use crate::lang::Node;
use egg::Id;
use slmtvm_ir::ops::{BinaryOp, Cast, DequantizeLinear, Gather, Reshape, Transpose, UnaryOp};
use slmtvm_ir::{Op, Tensor};

/// The algebra rule set.
pub fn rules() -> Vec<Rule> {
    vec![
        Rule { name: "transpose-transpose", kind: "Transpose", rewrite: transpose_transpose },
        Rule { name: "transpose-identity", kind: "Transpose", rewrite: transpose_identity },
        Rule { name: "reshape-chain", kind: "Reshape", rewrite: view_chain },
        Rule { name: "flatten-chain", kind: "Flatten", rewrite: view_chain },
        Rule { name: "squeeze-chain", kind: "Squeeze", rewrite: view_chain },
        Rule { name: "unsqueeze-chain", kind: "Unsqueeze", rewrite: view_chain },
        Rule { name: "reshape-noop", kind: "Reshape", rewrite: view_noop },
        Rule { name: "identity", kind: "Identity", rewrite: identity },
        Rule { name: "mul-one", kind: "Mul", rewrite: mul_one },
        Rule { name: "add-zero", kind: "Add", rewrite: add_zero },
        Rule { name: "sub-zero", kind: "Sub", rewrite: sub_zero },
        Rule { name: "div-by-constant", kind: "Div", rewrite: div_by_constant },
        Rule { name: "cast-noop", kind: "Cast", rewrite: cast_noop },
        Rule { name: "cast-cast", kind: "Cast", rewrite: cast_cast },
        Rule { name: "gather-dequantize", kind: "Gather", rewrite: gather_dequantize },
    ]
}

fn operands(n: &Node) -> &[Id] {
    egg::Language::children(n)
}

/// The operator nodes of class `c` (canonical operands).
fn ops_of(egraph: &EG, c: Id) -> Vec<Node> {
    egraph[c].nodes.iter().filter(|n| n.op().is_some()).cloned().collect()
}

fn perm_of(p: &Option<Vec<usize>>, rank: usize) -> Vec<usize> {
    p.clone().unwrap_or_else(|| (0..rank).rev().collect())
}

/// Transpose(p1)(Transpose(p2)(x)) = Transpose(p2∘p1)(x): output axis i reads x's axis p2[p1[i]].
fn transpose_transpose(egraph: &mut EG, _c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::Transpose(Transpose { perm: p1 })), [inner]) = (n.op(), operands(n)) else { return None };
    let rank = ty(egraph, *inner)?.shape.rank();
    for m in ops_of(egraph, *inner) {
        if let (Some(Op::Transpose(Transpose { perm: p2 })), [x]) = (m.op(), operands(&m)) {
            let (a, b) = (perm_of(p1, rank), perm_of(p2, rank));
            let q: Vec<usize> = a.iter().map(|&i| b[i]).collect();
            if q.iter().enumerate().all(|(i, &v)| i == v) {
                return Some(*x);
            }
            return Some(add_op(egraph, Op::Transpose(Transpose { perm: Some(q) }), vec![*x]));
        }
    }
    None
}

/// A transpose by the identity permutation is its operand.
fn transpose_identity(_egraph: &mut EG, _c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::Transpose(Transpose { perm: Some(p) })), [x]) = (n.op(), operands(n)) else { return None };
    p.iter().enumerate().all(|(i, &v)| i == v).then_some(*x)
}

/// True for the operators that only reinterpret their operand's bytes with another shape.
fn is_view(op: &Op) -> bool {
    matches!(op, Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_))
}

/// A view of a view of `x` is one Reshape of `x` to the final shape, when that shape is static.
fn view_chain(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let inner = *operands(n).first()?;
    let out = ty(egraph, c)?.shape.as_known()?;
    for m in ops_of(egraph, inner) {
        if m.op().is_some_and(is_view) {
            let x = *operands(&m).first()?;
            let dims: Vec<i64> = out.iter().map(|&d| d as i64).collect();
            let shape = Tensor::from_vec(&[dims.len()], dims).ok()?;
            let s = egraph.analysis.add_const(shape);
            let s = egraph.add(s);
            return Some(add_op(egraph, Op::Reshape(Reshape { allowzero: false }), vec![x, s]));
        }
    }
    None
}

/// A reshape to the operand's own shape is the operand.
fn view_noop(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let x = *operands(n).first()?;
    same_type(egraph, c, x).then_some(x)
}

fn identity(_egraph: &mut EG, _c: Id, n: &Node) -> Option<Id> {
    match (n.op(), operands(n)) {
        (Some(Op::Unary(UnaryOp::Identity)), [x]) => Some(*x),
        _ => None,
    }
}

/// For a binary node `op(a, b)`: the operand that survives when the other is the constant
/// `v` everywhere, provided it already has the result's type (no broadcast widens it).
fn drop_constant(egraph: &EG, c: Id, n: &Node, want: BinaryOp, v: f64, either_side: bool) -> Option<Id> {
    let (Some(Op::Binary(b)), [x, y]) = (n.op(), operands(n)) else { return None };
    if *b != want {
        return None;
    }
    if is_all(egraph, *y, v) && same_type(egraph, c, *x) {
        return Some(*x);
    }
    if either_side && is_all(egraph, *x, v) && same_type(egraph, c, *y) {
        return Some(*y);
    }
    None
}

/// x·1 = 1·x = x.
fn mul_one(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    drop_constant(egraph, c, n, BinaryOp::Mul, 1.0, true)
}

/// x+0 = 0+x = x.
fn add_zero(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    drop_constant(egraph, c, n, BinaryOp::Add, 0.0, true)
}

/// x−0 = x.
fn sub_zero(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    drop_constant(egraph, c, n, BinaryOp::Sub, 0.0, false)
}

/// x / c = x · (1/c) for a float constant c with no zero (equal up to one rounding of 1/c).
fn div_by_constant(egraph: &mut EG, _c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::Binary(BinaryOp::Div)), [x, y]) = (n.op(), operands(n)) else { return None };
    if !is_float(egraph, *y) || !is_float(egraph, *x) {
        return None;
    }
    let t = constant(egraph, *y)?;
    if t.len() > 1 << 16 {
        return None;
    }
    let v = t.to_f64();
    if v.iter().any(|&e| e == 0.0 || !e.is_finite()) {
        return None;
    }
    let r = Tensor::from_f64(t.dtype(), v.mapv(|e| 1.0 / e));
    let k = egraph.analysis.add_const(r);
    let k = egraph.add(k);
    Some(add_op(egraph, Op::Binary(BinaryOp::Mul), vec![*x, k]))
}

/// A cast to the operand's own dtype is the operand.
fn cast_noop(egraph: &mut EG, _c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::Cast(Cast { to, .. })), [x]) = (n.op(), operands(n)) else { return None };
    (ty(egraph, *x)?.dtype == *to).then_some(*x)
}

/// Cast(b)(Cast(a)(x)) = Cast(b)(x) when the cast to a is exact for x's dtype.
fn cast_cast(egraph: &mut EG, _c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::Cast(outer)), [inner]) = (n.op(), operands(n)) else { return None };
    for m in ops_of(egraph, *inner) {
        if let (Some(Op::Cast(Cast { to: a, .. })), [x]) = (m.op(), operands(&m)) {
            let from = ty(egraph, *x)?.dtype;
            if !cast_is_exact(from, *a) {
                continue;
            }
            if from == outer.to {
                return Some(*x);
            }
            return Some(add_op(egraph, Op::Cast(outer.clone()), vec![*x]));
        }
    }
    None
}

/// `Gather(DequantizeLinear(T, scale[, zp]), indices)` → `DequantizeLinear(Gather(T, indices),
/// scale[, zp])` when the dequantization is per tensor, or per axis along an axis other than
/// the gathered one (an embedding table quantized per column): exact, and the table stays
/// 8-bit — only the gathered rows are dequantized.
fn gather_dequantize(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::Gather(Gather { axis })), [data, indices]) = (n.op(), operands(n)) else { return None };
    let (data, indices) = (*data, *indices);
    let rank = ty(egraph, data)?.shape.rank();
    let irank = ty(egraph, indices)?.shape.rank();
    let g = slmtvm_ir::shape::normalize_axis(*axis, rank).ok()?;
    for m in ops_of(egraph, data) {
        let (Some(Op::DequantizeLinear(d)), ch) = (m.op(), operands(&m)) else { continue };
        if d.block_size != 0 || ch.len() < 2 {
            continue;
        }
        let per_tensor = ty(egraph, ch[1])?.shape.numel() == Some(1);
        let da = slmtvm_ir::shape::normalize_axis(d.axis, rank).ok();
        if !per_tensor && da == Some(g) {
            continue;
        }
        // The dequantized axis in the gathered tensor: after the gathered axis, shifted by the
        // indices' rank less the one axis they replace.
        let axis = match da {
            _ if per_tensor => 0,
            Some(da) if da < g => da,
            Some(da) => da + irank - 1,
            None => continue,
        };
        let rows = add_op(egraph, Op::Gather(Gather { axis: g as i64 }), vec![ch[0], indices]);
        let mut ins = vec![rows];
        ins.extend_from_slice(&ch[1..]);
        // The rewritten value has the Gather's type (a guard: a wrong axis would not).
        return same_typed(egraph, c, Op::DequantizeLinear(DequantizeLinear { axis: axis as i64, block_size: 0 }), ins);
    }
    None
}
