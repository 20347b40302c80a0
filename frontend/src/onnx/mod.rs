//! The ONNX importer: `ModelProto` bytes → [`slmtvm_ir::Graph`].
//!
//! Nodes are imported in topological order; each is mapped onto IR operators (attribute
//! defaults resolved per the ONNX operator spec), typed by the IR's shape inference, and folded
//! into a constant at once when its inputs are constants, so shape-computing subgraphs on
//! static shapes disappear during import.

mod attention;
pub mod attr;
pub mod build;
mod gather_nd;
pub mod ops;
mod qlinear;
mod rms_norm;
mod rotary;
mod subgraph;
pub mod tensor;

/// Types generated from the official `onnx.proto` at build time.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

use crate::{Error, Result};
use prost::Message;
use proto::{ModelProto, NodeProto, TensorProto, ValueInfoProto, type_proto};
use slmtvm_ir::{Dim, Graph, Shape, Tensor, TypeInfo, ValueId, fold, shape::is_symbol_name};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Oldest `ai.onnx` opset whose operator definitions the importer implements. Older models
/// are accepted node by node: a node whose operator has not changed since its model's opset
/// is read as the opset-13 operator; any other is refused as unsupported.
pub const MIN_OPSET: i64 = 13;
/// Newest `ai.onnx` opset the importer accepts (the newest the `onnx` 1.23 package ships).
pub const MAX_OPSET: i64 = 28;

/// Options for [`load_onnx`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Shapes for graph inputs by name, replacing symbolic dims (`--shape NAME=1x128`). The
    /// symbols they replace are replaced everywhere, so other inputs sharing them follow.
    pub shapes: BTreeMap<String, Shape>,
    /// Symbols set by name after the shapes: to a size (`--dim seq=128`) or to a bounded
    /// symbol (`--bound seq=512`), everywhere they appear.
    pub symbols: BTreeMap<String, slmtvm_ir::Dim>,
}

/// Loads an ONNX model file. External data is read only from files inside the model's folder.
pub fn load_onnx(path: &Path, opts: &LoadOptions) -> Result<Graph> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.display().to_string(), msg: e.to_string() })?;
    load_onnx_read(path, &bytes, opts)
}

/// [`load_onnx`] of a model file whose `bytes` the caller has read from `path` already (to hash
/// them, say): external data from the file's folder, the graph named after the file when the
/// model names none.
pub fn load_onnx_read(path: &Path, bytes: &[u8], opts: &LoadOptions) -> Result<Graph> {
    let dir = path.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p });
    let mut g = load_onnx_bytes(bytes, dir, opts)?;
    if g.name.is_empty() {
        g.name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    }
    Ok(g)
}

/// Loads an ONNX model from bytes; `base_dir` is where external data may be read from (`None`
/// refuses external data).
pub fn load_onnx_bytes(bytes: &[u8], base_dir: Option<&Path>, opts: &LoadOptions) -> Result<Graph> {
    if bytes.is_empty() {
        return Err(Error::Decode { what: "the model file".into(), msg: "the file is empty".into() });
    }
    let model =
        ModelProto::decode(bytes).map_err(|e| Error::Decode { what: "the model file".into(), msg: e.to_string() })?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::Decode { what: "the model file".into(), msg: "it has no graph".into() })?;
    let mut opset = None;
    for o in &model.opset_import {
        if o.domain().is_empty() || o.domain() == "ai.onnx" {
            opset = Some(o.version());
        }
    }
    if let Some(v) = opset.filter(|v| !(1..=MAX_OPSET).contains(v)) {
        return Err(Error::Unsupported {
            context: "model".into(),
            msg: format!("ai.onnx opset {v} (slmtvm reads opsets up to {MAX_OPSET})"),
        });
    }
    let mut imp = Importer {
        g: Graph::new(graph.name()),
        names: BTreeMap::new(),
        node_names: BTreeSet::new(),
        base_dir,
        opset,
        domains: model.opset_import.iter().map(|o| (o.domain().to_string(), o.version())).collect(),
    };
    imp.import_graph(graph, opts)?;
    let mut g = imp.g;
    g.remove_dead();
    g.validate()?;
    Ok(g)
}

