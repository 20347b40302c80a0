//! `build --quantize`'s calibration (`--calibration DIR`) and accuracy report (`--report`):
//! both run the reference interpreter, the oracle the compiled code matches.

use crate::inputs::{InputSource, gather_inputs};
use anyhow::{Context, Result, bail};
use slmtvm_ir::{DType, Graph, Tensor};
use slmtvm_optimizer::quantize::{Calibration, Quantized, Scheme, calibration_values};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The input sets of a calibration folder: its `NAME.npy` files (one set), or else one set per
/// subfolder (in name order), each holding `NAME.npy` per graph input.
fn calibration_sets(g: &Graph, dir: &Path) -> Result<Vec<BTreeMap<String, Tensor>>> {
    let read = |d: &Path| gather_inputs(g, &InputSource { flags: &[], dir: Some(d), seed: None });
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading the calibration folder {}", dir.display()))?;
    let mut subdirs: Vec<PathBuf> = Vec::new();
    let mut has_npy = false;
    for e in entries {
        let p = e.with_context(|| format!("reading {}", dir.display()))?.path();
        if p.is_dir() {
            subdirs.push(p);
        } else if p.extension().is_some_and(|x| x == "npy") {
            has_npy = true;
        }
    }
    if has_npy {
        return Ok(vec![read(dir)?]);
    }
    subdirs.sort();
    if subdirs.is_empty() {
        bail!("calibration folder {} holds neither NAME.npy files nor folders of them", dir.display());
    }
    subdirs.iter().map(|d| read(d).with_context(|| format!("calibration set {}", d.display()))).collect()
}

/// Static activation ranges for `scheme` from the input sets in `dir`: the largest magnitude
/// each quantized product's activation takes over all sets.
pub fn calibrate(g: &Graph, scheme: Scheme, dir: &Path) -> Result<Calibration> {
    if scheme != Scheme::Int8 {
        bail!("--calibration sets static activation ranges: it needs --quantize int8 (int4 keeps activations f32)");
    }
    let watch = calibration_values(g, scheme);
    let mut cal = Calibration::new();
    for set in calibration_sets(g, dir)? {
        slmtvm_ir::interp::run_observed(g, &slmtvm_ir::interp::inputs_in_order(g, &set)?, &mut |v, t| {
            if watch.binary_search(&v).is_ok() && t.dtype() == DType::F32 {
                let m = t.to_f32().iter().fold(0f32, |m, x| m.max(x.abs()));
                let e = cal.entry(v).or_insert(0.0);
                *e = e.max(m);
            }
        })?;
    }
    Ok(cal)
}

/// Bytes of the constants of `g`.
fn const_bytes(g: &Graph) -> usize {
    g.consts.values().map(Tensor::byte_len).sum()
}

/// The accuracy report of `build --quantize … --report` (`label` says how `q` was made): the
/// quantized graph `q` against `g` on
/// the inputs `src` gives (the reference interpreter on both), per output the largest absolute
/// error, the cosine similarity and — for outputs named `*logits*` — the share of positions
/// whose top-1 token agrees; and the constants' bytes before and after.
pub fn report(g: &Graph, q: &Quantized, label: &str, src: &InputSource) -> Result<String> {
    let inputs = gather_inputs(g, src)?;
    let want = slmtvm_ir::interp::run_named(g, &inputs).context("running the f32 model")?;
    let got = slmtvm_ir::interp::run_named(&q.graph, &inputs).context("running the quantized model")?;
    let mut s = String::new();
    let (before, after) = (const_bytes(g), const_bytes(&q.graph));
    let _ = writeln!(s, "quantization report ({} on the reference interpreter)", label);
    let _ = writeln!(
        s,
        "  weights: {} quantized, {} left in f32; constants {before} -> {after} bytes ({:.3}x)",
        q.weights.len(),
        q.skipped.len(),
        after as f64 / before.max(1) as f64
    );
    for (node, why) in &q.skipped {
        let _ = writeln!(s, "    {node}: f32 ({why})");
    }
    let _ = writeln!(s, "  {:<28} {:>12} {:>12} {:>10} {:>8}", "output", "max |err|", "max |f32|", "cosine", "top-1");
    for ((&o, w), g2) in g.outputs.iter().zip(&want).zip(&got) {
        let name = &g.value(o).name;
        let (w, q2) = (w.to_f64(), g2.to_f64());
        let err = w.iter().zip(q2.iter()).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        let big = w.iter().fold(0f64, |m, a| m.max(a.abs()));
        let top1 = if name.to_ascii_lowercase().contains("logits") && w.ndim() >= 1 {
            format!(
                "{:.1}%",
                100.0 * top1_agreement(w.as_slice().unwrap_or(&[]), q2.as_slice().unwrap_or(&[]), w.shape())
            )
        } else {
            "-".into()
        };
        let _ = writeln!(s, "  {:<28} {:>12.4e} {:>12.4e} {:>10.6} {:>8}", name, err, big, cosine(&w, &q2), top1);
    }
    Ok(s)
}

/// Cosine similarity of two tensors (1 when both are zero).
fn cosine(a: &ndarray::ArrayD<f64>, b: &ndarray::ArrayD<f64>) -> f64 {
    let dot: f64 = a.iter().zip(b.iter()).map(|(x, y)| x * y).sum();
    let (na, nb) = (a.iter().map(|x| x * x).sum::<f64>().sqrt(), b.iter().map(|x| x * x).sum::<f64>().sqrt());
    if na == 0.0 && nb == 0.0 { 1.0 } else { dot / (na * nb) }
}

/// The share of rows (positions; the last axis holds the vocabulary) whose largest entry is
/// at the same index in `a` and `b`.
fn top1_agreement(a: &[f64], b: &[f64], shape: &[usize]) -> f64 {
    let v = shape.last().copied().unwrap_or(1).max(1);
    let argmax = |r: &[f64]| r.iter().enumerate().fold(0, |best, (i, x)| if *x > r[best] { i } else { best });
    let rows: Vec<bool> = a.chunks(v).zip(b.chunks(v)).map(|(x, y)| argmax(x) == argmax(y)).collect();
    rows.iter().filter(|&&same| same).count() as f64 / rows.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_and_cosine() {
        let a = [0.1, 0.9, 0.0, 0.5, 0.2, 0.3];
        let b = [0.2, 0.8, 0.0, 0.1, 0.6, 0.3];
        assert_eq!(top1_agreement(&a, &b, &[2, 3]), 0.5);
        let x = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[2]), vec![1.0, 0.0]).unwrap();
        let y = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[2]), vec![1.0, 1.0]).unwrap();
        assert!((cosine(&x, &y) - 0.5f64.sqrt()).abs() < 1e-12);
    }
}
