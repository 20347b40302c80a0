//! `slmtvm`: the command-line driver. It only wires the crates together; see the README for
//! the command reference.

mod bench;
mod build;
mod inputs;
mod inspect;
mod quantize;
mod run;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use slmtvm_ir::Shape;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "slmtvm", version, about = "Ahead-of-time compiler for small language models")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where `run` executes the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Target {
    /// The reference interpreter on this machine.
    Reference,
    /// Compiled for x86_64 and run on this machine (or under qemu-x86_64).
    #[value(name = "x86_64")]
    X86_64,
    /// Compiled for aarch64 and run under qemu-aarch64 (or natively).
    Aarch64,
    /// Compiled for riscv64 and run under qemu-riscv64 (or natively).
    Riscv64,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compile a model to DIR/NAME.o, NAME.h and NAME.json for a target.
    Build {
        /// The model file (.onnx).
        model: PathBuf,
        /// Target architecture: x86_64, aarch64 or riscv64.
        #[arg(long)]
        target: String,
        /// CPU preset or settings (e.g. aarch64-dotprod, riscv64-v, "x86_64 has_avx has_fma");
        /// default: the architecture's baseline preset.
        #[arg(long)]
        cpu: Option<String>,
        /// Output folder.
        #[arg(long, short = 'o', default_value = ".")]
        output_dir: PathBuf,
        /// Symbol prefix and file name (default: the model file name as a C identifier).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        shapes: ShapeArgs,
        #[command(flatten)]
        opt: OptArgs,
        /// With --quantize int8: static activation ranges from these input sets (DIR/NAME.npy,
        /// or one subfolder of NAME.npy files per set) instead of ranges computed at run time.
        #[arg(long, value_name = "DIR")]
        calibration: Option<PathBuf>,
        /// With --quantize: first compare the quantized model with the f32 one on the input
        /// flags' inputs (default: random, seed 0), on the reference interpreter: largest
        /// error, cosine similarity, top-1 agreement of `*logits*` outputs, weight bytes.
        #[arg(long)]
        report: bool,
        #[command(flatten)]
        inputs: InputArgs,
    },
    /// Print a model's inputs, outputs, operator histogram, parameters and FLOPs.
    Inspect {
        /// The model file (.onnx).
        model: PathBuf,
        #[command(flatten)]
        shapes: ShapeArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also print the imported graph in the IR's text form.
        #[arg(long)]
        ir: bool,
    },
    /// Run a model on inputs and write its outputs as .npy files.
    Run {
        /// The model file (.onnx).
        model: PathBuf,
        /// Where to run it: the reference interpreter, or compiled for an architecture.
        #[arg(long, value_enum, default_value = "reference")]
        target: Target,
        /// CPU preset or settings for a compiled target (e.g. aarch64-dotprod, riscv64-v);
        /// default: the architecture's baseline preset.
        #[arg(long)]
        cpu: Option<String>,
        #[command(flatten)]
        inputs: InputArgs,
        #[command(flatten)]
        shapes: ShapeArgs,
        #[command(flatten)]
        opt: OptArgs,
        /// Folder for the outputs (created if missing); one NAME.npy per graph output.
        #[arg(long, short = 'o', value_name = "DIR")]
        output_dir: PathBuf,
    },
    /// Time the compiled model on this machine beside ONNX Runtime and tract (same inputs, same
    /// thread count, same run): median/min/max latency, GFLOP/s and ratios. Inputs come from
    /// the input flags, else from seed 0.
    Bench {
        /// The model file (.onnx).
        model: PathBuf,
        /// Target architecture (must be this machine's); default: this machine's.
        #[arg(long)]
        target: Option<String>,
        /// CPU preset or settings; default: the best preset this CPU runs (x86_64-v4 with
        /// AVX-512, x86_64-v3 with AVX2 and FMA, aarch64-dotprod with dot products).
        #[arg(long)]
        cpu: Option<String>,
        /// Timed runs after one warm-up run.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Rounds: every runtime's timed runs are repeated this many times, the runtimes taking
        /// turns, and each figure is the median over the rounds (each ratio is the median of
        /// the rounds' ratios), so a change in the machine's load between one runtime's runs
        /// and another's cancels out.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also time every kernel (a profiling build) and report each matrix product's share of
        /// this CPU's FMA peak at the vector width the kernels use.
        #[arg(long)]
        kernels: bool,
        #[command(flatten)]
        inputs: InputArgs,
        #[command(flatten)]
        shapes: ShapeArgs,
        #[command(flatten)]
        opt: OptArgs,
        /// Keep the build, inputs and outputs in DIR (default: a temporary folder, removed).
        #[arg(long, short = 'o', value_name = "DIR")]
        output_dir: Option<PathBuf>,
    },
}

