//! Errors of the optimizer.

use thiserror::Error;

/// Why a graph could not be optimized.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// The graph could not be represented, or the optimized graph is not equivalent in its
    /// interface (an optimizer bug; `--opt-level 0` builds without the optimizer).
    #[error("optimizer: {0} (build with --opt-level 0 to skip the optimizer)")]
    Graph(String),
}

/// Result with the optimizer's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;
