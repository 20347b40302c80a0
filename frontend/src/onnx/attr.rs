//! Typed access to a node's attributes, with ONNX defaults supplied by the caller and every
//! attribute the mapping does not read reported as unsupported.

use super::proto::{AttributeProto, NodeProto, attribute_proto::AttributeType};
use crate::{Error, Result};
use slmtvm_ir::Tensor;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;

/// A node's attributes; remembers which were read so that [`Attrs::finish`] can refuse the
/// rest.
pub struct Attrs<'a> {
    node: &'a NodeProto,
    name: &'a str,
    read: RefCell<BTreeSet<String>>,
}

impl<'a> Attrs<'a> {
    /// Wraps `node`, whose (unique) name is `name`.
    pub fn new(node: &'a NodeProto, name: &'a str) -> Attrs<'a> {
        Attrs { node, name, read: RefCell::new(BTreeSet::new()) }
    }

    fn err(&self, attr: &str, msg: impl Into<String>) -> Error {
        Error::Attribute { node: self.name.into(), attr: attr.into(), msg: msg.into() }
    }

    fn get(&self, attr: &str, ty: AttributeType) -> Result<Option<&'a AttributeProto>> {
        self.read.borrow_mut().insert(attr.to_string());
        let Some(a) = self.node.attribute.iter().find(|a| a.name() == attr) else { return Ok(None) };
        if a.r#type() != ty {
            return Err(self.err(attr, format!("expected type {}, got {}", ty.as_str_name(), a.r#type().as_str_name())));
        }
        Ok(Some(a))
    }

    /// True when the node carries the attribute.
    pub fn has(&self, attr: &str) -> bool {
        self.node.attribute.iter().any(|a| a.name() == attr)
    }

    /// An INT attribute.
    pub fn int(&self, attr: &str) -> Result<Option<i64>> {
        Ok(self.get(attr, AttributeType::Int)?.map(|a| a.i()))
    }

    /// `v`, the value of attribute `attr` read by one of the getters, which the operator
    /// requires: an error naming the node and the attribute when it is absent.
    pub fn required<T>(&self, attr: &str, v: Option<T>) -> Result<T> {
        v.ok_or_else(|| self.err(attr, "is required"))
    }

    /// An INT attribute with a default.
    pub fn int_or(&self, attr: &str, default: i64) -> Result<i64> {
        Ok(self.int(attr)?.unwrap_or(default))
    }

    /// An INT attribute used as a flag (0 or 1).
    pub fn flag_or(&self, attr: &str, default: bool) -> Result<bool> {
        match self.int(attr)? {
            None => Ok(default),
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(v) => Err(self.err(attr, format!("must be 0 or 1, got {v}"))),
        }
    }

    /// A FLOAT attribute with a default.
    pub fn float_or(&self, attr: &str, default: f32) -> Result<f32> {
        Ok(self.get(attr, AttributeType::Float)?.map_or(default, |a| a.f()))
    }

    /// An INTS attribute.
    pub fn ints(&self, attr: &str) -> Result<Option<Vec<i64>>> {
        Ok(self.get(attr, AttributeType::Ints)?.map(|a| a.ints.clone()))
    }

    /// An INTS attribute whose values must be non-negative.
    pub fn usizes(&self, attr: &str) -> Result<Option<Vec<usize>>> {
        self.ints(attr)?
            .map(|v| {
                v.iter()
                    .map(|&x| {
                        usize::try_from(x).map_err(|_| self.err(attr, format!("values must be non-negative, got {x}")))
                    })
                    .collect()
            })
            .transpose()
    }

    /// A FLOATS attribute.
    pub fn floats(&self, attr: &str) -> Result<Option<Vec<f32>>> {
        Ok(self.get(attr, AttributeType::Floats)?.map(|a| a.floats.clone()))
    }

    /// A STRING attribute (UTF-8).
    pub fn string(&self, attr: &str) -> Result<Option<String>> {
        self.get(attr, AttributeType::String)?
            .map(|a| String::from_utf8(a.s().to_vec()).map_err(|_| self.err(attr, "is not UTF-8")))
            .transpose()
    }

    /// A TENSOR attribute converted to an IR tensor.
    pub fn tensor(&self, attr: &str, base_dir: Option<&Path>) -> Result<Option<Tensor>> {
        self.get(attr, AttributeType::Tensor)?
            .map(|a| {
                let t = a.t.as_ref().ok_or_else(|| self.err(attr, "has no tensor value"))?;
                super::tensor::tensor_from_proto(t, base_dir)
            })
            .transpose()
    }

    /// Refuses every attribute the mapping did not read: an attribute slmtvm does not know
    /// could change the operator's meaning.
    pub fn finish(&self, op: &str) -> Result<()> {
        let read = self.read.borrow();
        match self.node.attribute.iter().find(|a| !read.contains(a.name())) {
            Some(a) => Err(Error::Unsupported {
                context: format!("node '{}'", self.name),
                msg: format!("attribute '{}' of {op}", a.name()),
            }),
            None => Ok(()),
        }
    }
}
