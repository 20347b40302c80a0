//! MatMulNBits (ONNX Runtime's `com.microsoft` domain): `Y = A · dequant(B)ᵀ (+ bias)`, the
//! weight stored as `bits`-bit integers in blocks of `block_size` along K.
//!
//! Layout (ONNX Runtime's contrib-op spec): `B` is `[N, n_blocks, blob]` bytes, `n_blocks =
//! ⌈K / block_size⌉`, `blob = block_size · bits / 8`; the `i`-th value of a block sits at bit
//! `i·bits` of its blob (4 bits: the low nibble first). `scales` has `N · n_blocks` elements
//! (column-major by block: column `n`'s blocks are consecutive). `zero_points` is either
//! packed like B (`N · ⌈n_blocks · bits / 8⌉` bytes, each column's values padded to a whole
//! byte) or, in the scales' dtype, `N · n_blocks` values; absent, it is `2^(bits-1)`.
//! The weight element is `w[k, n] = (q[n, k] − zp[n, k / block]) · scale[n, k / block]`, in f32.

use super::{InferIn, OpDef, arity, opt, req};
use crate::error::{invalid, unsupported};
use crate::{DType, Dim, OpError, Shape, Tensor, TypeInfo};
use ndarray::{Array2, ArrayD, Axis, IxDyn};
use serde::{Deserialize, Serialize};

/// Inputs `a` (f32/f16, `[..., K]`), `b` (u8), `scales`, optional `zero_points`, `g_idx`
/// (only absent) and `bias` (`[N]`); output `[..., N]` in `a`'s dtype.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatMulNBits {
    /// Rows of the weight (A's last dim).
    pub k: usize,
    /// Columns of the weight (the output's last dim).
    pub n: usize,
    /// Bits per weight: 2, 4 or 8.
    pub bits: usize,
    /// Weights per block along K: a power of two ≥ 16.
    pub block_size: usize,
}

/// Where a packed zero point comes from, as checked by [`MatMulNBits::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ZeroPoints {
    Default,
    Packed,
    Float,
}

impl MatMulNBits {
    /// Blocks per column.
    pub fn blocks(&self) -> usize {
        self.k.div_ceil(self.block_size.max(1))
    }

    /// Bytes per block.
    pub fn blob(&self) -> usize {
        self.block_size * self.bits / 8
    }

    /// Bytes per column of packed zero points.
    pub fn zp_row_bytes(&self) -> usize {
        (self.blocks() * self.bits).div_ceil(8)
    }

    fn check(&self, ins: &[Option<&TypeInfo>]) -> Result<(TypeInfo, ZeroPoints), OpError> {
        arity(ins, 3, 6)?;
        if !matches!(self.bits, 2 | 4 | 8) {
            return Err(unsupported(format!("MatMulNBits with bits = {} (only 2, 4 and 8)", self.bits)));
        }
        if !(16..=1 << 16).contains(&self.block_size) || !self.block_size.is_power_of_two() {
            return Err(invalid(format!(
                "MatMulNBits block_size must be a power of two from 16 to 65536, got {}",
                self.block_size
            )));
        }
        let elems = |t: &TypeInfo| t.shape.numel();
        let (a, b, scales) = (req(ins, 0)?, req(ins, 1)?, req(ins, 2)?);
        if !matches!(a.dtype, DType::F32 | DType::F16) {
            return Err(invalid(format!("MatMulNBits A must be f32 or f16, got {}", a.dtype)));
        }
        match a.shape.0.last() {
            None => return Err(invalid("MatMulNBits A must have rank ≥ 1")),
            Some(Dim::Known(k)) if *k != self.k => {
                return Err(invalid(format!("MatMulNBits A ends in {k} but K = {}", self.k)));
            }
            _ => {}
        }
        let nb = self.blocks();
        // Sizes from the attributes, checked: a hostile K or N is an error, never an overflow.
        let too_large = || invalid(format!("MatMulNBits K = {}, N = {} is too large", self.k, self.n));
        let want_b = self.n.checked_mul(nb).and_then(|x| x.checked_mul(self.blob())).ok_or_else(too_large)?;
        let n_scales = self.n.checked_mul(nb).ok_or_else(too_large)?;
        super::check_alloc(&[self.k, self.n], 4)?;
        if b.dtype != DType::U8 || elems(b).is_some_and(|e| e != want_b) {
            return Err(invalid(format!(
                "MatMulNBits B must be u8 of {} × {nb} × {} = {want_b} bytes, got {}",
                self.n,
                self.blob(),
                b
            )));
        }
        if !scales.dtype.is_float() || elems(scales).is_some_and(|e| e != n_scales) {
            return Err(invalid(format!("MatMulNBits scales must be {n_scales} floats, got {scales}")));
        }
        let zp = match opt(ins, 3) {
            None => ZeroPoints::Default,
            Some(z) if z.dtype == DType::U8 => {
                let want = self.n.checked_mul(self.zp_row_bytes()).ok_or_else(too_large)?;
                if elems(z).is_some_and(|e| e != want) {
                    return Err(invalid(format!("MatMulNBits packed zero_points must be {want} bytes, got {z}")));
                }
                ZeroPoints::Packed
            }
            Some(z) if z.dtype == scales.dtype => {
                if elems(z).is_some_and(|e| e != n_scales) {
                    return Err(invalid(format!("MatMulNBits zero_points must be {n_scales} values, got {z}")));
                }
                ZeroPoints::Float
            }
            Some(z) => return Err(invalid(format!("MatMulNBits zero_points must be u8 or {}, got {z}", scales.dtype))),
        };
        if opt(ins, 4).is_some() {
            return Err(unsupported("MatMulNBits with g_idx (act-order) input"));
        }
        if let Some(bias) = opt(ins, 5)
            && (bias.dtype != a.dtype || bias.shape != Shape::known(&[self.n]))
        {
            return Err(invalid(format!("MatMulNBits bias must be {} [{}], got {bias}", a.dtype, self.n)));
        }
        let mut dims = a.shape.0.clone();
        if let Some(last) = dims.last_mut() {
            *last = Dim::Known(self.n);
        }
        Ok((TypeInfo::new(a.dtype, Shape(dims)), zp))
    }

