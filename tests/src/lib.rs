//! Shared utilities of the slmtvm integration tests: where the repository is, and the
//! tolerance-aware comparison every test uses to judge outputs. (`.npy` files are read and
//! written by `slmtvm_frontend::npy`.)
#![warn(missing_docs)]

pub mod cross;
pub mod node_cases;

use slmtvm_ir::Tensor;
use std::path::{Path, PathBuf};

/// The repository's root folder (the workspace root, parent of this crate's folder).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The Cargo target folder: `$CARGO_TARGET_DIR` when set, else `<repo>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() { d } else { repo_root().join(d) }
        }
        _ => repo_root().join("target"),
    }
}

/// Checks that `got` matches `expected`: same dtype, same shape, and every element close.
///
/// Floats (f32, f16; compared in f64) match when `|got - exp| <= atol + rtol * |exp|`; a NaN
/// matches only a NaN, and an infinity only the same infinity. Integers and bools must be equal.
/// On a mismatch the error names the first mismatching index with both values, the number of
/// mismatching elements and the largest absolute error over finite elements.
pub fn compare(expected: &Tensor, got: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    if expected.dtype() != got.dtype() {
        return Err(format!("dtype: expected {}, got {}", expected.dtype(), got.dtype()));
    }
    if expected.shape() != got.shape() {
        return Err(format!("shape: expected {:?}, got {:?}", expected.shape(), got.shape()));
    }
    let shape = expected.shape();
    if !expected.dtype().is_float() {
        // Integers and bools, exactly (as i64: every IR integer type fits).
        let (e, g) = (expected.to_i64_vec()?, got.to_i64_vec()?);
        let mut first = None;
        let mut bad = 0usize;
        let mut max_abs = 0u128;
        for (i, (&x, &y)) in e.iter().zip(&g).enumerate() {
            if x != y {
                bad += 1;
                max_abs = max_abs.max(x.abs_diff(y) as u128);
                first.get_or_insert((i, x, y));
            }
        }
        return match first {
            None => Ok(()),
            Some((i, x, y)) => Err(format!(
                "{bad} of {} elements differ; first at {:?}: expected {x}, got {y} (max abs error {max_abs})",
                e.len(),
                unravel(i, shape)
            )),
        };
    }
    let (e, g) = (expected.to_f64(), got.to_f64());
    let mut first = None;
    let mut bad = 0usize;
    let mut max_abs = 0f64;
    for (i, (&x, &y)) in e.iter().zip(g.iter()).enumerate() {
        let ok = if x.is_nan() || y.is_nan() {
            x.is_nan() && y.is_nan()
        } else if x.is_infinite() || y.is_infinite() {
            x == y
        } else {
            let d = (y - x).abs();
            max_abs = max_abs.max(d);
            d <= atol + rtol * x.abs()
        };
        if !ok {
            bad += 1;
            first.get_or_insert((i, x, y));
        }
    }
    match first {
        None => Ok(()),
        Some((i, x, y)) => Err(format!(
            "{bad} of {} elements differ; first at {:?}: expected {x:?}, got {y:?} (max abs error {max_abs:.3e} \
             over finite elements; rtol {rtol:e}, atol {atol:e})",
            e.len(),
            unravel(i, shape)
        )),
    }
}

/// Checks `got` against a reference output `want` (ONNX Runtime's, the interpreter's) to a
/// tolerance relative to the reference's size: [`compare`] with `atol = rel · max |want|` (over
/// its finite elements), so dtype and shape must agree, NaN and infinities must sit where the
/// reference has them (an all-NaN output fails), and every finite element must be within
/// `rel · max |want|`. The one comparison for reference outputs in every test.
pub fn close_to(want: &Tensor, got: &Tensor, rel: f64) -> Result<(), String> {
    let scale = max_abs(want);
    compare(want, got, 0.0, rel * scale).map_err(|m| format!("{m}; max |reference| {scale:.3e}"))
}

/// The largest |element| of `t` over its finite elements (0 for none).
pub fn max_abs(t: &Tensor) -> f64 {
    t.to_f64().iter().filter(|v| v.is_finite()).fold(0.0, |a: f64, v| a.max(v.abs()))
}

