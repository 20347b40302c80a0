//! Model importers for slmtvm. Today: ONNX (opsets 13 to 28), decoded with prost from types
//! generated at build time from the official `onnx.proto`.
//!
//! The one entry point is [`load_onnx`]: bytes on disk → a simplified, shape-inferred
//! [`slmtvm_ir::Graph`]. Every failure is an [`Error`] naming the node or tensor at fault.
#![warn(missing_docs)]

pub mod error;
pub mod npy;
pub mod onnx;

pub use error::{Error, Result};
pub use onnx::{
    LoadOptions, Scan, load_onnx, load_onnx_bytes, load_onnx_read, read_tensor_pb, scan_onnx, scan_onnx_bytes,
};
