//! The ONNX backend node-test cases written out by `scripts/gen_node_tests.py`: finding them,
//! naming their table rows, loading them into the IR (with integer inputs made constants where
//! needed) and judging outputs. Shared by the interpreter's conformance test and the
//! cross-target one.
//!
//! The cases are read from `$SLMTVM_NODE_TESTS`, else `<repo>/.cache/onnx-node-tests`; generate
//! them with `python3 scripts/gen_node_tests.py` (needs `pip install onnx numpy`).

use crate::repo_root;
use slmtvm_frontend::{LoadOptions, load_onnx, read_tensor_pb};
use slmtvm_ir::{DType, Graph, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Operators that must pass every case in which they (and only they, plus `Constant`) appear.
pub const REQUIRED: &[&str] = &[
    "MatMul",
    "Gemm",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "Neg",
    "Abs",
    "Exp",
    "Log",
    "Erf",
    "Tanh",
    "Sigmoid",
    "Relu",
    "Gelu",
    "HardSigmoid",
    "Clip",
    "Softmax",
    "LayerNormalization",
    "RMSNormalization",
    "RotaryEmbedding",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceL2",
    "Reshape",
    "Transpose",
    "Concat",
    "Split",
    "Slice",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Flatten",
    "Shape",
    "Cast",
    "Where",
    "Equal",
    "Less",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Not",
    "Expand",
    "Range",
    "ConstantOfShape",
    "Trilu",
    "Identity",
    "Conv",
    "BatchNormalization",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "QuantizeLinear",
    "DequantizeLinear",
    "MatMulInteger",
    "DynamicQuantizeLinear",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "Mod",
    "IsNaN",
    "IsInf",
    "CumSum",
    "Constant",
    "Attention",
];
/// The relative tolerance for f16 outputs: two f16 ulps (2 × 2^-10 of the value). The
/// generator's references compute f16 models in f16 with numpy, rounding every intermediate;
/// the interpreter and the kernels compute in f32 and round once, so the two differ by a
/// rounding or two of the result (measured: 1.04e-3 relative on one Attention case, above the
/// cases' default 1e-3). Every f32 output is held to the case's own tolerance (the `onnx`
/// default: rtol 1e-3, atol 1e-7): the interpreter and every preset pass all cases at it.
pub const F16_RTOL: f64 = 2.0 / 1024.0;

/// A case's `meta.json`, written by the generator.
#[derive(Clone, Debug)]
pub struct Meta {
    /// The case's relative float tolerance.
    pub rtol: f64,
    /// The case's absolute float tolerance.
    pub atol: f64,
    /// Top-level nodes' operators (`Op`, or `domain::Op` outside the default domain).
    pub op_types: Vec<String>,
}

/// One test case on disk.
pub struct Case {
    /// The test name (`test_add_bcast`).
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
    /// Its `meta.json`.
    pub meta: Meta,
    /// The table row it belongs to.
    pub op: String,
    /// Whether a failure fails the test.
    pub required: bool,
}

/// What happened to a case.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Every data set matched.
    Pass,
    /// A mismatch or error, with a one-line reason.
    Fail(String),
    /// The case uses something slmtvm does not support, with the reason.
    Skip(String),
}

/// The folder holding the cases: `$SLMTVM_NODE_TESTS` (relative to the repository root), else
/// `<repo>/.cache/onnx-node-tests`.
pub fn cases_dir() -> PathBuf {
    match std::env::var_os("SLMTVM_NODE_TESTS") {
        Some(d) if !d.is_empty() => repo_root().join(d),
        _ => repo_root().join(".cache").join("onnx-node-tests"),
    }
}

/// The message telling how to generate the cases into `dir`.
pub fn how_to_generate(dir: &Path) -> String {
    format!(
        "the ONNX node test cases are missing from {}: generate them with\n    \
         python3 scripts/gen_node_tests.py {}\n(needs `pip install onnx numpy`; or set \
         SLMTVM_NODE_TESTS to a folder of cases)",
        dir.display(),
        dir.display()
    )
}

