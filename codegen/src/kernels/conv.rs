//! Kernels: see the table in [`crate::kernels`].

use super::NodeCtx;
use crate::Result;
use crate::emit::Kb;

/// Emits the kernel of `cx.node`.
pub fn emit(_kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    Err(cx.unsupported("no kernel yet"))
}