    /// The `bits`-bit value at value index `i` of a little-endian bit stream.
    fn unpack(bytes: &[u8], i: usize, bits: usize) -> f32 {
        let bit = i * bits;
        let v = bytes.get(bit / 8).copied().unwrap_or(0) >> (bit % 8);
        f32::from(v & ((1u16 << bits) - 1) as u8)
    }

    /// The weight dequantized to f32 `[K, N]` from inputs 1..=3 (checked by [`Self::check`]).
    pub fn dequantize(&self, b: &Tensor, scales: &Tensor, zp: Option<&Tensor>) -> Result<Array2<f32>, OpError> {
        let bytes: Vec<u8> =
            b.view::<u8>().ok_or_else(|| invalid("MatMulNBits B must be u8"))?.iter().copied().collect();
        let s: Vec<f32> = scales.to_f32().iter().copied().collect();
        let (nb, blob) = (self.blocks(), self.blob());
        let zbytes: Option<Vec<u8>> = zp.and_then(|z| z.view::<u8>()).map(|z| z.iter().copied().collect());
        let zfloat: Option<Vec<f32>> =
            zp.filter(|z| z.dtype() != DType::U8).map(|z| z.to_f32().iter().copied().collect());
        let default_zp = f32::from(1u8 << (self.bits - 1));
        let mut w = Array2::<f32>::zeros((self.k, self.n));
        for n in 0..self.n {
            for blk in 0..nb {
                let scale = s[n * nb + blk];
                let z = match (&zbytes, &zfloat) {
                    (Some(zb), _) => {
                        let row = self.zp_row_bytes();
                        Self::unpack(&zb[n * row..(n + 1) * row], blk, self.bits)
                    }
                    (_, Some(zf)) => zf[n * nb + blk],
                    _ => default_zp,
                };
                let base = (n * nb + blk) * blob;
                let blob_bytes = &bytes[base..base + blob];
                for i in 0..self.block_size {
                    let k = blk * self.block_size + i;
                    if k < self.k {
                        w[[k, n]] = (Self::unpack(blob_bytes, i, self.bits) - z) * scale;
                    }
                }
            }
        }
        Ok(w)
    }
}

