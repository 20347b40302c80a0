//! Errors of the optimizer.

use thiserror::Error;

/// Why a graph could not be optimized.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// The input graph reads a value nothing defines (`what`: the node or output), so it
    /// cannot become an e-graph.
    #[error("optimizer: {what} reads an undefined value")]
    Undefined {
        /// The node (`node 'x'`) or graph output (`output 'y'`).
        what: String,
    },
    /// The extracted graph is not a graph equivalent in its interface (an optimizer bug;
    /// `--opt-level 0` builds without the optimizer).
    #[error("optimizer: the optimized graph {what} (build with --opt-level 0 to skip the optimizer)")]
    Extraction {
        /// What is wrong with it.
        what: String,
    },
    /// The extracted graph does not type-check (an optimizer bug).
    #[error("optimizer: the optimized graph does not type-check: {0} (build with --opt-level 0 to skip the optimizer)")]
    TypeCheck(#[source] slmtvm_ir::Error),
    /// [`crate::Options::sets`] names a set that is not one of [`crate::RULE_SETS`].
    #[error("optimizer: unknown rule set '{given}' (known: {known})")]
    UnknownRuleSet {
        /// The name given.
        given: String,
        /// The known names.
        known: String,
    },
    /// An int4 group size other than 32, 64 or 128.
    #[error("int4 group size {0}: expected 32, 64 or 128")]
    GroupSize(usize),
    /// A quantized constant could not be built (its data do not fit its shape).
    #[error("{node}: quantized {what}: {source}")]
    QuantizedTensor {
        /// The node quantized.
        node: String,
        /// Which constant.
        what: &'static str,
        /// Why.
        source: slmtvm_ir::DataShapeError,
    },
    /// The quantized graph does not type-check or validate (a quantizer bug).
    #[error("quantized graph: {0}")]
    Quantized(#[source] slmtvm_ir::Error),
    /// Saturation ran past [`crate::Options::time_limit`]. Stopping there would give a graph
    /// that depends on the machine's speed and load, so the build fails instead.
    #[error(
        "optimizer: saturation did not finish within its time limit ({secs:.1} s); raise it with \
         --opt-time-limit SECONDS, or build with --opt-level 0 to skip the optimizer"
    )]
    TimeLimit {
        /// The seconds elapsed when it stopped.
        secs: f64,
    },
}

/// Result with the optimizer's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;
