//! `slmtvm run`: execute a model and write its outputs as `.npy` files.

use crate::inputs::{InputSource, gather_inputs};
use anyhow::{Context, Result};
use slmtvm_frontend::LoadOptions;
use std::collections::BTreeSet;
use std::path::Path;

/// Runs the model with the reference interpreter.
pub fn run_reference(model: &Path, opts: &LoadOptions, src: &InputSource, out_dir: &Path) -> Result<()> {
    let g = slmtvm_frontend::load_onnx(model, opts)?;
    let inputs = gather_inputs(&g, src)?;
    let outs = slmtvm_ir::interp::run_named(&g, &inputs)?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut used = BTreeSet::new();
    for (&id, t) in g.outputs.iter().zip(&outs) {
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
