//! `slmtvm run`: execute a model and write its outputs as `.npy` files.

use crate::inputs::{InputSource, gather_inputs};
use anyhow::{Context, Result};
use slmtvm_frontend::LoadOptions;
use slmtvm_targets::Target;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Runs the model with the reference interpreter.
/// With `quantize`, the quantized graph (as `build --quantize` compiles it) runs.
pub fn run_reference(
    model: &Path,
    opts: &LoadOptions,
    src: &InputSource,
    out_dir: &Path,
    quantize: Option<slmtvm_optimizer::quantize::Scheme>,
) -> Result<()> {
    let mut g = slmtvm_frontend::load_onnx(model, opts)?;
    if let Some(s) = quantize {
        g = slmtvm_optimizer::quantize::quantize(&g, s, None)?.graph;
    }
    let inputs = gather_inputs(&g, src)?;
    let outs = slmtvm_ir::interp::run_named(&g, &inputs)?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    write_outputs(&g, &outs, out_dir)
}

/// The C test driver of `runtime-stub/`, compiled with each model that `run --target` builds.
const HARNESS_C: &str = include_str!("../runtime-stub/harness.c");

/// A model compiled and linked with the C harness, with its input files written.
pub struct Harness {
    /// The graph compiled (unbounded symbolic dims fixed to the inputs' dims).
    pub graph: slmtvm_ir::Graph,
    /// The harness executable.
    pub exe: PathBuf,
    /// The folder of its input `.npy` files.
    pub in_dir: PathBuf,
    /// Each input's name and `.npy` file.
    pub input_files: Vec<(String, PathBuf)>,
    /// The manifest (`NAME.json`).
    pub manifest: PathBuf,
}

/// Builds the model for `target` into `build/` (`NAME.o`, `.h`, `.json`), links it with the C
/// harness (host gcc, or Debian's cross gcc) and writes its inputs there as `.npy` files.
/// Unbounded symbolic input dims are fixed to the given inputs' dims; bounded ones stay
/// symbolic (one object for every value up to the bound).
pub fn build_harness(
    model: &Path,
    opts: &LoadOptions,
    src: &InputSource,
    build: &Path,
    target: &Target,
    opt: crate::build::OptFlags,
) -> Result<Harness> {
    target.check_tools()?;
    let bytes = std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
    let mut g = slmtvm_frontend::load_onnx_read(model, &bytes, opts)?;
    let inputs = gather_inputs(&g, src)?;
    // Specialize unbounded symbolic dims to the inputs' dims; bounded ones (--bound) stay
    // symbolic and the harness passes their values from the inputs' shapes.
    for &i in &g.inputs.clone() {
        let name = g.value(i).name.clone();
        if g.ty(i).shape.numel_upper().is_none()
            && let Some(t) = inputs.get(&name)
        {
            g.set_input_shape(&name, &slmtvm_ir::Shape::known(t.shape()))?;
        }
    }
    for &i in &g.inputs {
        let v = g.value(i);
        if let (Some(t), Some(dims)) = (inputs.get(&v.name), v.ty.shape.as_known())
            && (t.shape() != dims.as_slice() || t.dtype() != v.ty.dtype)
        {
            anyhow::bail!(
                "input '{}': the model takes {}{:?}, the given tensor is {}{:?}",
                v.name,
                v.ty.dtype,
                dims,
                t.dtype(),
                t.shape()
            );
        }
    }
    let name = crate::build::model_name(model, None)?;
    let q = crate::build::quantize(&g, opt, None)?;
    let a = crate::build::compile_graph(q.as_ref().map_or(&g, |q| &q.graph), &bytes, target, &name, opt, false)?;
    crate::build::write_artifacts(&a, build)?;
    let harness = build.join("harness.c");
    std::fs::write(&harness, HARNESS_C).with_context(|| format!("writing {}", harness.display()))?;
    let exe = build.join(format!("{name}.run"));
    let header = build.join(format!("{name}.h"));
    let (model_def, upper_def) =
        (format!("-DSLMTVM_MODEL={name}"), format!("-DSLMTVM_MODEL_UPPER={}", name.to_ascii_uppercase()));
    let header_s = header.to_string_lossy().into_owned();
    let mut args = vec!["-O2", "-std=c99", "-D_POSIX_C_SOURCE=200809L", &model_def, &upper_def, "-include", &header_s];
    if opt.profile {
        args.push("-DSLMTVM_PROFILE");
    }
    if opt.threads > 1 {
        args.push("-pthread");
    }
    target.link(&args, &[&harness, &build.join(format!("{name}.o"))], &exe)?;
    let in_dir = build.join("inputs");
    std::fs::create_dir_all(&in_dir).with_context(|| format!("creating {}", in_dir.display()))?;
    let mut input_files = Vec::new();
    for &i in &g.inputs {
        let n = &g.value(i).name;
        if let Some(t) = inputs.get(n) {
            let f = in_dir.join(format!("{}.npy", slmtvm_frontend::npy::file_stem(n)));
            slmtvm_frontend::npy::write_npy(&f, t)?;
            input_files.push((n.clone(), f));
        }
    }
    Ok(Harness { graph: g, exe, in_dir, input_files, manifest: build.join(format!("{name}.json")) })
}

/// Runs harness `h` for `target` (natively or under qemu-user) on its inputs, writing the
/// outputs into `out_dir`, with `extra` arguments first (`-t N` for timed runs); returns its
/// standard output.
pub fn run_harness(h: &Harness, target: &Target, out_dir: &Path, extra: &[&str]) -> Result<String> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut cmd = target.command(&h.exe)?;
    cmd.args(extra).arg(&h.in_dir).arg(out_dir);
    let out = slmtvm_targets::toolchain::run_with_timeout(cmd, std::time::Duration::from_secs(3600))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        anyhow::bail!("the compiled model failed on {}: {}", target.name(), err.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds the model for `target` with the C harness into `out_dir/build/` (see
/// [`build_harness`]), runs it natively or under qemu-user, and writes its outputs as `.npy`
/// files into `out_dir`.
pub fn run_target(
    model: &Path,
    opts: &LoadOptions,
    src: &InputSource,
    out_dir: &Path,
    target: &Target,
    opt: crate::build::OptFlags,
) -> Result<()> {
    let h = build_harness(model, opts, src, &out_dir.join("build"), target, opt)?;
    print!("{}", run_harness(&h, target, out_dir, &[])?);
    Ok(())
}

/// Writes each graph output to `out_dir/<stem>.npy` (stems made unique) and prints a line each.
fn write_outputs(g: &slmtvm_ir::Graph, outs: &[slmtvm_ir::Tensor], out_dir: &Path) -> Result<()> {
    let mut used = BTreeSet::new();
    for (&id, t) in g.outputs.iter().zip(outs) {
        let name = &g.value(id).name;
        let base = slmtvm_frontend::npy::file_stem(name);
        let mut file = base.clone();
        let mut k = 1;
        while !used.insert(file.clone()) {
            file = format!("{base}_{k}");
            k += 1;
        }
        let path = out_dir.join(format!("{file}.npy"));
        slmtvm_frontend::npy::write_npy(&path, t)?;
        println!("{name}: {}{:?} -> {}", t.dtype(), t.shape(), path.display());
    }
    Ok(())
}
