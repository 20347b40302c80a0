//! ONNX node conformance through code generation: every node test case that the reference
//! interpreter passes (see `conformance.rs`) is compiled for every target preset, linked with
//! the target's C compiler and run natively or under qemu-user (`slmtvm_tests::cross`), and
//! its outputs are compared with the case's expected outputs (same tolerances as the
//! interpreter's conformance test). Prints a table op × target (also written to
//! `<target>/conformance-cross.txt`, every case's result to `<target>/conformance-cross-cases.txt`)
//! and fails on any failing case.
//!
//! Filters (comma-separated, for working on a kernel family):
//! - `SLMTVM_CROSS_OPS=MatMul,Gemm`: only cases whose table row is one of these ops (a row
//!   `Softmax_expanded` matches `Softmax`);
//! - `SLMTVM_CROSS_TARGETS=x86_64,aarch64`: only these presets.
//!
//! A target whose cross compiler or qemu is missing is skipped with a line naming the Debian
//! package (`scripts/test.sh` installs them).

use slmtvm_ir::{Dim, Graph};
use slmtvm_targets::Target;
use slmtvm_tests::cross::{Job, run_batch, runnable_presets};
use slmtvm_tests::node_cases::{
    Case, Loaded, Outcome, check_outputs, check_reference, list_cases, load_frozen, numbered, one_line, run_reference,
    truncate,
};
use slmtvm_tests::target_dir;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Cases per linked executable.
const BATCH: usize = 120;

fn env_list(name: &str) -> Option<Vec<String>> {
    let v = std::env::var(name).ok().filter(|v| !v.trim().is_empty())?;
    Some(v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

/// Runs `f` over `0..n` on all cores, results in index order.
fn par_map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(n.max(1));
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let r = f(i);
                    out.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    out.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().map(|r| r.expect("every index ran")).collect()
}

/// The cases and presets to run (after the `SLMTVM_CROSS_*` filters), and the cases the
/// interpreter passes, loaded. Code generation needs static shapes: a case whose shapes depend
/// on its integer inputs (a Reshape's shape, Expand's, Range's bounds) runs with those inputs
/// made constants, as exporters write them (the interpreter must pass it so too).
fn passing_cases() -> (Vec<Case>, Vec<Target>, Vec<(usize, Loaded)>) {
    let mut cases: Vec<Case> = list_cases();
    if let Some(ops) = env_list("SLMTVM_CROSS_OPS") {
        cases.retain(|c| ops.iter().any(|o| c.op == *o || c.op.strip_suffix("_expanded") == Some(o.as_str())));
    }
    let mut presets: Vec<Target> = runnable_presets();
    if let Some(ts) = env_list("SLMTVM_CROSS_TARGETS") {
        presets.retain(|t| ts.iter().any(|n| n == t.name()));
    }
    assert!(!presets.is_empty(), "no target preset can be linked and run here (see the skip lines above)");
    let reference: Vec<Option<Loaded>> = par_map(cases.len(), |i| match run_reference(&cases[i]) {
        (Outcome::Pass, _, Some(l)) if l.graph.values.iter().all(|v| v.ty.shape.is_known()) => Some(l),
        (Outcome::Pass, _, Some(l)) => {
            let sets = numbered(&cases[i].dir, "test_data_set_", "");
            let [ds] = sets.as_slice() else {
                return Some(l);
            };
            match load_frozen(&cases[i], ds) {
                Ok(Some(f)) => match check_reference(&cases[i], f) {
                    (Outcome::Pass, _, Some(f)) => Some(f),
                    _ => Some(l),
                },
                _ => Some(l),
            }
        }
        _ => None,
    });
    let passing: Vec<(usize, Loaded)> = reference.into_iter().enumerate().filter_map(|(i, l)| Some((i, l?))).collect();
    assert!(!passing.is_empty(), "no node case to run (SLMTVM_CROSS_OPS filters them all out, or none was generated)");
    (cases, presets, passing)
}

#[test]
fn onnx_node_conformance_on_every_target() {
    let t0 = Instant::now();
    let (cases, presets, passing) = passing_cases();
    eprintln!(
        "conformance-cross: {} of {} cases pass on the interpreter; running them on {} targets",
        passing.len(),
        cases.len(),
        presets.len()
    );
    run_cases("conformance-cross", &cases, &presets, &passing, t0);
}

/// The same cases with their dims made bounded-symbolic, each object compiled once for bounds
/// above the case's sizes and run at them: the padding beyond every run-time extent holds NaN
/// (see `slmtvm_tests::cross`). Every input dim of 2 or more becomes a symbol named after its
/// size (equal sizes share one, so dims that must agree still do) bounded at `2·size + 1`; a
/// case whose graph does not infer or compile so (a Reshape to a constant shape, a window
/// along the axis, a constant operand of the same size) retries with only each input's first
/// axis symbolic (also of size 1), and runs static when that fails too. How many cases ran each way, and why
/// the others stayed static, is printed per op.
#[test]
fn onnx_node_conformance_with_symbolic_dims_on_every_target() {
    let t0 = Instant::now();
    let (cases, presets, passing) = passing_cases();
    let host = Target::from_spec("x86_64").expect("the x86_64 preset");
    let tried: Vec<(Option<Loaded>, Result<&str, String>)> = par_map(passing.len(), |k| {
        let l = &passing[k].1;
        let mut why = Vec::new();
        for (how, first_only) in [("every dim", false), ("first axis", true)] {
            let e = match symbolize(&l.graph, first_only) {
                Ok(g) => match slmtvm_codegen::compile(&g, "m", &host) {
                    Ok(_) => {
                        return (Some(Loaded { graph: g, sets: l.sets.clone(), frozen: l.frozen.clone() }), Ok(how));
                    }
                    Err(e) => one_line(&e.to_string()),
                },
                Err(e) => e,
            };
            why.push(format!("{how}: {}", truncate(&e, 160)));
        }
        (None, Err(why.join("; ")))
    });
    let mut per_op: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
    let mut static_why = String::new();
    let mut symbolic: Vec<(usize, Loaded)> = Vec::new();
    for ((ci, _), (g, how)) in passing.iter().zip(tried) {
        let row = per_op.entry(cases[*ci].op.as_str()).or_default();
        match how {
            Ok("every dim") => row[0] += 1,
            Ok(_) => row[1] += 1,
            Err(why) => {
                row[2] += 1;
                static_why += &format!("  {} ({}): {why}\n", cases[*ci].name, cases[*ci].op);
            }
        }
        if let Some(g) = g {
            symbolic.push((*ci, g));
        }
    }
    let mut summary = String::from("\nop: cases with every dim symbolic / with the first axes only / static\n");
    for (op, [a, f, st]) in &per_op {
        summary += &format!("  {op}: {a} / {f} / {st}\n");
    }
    let totals = per_op.values().fold([0; 3], |t, r| [t[0] + r[0], t[1] + r[1], t[2] + r[2]]);
    summary += &format!(
        "conformance-cross-symbolic: {} of {} cases symbolic ({} with every dim, {} with the first axes), {} static:\n{static_why}",
        totals[0] + totals[1],
        passing.len(),
        totals[0],
        totals[1],
        totals[2]
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), summary.as_bytes());
    let _ = std::fs::write(target_dir().join("conformance-cross-symbolic-summary.txt"), &summary);
    run_cases("conformance-cross-symbolic", &cases, &presets, &symbolic, t0);
}

