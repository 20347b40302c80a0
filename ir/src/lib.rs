//! The slmtvm tensor IR: a typed tensor graph with shape and dtype inference, a textual form
//! that prints and parses back exactly, and a reference interpreter.
//!
//! A graph is built by an importer (see the `slmtvm-frontend` crate), simplified with
//! [`fold::simplify`], and then executed by [`interp::run`] or handed to the optimizer and
//! code generator.
#![warn(missing_docs)]

pub mod dtype;
pub mod error;
pub mod fold;
pub mod graph;
pub mod interp;
pub mod ops;
pub mod shape;
pub mod sym;
pub mod symeval;
pub mod tensor;
pub mod text;

pub use dtype::DType;
pub use error::{DataShapeError, Error, OpError, Result, ShapeParseError};
pub use graph::{Graph, Node, Value, ValueId};
pub use ops::Op;
pub use shape::{Dim, Shape, TypeInfo};
pub use sym::Poly;
pub use tensor::{Element, Scalar, Tensor};
