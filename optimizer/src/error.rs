//! Errors of the optimizer.

use thiserror::Error;

/// Why a graph could not be optimized.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// The graph could not be represented, or the optimized graph is not equivalent in its
    /// interface (an optimizer bug; `--opt-level 0` builds without the optimizer).
    #[error("optimizer: {0} (build with --opt-level 0 to skip the optimizer)")]
    Graph(String),
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
