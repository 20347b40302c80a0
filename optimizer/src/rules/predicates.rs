//! The named conditions rules test.

use crate::analysis::EG;
use egg::Id;
use slmtvm_ir::{Tensor, TypeInfo};

/// The constant value of class `c`, if it has one.
pub fn constant(egraph: &EG, c: Id) -> Option<&Tensor> {
    egraph[c].data.konst.as_deref()
}

/// Class `c` is a constant whose every element equals `v` (as f64).
pub fn is_all(egraph: &EG, c: Id, v: f64) -> bool {
    constant(egraph, c).is_some_and(|t| !t.is_empty() && t.to_f64().iter().all(|&x| x == v))
}

/// The type of class `c`.
pub fn ty(egraph: &EG, c: Id) -> Option<&TypeInfo> {
    egraph[c].data.ty()
}

/// Classes `a` and `b` have the same type (dtype and shape): replacing one by the other keeps
/// every consumer's shape.
pub fn same_type(egraph: &EG, a: Id, b: Id) -> bool {
    matches!((ty(egraph, a), ty(egraph, b)), (Some(x), Some(y)) if x == y)
}

/// Class `c` is a float tensor.
pub fn is_float(egraph: &EG, c: Id) -> bool {
    ty(egraph, c).is_some_and(|t| t.dtype.is_float())
}

/// Every value of `from` converts to `to` exactly (so a cast through `to` loses nothing).
pub fn cast_is_exact(from: slmtvm_ir::DType, to: slmtvm_ir::DType) -> bool {
    use slmtvm_ir::DType::*;
    from == to
        || matches!(
            (from, to),
            (Bool, _) | (I8, I32 | I64 | F32 | F16) | (U8, I32 | I64 | F32 | F16) | (I32, I64) | (F16, F32)
        )
}

/// Every user of class `c`'s value is class `within`, or (up to `depth` levels) a class whose
/// every user is: the value dies inside the subgraph rooted at `within`, so a fused form of
/// that subgraph does not make something else recompute it. (A graph output is used by the
/// root, so it never qualifies.)
pub fn used_only_within(egraph: &EG, c: Id, within: Id, depth: usize) -> bool {
    let within = egraph.find(within);
    let mut users: Vec<Id> = egraph[c].parents().map(|p| egraph.find(p)).collect();
    users.sort_unstable();
    users.dedup();
    // A class without users is the outputs root (or dead): not inside `within`.
    !users.is_empty()
        && users.into_iter().all(|u| {
            u == within || (depth > 0 && u != egraph.find(c) && used_only_within(egraph, u, within, depth - 1))
        })
}
