//! `slmtvm build`: a model → `DIR/NAME.o`, `DIR/NAME.h`, `DIR/NAME.json`.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use slmtvm_codegen::manifest::OptimizerInfo;
use slmtvm_frontend::LoadOptions;
use slmtvm_optimizer::quantize::{Calibration, Scheme};
use slmtvm_targets::Target;
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

/// The optimizer's options for `target` as `opt` says: the target's cost model.
pub fn opt_options(target: &Target, opt: OptFlags) -> slmtvm_optimizer::Options {
    slmtvm_optimizer::Options {
        level: opt.level,
        time_limit: std::time::Duration::from_secs(opt.time_limit_s),
        cost: slmtvm_optimizer::CostModel::for_target(target),
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
    let c = slmtvm_codegen::compile_with(
        &og,
        name,
        target,
        &slmtvm_codegen::Options {
            profile: opt.profile,
            schedule: opt.schedule,
            threads: opt.threads,
            ..slmtvm_codegen::Options::default()
        },
    )?;
    let manifest = slmtvm_codegen::Manifest {
        optimizer: Some(OptimizerInfo {
            level: report.level,
            stop: report.stop,
            applied: report.applied,
            nodes_before: report.nodes_before,
            nodes_after: report.nodes_after,
        }),
        model_sha256: Some(Sha256::digest(model_bytes).iter().map(|b| format!("{b:02x}")).collect()),
        quantization: opt.quantize.map(|s| quantization_name(s, calibrated)),
        ..c.manifest
    };
    Ok(Artifacts {
        name: name.to_string(),
        header: c.header,
        manifest: manifest.to_json(),
        summary: manifest.summary(),
        object: c.object,
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
    let g = slmtvm_frontend::load_onnx_read(model, &bytes, opts)?;
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
