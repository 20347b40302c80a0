//! The e-graph language: one e-node per IR operator application, graph inputs and constants
//! as leaves, `Get` for the outputs of multi-output operators, `Outputs` as the single root.

use egg::{Id, Language};
use slmtvm_ir::Op;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// An IR operator with its attributes, compared and hashed by its canonical text (the IR's
/// text form), so that operators with float attributes can live in an e-graph.
#[derive(Clone, Debug)]
pub struct OpKey {
    /// The operator.
    pub op: Arc<Op>,
    text: Arc<str>,
}

impl OpKey {
    /// Wraps `op`.
    pub fn new(op: Op) -> OpKey {
        let text: Arc<str> = slmtvm_ir::text::print_op(&op).into();
        OpKey { op: Arc::new(op), text }
    }

    /// The canonical text.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl PartialEq for OpKey {
    fn eq(&self, o: &Self) -> bool {
        self.text == o.text
    }
}
impl Eq for OpKey {}
impl Hash for OpKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.text.hash(h)
    }
}
impl PartialOrd for OpKey {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for OpKey {
    fn cmp(&self, o: &Self) -> Ordering {
        self.text.cmp(&o.text)
    }
}

/// An e-node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// Graph input `k`.
    Input(u32),
    /// Constant `k` of the analysis' constant table (the graph's constants, then folded ones).
    Const(u32),
    /// An absent optional operand.
    Absent,
    /// An operator applied to its operands (`Absent` for a missing optional one). For an
    /// operator with several outputs the class is the tuple of them, read with [`Node::Get`].
    Op(OpKey, Vec<Id>),
    /// Output `k` of a multi-output operator's class.
    Get(u32, [Id; 1]),
    /// The graph outputs, in order: the root of extraction.
    Outputs(Vec<Id>),
}

/// What distinguishes e-nodes apart from their operands.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Discriminant {
    /// [`Node::Input`].
    Input(u32),
    /// [`Node::Const`].
    Const(u32),
    /// [`Node::Absent`].
    Absent,
    /// [`Node::Op`] with its operator text and arity.
    Op(Arc<str>, usize),
    /// [`Node::Get`].
    Get(u32),
    /// [`Node::Outputs`] with its arity.
    Outputs(usize),
}

impl Language for Node {
    type Discriminant = Discriminant;

    fn discriminant(&self) -> Discriminant {
        match self {
            Node::Input(k) => Discriminant::Input(*k),
            Node::Const(k) => Discriminant::Const(*k),
            Node::Absent => Discriminant::Absent,
            Node::Op(op, ch) => Discriminant::Op(op.text.clone(), ch.len()),
            Node::Get(k, _) => Discriminant::Get(*k),
            Node::Outputs(ch) => Discriminant::Outputs(ch.len()),
        }
    }

    fn matches(&self, other: &Self) -> bool {
        self.discriminant() == other.discriminant()
    }

    fn children(&self) -> &[Id] {
        match self {
            Node::Op(_, ch) | Node::Outputs(ch) => ch,
            Node::Get(_, ch) => ch,
            _ => &[],
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            Node::Op(_, ch) | Node::Outputs(ch) => ch,
            Node::Get(_, ch) => ch,
            _ => &mut [],
        }
    }
}

impl Node {
    /// The operator of an [`Node::Op`].
    pub fn op(&self) -> Option<&Op> {
        match self {
            Node::Op(k, _) => Some(&k.op),
            _ => None,
        }
    }
}