/// Reads a serialized `TensorProto` (as in the ONNX backend tests' `input_0.pb`): its name and
/// value.
pub fn read_tensor_pb(path: &Path) -> Result<(String, Tensor)> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.display().to_string(), msg: e.to_string() })?;
    let t = TensorProto::decode(bytes.as_slice())
        .map_err(|e| Error::Decode { what: path.display().to_string(), msg: e.to_string() })?;
    let v = tensor::tensor_from_proto(&t, None)?;
    Ok((t.name().to_string(), v))
}

/// Imports one node as several IR nodes, defining the node's outputs.
pub(crate) type Expand =
    fn(&mut Importer, &NodeProto, &str, &attr::Attrs, Vec<Option<slmtvm_ir::ValueId>>) -> Result<()>;

/// Import state.
pub(crate) struct Importer<'a> {
    pub(crate) g: Graph,
    names: BTreeMap<String, ValueId>,
    node_names: BTreeSet<String>,
    pub(crate) base_dir: Option<&'a Path>,
    /// The `ai.onnx` opset, if the model imports one.
    pub(crate) opset: Option<i64>,
    domains: BTreeMap<String, i64>,
}

/// Makes a symbol name from an ONNX `dim_param`.
fn symbol_name(param: &str) -> String {
    let mut s: String = param.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if !is_symbol_name(&s) {
        s.insert(0, '_');
    }
    s
}

/// The dim an ONNX `dim_param` names: a polynomial of symbols when it spells one
/// (`past_sequence + sequence`, `s0 + 1`: the exporters name derived sizes so), else a symbol.
fn param_dim(param: &str) -> Dim {
    match slmtvm_ir::Poly::parse(param) {
        Some(p) if p.as_const().is_none() => Dim::from_poly(&p),
        _ => Dim::sym(symbol_name(param), None),
    }
}

