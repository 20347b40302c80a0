//! `slmtvm bench`: the latency of the compiled model on this machine, and beside it, in the
//! same run, on the same inputs and with the same thread count, ONNX Runtime's and tract's
//! (through Python, when `onnxruntime` / `tract` can be imported). With `--threads N` the model
//! is built with its heavy kernels split into N tasks and run on the harness's pool of N
//! threads, ONNX Runtime gets N intra-op threads; tract's Python API sets no thread count, so
//! it runs on one (the table says so).

use crate::inputs::InputSource;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use slmtvm_frontend::LoadOptions;
use slmtvm_targets::Target;
use std::path::Path;

/// The Python side: times the peers (see its docstring).
const PEERS_PY: &str = include_str!("bench_peers.py");

/// How `bench` runs.
pub struct BenchFlags {
    /// Timed runs after one warm-up run.
    pub runs: usize,
    /// Rounds of every runtime's runs, the runtimes taking turns (medians over the rounds).
    pub rounds: usize,
    /// Threads for every runtime.
    pub threads: usize,
    /// Print JSON instead of a table.
    pub json: bool,
    /// Profile each kernel against the FMA peak (a profiling build).
    pub kernels: bool,
}

/// Operators whose kernels are matrix products, reported against the FMA peak.
const PRODUCTS: &[&str] =
    &["MatMul", "Gemm", "Dense", "FusedMlp", "Attention", "Conv", "MatMulInteger", "MatMulNBits", "QDense"];

/// One kernel's share of a profiled run.
#[derive(Clone, Debug, Serialize)]
struct KernelTime {
    index: usize,
    symbol: String,
    node: String,
    op: String,
    /// Mean microseconds per run.
    us: f64,
    flops: u64,
    gflops: f64,
    /// GFLOP/s over the FMA peak (matrix products only).
    peak_fraction: Option<f64>,
}

/// The kernel profile of a profiling build's timed runs.
#[derive(Clone, Debug, Serialize)]
struct Profile {
    /// FMA peak at the kernels' vector width, GFLOP/s.
    peak_gflops: f64,
    /// f32 lanes of that width.
    lanes: usize,
    kernels: Vec<KernelTime>,
}

/// One runtime's timings, in microseconds.
#[derive(Clone, Debug, Serialize)]
struct Timing {
    runtime: String,
    version: String,
    /// Threads it ran on.
    threads: usize,
    median_us: f64,
    min_us: f64,
    max_us: f64,
    /// Model FLOPs per second at the median, in GFLOP/s.
    gflops: f64,
    /// slmtvm's median over this runtime's (with rounds: the median of the rounds' ratios).
    slmtvm_ratio: f64,
    /// Each round's median.
    round_medians_us: Vec<f64>,
}

/// A peer's timings so far: each round it ran, by index (one that failed in a round skips
/// it), as [median, min, max] microseconds.
struct PeerRounds {
    name: String,
    version: String,
    threads: usize,
    rounds: Vec<(usize, [f64; 3])>,
}

/// What `bench --json` prints.
#[derive(Serialize)]
struct Report {
    model: String,
    target: String,
    runs: usize,
    rounds: usize,
    threads: usize,
    flops: u64,
    /// With `--quantize`: what slmtvm's build did (the peers run the model as given).
    #[serde(skip_serializing_if = "Option::is_none")]
    quantization: Option<String>,
    results: Vec<Timing>,
    /// Peers that could not run, with the reason.
    unavailable: Vec<(String, String)>,
    /// With `--kernels`: each kernel's time and its share of the FMA peak.
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<Profile>,
}

/// The kernel profile from a profiling harness's output and the build's manifest.
fn profile(stdout: &str, manifest: &Path, lanes: usize) -> Result<Profile> {
    let text = std::fs::read_to_string(manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let m: slmtvm_codegen::Manifest =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    let list = &m.kernel_list;
    let rate: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("peak_iters_per_us:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| "the profiling harness printed no peak line")?;
    let peak_gflops = rate * (slmtvm_codegen::abi::PEAK_FMAS * lanes * 2) as f64 / 1e3;
    let mut kernels = Vec::new();
    for l in stdout.lines().filter_map(|l| l.strip_prefix("kernel_us:")) {
        let mut it = l.split_whitespace();
        let (Some(k), Some(us)) =
            (it.next().and_then(|x| x.parse::<usize>().ok()), it.next().and_then(|x| x.parse::<f64>().ok()))
        else {
            bail!("unreadable kernel line `{l}`");
        };
        let e = list.get(k).with_context(|| format!("kernel {k} is not in {}", manifest.display()))?;
        let flops = e.flops;
        let gflops = if us > 0.0 { flops as f64 / us / 1e3 } else { 0.0 };
        let op = e.op.clone();
        let peak_fraction = (PRODUCTS.contains(&op.as_str()) && peak_gflops > 0.0).then(|| gflops / peak_gflops);
        kernels.push(KernelTime {
            index: k,
            symbol: e.symbol.clone(),
            node: e.node.clone(),
            op,
            us,
            flops,
            gflops,
            peak_fraction,
        });
    }
    Ok(Profile { peak_gflops, lanes, kernels })
}

/// Parses the harness's `latency_us: MEDIAN MIN MAX` line.
fn harness_latency(stdout: &str) -> Result<[f64; 3]> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("latency_us:"))
        .with_context(|| format!("the harness printed no latency line: {stdout}"))?;
    let v: Vec<f64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    match v.as_slice() {
        [a, b, c] => Ok([*a, *b, *c]),
        _ => bail!("unreadable latency line `{line}`"),
    }
}

