//! The typed tensor graph.

use crate::ops::{InferIn, Op};
use crate::{Dim, Error, Result, Shape, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Sets the bound of a symbolic dim that is a polynomial of bounded symbols.
fn bound_dim(d: &mut Dim, bounds: &BTreeMap<String, usize>) {
    if d.known().is_some() {
        return;
    }
    let p = d.poly();
    let b = match p.as_symbol() {
        Some(s) => bounds.get(s).copied(),
        None => p.upper(bounds),
    };
    if let (Some(b), Dim::Sym { bound, .. }) = (b, d) {
        *bound = Some(b);
    }
}

/// Index of a value in [`Graph::values`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ValueId(pub u32);

impl ValueId {
    /// The index as usize.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A named, typed value: a graph input, a constant, or a node output.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// Unique name within the graph.
    pub name: String,
    /// Static type.
    pub ty: TypeInfo,
}

/// One operator application.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The node's name (unique within the graph; used in every error about it).
    pub name: String,
    /// The operator and its attributes.
    pub op: Op,
    /// Positional inputs; `None` for an absent optional input.
    pub inputs: Vec<Option<ValueId>>,
    /// Outputs, a prefix of the operator's outputs.
    pub outputs: Vec<ValueId>,
}

/// A typed tensor graph. Nodes are kept in topological order; values are listed in canonical
/// order (inputs, then constants, then node outputs in node order) after [`Graph::canonicalize`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    /// The graph's name.
    pub name: String,
    /// Every value.
    pub values: Vec<Value>,
    /// Graph inputs supplied at run time.
    pub inputs: Vec<ValueId>,
    /// Graph outputs.
    pub outputs: Vec<ValueId>,
    /// Constant values (weights and folded computations).
    pub consts: BTreeMap<ValueId, Tensor>,
    /// Nodes in topological order.
    pub nodes: Vec<Node>,
    /// Values of small integer tensors computed from symbolic shapes, as polynomials of the
    /// symbols (see [`crate::symeval`]); derived by [`Graph::infer`].
    pub sym_values: BTreeMap<ValueId, Vec<crate::Poly>>,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Graph {
        Graph { name: name.into(), ..Graph::default() }
    }

    /// Adds a value; callers keep names unique.
    pub fn add_value(&mut self, name: impl Into<String>, ty: TypeInfo) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(Value { name: name.into(), ty });
        id
    }

    /// Adds a graph input.
    pub fn add_input(&mut self, name: impl Into<String>, ty: TypeInfo) -> ValueId {
        let id = self.add_value(name, ty);
        self.inputs.push(id);
        id
    }

    /// Adds a constant.
    pub fn add_const(&mut self, name: impl Into<String>, t: Tensor) -> ValueId {
        let ty = TypeInfo::new(t.dtype(), t.static_shape());
        let id = self.add_value(name, ty);
        self.consts.insert(id, t);
        id
    }

    /// Adds a node with outputs named `outputs`; their types are set by [`Graph::infer`].
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: Vec<Option<ValueId>>,
        outputs: &[String],
    ) -> Vec<ValueId> {
        let placeholder = TypeInfo::new(crate::DType::F32, Shape(vec![]));
        let outs: Vec<ValueId> = outputs.iter().map(|n| self.add_value(n.clone(), placeholder.clone())).collect();
        self.nodes.push(Node { name: name.into(), op, inputs, outputs: outs.clone() });
        outs
    }

    /// The value with id `id`.
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.index()]
    }

    /// The type of value `id`.
    pub fn ty(&self, id: ValueId) -> &TypeInfo {
        &self.values[id.index()].ty
    }

    /// Finds a value by name.
    pub fn find(&self, name: &str) -> Option<ValueId> {
        self.values.iter().position(|v| v.name == name).map(|i| ValueId(i as u32))
    }

    /// The node producing each value, by value id.
    pub fn producers(&self) -> BTreeMap<ValueId, usize> {
        let mut p = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for &o in &n.outputs {
                p.insert(o, i);
            }
        }
        p
    }

    /// Checks references, single definitions, unique names and topological order.
    pub fn validate(&self) -> Result<()> {
        let nv = self.values.len();
        let check = |id: ValueId, what: &str| {
            if id.index() >= nv {
                Err(Error::Graph(format!("{what} refers to value #{} which does not exist", id.0)))
            } else {
                Ok(())
            }
        };
        let mut defined = BTreeSet::new();
        let mut names = BTreeSet::new();
        for v in &self.values {
            if !names.insert(v.name.as_str()) {
                return Err(Error::tensor(&v.name, "the name is used by two values"));
            }
        }
        for &i in &self.inputs {
            check(i, "a graph input")?;
            if !defined.insert(i) {
                return Err(Error::tensor(&self.value(i).name, "defined twice"));
            }
        }
        for &c in self.consts.keys() {
            check(c, "a constant")?;
            if !defined.insert(c) {
                return Err(Error::tensor(&self.value(c).name, "defined twice"));
            }
        }
        let mut node_names = BTreeSet::new();
        for n in &self.nodes {
            if !node_names.insert(n.name.as_str()) {
                return Err(Error::Graph(format!("two nodes are named '{}'", n.name)));
            }
            for &i in n.inputs.iter().flatten() {
                check(i, &format!("node '{}'", n.name))?;
                if !defined.contains(&i) {
                    return Err(Error::Node {
                        node: n.name.clone(),
                        op: n.op.name().into(),
                        source: crate::OpError::Invalid(format!(
                            "input '{}' is not defined before this node (cycle or missing producer)",
                            self.value(i).name
                        )),
                    });
                }
            }
            if n.outputs.len() > n.op.num_outputs() {
                return Err(Error::Node {
                    node: n.name.clone(),
                    op: n.op.name().into(),
                    source: crate::OpError::Invalid(format!(
                        "has {} outputs, the operator produces {}",
                        n.outputs.len(),
                        n.op.num_outputs()
                    )),
                });
            }
            for &o in &n.outputs {
                check(o, &format!("node '{}'", n.name))?;
                if !defined.insert(o) {
                    return Err(Error::tensor(&self.value(o).name, "defined twice"));
                }
            }
        }
        for &o in &self.outputs {
            check(o, "a graph output")?;
            if !defined.contains(&o) {
                return Err(Error::tensor(&self.value(o).name, "graph output is never computed"));
            }
        }
        Ok(())
    }

    /// Infers every node output's type from the inputs' types and constant values, in node
    /// order. Dims that cannot be known statically get fresh symbol names `unk_<value>_<axis>`.
    pub fn infer(&mut self) -> Result<()> {
        (0..self.nodes.len()).try_for_each(|ni| self.infer_and_set(ni))
    }

    /// Infers node `ni`'s output types and stores them on its output values.
    pub fn infer_and_set(&mut self, ni: usize) -> Result<()> {
        let types = self.infer_node(ni)?;
        let bounds = self.symbol_bounds();
        let node = &self.nodes[ni];
        for (k, &o) in node.outputs.iter().enumerate() {
            let mut ty = types[k].clone();
            for (axis, d) in ty.shape.0.iter_mut().enumerate() {
                if d.is_unknown() {
                    *d = Dim::sym(format!("unk_{}_{}", o.0, axis), None);
                }
                bound_dim(d, &bounds);
            }
            ty.shape.check_size(ty.dtype.size()).map_err(|m| Error::tensor(&self.values[o.index()].name, m))?;
            self.values[o.index()].ty = ty;
        }
        let sym = match node.outputs.first() {
            Some(&o) if node.outputs.len() == 1 => {
                let len = self.ty(o).shape.numel();
                let ins = self.infer_inputs(node);
                len.and_then(|n| crate::symeval::sym_eval(&node.op, &ins, n)).map(|v| (o, v))
            }
            _ => None,
        };
        for &o in &self.nodes[ni].outputs {
            self.sym_values.remove(&o);
        }
        if let Some((o, v)) = sym {
            self.sym_values.insert(o, v);
        }
        Ok(())
    }

    /// The bound of every symbol that appears alone as a dim of a graph input with a bound.
    pub fn symbol_bounds(&self) -> BTreeMap<String, usize> {
        self.input_symbols()
            .into_iter()
            .filter(|(n, _)| crate::shape::is_symbol_name(n))
            .filter_map(|(n, b)| Some((n, b?)))
            .collect()
    }

    /// Sets every symbolic dim's bound from `bounds` (the bounds of single symbols) where its
    /// polynomial can be bounded; keeps a bound already set where it cannot.
    pub fn apply_symbol_bounds(&mut self) {
        let bounds = self.symbol_bounds();
        for v in &mut self.values {
            for d in &mut v.ty.shape.0 {
                bound_dim(d, &bounds);
            }
        }
    }

    fn infer_inputs<'a>(&'a self, node: &'a Node) -> Vec<Option<InferIn<'a>>> {
        node.inputs
            .iter()
            .map(|i| {
                i.map(|i| InferIn {
                    ty: &self.values[i.index()].ty,
                    value: self.consts.get(&i),
                    sym: self.sym_values.get(&i).map(Vec::as_slice),
                })
            })
            .collect()
    }

    /// Infers the output types of node `ni` from the current input types.
    pub fn infer_node(&self, ni: usize) -> Result<Vec<TypeInfo>> {
        let node = &self.nodes[ni];
        let ins = self.infer_inputs(node);
        let err = |source| Error::Node { node: node.name.clone(), op: node.op.name().into(), source };
        let types = node.op.infer(&ins).map_err(err)?;
        if types.len() < node.outputs.len() {
            return Err(err(crate::OpError::Invalid(format!(
                "inference gave {} outputs for {} node outputs",
                types.len(),
                node.outputs.len()
            ))));
        }
        Ok(types)
    }

    /// Replaces symbolic dims of input `name` (and everywhere the same symbols appear) by the
    /// given dims, then re-infers. `shape` must have the input's rank; known dims must agree.
    pub fn set_input_shape(&mut self, name: &str, shape: &Shape) -> Result<()> {
        let id = self
            .inputs
            .iter()
            .copied()
            .find(|&i| self.values[i.index()].name == name)
            .ok_or_else(|| Error::tensor(name, "is not a graph input"))?;
        let old = self.values[id.index()].ty.shape.clone();
        if old.rank() != shape.rank() {
            return Err(Error::tensor(
                name,
                format!("has rank {} (shape {old}), the given shape {shape} has rank {}", old.rank(), shape.rank()),
            ));
        }
        let mut subst: BTreeMap<String, Dim> = BTreeMap::new();
        for (o, n) in old.0.iter().zip(&shape.0) {
            match (o, n) {
                (Dim::Known(a), Dim::Known(b)) if a != b => {
                    return Err(Error::tensor(name, format!("has fixed shape {old}; cannot set it to {shape}")));
                }
                (Dim::Sym { name: s, .. }, d) => {
                    if let Some(prev) = subst.insert(s.clone(), d.clone())
                        && prev != *d
                    {
                        return Err(Error::tensor(name, format!("symbol {s} is given two values")));
                    }
                }
                _ => {}
            }
        }
        self.values[id.index()].ty.shape = shape.clone();
        self.substitute_symbols(&subst);
        self.infer()
    }

    /// Replaces every occurrence of the named symbols in value types, inside polynomial dims
    /// too (`past+seq` with `seq` = 1 becomes `past+1`), then recomputes the dims' bounds.
    pub fn substitute_symbols(&mut self, subst: &BTreeMap<String, Dim>) {
        let polys: BTreeMap<String, crate::Poly> = subst.iter().map(|(k, d)| (k.clone(), d.poly())).collect();
        for v in &mut self.values {
            for d in &mut v.ty.shape.0 {
                let Dim::Sym { name, .. } = d else { continue };
                if let Some(r) = subst.get(name.as_str()) {
                    *d = r.clone();
                    continue;
                }
                let p = d.poly();
                if p.symbols().iter().any(|s| subst.contains_key(s)) {
                    *d = Dim::from_poly(&p.substitute(&polys));
                }
            }
        }
        self.apply_symbol_bounds();
    }

    /// Sets symbols everywhere: each to a size (`Dim::Known`, static specialization) or to a
    /// bounded symbol (`Dim::sym(name, Some(bound))`), then re-infers. Every name must be a
    /// symbol of the graph's inputs.
    pub fn set_symbols(&mut self, subst: &BTreeMap<String, Dim>) -> Result<()> {
        let present: BTreeSet<String> = self
            .inputs
            .iter()
            .flat_map(|&i| self.ty(i).shape.0.iter().flat_map(|d| d.poly().symbols()).collect::<Vec<_>>())
            .collect();
        for name in subst.keys() {
            if !present.contains(name) {
                let all: Vec<&str> = present.iter().map(String::as_str).collect();
                return Err(Error::Graph(format!(
                    "symbol {name} is not a dim of any graph input (the inputs' symbols: {})",
                    if all.is_empty() { "none".to_string() } else { all.join(", ") }
                )));
            }
        }
        self.substitute_symbols(subst);
        self.infer()
    }

    /// Every symbol in the graph's input shapes with its bound.
    pub fn input_symbols(&self) -> BTreeMap<String, Option<usize>> {
        let mut m = BTreeMap::new();
        for &i in &self.inputs {
            for d in &self.ty(i).shape.0 {
                if let Dim::Sym { name, bound } = d {
                    m.insert(name.clone(), *bound);
                }
            }
        }
        m
    }

    /// Removes nodes and constants that no graph output depends on.
    pub fn remove_dead(&mut self) {
        let mut live: BTreeSet<ValueId> = self.outputs.iter().copied().collect();
        let mut keep = vec![false; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate().rev() {
            if n.outputs.iter().any(|o| live.contains(o)) {
                keep[i] = true;
                live.extend(n.inputs.iter().flatten().copied());
            }
        }
        let mut k = keep.into_iter();
        self.nodes.retain(|_| k.next().unwrap_or(false));
        self.consts.retain(|id, _| live.contains(id));
        self.canonicalize();
    }

    /// Renumbers values into canonical order (inputs, constants, node outputs in node order),
    /// dropping values nothing defines. Printing and parsing back a canonical graph gives an
    /// equal graph.
    pub fn canonicalize(&mut self) {
        let mut order: Vec<ValueId> = self.inputs.clone();
        order.extend(self.consts.keys().copied());
        for n in &self.nodes {
            order.extend(n.outputs.iter().copied());
        }
        let mut map: BTreeMap<ValueId, ValueId> = BTreeMap::new();
        let mut values = Vec::with_capacity(order.len());
        for old in order {
            if map.contains_key(&old) {
                continue;
            }
            map.insert(old, ValueId(values.len() as u32));
            values.push(self.values[old.index()].clone());
        }
        let m = |id: &ValueId| map.get(id).copied().unwrap_or(*id);
        self.values = values;
        self.inputs = self.inputs.iter().map(m).collect();
        self.outputs = self.outputs.iter().map(m).collect();
        self.consts = std::mem::take(&mut self.consts).into_iter().map(|(k, v)| (m(&k), v)).collect();
        for n in &mut self.nodes {
            n.inputs = n.inputs.iter().map(|i| i.as_ref().map(m)).collect();
            n.outputs = n.outputs.iter().map(m).collect();
        }
    }

    /// Number of parameters (elements of constants) and their bytes.
    pub fn param_stats(&self) -> (u64, u64) {
        self.consts.values().fold((0, 0), |(n, b), t| (n + t.len() as u64, b + t.byte_len() as u64))
    }

    /// Total operation count of all nodes (at the symbols' bounds).
    pub fn flops(&self) -> u64 {
        self.nodes.iter().map(|n| self.node_flops(n)).sum()
    }

    /// Operation count of node `n` of this graph (at the symbols' bounds).
    pub fn node_flops(&self, n: &Node) -> u64 {
        let ins: Vec<Option<&TypeInfo>> = n.inputs.iter().map(|i| i.map(|i| self.ty(i))).collect();
        let outs: Vec<TypeInfo> = n.outputs.iter().map(|&o| self.ty(o).clone()).collect();
        n.op.flops(&ins, &outs)
    }
}
