//! `slmtvm build`: a model → `DIR/NAME.o`, `DIR/NAME.h`, `DIR/NAME.json`.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};
use slmtvm_frontend::LoadOptions;
use slmtvm_optimizer::quantize::{Calibration, Scheme};
use slmtvm_targets::Target;
use std::collections::BTreeMap;
use std::path::Path;

/// C keywords and names of standard macros a model name must not take.
const RESERVED: &[&str] = &[
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum", "extern", "float",
    "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return", "short", "signed", "sizeof",
    "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "null", "main", "errno",
];

/// A C identifier from a model file name: other characters become `_`, a leading digit or a
/// reserved word gets a `m_` prefix.
pub fn c_name(stem: &str) -> String {
    let mut s: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c.to_ascii_lowercase() } else { '_' })
        .collect();
    if s.is_empty()
        || s.starts_with(|c: char| c.is_ascii_digit())
        || RESERVED.contains(&s.as_str())
        || s.starts_with("slmtvm")
    {
        s.insert_str(0, "m_");
    }
    s
}

#[derive(Serialize)]
struct TensorInfo {
    name: String,
    dtype: String,
    /// Physical shape: symbolic dims at their bounds.
    shape: Vec<usize>,
    /// Logical dims: sizes or symbol polynomials (`past+1`).
    dims: Vec<String>,
    /// Bytes of the buffer (at the physical shape).
    bytes: usize,
}

#[derive(Serialize)]
struct OptimizerInfo {
    level: u8,
    stop: String,
    applied: BTreeMap<String, usize>,
    nodes_before: usize,
    nodes_after: usize,
}

#[derive(Serialize)]
struct SymbolInfo {
    name: String,
    bound: usize,
}

#[derive(Serialize)]
struct Manifest {
    name: String,
    compiler: String,
    optimizer: OptimizerInfo,
    model_sha256: String,
    target: String,
    target_fingerprint: String,
    symbols: Vec<SymbolInfo>,
    /// (input, output) names of caches updated in place (one buffer may serve as both).
    in_place: Vec<(String, String)>,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    /// What `--quantize` did (absent: the model's own arithmetic).
    #[serde(skip_serializing_if = "Option::is_none")]
    quantization: Option<String>,
    arena_bytes: usize,
    arena_align: usize,
    arena_lower_bound: usize,
    /// Bytes of weights in `.rodata`, packed copies included.
    weights_bytes: usize,
    /// Bytes of the weights packed into the matrix microkernels' panels (padding included),
    /// part of `weights_bytes`.
    packed_weights_bytes: usize,
    code_bytes: usize,
    kernels: usize,
    /// A profiling build: the object imports `slmtvm_profile` and exports `NAME_peak`.
    profile: bool,
    /// The matrix products' register tile, `MRxNR`.
    schedule: String,
    /// Tasks per split kernel (`--threads`); above 1 the object exports `NAME_run_parallel`.
    threads: usize,
    op_counts: BTreeMap<String, usize>,
    kernel_list: Vec<KernelEntry>,
}

#[derive(Serialize)]
struct KernelEntry {
    symbol: String,
    node: String,
    op: String,
    code_bytes: usize,
    flops: u64,
    /// Tasks it is split into (1: serial).
    tasks: usize,
}

/// A compiled model: the three files `build` writes.
pub struct Artifacts {
    /// The model's C name.
    pub name: String,
    /// `NAME.o`.
    pub object: Vec<u8>,
    /// `NAME.h`.
    pub header: String,
    /// `NAME.json`.
    pub manifest: String,
    /// One line saying what was built.
    pub summary: String,
}

/// The model's C name: `--name` as given (which must be a plain C identifier), else the model
/// file name made one.
pub fn model_name(model: &Path, name: Option<&str>) -> Result<String> {
    Ok(match name {
        Some(n) if c_name(n) != n => bail!("--name {n} is not a plain lower-case C identifier (try {})", c_name(n)),
        Some(n) => n.to_string(),
        None => c_name(&model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()),
    })
}

/// How the optimizer runs (`--opt-level`, `--explain`).
#[derive(Clone, Copy, Debug)]
pub struct OptFlags {
    /// 0 = off; 1 = algebraic simplification and constant folding.
    pub level: u8,
    /// Print the optimizer's report.
    pub explain: bool,
    /// A profiling build (`bench --kernels`): see `slmtvm_codegen::Options::profile`.
    pub profile: bool,
    /// The matrix products' register tile (`--schedule`), else the target's default.
    pub schedule: Option<slmtvm_targets::Schedule>,
    /// Tasks per split kernel (`--threads`): see `slmtvm_codegen::Options::threads`.
    pub threads: usize,
    /// Quantize the f32 weights first (`--quantize`): see `slmtvm_optimizer::quantize`.
    pub quantize: Option<Scheme>,
    /// The optimizer's time guard in seconds (`--opt-time-limit`): see
    /// `slmtvm_optimizer::Options::time_limit`.
    pub time_limit_s: u64,
}

