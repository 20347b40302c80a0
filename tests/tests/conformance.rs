//! ONNX backend node-test conformance: every node test case of the installed `onnx` package,
//! written out by `scripts/gen_node_tests.py`, is imported with the ONNX frontend, run with the
//! reference interpreter and compared with the expected outputs.
//!
//! Each case passes, fails (with a one-line reason) or is skipped (the model or its data uses a
//! feature slmtvm does not support: `is_unsupported()` errors). A table of the results per
//! operator goes to stderr and to `<target>/conformance.txt`, every case's result to
//! `<target>/conformance-cases.txt`. The test fails when a case whose operators are all in
//! [`REQUIRED`] fails; failures of other operators are only reported.
//!
//! The cases are read from `$SLMTVM_NODE_TESTS`, else `<repo>/.cache/onnx-node-tests`; generate
//! them with `python3 scripts/gen_node_tests.py` (needs `pip install onnx numpy`).

use slmtvm_frontend::{LoadOptions, load_onnx, read_tensor_pb};
use slmtvm_ir::{Graph, Tensor, interp};
use slmtvm_tests::{compare, repo_root, target_dir};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Operators that must pass every case in which they (and only they, plus `Constant`) appear.
const REQUIRED: &[&str] = &[
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
    "Constant",
];

/// Float tolerance of this harness; a case's own (looser) tolerance wins where it declares one.
const RTOL: f64 = 1e-4;
/// See [`RTOL`].
const ATOL: f64 = 1e-4;

/// A case's `meta.json`, written by the generator.
#[derive(Clone, Debug)]
struct Meta {
    rtol: f64,
    atol: f64,
    /// Top-level nodes' operators (`Op`, or `domain::Op` outside the default domain).
    op_types: Vec<String>,
}

/// One test case on disk.
struct Case {
    name: String,
    dir: PathBuf,
    meta: Meta,
    /// The table row it belongs to.
    op: String,
    /// Whether a failure fails the test.
    required: bool,
}

/// What happened to a case.
#[derive(Clone, Debug)]
enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

/// The folder holding the cases: `$SLMTVM_NODE_TESTS` (relative to the repository root), else
/// `<repo>/.cache/onnx-node-tests`.
fn cases_dir() -> PathBuf {
    match std::env::var_os("SLMTVM_NODE_TESTS") {
        Some(d) if !d.is_empty() => repo_root().join(d),
        _ => repo_root().join(".cache").join("onnx-node-tests"),
    }
}

