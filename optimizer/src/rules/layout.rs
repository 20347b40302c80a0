//! Operand layouts: transposes folded into a matrix product's operand flags, and constant
//! weights packed into the layout the matmul kernel computes fastest.
//!
//! The matmul kernel (codegen `kernels/matmul.rs`) reads a Gemm operand through row and column
//! strides, so `transA`/`transB` cost no copy; it runs its **broadcast** schedule when B is
//! contiguous along N and its **dot** schedule (priced higher, see
//! [`crate::cost::DOT_SCHEDULE_FACTOR`]) when B is contiguous along K, as with `transB`. So a
//! transpose folded into `transB` saves the transpose's copy but may cost a slower schedule:
//! the rules add both forms and the cost model picks. A constant B read with `transB` is
//! transposed once at compile time instead (`gemm-pack-weight`), which costs nothing at run time.
//!
//! Rank ≥ 3 products (`MatMul(Q, Transpose(K))` over heads) are left alone: MatMul has no
//! transpose flags, and an IR op with them is not worth adding: folding would save only the
//! copy of K (T·D elements per head, against the product's S·T·D multiply-adds) and would trade
//! the broadcast schedule for the dot schedule; the fused Attention op reads K in place.

use super::predicates::{constant, ty};
use super::{Rule, add_op};
use crate::analysis::EG;
use crate::lang::Node;
use egg::{Id, Language};
use slmtvm_ir::ops::{Gemm, Transpose};
use slmtvm_ir::{DType, Op};

/// The layout rule set.
pub fn rules() -> Vec<Rule> {
    vec![
        Rule { name: "matmul-transpose-a", kind: "MatMul", rewrite: matmul_transpose_a },
        Rule { name: "matmul-transpose-b", kind: "MatMul", rewrite: matmul_transpose_b },
        Rule { name: "gemm-transpose-a", kind: "Gemm", rewrite: gemm_transpose_a },
        Rule { name: "gemm-transpose-b", kind: "Gemm", rewrite: gemm_transpose_b },
        Rule { name: "gemm-pack-weight", kind: "Gemm", rewrite: gemm_pack_weight },
    ]
}

/// Class `c` is an f32 matrix (rank 2).
fn is_f32_matrix(egraph: &EG, c: Id) -> bool {
    ty(egraph, c).is_some_and(|t| t.dtype == DType::F32 && t.shape.rank() == 2)
}

/// The x's of the 2-D transposes `Transpose(x)` in class `c` (perm `[1, 0]` or the default).
fn transposed(egraph: &EG, c: Id) -> Option<Id> {
    if !is_f32_matrix(egraph, c) {
        return None;
    }
    egraph[c].nodes.iter().find_map(|n| match (n.op(), n.children()) {
        (Some(Op::Transpose(Transpose { perm })), [x]) if perm.as_deref().is_none_or(|p| p == [1, 0]) => {
            Some(egraph.find(*x))
        }
        _ => None,
    })
}

/// A Gemm with no C: `op(a)·op(b)`.
fn product(trans_a: bool, trans_b: bool) -> Op {
    Op::Gemm(Gemm { alpha: 1.0, beta: 1.0, trans_a, trans_b })
}

/// Keeps `new` only if it type-checks to class `c`'s type.
fn checked(egraph: &EG, c: Id, new: Id) -> Option<Id> {
    (egraph[new].data.valid && ty(egraph, new) == ty(egraph, c)).then_some(new)
}

/// 2-D `MatMul(Transpose(a), b)` → `Gemm(a, b, transA)`.
fn matmul_transpose_a(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::MatMul(_)), [a, b]) = (n.op(), n.children()) else { return None };
    let (a, b) = (*a, *b);
    if !is_f32_matrix(egraph, b) {
        return None;
    }
    let x = transposed(egraph, a)?;
    let new = add_op(egraph, product(true, false), vec![x, b]);
    checked(egraph, c, new)
}

/// 2-D `MatMul(a, Transpose(b))` → `Gemm(a, b, transB)`.
fn matmul_transpose_b(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::MatMul(_)), [a, b]) = (n.op(), n.children()) else { return None };
    let (a, b) = (*a, *b);
    if !is_f32_matrix(egraph, a) {
        return None;
    }
    let x = transposed(egraph, b)?;
    let new = add_op(egraph, product(false, true), vec![a, x]);
    checked(egraph, c, new)
}

/// `Gemm(Transpose(a), b, c)` → the Gemm of `a` with `transA` flipped.
fn gemm_transpose_a(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::Gemm(g)), ch) = (n.op(), n.children()) else { return None };
    let x = transposed(egraph, *ch.first()?)?;
    let mut ins = ch.to_vec();
    ins[0] = x;
    let new = add_op(egraph, Op::Gemm(Gemm { trans_a: !g.trans_a, ..g.clone() }), ins);
    checked(egraph, c, new)
}

/// `Gemm(a, Transpose(b), c)` → the Gemm of `b` with `transB` flipped.
fn gemm_transpose_b(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::Gemm(g)), ch) = (n.op(), n.children()) else { return None };
    let x = transposed(egraph, *ch.get(1)?)?;
    let mut ins = ch.to_vec();
    ins[1] = x;
    let new = add_op(egraph, Op::Gemm(Gemm { trans_b: !g.trans_b, ..g.clone() }), ins);
    checked(egraph, c, new)
}

/// `Gemm(a, W, transB)` with a constant f32 W → `Gemm(a, Wᵀ)` with Wᵀ computed now, so the
/// kernel reads B contiguous along N (its broadcast schedule). Added once per class: a class
/// that already holds the packed Gemm is left alone (each packing copies the weight).
fn gemm_pack_weight(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::Gemm(g)), ch) = (n.op(), n.children()) else { return None };
    if !g.trans_b || !is_f32_matrix(egraph, ch[1]) {
        return None;
    }
    let packed = Gemm { trans_b: false, ..g.clone() };
    let a = egraph.find(ch[0]);
    let done = egraph[c].nodes.iter().any(
        |m| matches!((m.op(), m.children()), (Some(Op::Gemm(h)), [x, ..]) if *h == packed && egraph.find(*x) == a),
    );
    if done {
        return None;
    }
    let w = constant(egraph, ch[1])?.clone();
    let wt = Op::Transpose(Transpose { perm: Some(vec![1, 0]) }).eval(&[Some(&w)]).ok()?.pop()?;
    let k = egraph.analysis.add_const(wt);
    let k = egraph.add(k);
    let mut ins = ch.to_vec();
    ins[1] = k;
    let new = add_op(egraph, Op::Gemm(packed), ins);
    checked(egraph, c, new)
}
