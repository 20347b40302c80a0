//! Golden filetests of the optimizer's rule sets: `tests/filetests/<set>/*.slir`, one case per
//! file (as Cranelift's filetests are). A case is
//!
//! ```text
//! ; sets: algebra recognize        (or `; set: algebra`: the rule sets to run, in order)
//! ; target: riscv64                (optional: the cost model of a target without vectors)
//! ; cost: fused-attention          (optional: fused attention costed as a vectorized kernel)
//! ; any other comment lines
//! graph "name" { ... }             (the input graph, in the IR text form)
//! ; ==== optimized ====
//! graph "name" { ... }             (the expected optimized graph, as `text::print` writes it)
//! ```
//!
//! The runner optimizes the input with only the named rule sets, prints the result and
//! compares it with the expectation, showing a line diff when they differ. With
//! `SLMTVM_BLESS=1` it writes the result into the file as the new expectation instead. Either
//! way the result must compute what the input computes: the reference interpreter runs both
//! on random inputs, so a wrong expectation cannot be blessed in.

use slmtvm_ir::{DType, Dim, Graph, Tensor, interp, text};
use slmtvm_optimizer::{CostModel, Options, optimize};
use slmtvm_tests::Lcg;
use std::path::{Path, PathBuf};

/// The line between the input and the expectation.
const SEPARATOR: &str = "; ==== optimized ====";

/// One parsed case file.
struct Case {
    /// The header and input text, up to the separator (kept verbatim when blessing).
    head: String,
    sets: Vec<String>,
    target: Option<String>,
    /// `; cost: slow-attention`: the fused Attention priced at 4 cycles per FLOP (a target
    /// whose attention kernel lags the matrix products).
    slow_attention: bool,
    input: Graph,
    expected: Option<String>,
}

fn parse_case(path: &Path) -> Result<Case, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (head, expected) = match text.split_once(&format!("\n{SEPARATOR}\n")) {
        Some((h, e)) => (format!("{h}\n"), Some(e.to_string())),
        None => (text.clone(), None),
    };
    let (mut sets, mut target, mut slow_attention) = (None, None, false);
    for line in head.lines().filter_map(|l| l.strip_prefix(';')) {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("sets:").or_else(|| line.strip_prefix("set:")) {
            sets = Some(v.split_whitespace().map(String::from).collect::<Vec<_>>());
        } else if let Some(v) = line.strip_prefix("target:") {
            target = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("cost:") {
            slow_attention = match v.trim() {
                "slow-attention" => true,
                c => return Err(format!("{}: unknown cost '{c}' (slow-attention)", path.display())),
            };
        }
    }
    let sets = sets.ok_or_else(|| format!("{}: no `; sets:` header line", path.display()))?;
    let body: String = head.lines().filter(|l| !l.starts_with(';')).collect::<Vec<_>>().join("\n");
    let mut input = text::parse(&body).map_err(|e| format!("{}: input: {e}", path.display()))?;
    input.infer().map_err(|e| format!("{}: input: {e}", path.display()))?;
    Ok(Case { head, sets, target, slow_attention, input, expected })
}

/// The optimizer options of a case: its rule sets and its target's cost model.
fn options(case: &Case) -> Result<Options, String> {
    let base = CostModel { attention_cycles_per_flop: case.slow_attention.then_some(4.0), ..CostModel::default() };
    let cost = match case.target.as_deref() {
        None | Some("x86_64") | Some("aarch64") => base,
        Some("riscv64") => CostModel { lanes: 1.0, fma: false, ..base },
        Some(t) => return Err(format!("unknown target '{t}' (x86_64, aarch64, riscv64)")),
    };
    Ok(Options { sets: Some(case.sets.clone()), cost, ..Options::default() })
}

