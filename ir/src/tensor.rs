//! Concrete tensors: constants in graphs, and values in the reference interpreter.

use crate::error::DataShapeError;
use crate::{DType, Shape};
use half::f16;
use ndarray::{ArrayD, IxDyn};

/// A tensor with its data: one variant per [`DType`], each an n-dimensional array in
/// row-major (C) order.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    /// f32 data.
    F32(ArrayD<f32>),
    /// f16 data.
    F16(ArrayD<f16>),
    /// i8 data.
    I8(ArrayD<i8>),
    /// u8 data.
    U8(ArrayD<u8>),
    /// i32 data.
    I32(ArrayD<i32>),
    /// i64 data.
    I64(ArrayD<i64>),
    /// bool data.
    Bool(ArrayD<bool>),
}

/// Applies `$body` to the array inside any [`Tensor`] variant, binding it to `$a`.
#[macro_export]
macro_rules! map_tensor {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::Tensor::F32($a) => $body,
            $crate::Tensor::F16($a) => $body,
            $crate::Tensor::I8($a) => $body,
            $crate::Tensor::U8($a) => $body,
            $crate::Tensor::I32($a) => $body,
            $crate::Tensor::I64($a) => $body,
            $crate::Tensor::Bool($a) => $body,
        }
    };
}

/// Like [`map_tensor!`], but rewraps the resulting array in the same variant.
#[macro_export]
macro_rules! map_tensor_same {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::Tensor::F32($a) => $crate::Tensor::F32($body),
            $crate::Tensor::F16($a) => $crate::Tensor::F16($body),
            $crate::Tensor::I8($a) => $crate::Tensor::I8($body),
            $crate::Tensor::U8($a) => $crate::Tensor::U8($body),
            $crate::Tensor::I32($a) => $crate::Tensor::I32($body),
            $crate::Tensor::I64($a) => $crate::Tensor::I64($body),
            $crate::Tensor::Bool($a) => $crate::Tensor::Bool($body),
        }
    };
}

/// Element types storable in a [`Tensor`].
pub trait Element: Clone + Copy + Default + PartialEq + std::fmt::Debug + 'static {
    /// The dtype of this element type.
    const DTYPE: DType;
    /// Wraps an array of this element type.
    fn wrap(a: ArrayD<Self>) -> Tensor;
    /// Borrows the array if `t` holds this element type.
    fn unwrap_ref(t: &Tensor) -> Option<&ArrayD<Self>>;
}

macro_rules! element {
    ($t:ty, $v:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$v;
            fn wrap(a: ArrayD<Self>) -> Tensor {
                Tensor::$v(a)
            }
            fn unwrap_ref(t: &Tensor) -> Option<&ArrayD<Self>> {
                match t {
                    Tensor::$v(a) => Some(a),
                    _ => None,
                }
            }
        }
    };
}
element!(f32, F32);
element!(f16, F16);
element!(i8, I8);
element!(u8, U8);
element!(i32, I32);
element!(i64, I64);
element!(bool, Bool);

impl Tensor {
    /// Builds a tensor from a shape and row-major data; errors when the lengths disagree.
    pub fn from_vec<T: Element>(shape: &[usize], data: Vec<T>) -> Result<Tensor, DataShapeError> {
        let need = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let need = need.ok_or_else(|| DataShapeError::Overflow(shape.to_vec()))?;
        if need != data.len() {
            return Err(DataShapeError::Elements { have: data.len(), shape: shape.to_vec(), need });
        }
        // ndarray refuses only element counts over isize::MAX, which no Vec holds.
        ArrayD::from_shape_vec(IxDyn(shape), data).map(T::wrap).map_err(|_| DataShapeError::Overflow(shape.to_vec()))
    }

    /// A zero-filled tensor.
    pub fn zeros(dtype: DType, shape: &[usize]) -> Tensor {
        let s = IxDyn(shape);
        match dtype {
            DType::F32 => Tensor::F32(ArrayD::zeros(s)),
            DType::F16 => Tensor::F16(ArrayD::from_elem(s, f16::ZERO)),
            DType::I8 => Tensor::I8(ArrayD::zeros(s)),
            DType::U8 => Tensor::U8(ArrayD::zeros(s)),
            DType::I32 => Tensor::I32(ArrayD::zeros(s)),
            DType::I64 => Tensor::I64(ArrayD::zeros(s)),
            DType::Bool => Tensor::Bool(ArrayD::from_elem(s, false)),
        }
    }