impl Importer<'_> {
    /// The declared type of a `ValueInfoProto`; unknown dims become symbols.
    fn declared_type(&self, vi: &ValueInfoProto) -> Result<Option<TypeInfo>> {
        let name = vi.name();
        let Some(tp) = vi.r#type.as_ref() else { return Ok(None) };
        let tt = match &tp.value {
            Some(type_proto::Value::TensorType(t)) => t,
            Some(_) => {
                return Err(Error::Unsupported {
                    context: format!("tensor '{name}'"),
                    msg: "non-tensor types (sequence, map, optional)".into(),
                });
            }
            None => return Ok(None),
        };
        if tt.elem_type() == 0 {
            return Ok(None);
        }
        let dtype = tensor::dtype_from_onnx(tt.elem_type(), name)?;
        let Some(shape) = tt.shape.as_ref() else { return Ok(None) };
        let mut dims = Vec::with_capacity(shape.dim.len());
        for (i, d) in shape.dim.iter().enumerate() {
            use proto::tensor_shape_proto::dimension::Value;
            dims.push(match &d.value {
                Some(Value::DimValue(v)) => Dim::Known(usize::try_from(*v).map_err(|_| Error::Tensor {
                    name: name.into(),
                    msg: format!("dimension {i} is negative ({v})"),
                })?),
                Some(Value::DimParam(p)) if !p.is_empty() => param_dim(p),
                _ => Dim::sym(symbol_name(&format!("{name}_dim{i}")), None),
            });
        }
        let shape = Shape(dims);
        shape.check_size(dtype.size()).map_err(|m| Error::Tensor { name: name.into(), msg: m })?;
        Ok(Some(TypeInfo::new(dtype, shape)))
    }

    fn define(&mut self, name: &str, id: ValueId) -> Result<()> {
        if self.names.insert(name.to_string(), id).is_some() {
            return Err(Error::Tensor { name: name.into(), msg: "is defined twice".into() });
        }
        Ok(())
    }

    fn import_graph(&mut self, graph: &proto::GraphProto, opts: &LoadOptions) -> Result<()> {
        if !graph.sparse_initializer.is_empty() {
            return Err(Error::Unsupported { context: "model".into(), msg: "sparse initializers".into() });
        }
        let init_names: BTreeSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();
        for vi in &graph.input {
            if init_names.contains(vi.name()) {
                continue;
            }
            let ty = self.declared_type(vi)?.ok_or_else(|| Error::Tensor {
                name: vi.name().into(),
                msg: "graph input has no tensor type or shape; give its shape with --shape".into(),
            })?;
            let id = self.g.add_input(vi.name(), ty);
            self.define(vi.name(), id)?;
        }
        for (name, shape) in &opts.shapes {
            self.g.set_input_shape(name, shape)?;
        }
        if !opts.symbols.is_empty() {
            self.g.set_symbols(&opts.symbols)?;
        }
        for t in &graph.initializer {
            let v = tensor::tensor_from_proto(t, self.base_dir)?;
            let id = self.g.add_const(t.name(), v);
            self.define(t.name(), id)?;
        }
        let declared: BTreeMap<&str, &ValueInfoProto> =
            graph.value_info.iter().chain(&graph.output).map(|v| (v.name(), v)).collect();
        for n in topo_order(graph)? {
            self.import_node(n)?;
        }
        for o in &graph.output {
            let id = *self.names.get(o.name()).ok_or_else(|| Error::Tensor {
                name: o.name().into(),
                msg: "graph output is not computed by any node".into(),
            })?;
            self.g.outputs.push(id);
        }
        for (name, vi) in declared {
            if let (Some(&id), Some(want)) = (self.names.get(name), self.declared_type(vi)?) {
                check_consistent(name, &want, self.g.ty(id))?;
            }
        }
        Ok(())
    }

    fn unique_node_name(&mut self, n: &NodeProto) -> String {
        let base = if n.name().is_empty() {
            format!("{}_{}", n.op_type(), self.node_names.len())
        } else {
            n.name().to_string()
        };
        let mut name = base.clone();
        let mut k = 1;
        while self.node_names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.node_names.insert(name.clone());
        name
    }

    /// The opset version in force for a node's domain.
    pub(crate) fn domain_version(&self, domain: &str) -> Option<i64> {
        if domain.is_empty() || domain == "ai.onnx" { self.opset } else { self.domains.get(domain).copied() }
    }

    /// The constant value of an input, if it is one.
    pub(crate) fn const_of(&self, v: Option<ValueId>) -> Option<&Tensor> {
        v.and_then(|v| self.g.consts.get(&v))
    }

    fn import_node(&mut self, n: &NodeProto) -> Result<()> {
        let name = self.unique_node_name(n);
        let node_err = |msg: String| Error::Node { node: name.clone(), op: n.op_type().into(), msg };
        let mut inputs = Vec::with_capacity(n.input.len());
        for i in &n.input {
            if i.is_empty() {
                inputs.push(None);
            } else {
                let id = *self.names.get(i).ok_or_else(|| node_err(format!("input '{i}' is not defined")))?;
                inputs.push(Some(id));
            }
        }
        while inputs.last() == Some(&None) {
            inputs.pop();
        }
        let a = attr::Attrs::new(n, &name);
        match ops::map_node(self, n, &name, &a, inputs)? {
            ops::Lowered::Const(t) => {
                a.finish(n.op_type())?;
                let out = n.output.first().filter(|o| !o.is_empty()).ok_or_else(|| node_err("has no output".into()))?;
                let id = self.g.add_const(out.clone(), t);
                self.define(out, id)
            }
            ops::Lowered::Expanded(f, ins) => {
                f(self, n, &name, &a, ins)?;
                a.finish(n.op_type())
            }
            ops::Lowered::Op(op, ins) => {
                a.finish(n.op_type())?;
                let max_out = op.num_outputs();
                let used = n.output.iter().rposition(|o| !o.is_empty()).map_or(0, |p| p + 1);
                if used > max_out {
                    return Err(node_err(format!("has {used} outputs; slmtvm's {} produces {max_out}", op.name())));
                }
                let outs: Vec<String> = n.output[..used]
                    .iter()
                    .enumerate()
                    .map(|(k, o)| if o.is_empty() { format!("{name}:unused{k}") } else { o.clone() })
                    .collect();
                for o in &outs {
                    if self.names.contains_key(o) {
                        return Err(Error::Tensor { name: o.clone(), msg: "is defined twice".into() });
                    }
                }
                let ids = self.g.add_node(name.clone(), op, ins, &outs);
                for (o, id) in outs.iter().zip(ids) {
                    self.define(o, id)?;
                }
                let ni = self.g.nodes.len() - 1;
                self.g.infer_and_set(ni)?;
                fold::fold_node(&mut self.g, ni)?;
                Ok(())
            }
        }
    }
}