/// Random values for every input of `g` (symbolic dims at their bound, else 3).
fn random_inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = Lcg(seed);
    rng.bits();
    let mut next = move || (rng.bits() >> 22) as f64 / (1u64 << 31) as f64;
    g.inputs
        .iter()
        .map(|&i| {
            let ty = g.ty(i);
            let dims: Vec<usize> = ty
                .shape
                .0
                .iter()
                .map(|d| match d {
                    Dim::Known(n) => *n,
                    Dim::Sym { bound, .. } => bound.unwrap_or(3).min(3),
                })
                .collect();
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n).map(|_| (next() * 4.0 - 2.0) as f32).collect();
            let t = Tensor::from_vec(&dims, v).unwrap();
            match ty.dtype {
                DType::F32 => t,
                DType::Bool => Tensor::from_f64(DType::Bool, t.to_f64().mapv(|x| (x > 0.0) as u8 as f64)),
                d => Tensor::from_f64(d, t.to_f64().mapv(|x| (x * 2.0).round())),
            }
        })
        .collect()
}

/// A line diff of `want` against `got` (`-` lines only in `want`, `+` only in `got`).
fn diff(want: &str, got: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("   {}\n", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!(" + {}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!(" - {}\n", a[i]));
            i += 1;
        }
    }
    out
}

/// Runs one case; `Err` says why it fails.
fn run_case(path: &Path, bless: bool) -> Result<(), String> {
    let case = parse_case(path)?;
    let opts = options(&case).map_err(|e| format!("{}: {e}", path.display()))?;
    let (out, report) = optimize(&case.input, &opts).map_err(|e| format!("{}: optimize: {e}", path.display()))?;
    let got = text::print(&out);
    for seed in 0..3 {
        let ins = random_inputs(&case.input, seed);
        let want = interp::run(&case.input, &ins).map_err(|e| format!("{}: input graph: {e}", path.display()))?;
        let have = interp::run(&out, &ins).map_err(|e| format!("{}: optimized graph: {e}", path.display()))?;
        for (k, (w, h)) in want.iter().zip(&have).enumerate() {
            slmtvm_tests::compare(w, h, 1e-4, 1e-5).map_err(|e| {
                format!("{}: output {k} differs from the input graph's on random inputs: {e}\n{got}", path.display())
            })?;
        }
    }
    if bless {
        if case.expected.as_deref() != Some(got.as_str()) {
            std::fs::write(path, format!("{}{SEPARATOR}\n{got}", case.head)).map_err(|e| e.to_string())?;
        }
        return Ok(());
    }
    match case.expected {
        None => Err(format!("{}: no expectation (run with SLMTVM_BLESS=1 to write one)", path.display())),
        Some(want) if want == got => Ok(()),
        Some(want) => Err(format!(
            "{}: the optimized graph differs from the expectation (- expected, + got; SLMTVM_BLESS=1 rewrites it):\n{}{}",
            path.display(),
            diff(&want, &got),
            report.text()
        )),
    }
}

fn cases() -> Vec<PathBuf> {
    let root = slmtvm_tests::repo_root().join("tests/filetests");
    let mut v = Vec::new();
    for set in std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display())) {
        let dir = set.unwrap().path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "slir") {
                    v.push(f);
                }
            }
        }
    }
    v.sort();
    v
}

#[test]
fn golden_filetests() {
    let bless = std::env::var("SLMTVM_BLESS").is_ok_and(|v| v == "1");
    let cases = cases();
    let failures: Vec<String> = cases.iter().filter_map(|p| run_case(p, bless).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} filetests failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    assert!(cases.len() >= 30, "only {} filetests found", cases.len());
}

#[test]
fn every_rule_has_a_filetest() {
    // Every rule of every set is applied by at least one case (by the report's counts).
    let mut applied = std::collections::BTreeSet::new();
    for p in cases() {
        let case = parse_case(&p).unwrap();
        let (_, r) = optimize(&case.input, &options(&case).unwrap()).unwrap();
        applied.extend(r.applied.into_keys());
    }
    let missing: Vec<&str> = slmtvm_optimizer::RULE_SETS
        .iter()
        .flat_map(|s| slmtvm_optimizer::rule_set_named(s).unwrap())
        .map(|r| r.name)
        .filter(|n| !applied.contains(*n))
        .collect();
    assert!(missing.is_empty(), "rules no filetest applies: {missing:?}");
}

#[test]
fn the_diff_marks_changed_lines() {
    let d = diff("a\nb\nc\n", "a\nx\nc\n");
    assert_eq!(d, "   a\n + x\n - b\n   c\n");
}