/// Benchmarks the model: builds it for `target` (which must run natively here: timings under
/// qemu mean nothing) into `work/build`, runs one warm-up and `flags.runs` timed runs, then
/// the peers on the same inputs; prints a table or JSON.
pub fn bench(
    model: &Path,
    opts: &LoadOptions,
    src: &InputSource,
    work: &Path,
    target: &Target,
    opt: crate::build::OptFlags,
    flags: &BenchFlags,
) -> Result<()> {
    if slmtvm_targets::Arch::host() != Some(target.arch()) {
        bail!("bench measures on this machine: --target must be this host's architecture, not {}", target.arch());
    }
    if flags.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if flags.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let opt = crate::build::OptFlags { profile: flags.kernels, threads: flags.threads, ..opt };
    let h = crate::run::build_harness(model, opts, src, &work.join("build"), target, opt)?;
    let flops = h.graph.flops();
    // Each round: the compiled model's runs, then the peers'; per runtime, each round's
    // [median, min, max] in microseconds (peers that cannot run, with the reason).
    let mut ours: Vec<[f64; 3]> = Vec::new();
    let mut theirs: Vec<PeerRounds> = Vec::new();
    let mut unavailable: Vec<(String, String)> = Vec::new();
    let mut stdout = String::new();
    for round in 0..flags.rounds {
        stdout = crate::run::run_harness(&h, target, &work.join("outputs"), &["-t", &flags.runs.to_string()])?;
        ours.push(harness_latency(&stdout)?);
        for line in peers(model, &h, work, flags)?.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("the peers' script printed `{line}`"))?;
            let name = v["runtime"].as_str().unwrap_or("?").to_string();
            if let Some(e) = v["error"].as_str() {
                if !unavailable.iter().any(|(n, _)| *n == name) {
                    unavailable.push((name, e.to_string()));
                }
                continue;
            }
            let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            let times = [f("median_us"), f("min_us"), f("max_us")];
            match theirs.iter_mut().find(|t| t.name == name) {
                Some(t) => t.rounds.push((round, times)),
                None => {
                    let version = v["version"].as_str().unwrap_or("?").to_string();
                    let threads = v["threads"].as_u64().map_or(flags.threads, |t| t as usize);
                    theirs.push(PeerRounds { name, version, threads, rounds: vec![(round, times)] });
                }
            }
        }
    }
    // A peer that failed in some round but not all is reported from the rounds it ran.
    unavailable.retain(|(n, _)| !theirs.iter().any(|t| t.name == *n));
    // The peak loop runs at the width of the schedule's microkernel.
    let lanes = match opt.schedule.unwrap_or_else(|| target.schedule()).kernel {
        slmtvm_targets::Microkernel::Cranelift if target.vector().is_none() => 1,
        k => k.lanes(),
    };
    let profile = if flags.kernels { Some(profile(&stdout, &h.manifest, lanes)?) } else { None };
    let gflops = |us: f64| if us > 0.0 { flops as f64 / us / 1e3 } else { 0.0 };
    let timing = |runtime: String, version: String, threads: usize, rounds: &[[f64; 3]], ratio: f64| {
        let med = median(rounds.iter().map(|r| r[0]));
        Timing {
            runtime,
            version,
            threads,
            median_us: med,
            min_us: rounds.iter().map(|r| r[1]).fold(f64::INFINITY, f64::min),
            max_us: rounds.iter().map(|r| r[2]).fold(f64::NEG_INFINITY, f64::max),
            gflops: gflops(med),
            slmtvm_ratio: ratio,
            round_medians_us: rounds.iter().map(|r| r[0]).collect(),
        }
    };
    let mut results = vec![timing("slmtvm".into(), env!("CARGO_PKG_VERSION").into(), flags.threads, &ours, 1.0)];
    for p in &theirs {
        // Round i of a peer is paired with round i of the compiled model.
        let ratio = median(p.rounds.iter().map(|(i, t)| ours[*i][0] / t[0]));
        let times: Vec<[f64; 3]> = p.rounds.iter().map(|r| r.1).collect();
        results.push(timing(p.name.clone(), p.version.clone(), p.threads, &times, ratio));
    }
    let report = Report {
        model: model.display().to_string(),
        target: target.name().to_string(),
        runs: flags.runs,
        rounds: flags.rounds,
        threads: flags.threads,
        flops,
        quantization: opt.quantize.map(|q| crate::build::quantization_name(q, false)),
        results,
        unavailable,
        profile,
    };
    if flags.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

