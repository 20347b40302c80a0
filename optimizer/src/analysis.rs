//! The e-class analysis: dtype and shape of every value (by the IR's own inference), constant
//! values (so constant folding falls out: a class whose operands are all small constants is
//! evaluated by the reference interpreter and gets a constant e-node), and the symbolic values
//! of shape computations.

use crate::lang::Node;
use egg::{DidMerge, EGraph, Id};
use slmtvm_ir::ops::InferIn;
use slmtvm_ir::{Poly, Tensor, TypeInfo};
use std::sync::Arc;

/// The e-graph type of the optimizer.
pub type EG = EGraph<Node, GraphAnalysis>;

/// Largest tensor (elements) the analysis folds into a constant, as import-time folding does.
pub const FOLD_MAX_ELEMENTS: usize = slmtvm_ir::fold::FOLD_MAX_ELEMENTS;

/// Per-class data.
#[derive(Clone, Debug, Default)]
pub struct Data {
    /// The type of the class's value; of each output for a multi-output operator's class;
    /// empty for `Absent`, `Outputs` and a class whose operator does not type-check.
    pub types: Vec<TypeInfo>,
    /// The value, for a constant class (graph constants and folded small results).
    pub konst: Option<Arc<Tensor>>,
    /// The value as sizes, for a small integer tensor computed from symbolic shapes.
    pub sym: Option<Vec<Poly>>,
    /// False when the class's operator failed inference (a class no extraction may pick).
    pub valid: bool,
}

impl Data {
    /// The type of a single-value class.
    pub fn ty(&self) -> Option<&TypeInfo> {
        match self.types.as_slice() {
            [t] => Some(t),
            _ => None,
        }
    }
}

/// Key of a small constant: equal tensors (dtype, shape, bytes) are one e-node.
type ConstKey = (slmtvm_ir::DType, Vec<usize>, Vec<u8>);

/// The analysis: the graph's input types and the constant table e-nodes refer to.
#[derive(Debug, Default)]
pub struct GraphAnalysis {
    /// Types of the graph inputs, by index.
    pub inputs: Vec<TypeInfo>,
    /// Constants: the graph's, then those folding or rules made.
    pub consts: Vec<Arc<Tensor>>,
    /// How many of `consts` came from the graph.
    pub graph_consts: usize,
    /// Index of every small constant by value, so that a rule making a constant already in
    /// the table reuses it (and saturation can be reached).
    small: std::collections::HashMap<ConstKey, u32>,
    /// The bound of every symbol the inputs' dims bound, for sizes of derived dims
    /// (`past_sequence+sequence`) whose own types carry none.
    pub bounds: std::collections::BTreeMap<String, usize>,
}

impl GraphAnalysis {
    /// The analysis of a graph with these input types and constants.
    pub fn new(inputs: Vec<TypeInfo>, consts: Vec<Tensor>) -> GraphAnalysis {
        let mut bounds = std::collections::BTreeMap::new();
        for d in inputs.iter().flat_map(|t| &t.shape.0) {
            if let (Some(s), Some(b)) = (d.poly().as_symbol().map(str::to_string), d.upper()) {
                let e = bounds.entry(s).or_insert(b);
                *e = (*e).min(b);
            }
        }
        let mut a = GraphAnalysis { inputs, graph_consts: consts.len(), bounds, ..GraphAnalysis::default() };
        for t in consts {
            a.push(t);
        }
        a
    }

    fn push(&mut self, t: Tensor) -> u32 {
        let k = self.consts.len() as u32;
        if t.len() <= FOLD_MAX_ELEMENTS {
            self.small.entry((t.dtype(), t.shape().to_vec(), t.to_le_bytes())).or_insert(k);
        }
        self.consts.push(Arc::new(t));
        k
    }

    /// The e-node of constant `t`: an equal small constant already in the table, or a new one.
    pub fn add_const(&mut self, t: Tensor) -> Node {
        if t.len() <= FOLD_MAX_ELEMENTS
            && let Some(&k) = self.small.get(&(t.dtype(), t.shape().to_vec(), t.to_le_bytes()))
        {
            return Node::Const(k);
        }
        Node::Const(self.push(t))
    }
}

/// The inference inputs of an operator's operands.
pub fn operands<'a>(egraph: &'a EG, children: &[Id]) -> Option<Vec<Option<InferIn<'a>>>> {
    children
        .iter()
        .map(|&c| {
            let d = &egraph[c].data;
            let absent = egraph[c].nodes.iter().any(|n| matches!(n, Node::Absent));
            if absent {
                return Some(None);
            }
            let ty = d.ty()?;
            Some(Some(InferIn { ty, value: d.konst.as_deref(), sym: d.sym.as_deref() }))
        })
        .collect()
}

impl egg::Analysis<Node> for GraphAnalysis {
    type Data = Data;

    fn make(egraph: &mut EG, enode: &Node) -> Data {
        match enode {
            Node::Input(k) => Data {
                types: egraph.analysis.inputs.get(*k as usize).cloned().into_iter().collect(),
                valid: true,
                ..Data::default()
            },
            Node::Const(k) => {
                let t = egraph.analysis.consts.get(*k as usize).cloned();
                Data {
                    types: t.iter().map(|t| TypeInfo::new(t.dtype(), t.static_shape())).collect(),
                    konst: t,
                    valid: true,
                    ..Data::default()
                }
            }
            Node::Absent | Node::Outputs(_) => Data { valid: true, ..Data::default() },
            Node::Get(k, [c]) => {
                let d = &egraph[*c].data;
                Data {
                    types: d.types.get(*k as usize).cloned().into_iter().collect(),
                    valid: d.valid,
                    ..Data::default()
                }
            }
            Node::Op(key, children) => {
                let Some(ins) = operands(egraph, children) else { return Data::default() };
                let Ok(types) = key.op.infer(&ins) else { return Data::default() };
                let mut d = Data { types, valid: true, ..Data::default() };
                if let [t] = d.types.as_slice() {
                    let n = t.shape.numel();
                    d.sym = n.and_then(|n| slmtvm_ir::symeval::sym_eval(&key.op, &ins, n));
                    let small = n.is_some_and(|n| n <= FOLD_MAX_ELEMENTS);
                    let all_const = ins.iter().flatten().all(|i| i.value.is_some());
                    if small && all_const {
                        let args: Vec<Option<&Tensor>> = ins.iter().map(|i| i.and_then(|i| i.value)).collect();
                        if let Ok(mut out) = key.op.eval(&args)
                            && out.len() == 1
                        {
                            d.konst = out.pop().map(Arc::new);
                        }
                    }
                }
                d
            }
        }
    }

    fn merge(&mut self, a: &mut Data, b: Data) -> DidMerge {
        let mut changed = false;
        if a.types.is_empty() && !b.types.is_empty() {
            a.types = b.types;
            a.valid = b.valid;
            changed = true;
        }
        if a.konst.is_none() && b.konst.is_some() {
            a.konst = b.konst;
            changed = true;
        }
        if a.sym.is_none() && b.sym.is_some() {
            a.sym = b.sym;
            changed = true;
        }
        DidMerge(changed, true)
    }

    fn modify(egraph: &mut EG, id: Id) {
        // Constant folding: a class computed from constants gets its value as a constant node.
        let Some(t) = egraph[id].data.konst.clone() else { return };
        if egraph[id].nodes.iter().any(|n| matches!(n, Node::Const(_))) {
            return;
        }
        let node = egraph.analysis.add_const((*t).clone());
        let c = egraph.add(node);
        egraph.union(id, c);
    }
}