/// Where `run` and `bench` take the model's inputs from.
#[derive(clap::Args, Clone, Debug, Default)]
struct InputArgs {
    /// An input: NAME=FILE.npy; repeatable.
    #[arg(long = "input", value_name = "NAME=FILE")]
    inputs: Vec<String>,
    /// Read the inputs not given with --input from DIR/NAME.npy (NAME sanitized as output
    /// file names are).
    #[arg(long, value_name = "DIR")]
    input_dir: Option<PathBuf>,
    /// Fill the inputs not given otherwise deterministically from this seed.
    #[arg(long, value_name = "SEED")]
    random_inputs: Option<u64>,
}

/// How symbolic input dims are set: whole input shapes, or symbols by name.
#[derive(clap::Args, Clone, Debug, Default)]
struct ShapeArgs {
    /// Set an input's shape: NAME=1x128, NAME=1xseq<=512 or NAME=1,seq (symbols or
    /// polynomials of them, `past+1`, allowed); repeatable.
    #[arg(long = "shape", value_name = "NAME=DIMS")]
    shapes: Vec<String>,
    /// Keep symbol SYM symbolic with upper bound N (kernels take its run-time value; memory is
    /// planned for N): SYM=N; repeatable.
    #[arg(long = "bound", value_name = "SYM=N")]
    bounds: Vec<String>,
    /// Fix symbol SYM to the size N everywhere (static specialization): SYM=N; repeatable.
    #[arg(long = "dim", value_name = "SYM=N")]
    dims: Vec<String>,
}

/// The optimizer's flags.
#[derive(clap::Args, Clone, Copy, Debug)]
struct OptArgs {
    /// 0: no optimizer; 1: the e-graph optimizer (algebra and constant folding, recognition of
    /// composite ops, fusion into Attention/Dense/FusedMlp, operand layouts).
    #[arg(long = "opt-level", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    level: u8,
    /// Print the rewrites applied (with counts), the estimated cost before and after, and why
    /// saturation stopped.
    #[arg(long)]
    explain: bool,
    /// The matrix products' schedule, [KERNEL:]MRxNR[xKC], instead of the target's default:
    /// `4x8` (Cranelift: rows 1-8 x columns 4, 8, 12 or 16), `avx2:6x16` and `avx512:12x32` (the defaults there), `avx512:12x32x256`
    /// (assembled microkernels; KC is the K block, 0 or omitted for all of K).
    #[arg(long, value_name = "SCHEDULE", value_parser = parse_schedule)]
    schedule: Option<slmtvm_targets::Schedule>,
    /// Split the heavy kernels (matrix products, Dense, FusedMlp, Attention) into N tasks each:
    /// the object also exports NAME_run_parallel, run through a caller-given parallel_for
    /// (`run` and `bench` use the harness's pool of N threads; bench gives the peers N threads).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_threads)]
    threads: usize,
    /// Quantize the f32 weights of the matrix products (and embedding tables) first: `int8`
    /// (weights per output channel, activations per row at run time, or calibrated), `int4`
    /// (weight-only, groups of --group-size along K, activations f32).
    #[arg(long, value_enum, value_name = "KIND")]
    quantize: Option<QuantKind>,
    /// int4's group length along K: 32, 64 or 128.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = parse_group)]
    group_size: usize,
    /// int4: store the group scales as f16 (default f32).
    #[arg(long)]
    f16_scales: bool,
    /// Fail the build when the optimizer's saturation runs longer than this (a guard: its
    /// limits are iterations and e-nodes, so the output never depends on the machine's speed).
    #[arg(long = "opt-time-limit", value_name = "SECONDS", default_value_t = slmtvm_optimizer::DEFAULT_TIME_LIMIT_S)]
    time_limit_s: u64,
}

/// `--quantize` kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum QuantKind {
    /// int8 weights and activations.
    Int8,
    /// 4-bit weights, f32 activations.
    Int4,
}

/// Parses `--group-size N`.
fn parse_group(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n @ (32 | 64 | 128)) => Ok(n),
        _ => Err(format!("`{s}`: expected 32, 64 or 128")),
    }
}