/// The median of `xs` (NaN when empty).
fn median(xs: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs the peers' script; an absent `python3` is reported as the peers being unavailable.
fn peers(model: &Path, h: &crate::run::Harness, work: &Path, flags: &BenchFlags) -> Result<String> {
    let script = work.join("bench_peers.py");
    std::fs::write(&script, PEERS_PY).with_context(|| format!("writing {}", script.display()))?;
    let cfg = serde_json::json!({
        "model": std::path::absolute(model)?.display().to_string(),
        "threads": flags.threads,
        "runs": flags.runs,
        "inputs": h.input_files.iter().map(|(n, p)| (n.clone(), p.display().to_string())).collect::<Vec<_>>(),
    });
    let out = match std::process::Command::new("python3").arg(&script).arg(cfg.to_string()).output() {
        Ok(o) => o,
        Err(e) => {
            let line = |r: &str| serde_json::json!({"runtime": r, "error": format!("python3 cannot start ({e})")});
            return Ok(format!("{}\n{}\n", line("onnxruntime"), line("tract")));
        }
    };
    if !out.status.success() {
        bail!("the peers' script failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The report as a text table.
fn table(r: &Report) -> String {
    let rounds = if r.rounds > 1 {
        format!("{} rounds of {} timed runs, the runtimes taking turns; medians over the rounds", r.rounds, r.runs)
    } else {
        format!("{} timed runs after a warm-up", r.runs)
    };
    let mut s = format!(
        "{} on {} ({rounds}, {} thread(s), {:.3} GFLOP per run)\n",
        r.model,
        r.target,
        r.threads,
        r.flops as f64 / 1e9
    );
    if let Some(q) = &r.quantization {
        s.push_str(&format!("slmtvm runs the model quantized ({q}); the peers run it as given\n"));
    }
    s.push_str(&format!(
        "{:<20} {:>12} {:>12} {:>12} {:>9} {:>14}\n",
        "runtime", "median ms", "min ms", "max ms", "GFLOP/s", "slmtvm / it"
    ));
    for t in &r.results {
        let threads = if t.threads == r.threads { String::new() } else { format!(" ({}T)", t.threads) };
        s.push_str(&format!(
            "{:<20} {:>12.3} {:>12.3} {:>12.3} {:>9.2} {:>13.2}x\n",
            format!("{} {}{threads}", t.runtime, t.version),
            t.median_us / 1e3,
            t.min_us / 1e3,
            t.max_us / 1e3,
            t.gflops,
            t.slmtvm_ratio
        ));
    }
    if let Some(t) = r.results.iter().find(|t| t.threads != r.threads) {
        s.push_str(&format!("{}: ran on {} thread(s): its Python API sets no thread count\n", t.runtime, t.threads));
    }
    for (n, e) in &r.unavailable {
        s.push_str(&format!("{n}: not run: {e}\n"));
    }
    if let Some(p) = &r.profile {
        s.push_str(&profile_table(p));
    }
    s
}

/// The kernels by time (the 20 slowest, then the rest summed).
fn profile_table(p: &Profile) -> String {
    let total: f64 = p.kernels.iter().map(|k| k.us).sum();
    let mut s = format!(
        "\nkernels (a profiling build: a timer call around each kernel; FMA peak at {} lanes: {:.1} GFLOP/s)\n",
        p.lanes, p.peak_gflops
    );
    s.push_str(&format!(
        "{:>5} {:<14} {:<40} {:>10} {:>7} {:>9} {:>10}\n",
        "#", "op", "node", "µs/run", "% time", "GFLOP/s", "% of peak"
    ));
    let mut ks: Vec<&KernelTime> = p.kernels.iter().collect();
    ks.sort_by(|a, b| b.us.total_cmp(&a.us).then(a.index.cmp(&b.index)));
    let share = |us: f64| if total > 0.0 { 100.0 * us / total } else { 0.0 };
    for k in ks.iter().take(20) {
        let node: String = k.node.chars().take(40).collect();
        let peak = k.peak_fraction.map_or("-".to_string(), |f| format!("{:.1}", 100.0 * f));
        s.push_str(&format!(
            "{:>5} {:<14} {:<40} {:>10.2} {:>7.1} {:>9.2} {:>10}\n",
            k.index,
            k.op,
            node,
            k.us,
            share(k.us),
            k.gflops,
            peak
        ));
    }
    if ks.len() > 20 {
        let rest: f64 = ks[20..].iter().map(|k| k.us).sum();
        s.push_str(&format!(
            "{:>5} {:<14} {:<40} {:>10.2} {:>7.1}\n",
            "",
            "(others)",
            format!("{} kernels", ks.len() - 20),
            rest,
            share(rest)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_harness_latency_line_parses() {
        assert_eq!(harness_latency("x\nlatency_us: 12.5 10.0 20.25\n").unwrap(), [12.5, 10.0, 20.25]);
        assert!(harness_latency("latency_us: 1 2\n").is_err());
        assert!(harness_latency("nothing").is_err());
    }
}