    /// A scalar (rank-0) tensor.
    pub fn scalar<T: Element>(v: T) -> Tensor {
        T::wrap(ArrayD::from_elem(IxDyn(&[]), v))
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F16(_) => DType::F16,
            Tensor::I8(_) => DType::I8,
            Tensor::U8(_) => DType::U8,
            Tensor::I32(_) => DType::I32,
            Tensor::I64(_) => DType::I64,
            Tensor::Bool(_) => DType::Bool,
        }
    }

    /// The dims.
    pub fn shape(&self) -> &[usize] {
        map_tensor!(self, a => a.shape())
    }

    /// The static shape of this tensor.
    pub fn static_shape(&self) -> Shape {
        Shape::known(self.shape())
    }

    /// The element count.
    pub fn len(&self) -> usize {
        map_tensor!(self, a => a.len())
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of the data in bytes.
    pub fn byte_len(&self) -> usize {
        self.len() * self.dtype().size()
    }

    /// Borrows the data as an array of `T`, if the dtype matches.
    pub fn view<T: Element>(&self) -> Option<&ArrayD<T>> {
        T::unwrap_ref(self)
    }

    /// Converts every element to f32 (ints and bools by value).
    pub fn to_f32(&self) -> ArrayD<f32> {
        match self {
            Tensor::F32(a) => a.clone(),
            Tensor::F16(a) => a.mapv(f32::from),
            Tensor::I8(a) => a.mapv(f32::from),
            Tensor::U8(a) => a.mapv(f32::from),
            Tensor::I32(a) => a.mapv(|v| v as f32),
            Tensor::I64(a) => a.mapv(|v| v as f32),
            Tensor::Bool(a) => a.mapv(|v| if v { 1.0 } else { 0.0 }),
        }
    }

    /// Converts every element to f64 (ints and bools by value).
    pub fn to_f64(&self) -> ArrayD<f64> {
        match self {
            Tensor::F32(a) => a.mapv(f64::from),
            Tensor::F16(a) => a.mapv(f64::from),
            Tensor::I8(a) => a.mapv(f64::from),
            Tensor::U8(a) => a.mapv(f64::from),
            Tensor::I32(a) => a.mapv(f64::from),
            Tensor::I64(a) => a.mapv(|v| v as f64),
            Tensor::Bool(a) => a.mapv(|v| if v { 1.0 } else { 0.0 }),
        }
    }

    /// The elements as i64, for integer and bool tensors (shape arguments, indices).
    pub fn to_i64_vec(&self) -> Result<Vec<i64>, String> {
        Ok(match self {
            Tensor::I8(a) => a.iter().map(|&v| v.into()).collect(),
            Tensor::U8(a) => a.iter().map(|&v| v.into()).collect(),
            Tensor::I32(a) => a.iter().map(|&v| v.into()).collect(),
            Tensor::I64(a) => a.iter().copied().collect(),
            Tensor::Bool(a) => a.iter().map(|&v| v as i64).collect(),
            other => return Err(format!("expected an integer tensor, got {}", other.dtype())),
        })
    }

    /// The data as little-endian bytes, row-major.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.byte_len());
        match self {
            Tensor::F32(a) => a.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            Tensor::F16(a) => a.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            Tensor::I8(a) => a.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            Tensor::U8(a) => out.extend(a.iter().copied()),
            Tensor::I32(a) => a.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            Tensor::I64(a) => a.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            Tensor::Bool(a) => out.extend(a.iter().map(|&v| v as u8)),
        }
        out
    }

    /// Builds a tensor from little-endian bytes; errors when the byte count disagrees with the
    /// shape.
    pub fn from_le_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor, DataShapeError> {
        let need = shape.iter().try_fold(dtype.size(), |a, &d| a.checked_mul(d));
        let need = need.ok_or_else(|| DataShapeError::Overflow(shape.to_vec()))?;
        if bytes.len() != need {
            return Err(DataShapeError::Bytes { have: bytes.len(), shape: shape.to_vec(), dtype, need });
        }
        macro_rules! chunks {
            ($t:ty, $w:expr) => {
                bytes
                    .chunks_exact($w)
                    .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect::<Vec<$t>>()
            };
        }
        match dtype {
            DType::F32 => Tensor::from_vec(shape, chunks!(f32, 4)),
            DType::F16 => Tensor::from_vec(shape, chunks!(f16, 2)),
            DType::I8 => Tensor::from_vec(shape, chunks!(i8, 1)),
            DType::U8 => Tensor::from_vec(shape, bytes.to_vec()),
            DType::I32 => Tensor::from_vec(shape, chunks!(i32, 4)),
            DType::I64 => Tensor::from_vec(shape, chunks!(i64, 8)),
            DType::Bool => Tensor::from_vec(shape, bytes.iter().map(|&b| b != 0).collect()),
        }
    }

    /// Builds a tensor of `dtype` from f64 values (rounded as `as` casts do; for floats,
    /// to nearest).
    pub fn from_f64(dtype: DType, a: ArrayD<f64>) -> Tensor {
        match dtype {
            DType::F32 => Tensor::F32(a.mapv(|v| v as f32)),
            DType::F16 => Tensor::F16(a.mapv(f16::from_f64)),
            DType::I8 => Tensor::I8(a.mapv(|v| v as i8)),
            DType::U8 => Tensor::U8(a.mapv(|v| v as u8)),
            DType::I32 => Tensor::I32(a.mapv(|v| v as i32)),
            DType::I64 => Tensor::I64(a.mapv(|v| v as i64)),
            DType::Bool => Tensor::Bool(a.mapv(|v| v != 0.0)),
        }
    }

    /// Builds a tensor of a float `dtype` (f32 or f16) from f32 values.
    pub fn from_f32(dtype: DType, a: ArrayD<f32>) -> Tensor {
        match dtype {
            DType::F16 => Tensor::F16(a.mapv(f16::from_f32)),
            DType::F32 => Tensor::F32(a),
            other => Tensor::from_f64(other, a.mapv(f64::from)),
        }
    }

    /// Returns the same data with a new shape of equal element count.
    pub fn reshaped(&self, shape: &[usize]) -> Result<Tensor, String> {
        let n: usize = shape.iter().product();
        if n != self.len() {
            return Err(format!("cannot reshape {:?} to {:?}", self.shape(), shape));
        }
        Ok(map_tensor_same!(self, a => {
            let v: Vec<_> = a.iter().cloned().collect();
            ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| e.to_string())?
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_every_dtype() {
        for dt in DType::ALL {
            let t = Tensor::from_f64(dt, ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![0.0, 1.0, 2.0, 3.0]).unwrap());
            let b = t.to_le_bytes();
            assert_eq!(b.len(), 4 * dt.size());
            assert_eq!(Tensor::from_le_bytes(dt, &[2, 2], &b).unwrap(), t);
        }
        assert_eq!(
            Tensor::from_le_bytes(DType::F32, &[3], &[0; 8]),
            Err(DataShapeError::Bytes { have: 8, shape: vec![3], dtype: DType::F32, need: 12 })
        );
        assert_eq!(
            Tensor::from_le_bytes(DType::I64, &[usize::MAX / 4, 2], &[]),
            Err(DataShapeError::Overflow(vec![usize::MAX / 4, 2]))
        );
    }

    #[test]
    fn from_vec_checks_length() {
        let e = Tensor::from_vec(&[2, 3], vec![0f32; 5]).unwrap_err();
        assert_eq!(e, DataShapeError::Elements { have: 5, shape: vec![2, 3], need: 6 });
        assert_eq!(e.to_string(), "data has 5 elements but shape [2, 3] needs 6");
        assert_eq!(
            Tensor::from_vec::<u8>(&[usize::MAX, 2], vec![]),
            Err(DataShapeError::Overflow(vec![usize::MAX, 2]))
        );
        assert_eq!(Tensor::from_vec(&[2, 3], vec![0i64; 6]).unwrap().shape(), &[2, 3]);
    }
}

/// One value of any dtype, for attributes such as ConstantOfShape's fill value.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Scalar {
    /// f32 value.
    F32(f32),
    /// f16 value.
    F16(f16),
    /// i8 value.
    I8(i8),
    /// u8 value.
    U8(u8),
    /// i32 value.
    I32(i32),
    /// i64 value.
    I64(i64),
    /// bool value.
    Bool(bool),
}