fn how_to_generate(dir: &Path) -> String {
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
fn read_meta(dir: &Path) -> Result<Meta, String> {
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
fn snake(op: &str) -> String {
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
fn strip_expanded(name: &str) -> &str {
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
fn assign_ops(cases: &mut [Case]) {
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
fn numbered(dir: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    (0..).map(|k| dir.join(format!("{prefix}{k}{suffix}"))).take_while(|p| p.exists()).collect()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads a `.pb` tensor: `Err(Outcome)` is a skip for unsupported data, else a failure.
fn read_pb(p: &Path) -> Result<(String, Tensor), Outcome> {
    let file = p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    read_tensor_pb(p).map_err(|e| {
        if e.is_unsupported() {
            Outcome::Skip(format!("{file}: {e}"))
        } else {
            Outcome::Fail(format!("cannot read {file}: {e}"))
        }
    })
}

/// Runs one data set of a loaded case.
fn run_data_set(case: &Case, g: &Graph, ds: &Path) -> Result<(), Outcome> {
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
    let got = interp::run(g, &inputs).map_err(|e| Outcome::Fail(format!("run: {e}")))?;
    if got.len() != g.outputs.len() {
        return Err(Outcome::Fail(format!("run returned {} outputs for {} graph outputs", got.len(), g.outputs.len())));
    }
    for (k, (name, want)) in expected.iter().enumerate() {
        let at = g
            .outputs
            .iter()
            .position(|&o| g.value(o).name == *name)
            .or(if expected.len() == g.outputs.len() { Some(k) } else { None })
            .ok_or_else(|| Outcome::Fail(format!("expected output '{name}' is not a graph output")))?;
        let (rtol, atol) =
            if want.dtype().is_float() { (RTOL.max(case.meta.rtol), ATOL.max(case.meta.atol)) } else { (0.0, 0.0) };
        compare(want, &got[at], rtol, atol).map_err(|m| Outcome::Fail(format!("output '{name}': {m}")))?;
    }
    Ok(())
}

/// ONNX `TensorProto.DataType` codes of the inputs [`freeze_int_inputs`] turns into constants.
const INT32: i32 = 6;
const INT64: i32 = 7;

/// A model re-encoded by [`freeze_int_inputs`].
struct Frozen {
    /// The `ModelProto` bytes.
    model: Vec<u8>,
    /// The inputs made initializers.
    names: Vec<String>,
}

/// The model of `case` with the i32/i64 inputs that data set `ds` gives turned into
/// initializers (and removed from the graph inputs), and their names; `None` when it has none.
///
/// The node tests feed axes, split sizes and the like as runtime inputs; slmtvm, an ahead-of-time
/// compiler, wants them constant, as they are in exported models. A case refused as unsupported is
/// retried this way, so that the operator itself still gets tested.
fn freeze_int_inputs(case: &Case, ds: &Path) -> Result<Option<Frozen>, String> {
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
        if !matches!(t.data_type(), INT32 | INT64) {
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
fn text_cycle(g: Graph) -> Result<Graph, Outcome> {
    let printed = slmtvm_ir::text::print(&g);
    let back = slmtvm_ir::text::parse(&printed).map_err(|e| Outcome::Fail(format!("text form: {e}")))?;
    if slmtvm_ir::text::print(&back) != printed || back.nodes != g.nodes || back.values != g.values {
        return Err(Outcome::Fail("text form: the re-parsed graph differs".into()));
    }
    Ok(back)
}

/// Loads and runs a case, all data sets; the flag tells whether its integer inputs were made
/// constants (see [`freeze_int_inputs`]).
fn run_case(case: &Case) -> (Outcome, bool) {
    let sets = numbered(&case.dir, "test_data_set_", "");
    let g = match load_onnx(&case.dir.join("model.onnx"), &LoadOptions::default()) {
        Ok(g) => g,
        Err(e) if e.is_unsupported() => {
            let skip = Outcome::Skip(e.to_string());
            let [ds] = sets.as_slice() else {
                return (skip, false);
            };
            let Ok(Some(frozen)) = freeze_int_inputs(case, ds) else {
                return (skip, false);
            };
            let tag = format!("with {} as constants", frozen.names.join(", "));
            return match slmtvm_frontend::load_onnx_bytes(&frozen.model, Some(&case.dir), &LoadOptions::default()) {
                Ok(g) => match text_cycle(g).and_then(|g| run_data_set(case, &g, ds)) {
                    Ok(()) => (Outcome::Pass, true),
                    Err(Outcome::Fail(m)) => (Outcome::Fail(format!("[{tag}] {m}")), true),
                    Err(o) => (o, true),
                },
                Err(e2) if e2.is_unsupported() => (skip, false),
                Err(e2) => (Outcome::Fail(format!("[{tag}] load: {e2}")), true),
            };
        }
        Err(e) => return (Outcome::Fail(format!("load: {e}")), false),
    };
    let g = match text_cycle(g) {
        Ok(g) => g,
        Err(o) => return (o, false),
    };
    if sets.is_empty() {
        return (Outcome::Fail("no test_data_set_* folder".into()), false);
    }
    for ds in &sets {
        if let Err(o) = run_data_set(case, &g, ds) {
            return (o, false);
        }
    }
    (Outcome::Pass, false)
}

thread_local! {
    /// The message of the last panic on this thread, recorded by the harness's panic hook.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    /// True on the harness's worker threads, whose panics the hook records instead of printing.
    static WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a case, turning a panic into a failure.
fn run_case_caught(case: &Case) -> (Outcome, bool) {
    PANIC.with(|p| p.borrow_mut().take());
    match catch_unwind(AssertUnwindSafe(|| run_case(case))) {
        Ok(o) => o,
        Err(payload) => {
            let msg = PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| {
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "non-string payload".into())
            });
            (Outcome::Fail(format!("panic: {msg}")), false)
        }
    }
}

/// The result of one case.
#[derive(Clone, Debug)]
struct Res {
    outcome: Outcome,
    /// Its integer inputs were made constants to get it loaded.
    frozen: bool,
    time: Duration,
}

/// Runs every case on all cores; returns the results in case order.
fn run_all(cases: &[Case]) -> Vec<Res> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(cases.len().max(1));
    let next = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Res>>> = Mutex::new(vec![None; cases.len()]);
    let running: Mutex<Vec<Option<(usize, Instant)>>> = Mutex::new(vec![None; threads]);
    // Panics are reported in the table: keep their default message (and backtrace) quiet.
    let prev_hook: std::sync::Arc<dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync> =
        std::panic::take_hook().into();
    let prev = prev_hook.clone();
    std::panic::set_hook(Box::new(move |info| {
        if !WORKER.with(|w| w.get()) {
            return prev(info);
        }
        let loc = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string payload".into());
        PANIC.with(|p| *p.borrow_mut() = Some(format!("{}{loc}", one_line(&msg))));
    }));
    std::thread::scope(|s| {
        for t in 0..threads {
            let (next, results, running) = (&next, &results, &running);
            s.spawn(move || {
                WORKER.with(|w| w.set(true));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= cases.len() {
                        break;
                    }
                    let t0 = Instant::now();
                    running.lock().unwrap_or_else(|e| e.into_inner())[t] = Some((i, t0));
                    let (outcome, frozen) = run_case_caught(&cases[i]);
                    let r = Res { outcome, frozen, time: t0.elapsed() };
                    running.lock().unwrap_or_else(|e| e.into_inner())[t] = None;
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
        // Watchdog: name a case that runs for long (a hang would otherwise be silent).
        let (done, running) = (&done, &running);
        s.spawn(move || {
            let mut warned = vec![false; cases.len()];
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                for &(i, t0) in running.lock().unwrap_or_else(|e| e.into_inner()).iter().flatten() {
                    if !warned[i] && t0.elapsed() > Duration::from_secs(20) {
                        warned[i] = true;
                        let _ = std::io::stderr().write_all(
                            format!("conformance: {} has been running for 20 s\n", cases[i].name).as_bytes(),
                        );
                    }
                }
            }
        });
        // Let the workers finish, then stop the watchdog.
        while next.load(Ordering::Relaxed) < cases.len()
            || running.lock().unwrap_or_else(|e| e.into_inner()).iter().any(Option::is_some)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        done.store(true, Ordering::Relaxed);
    });
    std::panic::set_hook(Box::new(move |info| prev_hook(info)));
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or(Res { outcome: Outcome::Fail("not run".into()), frozen: false, time: Duration::ZERO }))
        .collect()
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
}

#[derive(Default)]
struct Row {
    passed: usize,
    failed: usize,
    skipped: usize,
    required: bool,
    first_fail: Option<String>,
    first_skip: Option<String>,
}

/// The report: slowest cases, required failures, the per-op table, totals and the summary line.
fn report(cases: &[Case], results: &[Res], wall: Duration) -> (String, Vec<String>) {
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    let mut required_failures = Vec::new();
    let (mut p, mut f, mut s) = (0, 0, 0);
    let (mut rp, mut rf, mut rs) = (0, 0, 0);
    let (mut zp, mut zf) = (0, 0);
    for (c, r) in cases.iter().zip(results) {
        if r.frozen {
            zp += matches!(r.outcome, Outcome::Pass) as usize;
            zf += matches!(r.outcome, Outcome::Fail(_)) as usize;
        }
        let o = &r.outcome;
        let row = rows.entry(&c.op).or_default();
        row.required |= c.required;
        match o {
            Outcome::Pass => {
                row.passed += 1;
                p += 1;
                rp += c.required as usize;
            }
            Outcome::Fail(m) => {
                row.failed += 1;
                f += 1;
                row.first_fail.get_or_insert_with(|| format!("{}: {}", c.name, one_line(m)));
                if c.required {
                    rf += 1;
                    required_failures.push(format!("{}: {}", c.name, one_line(m)));
                }
            }
            Outcome::Skip(m) => {
                row.skipped += 1;
                s += 1;
                rs += c.required as usize;
                row.first_skip.get_or_insert_with(|| format!("{}: {}", c.name, one_line(m)));
            }
        }
    }
    let mut out = String::new();
    let mut slow: Vec<(Duration, &str)> = results.iter().zip(cases).map(|(r, c)| (r.time, c.name.as_str())).collect();
    slow.sort_by_key(|a| std::cmp::Reverse(a.0));
    out += &format!("ONNX node conformance ({} cases in {:.1} s); slowest:", cases.len(), wall.as_secs_f64());
    for (d, n) in slow.iter().take(5) {
        out += &format!(" {n} {:.2}s;", d.as_secs_f64());
    }
    out += "\n";
    if zp + zf > 0 {
        out += &format!(
            "{} cases refused as unsupported ran with their integer inputs (axes, sizes) made constants: \
             {zp} passed, {zf} failed\n",
            zp + zf
        );
    }
    if !required_failures.is_empty() {
        out += &format!("\nREQUIRED failures ({}):\n", required_failures.len());
        for m in &required_failures {
            out += &format!("  {}\n", truncate(m, 400));
        }
    }
    let w = rows.keys().map(|k| k.chars().count()).max().unwrap_or(2).max(9) + 2;
    out += &format!(
        "\n{:<w$} {:>5} {:>5} {:>5}  first failure / first skip reason  (* = required)\n",
        "op", "pass", "fail", "skip"
    );
    for (op, r) in &rows {
        let name = if r.required { format!("{op} *") } else { op.to_string() };
        let why = match (&r.first_fail, &r.first_skip) {
            (Some(m), _) => format!("FAIL {m}"),
            (None, Some(m)) => format!("skip {m}"),
            _ => String::new(),
        };
        out += &format!("{name:<w$} {:>5} {:>5} {:>5}  {}\n", r.passed, r.failed, r.skipped, truncate(&why, 180));
    }
    out += &format!("{:<w$} {p:>5} {f:>5} {s:>5}\n", "TOTAL");
    out += &format!("{:<w$} {rp:>5} {rf:>5} {rs:>5}  (cases whose ops are all required)\n", "REQUIRED");
    out += &format!("conformance: {p} passed, {f} failed, {s} skipped\n");
    (out, required_failures)
}

#[test]
fn onnx_node_conformance() {
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

    let t0 = Instant::now();
    let results = run_all(&cases);
    let (table, required_failures) = report(&cases, &results, t0.elapsed());

    let _ = std::io::stderr().write_all(format!("\n{table}").as_bytes());
    let target = target_dir();
    let _ = std::fs::create_dir_all(&target);
    let _ = std::fs::write(target.join("conformance.txt"), &table);
    let mut every = String::new();
    for (c, r) in cases.iter().zip(&results) {
        let (tag, m) = match &r.outcome {
            Outcome::Pass => ("pass", String::new()),
            Outcome::Fail(m) => ("FAIL", one_line(m)),
            Outcome::Skip(m) => ("skip", one_line(m)),
        };
        let req = if c.required { " [required]" } else { "" };
        let frozen = if r.frozen { " [int inputs constant]" } else { "" };
        every += &format!("{tag} {} ({}{req}{frozen}, {:.3}s) {m}\n", c.name, c.op, r.time.as_secs_f64());
    }
    let _ = std::fs::write(target.join("conformance-cases.txt"), every);

    assert!(
        required_failures.is_empty(),
        "{} case(s) of required operators failed (see the table above, {} and conformance-cases.txt):\n{}",
        required_failures.len(),
        target.join("conformance.txt").display(),
        required_failures.iter().take(30).map(|m| format!("  {}", truncate(m, 300))).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn test_names_map_to_ops() {
    assert_eq!(snake("LayerNormalization"), "layer_normalization");
    assert_eq!(snake("MatMulInteger"), "mat_mul_integer");
    assert_eq!(snake("GlobalAveragePool"), "global_average_pool");
    assert_eq!(snake("GRU"), "gru");
    assert_eq!(snake("ReduceL2"), "reduce_l2");
    assert_eq!(strip_expanded("test_x_expanded"), "test_x");
    assert_eq!(strip_expanded("test_x_expanded_ver18"), "test_x");
    assert_eq!(strip_expanded("test_x_expandedness"), "test_x_expandedness");
}