/// What `--quantize` did, for the manifest.
pub fn quantization_name(s: Scheme, calibrated: bool) -> String {
    match s {
        Scheme::Int8 if calibrated => "int8 weights per column, int8 activations per tensor (calibrated)".into(),
        Scheme::Int8 => "int8 weights per column, int8 activations per row (dynamic)".into(),
        Scheme::Int4 { group, f16_scales } => {
            format!(
                "int4 weights in groups of {group} ({} scales), f32 activations",
                if f16_scales { "f16" } else { "f32" }
            )
        }
    }
}

/// The optimizer's options for `target` as `opt` says: the cost model from the target's
/// vectors.
pub fn opt_options(target: &Target, opt: OptFlags) -> slmtvm_optimizer::Options {
    let v = target.vector();
    slmtvm_optimizer::Options {
        level: opt.level,
        time_limit: std::time::Duration::from_secs(opt.time_limit_s),
        cost: slmtvm_optimizer::CostModel {
            lanes: if v.is_some() { 4.0 } else { 1.0 },
            fma: v.is_some_and(|v| v.fma),
            ..slmtvm_optimizer::CostModel::default()
        },
        ..slmtvm_optimizer::Options::default()
    }
}

/// `g` quantized as `opt.quantize` says (with the static activation ranges of `calibration`,
/// if any), or `None` without `--quantize`.
pub fn quantize(
    g: &slmtvm_ir::Graph,
    opt: OptFlags,
    calibration: Option<&Calibration>,
) -> Result<Option<slmtvm_optimizer::quantize::Quantized>> {
    Ok(opt.quantize.map(|s| slmtvm_optimizer::quantize::quantize(g, s, calibration)).transpose()?)
}

/// Compiles graph `g` (read from a model file whose bytes are `model_bytes`; already quantized
/// by [`quantize`] when `opt.quantize` is set, with calibrated ranges when `calibrated`) for
/// `target`, optimized first as `opt` says.
pub fn compile_graph(
    g: &slmtvm_ir::Graph,
    model_bytes: &[u8],
    target: &Target,
    name: &str,
    opt: OptFlags,
    calibrated: bool,
) -> Result<Artifacts> {
    let (og, report) = slmtvm_optimizer::optimize(g, &opt_options(target, opt))?;
    if opt.explain {
        print!("{}", report.text());
    }
    let g = &og;
    let c = slmtvm_codegen::compile_with(
        g,
        name,
        target,
        &slmtvm_codegen::Options {
            profile: opt.profile,
            schedule: opt.schedule,
            threads: opt.threads,
            ..slmtvm_codegen::Options::default()
        },
    )?;
    let info = |ids: &[slmtvm_ir::ValueId]| -> Vec<TensorInfo> {
        ids.iter()
            .map(|&v| {
                let phys = c.plan.layout.dims(v).to_vec();
                TensorInfo {
                    name: g.value(v).name.clone(),
                    dtype: g.ty(v).dtype.to_string(),
                    bytes: phys.iter().product::<usize>() * g.ty(v).dtype.size(),
                    shape: phys,
                    dims: g.ty(v).shape.0.iter().map(|d| d.poly().to_string()).collect(),
                }
            })
            .collect()
    };
    let mut op_counts = BTreeMap::new();
    for n in &g.nodes {
        *op_counts.entry(n.op.kind_name().to_string()).or_default() += 1;
    }
    let manifest = Manifest {
        optimizer: OptimizerInfo {
            level: report.level,
            stop: report.stop.clone(),
            applied: report.applied.clone(),
            nodes_before: report.nodes_before,
            nodes_after: report.nodes_after,
        },
        name: name.to_string(),
        compiler: format!("slmtvm {}", env!("CARGO_PKG_VERSION")),
        model_sha256: Sha256::digest(model_bytes).iter().map(|b| format!("{b:02x}")).collect(),
        target: target.name().to_string(),
        target_fingerprint: target.fingerprint(),
        symbols: c.plan.layout.symbols.list.iter().map(|(n, b)| SymbolInfo { name: n.clone(), bound: *b }).collect(),
        in_place: c
            .plan
            .layout
            .in_place
            .iter()
            .map(|&(k, j)| (g.value(g.inputs[k]).name.clone(), g.value(g.outputs[j]).name.clone()))
            .collect(),
        inputs: info(&g.inputs),
        outputs: info(&g.outputs),
        quantization: opt.quantize.map(|s| quantization_name(s, calibrated)),
        arena_bytes: c.plan.arena_bytes,
        arena_align: slmtvm_codegen::plan::ARENA_ALIGN,
        arena_lower_bound: c.plan.lower_bound,
        weights_bytes: c.weight_bytes,
        packed_weights_bytes: c.packed_bytes,
        code_bytes: c.code_bytes,
        kernels: c.kernels,
        profile: opt.profile,
        schedule: { opt.schedule.unwrap_or_else(|| target.schedule()).to_string() },
        threads: opt.threads,
        op_counts,
        kernel_list: c
            .kernel_list
            .iter()
            .map(|k| KernelEntry {
                symbol: k.symbol.clone(),
                node: k.node.clone(),
                op: k.op.clone(),
                code_bytes: k.code_bytes,
                flops: k.flops,
                tasks: k.tasks,
            })
            .collect(),
    };
    let split = c.kernel_list.iter().filter(|k| k.tasks > 1).count();
    let summary = format!(
        "{name}: {} (arena {} bytes, lower bound {}; weights {} bytes, {} of them packed; code {} bytes in {} kernels{})",
        target.name(),
        c.plan.arena_bytes,
        c.plan.lower_bound,
        c.weight_bytes,
        c.packed_bytes,
        c.code_bytes,
        c.kernels,
        if opt.threads > 1 { format!(", {split} split into {} tasks", opt.threads) } else { String::new() }
    );
    Ok(Artifacts {
        name: name.to_string(),
        header: slmtvm_codegen::header::header(g, name, &c.plan, opt.threads),
        manifest: serde_json::to_string_pretty(&manifest)? + "\n",
        object: c.object,
        summary,
    })
}