/// Parses `--threads N`.
fn parse_threads(s: &str) -> Result<usize, String> {
    let max = slmtvm_codegen::MAX_THREADS;
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("`{s}`: expected a thread count from 1 to {max}")),
    }
}

/// Parses `--schedule [KERNEL:]MRxNR[xKC]`.
fn parse_schedule(s: &str) -> Result<slmtvm_targets::Schedule, String> {
    s.parse().map_err(|e: slmtvm_targets::Error| e.to_string())
}

impl OptArgs {
    fn flags(self) -> build::OptFlags {
        build::OptFlags {
            level: self.level,
            explain: self.explain,
            profile: false,
            schedule: self.schedule,
            threads: self.threads,
            time_limit_s: self.time_limit_s,
            quantize: self.quantize.map(|k| match k {
                QuantKind::Int8 => slmtvm_optimizer::quantize::Scheme::Int8,
                QuantKind::Int4 => {
                    slmtvm_optimizer::quantize::Scheme::Int4 { group: self.group_size, f16_scales: self.f16_scales }
                }
            }),
        }
    }
}

/// Parses `NAME=VALUE`.
fn split_kv(s: &str, what: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("{what} `{s}` must look like NAME=VALUE"),
    }
}

/// Parses `--shape` values: `1x128`, `1xseq<=512`, or comma-separated `1,max_len`.
fn parse_dims(s: &str) -> Result<Shape> {
    let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
    let parts: Vec<&str> = if inner.contains(',') { inner.split(',').collect() } else { inner.split('x').collect() };
    Shape::parse(&format!("[{}]", parts.iter().map(|p| p.trim()).collect::<Vec<_>>().join(", ")))
        .map_err(|m| anyhow::anyhow!("shape `{s}`: {m}"))
}

fn load_options(args: &ShapeArgs) -> Result<slmtvm_frontend::LoadOptions> {
    let mut opts = slmtvm_frontend::LoadOptions::default();
    for s in &args.shapes {
        let (name, dims) = split_kv(s, "--shape")?;
        opts.shapes.insert(name, parse_dims(&dims)?);
    }
    for (flag, list, bounded) in [("--bound", &args.bounds, true), ("--dim", &args.dims, false)] {
        for s in list {
            let (name, v) = split_kv(s, flag)?;
            if !slmtvm_ir::shape::is_symbol_name(&name) {
                bail!("{flag} `{s}`: `{name}` is not a symbol name");
            }
            let n: usize = v.parse().map_err(|_| anyhow::anyhow!("{flag} `{s}`: `{v}` is not a size"))?;
            let d = if bounded { slmtvm_ir::Dim::sym(name.clone(), Some(n)) } else { slmtvm_ir::Dim::Known(n) };
            if opts.symbols.insert(name.clone(), d).is_some() {
                bail!("symbol {name} is set twice (by --bound or --dim)");
            }
        }
    }
    Ok(opts)
}

/// The target of `--target ARCH [--cpu PRESET]`: the preset (default: the architecture's
/// baseline), which must be of that architecture.
fn resolve_target(arch: &str, cpu: Option<&str>) -> Result<slmtvm_targets::Target> {
    let t = slmtvm_targets::Target::from_spec(cpu.unwrap_or(arch))?;
    if t.arch().name() != arch {
        bail!("--cpu {} is a {} preset, not {arch}", t.name(), t.arch());
    }
    Ok(t)
}

/// Restores the default action of SIGPIPE (Rust ignores it, so printing into a closed pipe
/// such as `slmtvm inspect … | head` would panic): the process then ends quietly, as other
/// command-line tools do.
fn default_sigpipe() {
    #[cfg(unix)]
    {
        unsafe extern "C" {
            fn signal(signum: i32, handler: usize) -> usize;
        }
        const SIGPIPE: i32 = 13;
        const SIG_DFL: usize = 0;
        // SAFETY: resetting a signal to its default action has no preconditions.
        unsafe {
            signal(SIGPIPE, SIG_DFL);
        }
    }
}

