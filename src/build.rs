//! `slmtvm build`: a model → `DIR/NAME.o`, `DIR/NAME.h`, `DIR/NAME.json`.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};
use slmtvm_codegen::emit::Caps;
use slmtvm_frontend::LoadOptions;
use slmtvm_targets::Target;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    shape: Vec<usize>,
    bytes: usize,
}

#[derive(Serialize)]
struct Manifest {
    name: String,
    compiler: String,
    model_sha256: String,
    target: String,
    target_fingerprint: String,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    arena_bytes: usize,
    arena_align: usize,
    arena_lower_bound: usize,
    weights_bytes: usize,
    code_bytes: usize,
    kernels: usize,
    op_counts: BTreeMap<String, usize>,
}

/// What `build` wrote.
pub struct Built {
    /// The model's C name.
    pub name: String,
    /// The output folder.
    pub dir: PathBuf,
}

/// Compiles `model` for `target` into `out_dir`.
pub fn build(model: &Path, opts: &LoadOptions, target: &Target, out_dir: &Path, name: Option<&str>) -> Result<Built> {
    let bytes = std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
    let g = slmtvm_frontend::load_onnx(model, opts)?;
    let name = match name {
        Some(n) if c_name(n) != n => bail!("--name {n} is not a plain lower-case C identifier (try {})", c_name(n)),
        Some(n) => n.to_string(),
        None => c_name(&model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()),
    };
    let caps = Caps {
        ptr: cranelift_codegen::ir::types::I64,
        vector: target.vector().is_some(),
        native_fma: target.vector().is_some_and(|v| v.fma),
    };
    let c = slmtvm_codegen::object::compile(&g, &name, target.isa()?, caps)?;
    let info = |ids: &[slmtvm_ir::ValueId]| -> Vec<TensorInfo> {
        ids.iter()
            .map(|&v| {
                let dims = g.ty(v).shape.as_known().unwrap_or_default();
                TensorInfo {
                    name: g.value(v).name.clone(),
                    dtype: g.ty(v).dtype.to_string(),
                    bytes: dims.iter().product::<usize>() * g.ty(v).dtype.size(),
                    shape: dims,
                }
            })
            .collect()
    };
    let mut op_counts = BTreeMap::new();
    for n in &g.nodes {
        *op_counts.entry(n.op.kind_name().to_string()).or_default() += 1;
    }
    let manifest = Manifest {
        name: name.clone(),
        compiler: format!("slmtvm {}", env!("CARGO_PKG_VERSION")),
        model_sha256: Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect(),
        target: target.name().to_string(),
        target_fingerprint: target.fingerprint(),
        inputs: info(&g.inputs),
        outputs: info(&g.outputs),
        arena_bytes: c.plan.arena_bytes,
        arena_align: slmtvm_codegen::plan::ARENA_ALIGN,
        arena_lower_bound: c.plan.lower_bound,
        weights_bytes: c.weight_bytes,
        code_bytes: c.code_bytes,
        kernels: c.kernels,
        op_counts,
    };
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    std::fs::write(out_dir.join(format!("{name}.o")), &c.object)?;
    std::fs::write(out_dir.join(format!("{name}.h")), slmtvm_codegen::header::header(&g, &name, &c.plan))?;
    std::fs::write(out_dir.join(format!("{name}.json")), serde_json::to_string_pretty(&manifest)? + "\n")?;
    println!(
        "{name}: {} -> {}/{name}.{{o,h,json}} (arena {} bytes, weights {} bytes, code {} bytes)",
        target.name(),
        out_dir.display(),
        c.plan.arena_bytes,
        c.weight_bytes,
        c.code_bytes
    );
    Ok(Built { name, dir: out_dir.to_path_buf() })
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
