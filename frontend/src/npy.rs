//! NumPy `.npy` files ↔ IR tensors (inputs and outputs of `slmtvm run`, test data).

use crate::{Error, Result};
use half::f16;
use ndarray::{ArrayD, IxDyn};
use npyz::{AutoSerialize, Deserialize, NpyFile, Order, TypeChar, WriterBuilder};
use slmtvm_ir::{DType, Shape, Tensor, map_tensor};
use std::io::{BufReader, BufWriter, Read};
use std::path::Path;

/// The `.npy` file stem for a tensor named `name`: characters outside `[A-Za-z0-9._-]`
/// become `_` (an empty name becomes `_`), so no tensor name can point outside a folder.
pub fn file_stem(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    if s.is_empty() { "_".into() } else { s }
}

/// Reads a `.npy` file (C or Fortran order, either endianness) of an IR dtype.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let f = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    read_npy_from(BufReader::new(f), &path.display().to_string())
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), msg: e.to_string() }
}

/// Reads `.npy` data from a reader; `what` names it in errors.
pub fn read_npy_from(r: impl Read, what: &str) -> Result<Tensor> {
    let bad = |msg: String| Error::Tensor { name: what.into(), msg };
    let npy = NpyFile::new(r).map_err(|e| bad(format!("not a valid .npy file: {e}")))?;
    let ts = match npy.dtype() {
        npyz::DType::Plain(ts) => ts,
        other => return Err(bad(format!("structured dtype {} is not supported", other.descr()))),
    };
    let dtype = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => DType::F32,
        (TypeChar::Float, 2) => DType::F16,
        (TypeChar::Int, 1) => DType::I8,
        (TypeChar::Uint, 1) => DType::U8,
        (TypeChar::Int, 4) => DType::I32,
        (TypeChar::Int, 8) => DType::I64,
        (TypeChar::Bool, 1) => DType::Bool,
        _ => {
            return Err(Error::Unsupported {
                context: format!("tensor '{what}'"),
                msg: format!("numpy dtype {ts} (slmtvm supports f32, f16, i8, u8, i32, i64, bool)"),
            });
        }
    };
    let dims: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("dimension {d} is too large"))))
        .collect::<Result<_>>()?;
    Shape::known(&dims).check_size(dtype.size()).map_err(bad)?;
    let fortran = npy.order() == Order::Fortran;
    fn arr<T: Deserialize + slmtvm_ir::Element>(
        npy: NpyFile<impl Read>,
        dims: &[usize],
        fortran: bool,
    ) -> std::result::Result<Tensor, String> {
        let v: Vec<T> = npy.into_vec().map_err(|e| format!("cannot read data: {e}"))?;
        let a = if fortran {
            let rev: Vec<usize> = dims.iter().rev().copied().collect();
            ArrayD::from_shape_vec(IxDyn(&rev), v)
                .map_err(|e| e.to_string())?
                .reversed_axes()
                .as_standard_layout()
                .into_owned()
        } else {
            ArrayD::from_shape_vec(IxDyn(dims), v).map_err(|e| e.to_string())?
        };
        Ok(T::wrap(a))
    }
    match dtype {
        DType::F32 => arr::<f32>(npy, &dims, fortran),
        DType::F16 => arr::<f16>(npy, &dims, fortran),
        DType::I8 => arr::<i8>(npy, &dims, fortran),
        DType::U8 => arr::<u8>(npy, &dims, fortran),
        DType::I32 => arr::<i32>(npy, &dims, fortran),
        DType::I64 => arr::<i64>(npy, &dims, fortran),
        DType::Bool => arr::<bool>(npy, &dims, fortran),
    }
    .map_err(bad)
}

/// Writes a tensor as a C-order little-endian `.npy` file.
pub fn write_npy(path: &Path, t: &Tensor) -> Result<()> {
    let f = std::fs::File::create(path).map_err(|e| io_err(path, e))?;
    let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
    fn put<T: AutoSerialize + Copy>(w: impl std::io::Write, shape: &[u64], a: &ArrayD<T>) -> std::io::Result<()> {
        let mut wr = npyz::WriteOptions::new().default_dtype().shape(shape).writer(w).begin_nd()?;
        wr.extend(a.iter().copied())?;
        wr.finish()
    }
    map_tensor!(t, a => put(BufWriter::new(f), &shape, a)).map_err(|e| io_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stems_are_sanitized() {
        assert_eq!(file_stem("/model/out:0"), "_model_out_0");
        assert_eq!(file_stem("logits"), "logits");
        assert_eq!(file_stem("../x"), ".._x");
        assert_eq!(file_stem(""), "_");
    }

    #[test]
    fn npy_round_trips_every_dtype() {
        let dir = std::env::temp_dir().join(format!("slmtvm-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for dt in DType::ALL {
            let t = Tensor::from_f64(
                dt,
                ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![0.0, 1.0, -2.0, 3.5, 4.0, 1.0]).unwrap(),
            );
            let p = dir.join(format!("{dt}.npy"));
            write_npy(&p, &t).unwrap();
            assert_eq!(read_npy(&p).unwrap(), t, "{dt}");
        }
        std::fs::write(dir.join("bad.npy"), b"\x93NUMPY garbage").unwrap();
        assert!(read_npy(&dir.join("bad.npy")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