fn main() {
    default_sigpipe();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Build { model, target, cpu, output_dir, name, shapes, opt, calibration, report, inputs: i } => {
            load_options(&shapes)
                .and_then(|o| {
                    let t = resolve_target(&target, cpu.as_deref())?;
                    let seed = i.random_inputs.or((i.inputs.is_empty() && i.input_dir.is_none()).then_some(0));
                    let quant = build::QuantRequest {
                        calibration: calibration.as_deref(),
                        report,
                        inputs: inputs::InputSource { flags: &i.inputs, dir: i.input_dir.as_deref(), seed },
                    };
                    build::build(&model, &o, &t, &output_dir, name.as_deref(), opt.flags(), &quant)
                })
                .with_context(|| format!("building {}", model.display()))
        }
        Cmd::Inspect { model, shapes, json, ir } => {
            load_options(&shapes).and_then(|o| inspect::inspect(&model, &o, json, ir))
        }
        Cmd::Run { model, target, cpu, inputs: i, shapes, opt, output_dir } => load_options(&shapes)
            .and_then(|o| {
                let src = inputs::InputSource { flags: &i.inputs, dir: i.input_dir.as_deref(), seed: i.random_inputs };
                let arch = match target {
                    Target::Reference if cpu.is_some() => bail!("--cpu needs a compiled --target"),
                    Target::Reference => {
                        return run::run_reference(&model, &o, &src, &output_dir, opt.flags().quantize);
                    }
                    Target::X86_64 => "x86_64",
                    Target::Aarch64 => "aarch64",
                    Target::Riscv64 => "riscv64",
                };
                run::run_target(&model, &o, &src, &output_dir, &resolve_target(arch, cpu.as_deref())?, opt.flags())
            })
            .with_context(|| format!("running {}", model.display())),
        Cmd::Bench { model, target, cpu, runs, rounds, json, kernels, inputs: i, shapes, opt, output_dir } => {
            load_options(&shapes)
                .and_then(|o| {
                    let t = match target {
                        Some(arch) => resolve_target(&arch, cpu.as_deref())?,
                        None if cpu.is_some() => bail!("--cpu needs --target"),
                        None => slmtvm_targets::Target::host()?,
                    };
                    let seed = i.random_inputs.or((i.inputs.is_empty() && i.input_dir.is_none()).then_some(0));
                    let src = inputs::InputSource { flags: &i.inputs, dir: i.input_dir.as_deref(), seed };
                    let flags = bench::BenchFlags { runs, rounds, threads: opt.threads, json, kernels };
                    let temp = output_dir.is_none();
                    let work = output_dir
                        .unwrap_or_else(|| std::env::temp_dir().join(format!("slmtvm-bench-{}", std::process::id())));
                    let r = bench::bench(&model, &o, &src, &work, &t, opt.flags(), &flags);
                    if temp {
                        let _ = std::fs::remove_dir_all(&work);
                    }
                    r
                })
                .with_context(|| format!("benchmarking {}", model.display()))
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_flags_parse() {
        assert_eq!(parse_dims("1x128").unwrap(), Shape::known(&[1, 128]));
        assert_eq!(parse_dims("2,max_len<=64").unwrap().to_string(), "[2, max_len<=64]");
        assert_eq!(parse_dims("1xseq<=512").unwrap().to_string(), "[1, seq<=512]");
        assert!(parse_dims("1x-3").is_err());
        assert!(split_kv("x", "--shape").is_err());
        use slmtvm_targets::{Microkernel, Schedule};
        assert_eq!(parse_schedule("6x16"), Ok(Schedule::cranelift(6, 16)));
        assert_eq!(
            parse_schedule("avx512:14x32x128"),
            Ok(Schedule { kernel: Microkernel::Avx512, mr: 14, nr: 32, kc: 128 })
        );
        assert_eq!(parse_schedule("avx2:6x16"), Ok(Schedule { kernel: Microkernel::Avx2, mr: 6, nr: 16, kc: 0 }));
        assert!(parse_schedule("4x6").unwrap_err().contains("nr=6"));
        assert!(parse_schedule("avx2:7x16").unwrap_err().contains("mr=7"), "7x16 needs 18 ymm registers");
        assert!(parse_schedule("avx512:16x16").unwrap_err().contains("mr=16"));
        assert!(parse_schedule("sse:4x8").unwrap_err().contains("unknown microkernel"));
        assert!(parse_schedule("4x8x64").unwrap_err().contains("kc"), "Cranelift does not block K");
        for s in ["4x8", "avx2:6x16x256", "avx512:12x32"] {
            assert_eq!(parse_schedule(s).unwrap().to_string(), s);
        }
        assert!(parse_schedule("48").is_err() && parse_schedule("ax8").is_err());
        assert_eq!(parse_threads("3"), Ok(3));
        for bad in ["0", "-1", "x", "257", ""] {
            assert!(parse_threads(bad).unwrap_err().contains("1 to 256"), "{bad}");
        }
    }
}
