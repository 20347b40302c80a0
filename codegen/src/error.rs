//! Errors of the code generator.

use thiserror::Error;

/// Why a graph could not be compiled.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// A symbolic dim without an upper bound.
    #[error("symbol {symbol} has no upper bound: give one with --bound {symbol}=N (or fix it with --dim {symbol}=N)")]
    Unbounded {
        /// The symbol (or polynomial of symbols).
        symbol: String,
    },
    /// A dim computed at run time that is not a polynomial of the inputs' symbols.
    #[error(
        "tensor '{tensor}': dim {dim} is computed at run time (symbol {symbol} is not a dim of any input); fix the inputs' symbols with --dim"
    )]
    RuntimeDim {
        /// The tensor.
        tensor: String,
        /// The dim.
        dim: String,
        /// The symbol not among the inputs'.
        symbol: String,
    },
    /// No kernel handles this node's operator with these dtypes or attributes.
    #[error("node '{node}' ({op}): not supported by code generation: {what}")]
    Unsupported {
        /// The node.
        node: String,
        /// Its operator.
        op: String,
        /// What is missing.
        what: String,
    },
    /// A node whose kernel cannot take its values as given (shapes, dtypes, attributes).
    #[error("node '{node}' ({op}): {msg}")]
    Node {
        /// The node.
        node: String,
        /// Its operator.
        op: String,
        /// What is wrong.
        msg: String,
    },
    /// A tensor whose bytes overflow the address space.
    #[error("tensor '{tensor}' is too large")]
    TooLarge {
        /// The tensor.
        tensor: String,
    },
    /// The target (its ISA settings, or a schedule it cannot run).
    #[error(transparent)]
    Target(#[from] slmtvm_targets::Error),
    /// A schedule naming a microkernel the target does not have.
    #[error("schedule {schedule}: target {target} cannot run the {kernel} microkernel (it has: {have})")]
    ScheduleKernel {
        /// The schedule.
        schedule: String,
        /// The target.
        target: String,
        /// The microkernel it names.
        kernel: String,
        /// The microkernels the target has, comma-separated.
        have: String,
    },
    /// A thread count out of range.
    #[error("threads must be 1 to {max}, not {given}")]
    Threads {
        /// The count given.
        given: usize,
        /// The largest accepted ([`crate::MAX_THREADS`]).
        max: usize,
    },
    /// Cranelift refused a declaration or a function.
    #[error("{function}cranelift: {message}")]
    Cranelift {
        /// The function (with `": "`), or empty for a module-level refusal.
        function: String,
        /// Cranelift's message.
        message: String,
    },
    /// An assembled function could not be encoded.
    #[error("assembling {what}: {message}")]
    Assemble {
        /// The function.
        what: String,
        /// The assembler's message.
        message: String,
    },
    /// A broken invariant of the code generator itself (a bug, not a bad model).
    #[error("internal: {0}")]
    Internal(String),
}

/// Result with the code generator's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;
