//! The ABI facts the object, its header and the assembled code share: the status codes of
//! `<name>_run` and the profiling loop's width. The lowest layer of the crate: imports nothing
//! from the rest of codegen.

/// Status codes returned by `<name>_run` (also written to the header).
pub mod status {
    /// Success.
    pub const OK: i64 = 0;
    /// A NULL inputs/outputs array, entry, or workspace.
    pub const ERR_NULL: i64 = 1;
    /// The workspace is not aligned to [`crate::plan::ARENA_ALIGN`].
    pub const ERR_WORKSPACE_ALIGN: i64 = 2;
    /// A symbol value is negative or above its bound (or the symbols array is NULL).
    pub const ERR_SYMBOL: i64 = 3;
}

/// Multiply-adds per iteration of a profiling build's `<name>_peak` loop: this many
/// independent accumulators (of the target's vector width), enough to cover the FMA latency
/// times the FMA units of the CPUs here.
pub const PEAK_FMAS: usize = 12;
