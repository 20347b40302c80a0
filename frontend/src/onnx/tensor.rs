//! ONNX tensors (`TensorProto`) to IR tensors, including external data resolved strictly
//! inside the model's folder.

use super::proto::{TensorProto, tensor_proto::DataLocation, tensor_proto::DataType};
use crate::{Error, Result};
use half::f16;
use slmtvm_ir::{DType, Shape, Tensor};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

/// Maps an ONNX element type code to an IR dtype; `what` names the tensor for the error.
pub fn dtype_from_onnx(code: i32, what: &str) -> Result<DType> {
    let dt = DataType::try_from(code)
        .map_err(|_| Error::Tensor { name: what.into(), msg: format!("unknown element type code {code}") })?;
    Ok(match dt {
        DataType::Float => DType::F32,
        DataType::Float16 => DType::F16,
        DataType::Int8 => DType::I8,
        DataType::Uint8 => DType::U8,
        DataType::Int32 => DType::I32,
        DataType::Int64 => DType::I64,
        DataType::Bool => DType::Bool,
        DataType::Undefined => {
            return Err(Error::Tensor { name: what.into(), msg: "element type is undefined".into() });
        }
        other => {
            return Err(Error::Unsupported {
                context: format!("tensor '{what}'"),
                msg: format!("element type {} (slmtvm supports f32, f16, i8, u8, i32, i64, bool)", other.as_str_name()),
            });
        }
    })
}

/// Checks dims from a model: non-negative, no overflow, within the IR's size limit.
pub fn checked_dims(dims: &[i64], dtype: DType, name: &str) -> Result<Vec<usize>> {
    let bad = |msg: String| Error::Tensor { name: name.into(), msg };
    let d: Vec<usize> = dims
        .iter()
        .map(|&x| usize::try_from(x).map_err(|_| bad(format!("has a negative dimension {x} in {dims:?}"))))
        .collect::<Result<_>>()?;
    Shape::known(&d).check_size(dtype.size()).map_err(bad)?;
    Ok(d)
}

/// Converts a `TensorProto` to a tensor. `base_dir` is the model's folder, for external data;
/// `None` refuses external data.
pub fn tensor_from_proto(t: &TensorProto, base_dir: Option<&Path>) -> Result<Tensor> {
    let name = t.name();
    let dtype = dtype_from_onnx(t.data_type(), name)?;
    if t.segment.is_some() {
        return Err(Error::Unsupported { context: format!("tensor '{name}'"), msg: "segmented tensors".into() });
    }
    let dims = checked_dims(&t.dims, dtype, name)?;
    let numel: usize = dims.iter().product();
    let bad = |msg: String| Error::Tensor { name: name.into(), msg };
    let data = |source| Error::TensorData { name: name.into(), source };
    if t.data_location() == DataLocation::External {
        let bytes = read_external(t, base_dir, numel * dtype.size())?;
        return Tensor::from_le_bytes(dtype, &dims, &bytes).map_err(data);
    }
    if let Some(raw) = &t.raw_data {
        return Tensor::from_le_bytes(dtype, &dims, raw).map_err(data);
    }
    let count = |n: usize, field: &str| {
        if n == numel {
            Ok(())
        } else {
            Err(bad(format!("has {n} values in {field} but its dims {dims:?} need {numel}")))
        }
    };
    let r = match dtype {
        DType::F32 => {
            count(t.float_data.len(), "float_data")?;
            Tensor::from_vec(&dims, t.float_data.clone())
        }
        DType::I64 => {
            count(t.int64_data.len(), "int64_data")?;
            Tensor::from_vec(&dims, t.int64_data.clone())
        }
        _ => {
            count(t.int32_data.len(), "int32_data")?;
            let v = &t.int32_data;
            match dtype {
                DType::I32 => Tensor::from_vec(&dims, v.clone()),
                DType::I8 => Tensor::from_vec(&dims, v.iter().map(|&x| x as i8).collect()),
                DType::U8 => Tensor::from_vec(&dims, v.iter().map(|&x| x as u8).collect()),
                DType::Bool => Tensor::from_vec(&dims, v.iter().map(|&x| x != 0).collect()),
                // F16: the bit patterns, one per int32 (F32 and I64 are handled above).
                _ => Tensor::from_vec(&dims, v.iter().map(|&x| f16::from_bits(x as u16)).collect()),
            }
        }
    };
    r.map_err(data)
}

/// Reads `len` bytes of external data for `t`, only from a file inside `base_dir`.
fn read_external(t: &TensorProto, base_dir: Option<&Path>, len: usize) -> Result<Vec<u8>> {
    let name = t.name();
    let err = |msg: String| Error::ExternalData { name: name.into(), msg };
    let base = base_dir.ok_or_else(|| err("a model read from memory cannot reference external data".into()))?;
    let mut location = None;
    let mut offset: u64 = 0;
    let mut length: Option<u64> = None;
    for kv in &t.external_data {
        let v = kv.value();
        match kv.key() {
            "location" => location = Some(v.to_string()),
            "offset" => offset = v.parse().map_err(|_| err(format!("offset '{v}' is not a number")))?,
            "length" => length = Some(v.parse().map_err(|_| err(format!("length '{v}' is not a number")))?),
            _ => {}
        }
    }
    let loc = location.ok_or_else(|| err("no 'location' given".into()))?;
    let rel = Path::new(&loc);
    if loc.is_empty() || rel.is_absolute() || loc.starts_with('/') || loc.starts_with('\\') {
        return Err(err(format!("location '{loc}' must be a relative path inside the model's folder")));
    }
    if rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(err(format!(
            "location '{loc}' may not contain '..' or a root; it must stay inside the model's folder"
        )));
    }
    let base_canon = base.canonicalize().map_err(|e| err(format!("model folder {}: {e}", base.display())))?;
    let path = base_canon.join(rel);
    let canon = path.canonicalize().map_err(|e| err(format!("cannot open '{loc}': {e}")))?;
    if !canon.starts_with(&base_canon) {
        return Err(err(format!("location '{loc}' resolves outside the model's folder")));
    }
    if let Some(l) = length
        && l != len as u64
    {
        return Err(err(format!("length {l} disagrees with the tensor's dims, which need {len} bytes")));
    }
    let mut f = std::fs::File::open(&canon).map_err(|e| err(format!("cannot open '{loc}': {e}")))?;
    let size = f.metadata().map_err(|e| err(format!("'{loc}': {e}")))?.len();
    let end = offset.checked_add(len as u64).ok_or_else(|| err("offset overflows".into()))?;
    if end > size {
        return Err(err(format!("needs bytes {offset}..{end} of '{loc}', which has only {size}")));
    }
    f.seek(SeekFrom::Start(offset)).map_err(|e| err(format!("'{loc}': {e}")))?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).map_err(|e| err(format!("'{loc}': {e}")))?;
    Ok(buf)
}