impl Scalar {
    /// The value's dtype.
    pub fn dtype(&self) -> DType {
        self.fill(&[]).dtype()
    }

    /// A tensor of `shape` filled with this value.
    pub fn fill(&self, shape: &[usize]) -> Tensor {
        let s = IxDyn(shape);
        match *self {
            Scalar::F32(v) => Tensor::F32(ArrayD::from_elem(s, v)),
            Scalar::F16(v) => Tensor::F16(ArrayD::from_elem(s, v)),
            Scalar::I8(v) => Tensor::I8(ArrayD::from_elem(s, v)),
            Scalar::U8(v) => Tensor::U8(ArrayD::from_elem(s, v)),
            Scalar::I32(v) => Tensor::I32(ArrayD::from_elem(s, v)),
            Scalar::I64(v) => Tensor::I64(ArrayD::from_elem(s, v)),
            Scalar::Bool(v) => Tensor::Bool(ArrayD::from_elem(s, v)),
        }
    }

    /// The first element of a tensor, if it has one.
    pub fn first_of(t: &Tensor) -> Option<Scalar> {
        Some(match t {
            Tensor::F32(a) => Scalar::F32(*a.iter().next()?),
            Tensor::F16(a) => Scalar::F16(*a.iter().next()?),
            Tensor::I8(a) => Scalar::I8(*a.iter().next()?),
            Tensor::U8(a) => Scalar::U8(*a.iter().next()?),
            Tensor::I32(a) => Scalar::I32(*a.iter().next()?),
            Tensor::I64(a) => Scalar::I64(*a.iter().next()?),
            Tensor::Bool(a) => Scalar::Bool(*a.iter().next()?),
        })
    }
}