/// The declared type `want` of `name` must agree with the inferred `got`: same dtype, same
/// rank, equal known dims.
fn check_consistent(name: &str, want: &TypeInfo, got: &TypeInfo) -> Result<()> {
    let err = || Error::Tensor {
        name: name.into(),
        msg: format!("the model declares {want} but the graph computes {got} (inconsistent shapes)"),
    };
    if want.dtype != got.dtype || want.shape.rank() != got.shape.rank() {
        return Err(err());
    }
    for (w, g) in want.shape.0.iter().zip(&got.shape.0) {
        if let (Dim::Known(a), Dim::Known(b)) = (w, g)
            && a != b
        {
            return Err(err());
        }
    }
    Ok(())
}

/// The graph's nodes in a topological order (the given order where it is valid); errors on a
/// cycle or an undefined input, naming the node.
///
/// Kahn's algorithm taking the earliest ready node first (a min-heap of node positions): the
/// given order when it is valid, so importing an already sorted model keeps its order (and a
/// build its bytes), in O((nodes + edges) log nodes) for any order. Not petgraph's `toposort`,
/// which is depth-first and would reorder sorted models.
fn topo_order(graph: &proto::GraphProto) -> Result<Vec<&NodeProto>> {
    let mut given: BTreeSet<&str> = graph.input.iter().map(|v| v.name()).collect();
    given.extend(graph.initializer.iter().map(|t| t.name()));
    given.insert("");
    // The first node producing each name.
    let mut producer: BTreeMap<&str, usize> = BTreeMap::new();
    for (k, n) in graph.node.iter().enumerate() {
        for o in &n.output {
            producer.entry(o.as_str()).or_insert(k);
        }
    }
    let n = graph.node.len();
    let mut waits = vec![0usize; n];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (k, node) in graph.node.iter().enumerate() {
        let mut deps: Vec<usize> = node
            .input
            .iter()
            .filter(|i| !given.contains(i.as_str()))
            .map(|i| producer.get(i.as_str()).copied().unwrap_or(usize::MAX))
            .collect();
        deps.sort_unstable();
        deps.dedup();
        waits[k] = deps.len();
        for d in deps.into_iter().filter(|&d| d != usize::MAX) {
            consumers[d].push(k);
        }
    }
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> =
        (0..n).filter(|&k| waits[k] == 0).map(std::cmp::Reverse).collect();
    let mut out = Vec::with_capacity(n);
    let mut done = vec![false; n];
    while let Some(std::cmp::Reverse(k)) = ready.pop() {
        out.push(&graph.node[k]);
        done[k] = true;
        for &c in &consumers[k] {
            waits[c] -= 1;
            if waits[c] == 0 {
                ready.push(std::cmp::Reverse(c));
            }
        }
    }
    if let Some(k) = (0..n).find(|&k| !done[k]) {
        let node = &graph.node[k];
        let computed = |i: &str| given.contains(i) || producer.get(i).is_some_and(|&p| done[p]);
        let missing = node.input.iter().find(|i| !computed(i)).cloned().unwrap_or_default();
        return Err(Error::Node {
            node: node.name().into(),
            op: node.op_type().into(),
            msg: format!("input '{missing}' is never computed (undefined name or cycle)"),
        });
    }
    Ok(out)
}

/// What a model contains before import: the ONNX operator histogram and the nodes whose
/// operators slmtvm does not support. Reading it never fails on an unsupported operator.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// The `ai.onnx` opset.
    pub opset: i64,
    /// Producer name and version, as recorded in the model.
    pub producer: String,
    /// Node count per `domain::op_type` (the default domain without prefix).
    pub ops: BTreeMap<String, usize>,
    /// `(node name, op_type, domain)` of every node with an unsupported operator.
    pub unsupported: Vec<(String, String, String)>,
}

/// Scans a model file's nodes without importing it.
pub fn scan_onnx(path: &Path) -> Result<Scan> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.display().to_string(), msg: e.to_string() })?;
    scan_onnx_bytes(&bytes)
}