/// Writes `DIR/NAME.o`, `NAME.h` and `NAME.json`.
pub fn write_artifacts(a: &Artifacts, out_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let name = &a.name;
    for (file, bytes) in [
        (format!("{name}.o"), a.object.as_slice()),
        (format!("{name}.h"), a.header.as_bytes()),
        (format!("{name}.json"), a.manifest.as_bytes()),
    ] {
        let p = out_dir.join(file);
        std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// `build`'s quantization extras: static activation ranges and the accuracy report.
pub struct QuantRequest<'a> {
    /// `--calibration DIR`: input sets for static activation ranges.
    pub calibration: Option<&'a Path>,
    /// `--report`: compare the quantized model with the f32 one first.
    pub report: bool,
    /// The report's inputs.
    pub inputs: crate::inputs::InputSource<'a>,
}

/// Compiles `model` for `target` into `out_dir`.
pub fn build(
    model: &Path,
    opts: &LoadOptions,
    target: &Target,
    out_dir: &Path,
    name: Option<&str>,
    opt: OptFlags,
    quant: &QuantRequest,
) -> Result<()> {
    let bytes = std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
    let g = slmtvm_frontend::load_onnx(model, opts)?;
    let name = model_name(model, name)?;
    let needs = |flag: &str| opt.quantize.with_context(|| format!("{flag} needs --quantize"));
    let cal = match quant.calibration {
        Some(dir) => Some(crate::quantize::calibrate(&g, needs("--calibration")?, dir)?),
        None => None,
    };
    let q = quantize(&g, opt, cal.as_ref())?;
    if quant.report {
        let label = quantization_name(needs("--report")?, cal.is_some());
        if let Some(q) = &q {
            print!("{}", crate::quantize::report(&g, q, &label, &quant.inputs)?);
        }
    }
    let a = compile_graph(q.as_ref().map_or(&g, |q| &q.graph), &bytes, target, &name, opt, cal.is_some())?;
    write_artifacts(&a, out_dir)?;
    println!("{} -> {}/{name}.{{o,h,json}}", a.summary, out_dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::c_name;

    #[test]
    fn model_names_become_c_identifiers() {
        assert_eq!(c_name("model"), "model");
        assert_eq!(c_name("tiny-bert.v2"), "tiny_bert_v2");
        assert_eq!(c_name("2layer"), "m_2layer");
        assert_eq!(c_name("int"), "m_int");
        assert_eq!(c_name(""), "m_");
    }
}