impl OpDef for MatMulNBits {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        let tys = super::input_types(ins);
        Ok(vec![self.check(&tys)?.0])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let tys = super::tensor_types(ins);
        let (ty, _) = self.check(&tys.iter().map(Option::as_ref).collect::<Vec<_>>())?;
        let a = req(ins, 0)?;
        let dims = ty.shape.as_known().ok_or_else(|| invalid("MatMulNBits output shape is not concrete"))?;
        super::check_alloc(&dims, 4)?;
        let w = self.dequantize(req(ins, 1)?, req(ins, 2)?, opt(ins, 3))?;
        let m: usize = a.shape()[..a.shape().len() - 1].iter().product();
        let a2 = a.to_f32().to_shape((m, self.k)).map_err(|e| invalid(e.to_string()))?.to_owned();
        let mut y = a2.dot(&w);
        if let Some(bias) = opt(ins, 5) {
            let bias = bias.to_f32();
            for mut row in y.axis_iter_mut(Axis(0)) {
                row.zip_mut_with(&bias, |v, b| *v += *b);
            }
        }
        let y =
            ArrayD::from_shape_vec(IxDyn(&dims), y.iter().copied().collect()).map_err(|e| invalid(e.to_string()))?;
        Ok(vec![match ty.dtype {
            DType::F32 => Tensor::F32(y),
            _ => Tensor::from_f64(ty.dtype, y.mapv(f64::from)),
        }])
    }

    /// `2·M·N·K`.
    fn flops(&self, _ins: &[Option<&TypeInfo>], outs: &[TypeInfo]) -> u64 {
        let rows = outs.first().and_then(|o| o.shape.numel_upper()).unwrap_or(0) / self.n.max(1);
        2 * (rows * self.k * self.n) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{f32s, t};

    /// Packs `q` (values < 2^bits) as a little-endian bit stream.
    fn pack(q: &[u8], bits: usize) -> Vec<u8> {
        let mut out = vec![0u8; (q.len() * bits).div_ceil(8)];
        for (i, &v) in q.iter().enumerate() {
            out[i * bits / 8] |= v << (i * bits % 8);
        }
        out
    }

    /// A plain dequantize-then-multiply against the op, over bit widths, zero-point forms, a K
    /// that is not a multiple of the block, batch rows and a bias.
    #[test]
    fn matches_dequantized_product() {
        for (bits, zp_kind) in [(4, 0), (4, 1), (4, 2), (2, 1), (8, 0), (8, 2)] {
            let (k, n, block) = (40, 3, 16);
            let op = MatMulNBits { k, n, bits, block_size: block };
            let nb = op.blocks();
            let levels = 1u32 << bits;
            let q: Vec<Vec<u8>> =
                (0..n).map(|c| (0..nb * block).map(|i| ((i * 7 + c * 3) as u32 % levels) as u8).collect()).collect();
            let b: Vec<u8> = q.iter().flat_map(|col| col.chunks(block).flat_map(|blk| pack(blk, bits))).collect();
            let scales: Vec<f32> = (0..n * nb).map(|i| 0.01 * (i as f32 + 1.0)).collect();
            let zq: Vec<Vec<u8>> =
                (0..n).map(|c| (0..nb).map(|j| ((c + 2 * j) as u32 % levels) as u8).collect()).collect();
            let zp = match zp_kind {
                1 => Some(t(&[n * op.zp_row_bytes()], zq.iter().flat_map(|z| pack(z, bits)).collect::<Vec<u8>>())),
                2 => Some(t(&[n * nb], zq.iter().flatten().map(|&z| f32::from(z) + 0.5).collect::<Vec<f32>>())),
                _ => None,
            };
            let a: Vec<f32> = (0..2 * k).map(|i| ((i % 11) as f32 - 5.0) * 0.25).collect();
            let bias = vec![1.0f32, -2.0, 0.5];
            let ins = [t(&[2, k], a.clone()), t(&[n, nb, op.blob()], b), t(&[n * nb], scales.clone())];
            let bias_t = t(&[n], bias.clone());
            let mut args: Vec<Option<&Tensor>> = ins.iter().map(Some).collect();
            args.extend([zp.as_ref(), None, Some(&bias_t)]);
            let y = f32s(&op.eval(&args).unwrap()[0]);
            for r in 0..2 {
                for c in 0..n {
                    let mut want = bias[c];
                    for kk in 0..k {
                        let z = match zp_kind {
                            0 => f32::from(1u8 << (bits - 1)),
                            1 => f32::from(zq[c][kk / block]),
                            _ => f32::from(zq[c][kk / block]) + 0.5,
                        };
                        let w = (f32::from(q[c][kk]) - z) * scales[c * nb + kk / block];
                        want += a[r * k + kk] * w;
                    }
                    let got = y[r * n + c];
                    assert!(
                        (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "bits {bits} zp {zp_kind} [{r},{c}]: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn rejects_bad_inputs() {
        let op = MatMulNBits { k: 32, n: 2, bits: 4, block_size: 32 };
        let a = t(&[1, 32], vec![0f32; 32]);
        let s = t(&[2], vec![1f32; 2]);
        let short = t(&[2, 1, 8], vec![0u8; 16]);
        let e = op.eval(&[Some(&a), Some(&short), Some(&s)]).unwrap_err();
        assert!(e.to_string().contains("B must be u8"), "{e}");
        let bad = MatMulNBits { block_size: 24, ..op.clone() };
        let b = t(&[2, 1, 16], vec![0u8; 32]);
        assert!(bad.eval(&[Some(&a), Some(&b), Some(&s)]).unwrap_err().to_string().contains("power of two"));
        let huge = MatMulNBits { n: usize::MAX / 2, ..op.clone() };
        assert!(huge.eval(&[Some(&a), Some(&b), Some(&s)]).unwrap_err().to_string().contains("too large"));
        let a2 = t(&[1, 16], vec![0f32; 16]);
        assert!(op.eval(&[Some(&a2), Some(&b), Some(&s)]).unwrap_err().to_string().contains("K = 32"));
        assert!(op.eval(&[Some(&a), Some(&b), Some(&s)]).is_ok());
    }
}