/// Reads `meta.json`; without one (a folder of cases from elsewhere), the default tolerances
/// and the operators found by scanning the model.
pub fn read_meta(dir: &Path) -> Result<Meta, String> {
    let p = dir.join("meta.json");
    if !p.exists() {
        let scan = slmtvm_frontend::scan_onnx(&dir.join("model.onnx")).map_err(|e| format!("scan: {e}"))?;
        let op_types = scan.ops.iter().flat_map(|(k, &n)| std::iter::repeat_n(k.clone(), n)).collect();
        return Ok(Meta { rtol: 1e-3, atol: 1e-7, op_types });
    }
    let text = std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
    let num = |k: &str, d: f64| v.get(k).and_then(|x| x.as_f64()).unwrap_or(d);
    let op_types = v
        .get("op_types")
        .and_then(|x| x.as_array())
        .ok_or_else(|| format!("{}: no op_types (regenerate the cases)", p.display()))?
        .iter()
        .map(|x| x.as_str().map(str::to_string).ok_or_else(|| format!("{}: bad op_types", p.display())))
        .collect::<Result<_, _>>()?;
    Ok(Meta { rtol: num("rtol", 1e-3), atol: num("atol", 1e-7), op_types })
}

/// `LayerNormalization` → `layer_normalization` (the spelling of test names).
pub fn snake(op: &str) -> String {
    let mut s = String::new();
    let cs: Vec<char> = op.chars().collect();
    for (i, &c) in cs.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower = i > 0 && (cs[i - 1].is_ascii_lowercase() || cs[i - 1].is_ascii_digit());
            let next_lower = cs.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && cs[i - 1].is_ascii_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

/// `test_foo_expanded_ver18` → `test_foo`.
pub fn strip_expanded(name: &str) -> &str {
    if let Some(i) = name.rfind("_expanded") {
        let rest = &name[i + "_expanded".len()..];
        if rest.is_empty()
            || rest.strip_prefix("_ver").is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        {
            return &name[..i];
        }
    }
    name
}

/// Names each case's table row: the op of its single node; for a function body expanded into
/// many nodes, `<Op>_expanded` where `<Op>` is the op of the unexpanded case; else the op whose
/// snake-case name is the longest prefix of the test name.
pub fn assign_ops(cases: &mut [Case]) {
    let single: BTreeMap<String, String> = cases
        .iter()
        .filter(|c| c.meta.op_types.len() == 1)
        .map(|c| (c.name.clone(), c.meta.op_types[0].clone()))
        .collect();
    // Test names spell ops in snake case (`layer_normalization`) or run together (`matmulinteger`).
    let mut known: Vec<(String, String)> = single
        .values()
        .flat_map(|op| {
            let bare = op.rsplit("::").next().unwrap_or(op);
            [(format!("test_{}", snake(bare)), op.clone()), (format!("test_{}", bare.to_ascii_lowercase()), op.clone())]
        })
        .collect();
    known.sort();
    known.dedup();
    for c in cases.iter_mut() {
        let expanded = c.name.contains("_expanded");
        c.op = if c.meta.op_types.len() == 1 {
            c.meta.op_types[0].clone()
        } else if let Some(op) = single.get(strip_expanded(&c.name)) {
            format!("{op}_expanded")
        } else {
            let best = known
                .iter()
                .filter(|(p, _)| c.name == *p || c.name.starts_with(&format!("{p}_")))
                .max_by_key(|(p, _)| p.len());
            match best {
                Some((_, op)) if expanded => format!("{op}_expanded"),
                Some((_, op)) => op.clone(),
                None => format!("?{}", c.name.trim_start_matches("test_")),
            }
        };
        c.required = !c.meta.op_types.is_empty() && c.meta.op_types.iter().all(|o| REQUIRED.contains(&o.as_str()));
    }
}

/// `dir/<prefix><k><suffix>` for k = 0, 1, ... while the file exists.
pub fn numbered(dir: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    (0..).map(|k| dir.join(format!("{prefix}{k}{suffix}"))).take_while(|p| p.exists()).collect()
}

/// `s` with its white space runs folded to single spaces.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads a `.pb` tensor: `Err(Outcome)` is a skip for unsupported data, else a failure.
pub fn read_pb(p: &Path) -> Result<(String, Tensor), Outcome> {
    let file = p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    read_tensor_pb(p).map_err(|e| {
        if e.is_unsupported() {
            Outcome::Skip(format!("{file}: {e}"))
        } else {
            Outcome::Fail(format!("cannot read {file}: {e}"))
        }
    })
}

/// ONNX `TensorProto.DataType` codes of the inputs [`freeze_int_inputs`] turns into constants.
const INT32: i32 = 6;
const INT64: i32 = 7;

/// A model re-encoded by [`freeze_int_inputs`].
pub struct Frozen {
    /// The `ModelProto` bytes.
    pub model: Vec<u8>,
    /// The inputs made initializers.
    pub names: Vec<String>,
}

/// The model of `case` with the i32/i64 and scalar inputs that data set `ds` gives turned into
/// initializers (and removed from the graph inputs), and their names; `None` when it has none.
///
/// The node tests feed axes, split sizes and the like as runtime inputs; slmtvm, an ahead-of-time
/// compiler, wants them constant, as they are in exported models. A case refused as unsupported is
/// retried this way, so that the operator itself still gets tested.
pub fn freeze_int_inputs(case: &Case, ds: &Path) -> Result<Option<Frozen>, String> {
    use prost::Message;
    use slmtvm_frontend::onnx::proto::{ModelProto, TensorProto};
    let bytes = std::fs::read(case.dir.join("model.onnx")).map_err(|e| e.to_string())?;
    let mut m = ModelProto::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
    let Some(g) = m.graph.as_mut() else {
        return Ok(None);
    };
    let mut frozen = Vec::new();
    for p in numbered(ds, "input_", ".pb") {
        let t =
            TensorProto::decode(std::fs::read(&p).map_err(|e| e.to_string())?.as_slice()).map_err(|e| e.to_string())?;
        // Integer tensors (shapes, axes, sizes) and scalars (Range's bounds).
        if !matches!(t.data_type(), INT32 | INT64) && !t.dims.is_empty() {
            continue;
        }
        if let Some(i) = g.input.iter().position(|vi| vi.name() == t.name()) {
            g.input.remove(i);
            frozen.push(t.name().to_string());
            g.initializer.push(t);
        }
    }
    Ok(if frozen.is_empty() { None } else { Some(Frozen { model: m.encode_to_vec(), names: frozen }) })
}

/// Prints `g` in the text form and parses it back; the cases then run on the re-parsed graph,
/// so every case also checks that the text form loses nothing.
pub fn text_cycle(g: Graph) -> Result<Graph, Outcome> {
    let printed = slmtvm_ir::text::print(&g);
    let back = slmtvm_ir::text::parse(&printed).map_err(|e| Outcome::Fail(format!("text form: {e}")))?;
    if slmtvm_ir::text::print(&back) != printed || back.nodes != g.nodes || back.values != g.values {
        return Err(Outcome::Fail("text form: the re-parsed graph differs".into()));
    }
    Ok(back)
}

/// One data set of a case: the graph's inputs in order, and the expected outputs by name.
#[derive(Clone)]
pub struct DataSet {
    /// The folder name (`test_data_set_0`).
    pub name: String,
    /// Values of the graph's inputs, in graph-input order.
    pub inputs: Vec<Tensor>,
    /// Expected outputs as written by the generator, in order.
    pub expected: Vec<(String, Tensor)>,
}

/// A case loaded into the IR with its data sets.
pub struct Loaded {
    /// The graph, after a round trip through the text form.
    pub graph: Graph,
    /// The data sets.
    pub sets: Vec<DataSet>,
    /// The integer inputs that were made constants to get the case loaded (see
    /// [`freeze_int_inputs`]); empty when none.
    pub frozen: Vec<String>,
}

/// Reads data set `ds` for graph `g`.
pub fn read_data_set(g: &Graph, ds: &Path) -> Result<DataSet, Outcome> {
    let dsn = ds.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let mut given: BTreeMap<String, Tensor> = BTreeMap::new();
    for p in numbered(ds, "input_", ".pb") {
        let (name, t) = read_pb(&p)?;
        given.insert(name, t);
    }
    let mut expected = Vec::new();
    for p in numbered(ds, "output_", ".pb") {
        expected.push(read_pb(&p)?);
    }
    if expected.is_empty() {
        return Err(Outcome::Fail(format!("{dsn} has no output_*.pb")));
    }
    // Graph inputs in order, by name; data for inputs the loader dropped is ignored.
    let inputs: Vec<Tensor> = g
        .inputs
        .iter()
        .map(|&id| {
            let name = &g.value(id).name;
            given.get(name).cloned().ok_or_else(|| Outcome::Fail(format!("graph input '{name}' has no value in {dsn}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(DataSet { name: dsn, inputs, expected })
}

/// Compares outputs `got` of graph `g` (in graph-output order) with a data set's expected
/// outputs: floats with the case's own tolerance (f16 with at least [`F16_RTOL`]), exactly for
/// integers.
pub fn check_outputs(case: &Case, g: &Graph, ds: &DataSet, got: &[Tensor]) -> Result<(), Outcome> {
    if got.len() != g.outputs.len() {
        return Err(Outcome::Fail(format!("run returned {} outputs for {} graph outputs", got.len(), g.outputs.len())));
    }
    for (k, (name, want)) in ds.expected.iter().enumerate() {
        let at = g
            .outputs
            .iter()
            .position(|&o| g.value(o).name == *name)
            .or(if ds.expected.len() == g.outputs.len() { Some(k) } else { None })
            .ok_or_else(|| Outcome::Fail(format!("expected output '{name}' is not a graph output")))?;
        let (rtol, atol) = match want.dtype() {
            DType::F16 => (F16_RTOL.max(case.meta.rtol), case.meta.atol),
            d if d.is_float() => (case.meta.rtol, case.meta.atol),
            _ => (0.0, 0.0),
        };
        crate::compare(want, &got[at], rtol, atol).map_err(|m| Outcome::Fail(format!("output '{name}': {m}")))?;
    }
    Ok(())
}

/// Loads a case and its data sets. A case refused as unsupported that has one data set is
/// retried with its integer inputs made constants ([`freeze_int_inputs`]); failures then carry
/// a `[with … as constants]` tag.
pub fn load_case(case: &Case) -> Result<Loaded, Outcome> {
    let sets = numbered(&case.dir, "test_data_set_", "");
    let g = match load_onnx(&case.dir.join("model.onnx"), &LoadOptions::default()) {
        Ok(g) => g,
        Err(e) if e.is_unsupported() => {
            let skip = Outcome::Skip(e.to_string());
            let [ds] = sets.as_slice() else {
                return Err(skip);
            };
            return match load_frozen(case, ds) {
                Ok(Some(l)) => Ok(l),
                Ok(None) | Err(Outcome::Skip(_)) => Err(skip),
                Err(o) => Err(o),
            };
        }
        Err(e) => return Err(Outcome::Fail(format!("load: {e}"))),
    };
    let g = text_cycle(g)?;
    if sets.is_empty() {
        return Err(Outcome::Fail("no test_data_set_* folder".into()));
    }
    let sets = sets.iter().map(|ds| read_data_set(&g, ds)).collect::<Result<Vec<_>, _>>()?;
    Ok(Loaded { graph: g, sets, frozen: Vec::new() })
}

/// Loads a case with the integer inputs that its single data set `ds` gives made constants
/// ([`freeze_int_inputs`]); `None` when it has no such inputs. Failures carry a
/// `[with … as constants]` tag; a model that is still unsupported is a skip.
pub fn load_frozen(case: &Case, ds: &Path) -> Result<Option<Loaded>, Outcome> {
    let frozen = match freeze_int_inputs(case, ds) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(e) => return Err(Outcome::Fail(format!("re-encoding with constant inputs: {e}"))),
    };
    let tag = format!("with {} as constants", frozen.names.join(", "));
    let tagged = |o: Outcome| match o {
        Outcome::Fail(m) => Outcome::Fail(format!("[{tag}] {m}")),
        o => o,
    };
    match slmtvm_frontend::load_onnx_bytes(&frozen.model, Some(&case.dir), &LoadOptions::default()) {
        Ok(g) => {
            let g = text_cycle(g).map_err(tagged)?;
            let set = read_data_set(&g, ds).map_err(tagged)?;
            Ok(Some(Loaded { graph: g, sets: vec![set], frozen: frozen.names }))
        }
        Err(e) if e.is_unsupported() => Err(Outcome::Skip(e.to_string())),
        Err(e) => Err(Outcome::Fail(format!("[{tag}] load: {e}"))),
    }
}

/// Every case in [`cases_dir`], sorted by name, with its table row assigned. Panics with the
/// command that generates them when they are missing or incomplete.
pub fn list_cases() -> Vec<Case> {
    let dir = cases_dir();
    assert!(dir.is_dir(), "{}", how_to_generate(&dir));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.onnx").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(!names.is_empty(), "{}", how_to_generate(&dir));
    if let Ok(text) = std::fs::read_to_string(dir.join("MANIFEST.json"))
        && let Ok(m) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(n) = m.get("count").and_then(|c| c.as_u64())
    {
        assert_eq!(
            n as usize,
            names.len(),
            "{} lists {n} cases but {} are there: regenerate them ({})",
            dir.display(),
            names.len(),
            how_to_generate(&dir)
        );
    }
    let mut cases: Vec<Case> = names
        .into_iter()
        .map(|name| {
            let d = dir.join(&name);
            let meta = read_meta(&d).unwrap_or_else(|e| panic!("{name}: {e}"));
            Case { name, dir: d, meta, op: String::new(), required: false }
        })
        .collect();
    assign_ops(&mut cases);
    cases
}

/// Shortens `s` to `n` characters with an ellipsis.
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
}

/// Loads a case and runs every data set with the reference interpreter. Returns the outcome,
/// whether its integer inputs were made constants, and the loaded case when it passed.
pub fn run_reference(case: &Case) -> (Outcome, bool, Option<Loaded>) {
    match load_case(case) {
        Ok(l) => check_reference(case, l),
        Err(o) => (o, false, None),
    }
}

/// Runs every data set of a loaded case with the reference interpreter; see [`run_reference`].
pub fn check_reference(case: &Case, l: Loaded) -> (Outcome, bool, Option<Loaded>) {
    let frozen = !l.frozen.is_empty();
    let tag = |m: String| if frozen { format!("[with {} as constants] {m}", l.frozen.join(", ")) } else { m };
    for ds in &l.sets {
        let got = match slmtvm_ir::interp::run(&l.graph, &ds.inputs) {
            Ok(g) => g,
            Err(e) => return (Outcome::Fail(tag(format!("run: {e}"))), frozen, None),
        };
        if let Err(o) = check_outputs(case, &l.graph, ds, &got) {
            let o = match o {
                Outcome::Fail(m) => Outcome::Fail(tag(m)),
                o => o,
            };
            return (o, frozen, None);
        }
    }
    (Outcome::Pass, frozen, Some(l))
}
