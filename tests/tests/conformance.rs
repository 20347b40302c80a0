//! ONNX backend node-test conformance: every node test case of the installed `onnx` package,
//! written out by `scripts/gen_node_tests.py`, is imported with the ONNX frontend, run with the
//! reference interpreter and compared with the expected outputs.
//!
//! Each case passes, fails (with a one-line reason) or is skipped (the model or its data uses a
//! feature slmtvm does not support: `is_unsupported()` errors). A table of the results per
//! operator goes to stderr and to `<target>/conformance.txt`, every case's result to
//! `<target>/conformance-cases.txt`. The test fails when a case whose operators are all in
//! `REQUIRED` (in `slmtvm_tests::node_cases`) fails; failures of other operators are only reported.
//!
//! The cases are read from `$SLMTVM_NODE_TESTS`, else `<repo>/.cache/onnx-node-tests`; generate
//! them with `python3 scripts/gen_node_tests.py` (needs `pip install onnx numpy`).

use slmtvm_tests::node_cases::{Case, Outcome, list_cases, one_line, run_reference, snake, strip_expanded, truncate};
use slmtvm_tests::target_dir;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Loads and runs a case with the interpreter; the flag tells whether its integer inputs were
/// made constants.
fn run_case(case: &Case) -> (Outcome, bool) {
    let (o, frozen, _) = run_reference(case);
    (o, frozen)
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

#[derive(Default)]
struct Row {
    passed: usize,
    failed: usize,
    skipped: usize,
    required: bool,
    first_fail: Option<String>,
    first_skip: Option<String>,
}

/// The report: slowest cases, required failures, the per-op table, totals and the summary line;
/// with the required failures and the number of skipped required cases.
fn report(cases: &[Case], results: &[Res], wall: Duration) -> (String, Vec<String>, usize) {
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
    (out, required_failures, rs)
}

/// Cases of required operators skipped on this suite's node tests (`onnx` 1.23.2).
const REQUIRED_SKIPS: usize = 213;

#[test]
fn onnx_node_conformance() {
    let cases = list_cases();

    let t0 = Instant::now();
    let results = run_all(&cases);
    let (table, required_failures, required_skips) = report(&cases, &results, t0.elapsed());
    assert!(cases.len() > 1000, "only {} node cases listed (scripts/gen_node_tests.py writes ~1,855)", cases.len());

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

    // Cases of required operators skipped (dtypes the IR lacks: bf16, f64, int16, float8, ...):
    // today's count is the ceiling, so a newly skipped required case fails.
    assert!(
        required_skips <= REQUIRED_SKIPS,
        "{required_skips} cases of required operators skipped, more than the {REQUIRED_SKIPS} known (see {})",
        target.join("conformance-cases.txt").display()
    );
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