/// `g` with its input dims made bounded symbols (see the test above): every dim of 2 or more,
/// or only each input's first one (of any size but 0: the batch of a Conv); the graph
/// re-inferred. An error when it does not infer, or keeps a dim no polynomial of the inputs'
/// symbols, or nothing became symbolic.
fn symbolize(g: &Graph, first_only: bool) -> Result<Graph, String> {
    let mut s = g.clone();
    let mut any = false;
    for &i in &g.inputs {
        let v = &mut s.values[i.index()];
        for (a, d) in v.ty.shape.0.iter_mut().enumerate() {
            match d.known() {
                Some(n) if (n >= 2 && !first_only) || (n >= 1 && a == 0 && first_only) => {
                    *d = Dim::sym(format!("n{n}"), Some(2 * n + 1));
                    any = true;
                }
                _ => {}
            }
        }
    }
    if !any {
        return Err("no input dim to make symbolic".into());
    }
    s.infer().map_err(|e| one_line(&e.to_string()))?;
    if let Some(v) = s.values.iter().find(|v| v.ty.shape.0.iter().any(|d| d.known().is_none() && d.upper().is_none())) {
        return Err(format!("'{}' has an unbounded dim: {}", v.name, v.ty.shape));
    }
    Ok(s)
}

/// Compiles and runs `passing` on every preset, prints the op × target table (`label` names
/// it and its files in the target folder) and fails on any failing run.
fn run_cases(label: &str, cases: &[Case], presets: &[Target], passing: &[(usize, Loaded)], t0: Instant) {
    // (preset, batch) tasks, run on all cores.
    let batches: Vec<&[(usize, Loaded)]> = passing.chunks(BATCH).collect();
    let tasks: Vec<(usize, usize)> = (0..presets.len()).flat_map(|p| (0..batches.len()).map(move |b| (p, b))).collect();
    let pid = std::process::id();
    let outcomes: Vec<Vec<Outcome>> = par_map(tasks.len(), |k| {
        let (p, b) = tasks[k];
        let t = &presets[p];
        let batch = batches[b];
        let jobs: Vec<Job> = batch
            .iter()
            .map(|(_, l)| Job { graph: &l.graph, data: l.sets.iter().map(|s| s.inputs.clone()).collect() })
            .collect();
        let dir = target_dir().join("slmtvm-cross").join(format!("{label}-{}-{b}-{pid}", t.name().replace(' ', "_")));
        let res = run_batch(t, &jobs, &dir);
        let out = batch
            .iter()
            .zip(res)
            .map(|((ci, l), sets)| {
                for (ds, got) in l.sets.iter().zip(sets) {
                    match got {
                        Err(e) => return Outcome::Fail(format!("{}: {}", ds.name, one_line(&e))),
                        Ok(got) => {
                            if let Err(o) = check_outputs(&cases[*ci], &l.graph, ds, &got) {
                                return o;
                            }
                        }
                    }
                }
                Outcome::Pass
            })
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        out
    });
    // Per case, per preset.
    let mut result: BTreeMap<(usize, usize), Outcome> = BTreeMap::new();
    for (&(p, b), outs) in tasks.iter().zip(outcomes) {
        for ((ci, _), o) in batches[b].iter().zip(outs) {
            result.insert((*ci, p), o);
        }
    }

    // The table: op × target, "passed/total" per cell.
    let mut rows: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut every = String::new();
    let mut n_frozen = 0;
    for (ci, l) in passing {
        let c = &cases[*ci];
        let frozen = if l.frozen.is_empty() { "" } else { " [int inputs constant]" };
        n_frozen += !l.frozen.is_empty() as usize;
        let row = rows.entry(c.op.as_str()).or_insert_with(|| vec![(0, 0); presets.len()]);
        for (p, t) in presets.iter().enumerate() {
            let o = &result[&(*ci, p)];
            row[p].1 += 1;
            match o {
                Outcome::Pass => {
                    row[p].0 += 1;
                    every += &format!("pass {} {} ({}){frozen}\n", t.name(), c.name, c.op);
                }
                Outcome::Fail(m) | Outcome::Skip(m) => {
                    every += &format!("FAIL {} {} ({}){frozen} {}\n", t.name(), c.name, c.op, one_line(m));
                    failures.push(format!("{} {}: {}", t.name(), c.name, one_line(m)));
                }
            }
        }
    }
    let w = rows.keys().map(|k| k.chars().count()).max().unwrap_or(2).max(9) + 2;
    let cw = presets.iter().map(|t| t.name().len()).max().unwrap_or(8).max(9) + 1;
    let mut table = format!("\n{:<w$}", "op");
    for t in presets {
        table += &format!("{:>cw$}", t.name());
    }
    table += "\n";
    let mut totals = vec![(0, 0); presets.len()];
    for (op, cells) in &rows {
        table += &format!("{op:<w$}");
        for (k, &(pass, n)) in cells.iter().enumerate() {
            let cell = if pass == n { format!("{pass}") } else { format!("{pass}/{n} !") };
            table += &format!("{cell:>cw$}");
            totals[k].0 += pass;
            totals[k].1 += n;
        }
        table += "\n";
    }
    table += &format!("{:<w$}", "TOTAL");
    for &(pass, n) in &totals {
        table += &format!("{:>cw$}", format!("{pass}/{n}"));
    }
    let (pass, n): (usize, usize) = totals.iter().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    table += &format!("\n{n_frozen} cases ran with their integer inputs (shapes, axes, bounds) made constants");
    table += &format!(
        "\n{label}: {pass} passed, {} failed ({} cases × {} targets, {:.1} s)\n",
        n - pass,
        passing.len(),
        presets.len(),
        t0.elapsed().as_secs_f64()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{table}\n").as_bytes());
    let target = target_dir();
    let _ = std::fs::create_dir_all(&target);
    let _ = std::fs::write(target.join(format!("{label}.txt")), &table);
    let _ = std::fs::write(target.join(format!("{label}-cases.txt")), every);
    assert!(
        failures.is_empty(),
        "{} case runs failed on code generation (see the table above and {}):\n{}",
        failures.len(),
        target.join(format!("{label}-cases.txt")).display(),
        failures.iter().take(40).map(|m| format!("  {}", truncate(m, 300))).collect::<Vec<_>>().join("\n")
    );
}