/// [`scan_onnx`] of a model file's bytes (read once by a caller that imports it too).
pub fn scan_onnx_bytes(bytes: &[u8]) -> Result<Scan> {
    if bytes.is_empty() {
        return Err(Error::Decode { what: "the model file".into(), msg: "the file is empty".into() });
    }
    let model =
        ModelProto::decode(bytes).map_err(|e| Error::Decode { what: "the model file".into(), msg: e.to_string() })?;
    let mut s = Scan {
        opset: model
            .opset_import
            .iter()
            .filter(|o| o.domain().is_empty() || o.domain() == "ai.onnx")
            .map(|o| o.version())
            .next()
            .unwrap_or(0),
        producer: format!("{} {}", model.producer_name(), model.producer_version()).trim().to_string(),
        ..Scan::default()
    };
    for (i, n) in model.graph.iter().flat_map(|g| &g.node).enumerate() {
        let key = if n.domain().is_empty() || n.domain() == "ai.onnx" {
            n.op_type().to_string()
        } else {
            format!("{}::{}", n.domain(), n.op_type())
        };
        *s.ops.entry(key).or_default() += 1;
        if !ops::is_supported(n.domain(), n.op_type()) {
            let name = if n.name().is_empty() { format!("{}_{i}", n.op_type()) } else { n.name().to_string() };
            s.unsupported.push((name, n.op_type().into(), n.domain().into()));
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::proto::{GraphProto, NodeProto, ValueInfoProto};

    fn node(name: &str, ins: &[&str], outs: &[&str]) -> NodeProto {
        NodeProto {
            name: Some(name.into()),
            op_type: Some("Relu".into()),
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: outs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn graph(nodes: Vec<NodeProto>) -> GraphProto {
        let x = ValueInfoProto { name: Some("x".into()), ..Default::default() };
        GraphProto { node: nodes, input: vec![x], ..Default::default() }
    }

    fn order(g: &GraphProto) -> crate::Result<Vec<String>> {
        super::topo_order(g).map(|v| v.iter().map(|n| n.name().to_string()).collect())
    }

    #[test]
    fn topological_order_keeps_a_valid_order_and_sorts_any_other() {
        // Valid as given (a diamond, then a node reading the graph input only): unchanged.
        let g = graph(vec![
            node("a", &["x"], &["a"]),
            node("b", &["a"], &["b"]),
            node("c", &["a"], &["c"]),
            node("d", &["b", "c", ""], &["d"]),
            node("e", &["x"], &["e"]),
        ]);
        assert_eq!(order(&g).unwrap(), ["a", "b", "c", "d", "e"]);
        // Reversed: producers first, the earliest ready node first.
        let mut r = g.node.clone();
        r.reverse();
        assert_eq!(order(&graph(r)).unwrap(), ["e", "a", "c", "b", "d"]);
        // A long reversed chain sorts without a pass per node (quadratic before).
        let n = 20_000;
        let chain: Vec<NodeProto> = (0..n)
            .rev()
            .map(|k| {
                let input = if k == 0 { "x".to_string() } else { format!("v{}", k - 1) };
                node(&format!("n{k}"), &[input.as_str()], &[format!("v{k}").as_str()])
            })
            .collect();
        let got = order(&graph(chain)).unwrap();
        assert_eq!((got.len(), got[0].as_str(), got[n - 1].as_str()), (n, "n0", "n19999"));
    }

    #[test]
    fn cycles_and_undefined_inputs_name_the_node() {
        let cyc = graph(vec![node("a", &["x", "b"], &["a"]), node("b", &["a"], &["b"])]);
        let e = order(&cyc).unwrap_err().to_string();
        assert!(e.contains("'a'") && e.contains("input 'b' is never computed"), "{e}");
        let undef = graph(vec![node("a", &["x"], &["a"]), node("b", &["a", "nowhere"], &["b"])]);
        let e = order(&undef).unwrap_err().to_string();
        assert!(e.contains("'b'") && e.contains("input 'nowhere' is never computed"), "{e}");
        let own = graph(vec![node("s", &["s"], &["s"])]);
        assert!(order(&own).unwrap_err().to_string().contains("input 's' is never computed"));
    }
}