/// The multi-index of row-major flat index `i` in `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[k] = i % d;
            i /= d;
        }
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape, v.to_vec()).unwrap()
    }

    #[test]
    fn compare_floats_with_tolerance_nan_and_inf() {
        let a = f32s(&[2, 2], &[1.0, f32::NAN, f32::INFINITY, -2.0]);
        assert!(compare(&a, &a, 0.0, 0.0).is_ok());
        let b = f32s(&[2, 2], &[1.00005, f32::NAN, f32::INFINITY, -2.0]);
        assert!(compare(&a, &b, 1e-4, 1e-4).is_ok());
        let c = f32s(&[2, 2], &[1.0, f32::NAN, f32::NEG_INFINITY, -2.0]);
        let msg = compare(&a, &c, 1e-4, 1e-4).unwrap_err();
        assert!(msg.contains("[1, 0]"), "{msg}");
        let d = f32s(&[2, 2], &[1.0, 0.0, f32::INFINITY, -2.5]);
        let msg = compare(&a, &d, 1e-4, 1e-4).unwrap_err();
        assert!(msg.contains("2 of 4") && msg.contains("[0, 1]") && msg.contains("5.000e-1"), "{msg}");
    }

    #[test]
    fn compare_checks_dtype_shape_and_ints_exactly() {
        let a = Tensor::from_vec(&[3], vec![1i64, 2, i64::MAX]).unwrap();
        let b = Tensor::from_vec(&[3], vec![1i64, 2, i64::MAX - 1]).unwrap();
        assert!(compare(&a, &a, 0.0, 0.0).is_ok());
        assert!(compare(&a, &b, 1.0, 1.0).unwrap_err().contains("[2]"));
        let c = Tensor::from_vec(&[3], vec![1i32, 2, 3]).unwrap();
        assert!(compare(&a, &c, 0.0, 0.0).unwrap_err().starts_with("dtype"));
        let d = Tensor::from_vec(&[1, 3], vec![1i64, 2, i64::MAX]).unwrap();
        assert!(compare(&a, &d, 0.0, 0.0).unwrap_err().starts_with("shape"));
        let t = Tensor::from_vec(&[2], vec![true, false]).unwrap();
        let f = Tensor::from_vec(&[2], vec![true, true]).unwrap();
        assert!(compare(&t, &f, 1.0, 1.0).is_err());
    }

    #[test]
    fn repo_root_holds_the_workspace() {
        assert!(repo_root().join("Cargo.toml").is_file());
        assert!(repo_root().join("tests").is_dir());
    }
}

/// A deterministic pseudo-random generator for test data (a 64-bit LCG; the same sequence on
/// every machine).
#[derive(Clone, Debug)]
pub struct Lcg(pub u64);

impl Lcg {
    /// The next 53 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 11
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.bits() % n
    }

    /// Uniform in [-1, 1), full f64 precision.
    pub fn unit(&mut self) -> f64 {
        self.bits() as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    /// Uniform in [-a, a), rounded to f32.
    pub fn uniform(&mut self, a: f32) -> f32 {
        (self.unit() * f64::from(a)) as f32
    }

    /// An f32 tensor of `dims` with elements uniform in [-a, a).
    pub fn tensor(&mut self, dims: &[usize], a: f32) -> Tensor {
        let n: usize = dims.iter().product();
        Tensor::from_vec(dims, (0..n).map(|_| self.uniform(a)).collect::<Vec<f32>>())
            .expect("the element count is the product of the dims")
    }
}

/// The path of the generated model `.cache/NAME/model.onnx` (see [`cached_model`]); panics
/// with the command to run when it is missing.
pub fn cached_model_path(name: &str) -> PathBuf {
    let m = repo_root().join(".cache").join(name).join("model.onnx");
    assert!(
        m.is_file(),
        "{} is missing: generate it with `python3 scripts/make_{name}.py .cache/{name}` (scripts/test.sh does)",
        m.display()
    );
    m
}

/// A generated model under `.cache/NAME` (`model.onnx` and `inputs/*.npy`, written by
/// `python3 scripts/make_NAME.py .cache/NAME`, as `scripts/test.sh` does): its graph and its
/// recorded inputs in graph order. Panics with the command to run when it is missing.
pub fn cached_model(name: &str) -> (slmtvm_ir::Graph, Vec<Tensor>) {
    let dir = cached_model_path(name).parent().map(Path::to_path_buf).unwrap_or_default();
    let g = slmtvm_frontend::load_onnx(&dir.join("model.onnx"), &slmtvm_frontend::LoadOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let inputs = g
        .inputs
        .iter()
        .map(|&i| {
            let f = dir.join("inputs").join(format!("{}.npy", g.value(i).name));
            slmtvm_frontend::npy::read_npy(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        })
        .collect();
    (g, inputs)
}
