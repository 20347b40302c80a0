//! Pooling: max and average pooling windows, and GlobalAveragePool.
//!
//! Window geometry (output size, auto padding, ceil mode, taps) is shared with
//! [`super::conv`].

use super::check_alloc;
use super::conv::{WindowAttrs, float_dtype};
use super::{InferIn, OpDef, arity, req};
use crate::error::invalid;
use crate::{DType, Dim, OpError, Shape, Tensor, TypeInfo};
use half::f16;
use ndarray::{ArrayD, Dimension, IxDyn};
use serde::{Deserialize, Serialize};

/// Which pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolKind {
    /// Maximum over the window (padding never wins).
    Max,
    /// Mean over the window.
    Average,
}

/// Input `x` [N, C, D...]; window geometry as in [`super::Conv`].
///
/// Max ignores padded positions and NaNs (as ONNX Runtime does); a window with no input
/// position yields the dtype's lowest value. Average divides by the number of input positions,
/// plus padded ones with `count_include_pad`; positions past the end padding (which only
/// `ceil_mode` creates) are never counted. A window with nothing to count yields NaN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    /// Max or average.
    pub kind: PoolKind,
    /// Window spatial shape.
    pub kernel_shape: Vec<usize>,
    /// Stride per spatial axis (`None` = 1).
    pub strides: Option<Vec<usize>>,
    /// Dilation per spatial axis (`None` = 1).
    pub dilations: Option<Vec<usize>>,
    /// Begin pads then end pads (`None` = 0).
    pub pads: Option<Vec<usize>>,
    /// Padding mode.
    pub auto_pad: super::AutoPad,
    /// Use ceil instead of floor for the output size.
    pub ceil_mode: bool,
    /// Average pooling: count padded elements in the divisor.
    pub count_include_pad: bool,
}

impl Pool {
    fn attrs(&self) -> Result<WindowAttrs, OpError> {
        WindowAttrs::new(
            &self.kernel_shape,
            self.strides.as_deref(),
            self.dilations.as_deref(),
            self.pads.as_deref(),
            self.auto_pad,
            self.ceil_mode,
        )
    }

    fn check(&self, x: &TypeInfo) -> Result<(WindowAttrs, TypeInfo), OpError> {
        let ok = match self.kind {
            PoolKind::Max => matches!(x.dtype, DType::F32 | DType::F16 | DType::I8 | DType::U8),
            PoolKind::Average => x.dtype.is_float(),
        };
        if !ok {
            return Err(invalid(format!("{:?} pooling does not take {} input", self.kind, x.dtype)));
        }
        if x.shape.rank() < 3 {
            return Err(invalid(format!("pooling input must be [N, C, D...], got shape {}", x.shape)));
        }
        let attrs = self.attrs()?;
        let mut out = x.shape.0[..2].to_vec();
        out.extend(attrs.out_dims(&x.shape.0[2..])?);
        Ok((attrs, TypeInfo::new(x.dtype, Shape(out))))
    }
}

/// The value a max window with no input position yields (ONNX Runtime's choice).
fn lowest(dtype: DType) -> f32 {
    match dtype {
        DType::F16 => f16::MIN.to_f32(),
        DType::I8 => f32::from(i8::MIN),
        DType::U8 => 0.0,
        _ => f32::MIN,
    }
}

impl OpDef for Pool {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 1, 1)?;
        Ok(vec![self.check(req(ins, 0)?.ty)?.1])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 1, 1)?;
        let x = req(ins, 0)?;
        let (attrs, ty) = self.check(&TypeInfo::new(x.dtype(), x.static_shape()))?;
        let xs = x.shape();
        let win = attrs.windows(&xs[2..])?;
        let out_sp = win.out_dims();
        let mut out_dims = xs[..2].to_vec();
        out_dims.extend(&out_sp);
        check_alloc(&out_dims, ty.dtype.size())?;

        // i8/u8 values are exact in f32, so every dtype pools through f32.
        let xv: Vec<f32> = x.to_f32().iter().copied().collect();
        let planes = xs[0] * xs[1];
        let (in_len, out_len) = (xs[2..].iter().product::<usize>(), out_sp.iter().product::<usize>());
        let empty_max = lowest(ty.dtype);
        let mut y = vec![0f32; planes * out_len];
        for (o, idx) in ndarray::indices(out_sp.as_slice()).into_iter().enumerate() {
            let taps = win.window(idx.slice());
            let count = taps.inputs.len() + if self.count_include_pad { taps.pads } else { 0 };
            for p in 0..planes {
                let vals = taps.inputs.iter().map(|&(_, i)| xv[p * in_len + i]);
                y[p * out_len + o] = match self.kind {
                    PoolKind::Max => vals.fold(empty_max, |m, v| if v > m { v } else { m }),
                    PoolKind::Average => vals.fold(0.0, |s, v| s + v) / count as f32,
                };
            }
        }
        let y = ArrayD::from_shape_vec(IxDyn(&out_dims), y).map_err(|e| invalid(e.to_string()))?;
        Ok(vec![Tensor::from_f32(ty.dtype, y)])
    }

    /// One operation per window tap: output elements × kernel size.
    fn flops(&self, _ins: &[Option<&TypeInfo>], outs: &[TypeInfo]) -> u64 {
        let outputs = outs.first().and_then(|t| t.shape.numel_upper()).unwrap_or(0) as u64;
        let kernel = self.kernel_shape.iter().try_fold(1u64, |a, &k| a.checked_mul(k as u64)).unwrap_or(u64::MAX);
        outputs.saturating_mul(kernel)
    }
}

/// Input `x` [N, C, D...] → [N, C, 1...].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlobalAveragePool {}

impl GlobalAveragePool {
    fn check(x: &TypeInfo) -> Result<TypeInfo, OpError> {
        let dtype = float_dtype("GlobalAveragePool input", x.dtype)?;
        if x.shape.rank() < 2 {
            return Err(invalid(format!("GlobalAveragePool input must be [N, C, D...], got shape {}", x.shape)));
        }
        let mut out = x.shape.0[..2].to_vec();
        out.resize(x.shape.rank(), Dim::Known(1));
        Ok(TypeInfo::new(dtype, Shape(out)))
    }
}

impl OpDef for GlobalAveragePool {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 1, 1)?;
        Ok(vec![Self::check(req(ins, 0)?.ty)?])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 1, 1)?;
        let x = req(ins, 0)?;
        let ty = Self::check(&TypeInfo::new(x.dtype(), x.static_shape()))?;
        let xs = x.shape();
        let spatial: usize = xs[2..].iter().product();
        let xv: Vec<f32> = x.to_f32().iter().copied().collect();
        // An empty spatial extent gives 0/0 = NaN, as NumPy's mean does.
        let y: Vec<f32> = (0..xs[0] * xs[1])
            .map(|p| xv[p * spatial..(p + 1) * spatial].iter().sum::<f32>() / spatial as f32)
            .collect();
        let out_dims: Vec<usize> = ty.shape.0.iter().map(|d| d.known().unwrap_or(1)).collect();
        let y = ArrayD::from_shape_vec(IxDyn(&out_dims), y).map_err(|e| invalid(e.to_string()))?;
        Ok(vec![Tensor::from_f32(ty.dtype, y)])
    }

    /// One addition per input element.
    fn flops(&self, ins: &[Option<&TypeInfo>], _outs: &[TypeInfo]) -> u64 {
        ins.first().copied().flatten().and_then(|t| t.shape.numel_upper()).unwrap_or(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::AutoPad;
    use proptest::prelude::*;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape, v).unwrap()
    }
    fn iota(shape: &[usize]) -> Tensor {
        t(shape, (0..shape.iter().product::<usize>()).map(|v| v as f32).collect())
    }
    fn pool(kind: PoolKind, kernel: &[usize]) -> Pool {
        Pool {
            kind,
            kernel_shape: kernel.to_vec(),
            strides: None,
            dilations: None,
            pads: None,
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
            count_include_pad: false,
        }
    }
    fn run(p: &Pool, x: &Tensor) -> Result<Tensor, OpError> {
        Ok(p.eval(&[Some(x)])?.remove(0))
    }
    fn vals(t: &Tensor) -> Vec<f32> {
        t.to_f32().iter().copied().collect()
    }
    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + y.abs()))
    }

    #[test]
    fn average_precomputed_pads_with_and_without_pad_count() {
        // ONNX test_averagepool_2d_precomputed_pads(_count_include_pad).
        let x = iota(&[1, 1, 5, 5]).to_f32().mapv(|v| v + 1.0);
        let x = Tensor::F32(x);
        let mut p = Pool { pads: Some(vec![2, 2, 2, 2]), ..pool(PoolKind::Average, &[5, 5]) };
        #[rustfmt::skip]
        let excl = [7., 7.5, 8., 8.5, 9., 9.5, 10., 10.5, 11., 11.5, 12., 12.5, 13., 13.5, 14.,
                    14.5, 15., 15.5, 16., 16.5, 17., 17.5, 18., 18.5, 19.];
        assert!(close(&vals(&run(&p, &x).unwrap()), &excl));
        p.count_include_pad = true;
        #[rustfmt::skip]
        let incl = [2.52, 3.6, 4.8, 4.08, 3.24, 4.56, 6.4, 8.4, 7.04, 5.52, 7.2, 10., 13., 10.8, 8.4,
                    6.96, 9.6, 12.4, 10.24, 7.92, 6.12, 8.4, 10.8, 8.88, 6.84];
        assert!(close(&vals(&run(&p, &x).unwrap()), &incl));
    }

    #[test]
    fn ceil_mode_windows() {
        // ONNX test_averagepool_2d_ceil and test_maxpool_2d_ceil on 1..=16 in 4x4.
        let x = Tensor::F32(iota(&[1, 1, 4, 4]).to_f32().mapv(|v| v + 1.0));
        let p = Pool { strides: Some(vec![2, 2]), ceil_mode: true, ..pool(PoolKind::Average, &[3, 3]) };
        let y = run(&p, &x).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(vals(&y), [6., 7.5, 12., 13.5]);
        let y = run(&Pool { kind: PoolKind::Max, ..p }, &x).unwrap();
        assert_eq!(vals(&y), [11., 12., 15., 16.]);
        // ONNX test_averagepool_2d_ceil_last_window_starts_on_pad: a 2nd window would start on
        // the end pad, so the output is 1x1 and counts all nine taps.
        let x = t(&[1, 1, 2, 2], vec![0.8580, 0.0786, 0.2692, 0.1537]);
        let p = Pool {
            strides: Some(vec![3, 3]),
            pads: Some(vec![1, 1, 1, 1]),
            ceil_mode: true,
            count_include_pad: true,
            ..pool(PoolKind::Average, &[3, 3])
        };
        let y = run(&p, &x).unwrap();
        assert_eq!(y.shape(), &[1, 1, 1, 1]);
        assert!(close(&vals(&y), &[0.151055]));
        // ONNX test_maxpool_2d_ceil_output_size_reduce_by_one.
        let p = Pool { strides: Some(vec![2, 2]), ceil_mode: true, ..pool(PoolKind::Max, &[1, 1]) };
        let y = run(&p, &t(&[1, 1, 2, 2], vec![1., 2., 3., 4.])).unwrap();
        assert_eq!((y.shape(), vals(&y)), (&[1usize, 1, 1, 1][..], vec![1.]));
    }

    #[test]
    fn max_pads_strides_dilations_same() {
        // ONNX test_maxpool_2d_precomputed_pads: 5x5 kernel, pads 2 on 1..=25.
        let x = Tensor::F32(iota(&[1, 1, 5, 5]).to_f32().mapv(|v| v + 1.0));
        let p = Pool { pads: Some(vec![2, 2, 2, 2]), ..pool(PoolKind::Max, &[5, 5]) };
        #[rustfmt::skip]
        let want = [13., 14., 15., 15., 15., 18., 19., 20., 20., 20., 23., 24., 25., 25., 25.,
                    23., 24., 25., 25., 25., 23., 24., 25., 25., 25.];
        assert_eq!(vals(&run(&p, &x).unwrap()), want);
        // ONNX test_maxpool_2d_precomputed_same_upper: 3x3, stride 2.
        let p = Pool { strides: Some(vec![2, 2]), auto_pad: AutoPad::SameUpper, ..pool(PoolKind::Max, &[3, 3]) };
        assert_eq!(vals(&run(&p, &x).unwrap()), [7., 9., 10., 17., 19., 20., 22., 24., 25.]);
        // ONNX test_averagepool_2d_precomputed_same_upper (padding excluded from the count).
        let p = Pool { kind: PoolKind::Average, ..p };
        assert_eq!(vals(&run(&p, &x).unwrap()), [4., 5.5, 7., 11.5, 13., 14.5, 19., 20.5, 22.]);
        // ONNX test_maxpool_2d_dilations: 4x4, kernel 2 dilation 2.
        let x = Tensor::F32(iota(&[1, 1, 4, 4]).to_f32().mapv(|v| v + 1.0));
        let p = Pool { dilations: Some(vec![2, 2]), ..pool(PoolKind::Max, &[2, 2]) };
        assert_eq!(vals(&run(&p, &x).unwrap()), [11., 12., 15., 16.]);
        // ONNX test_averagepool_2d_dilations (ceil mode changes nothing here).
        let p = Pool { kind: PoolKind::Average, ceil_mode: true, ..p };
        assert_eq!(vals(&run(&p, &x).unwrap()), [6., 7., 10., 11.]);
        // SAME_LOWER puts the odd pad first: 1-D [1, 5, 2, 4], kernel 2 → windows [pad,1], [1,5]...
        let p = Pool { auto_pad: AutoPad::SameLower, ..pool(PoolKind::Max, &[2]) };
        assert_eq!(vals(&run(&p, &t(&[1, 1, 4], vec![1., 5., 2., 4.])).unwrap()), [1., 5., 5., 4.]);
        let p = Pool { auto_pad: AutoPad::SameUpper, ..p };
        assert_eq!(vals(&run(&p, &t(&[1, 1, 4], vec![1., 5., 2., 4.])).unwrap()), [5., 5., 4., 4.]);
    }

    #[test]
    fn max_ints_f16_and_negative_values() {
        // ONNX test_maxpool_2d_uint8 uses the same geometry as the f32 pads test.
        let data: Vec<u8> = (1..=25).collect();
        let x = Tensor::from_vec(&[1, 1, 5, 5], data).unwrap();
        let p = Pool { pads: Some(vec![2, 2, 2, 2]), ..pool(PoolKind::Max, &[5, 5]) };
        let y = run(&p, &x).unwrap();
        assert_eq!(y.dtype(), DType::U8);
        assert_eq!(y.view::<u8>().unwrap().iter().take(5).copied().collect::<Vec<_>>(), [13, 14, 15, 15, 15]);
        // Padding never wins over negative values.
        let x = Tensor::from_vec(&[1, 1, 3], vec![-5i8, -128, -7]).unwrap();
        let p = Pool { pads: Some(vec![1, 1]), ..pool(PoolKind::Max, &[2]) };
        assert_eq!(run(&p, &x).unwrap(), Tensor::from_vec(&[1, 1, 4], vec![-5i8, -5, -7, -7]).unwrap());
        let xh = Tensor::from_f32(
            DType::F16,
            ndarray::arr1(&[-3.5f32, -1.0, -2.0]).into_dyn().into_shape_with_order(vec![1, 1, 3]).unwrap(),
        );
        let y = run(&p, &xh).unwrap();
        assert_eq!(y.dtype(), DType::F16);
        assert_eq!(vals(&y), [-3.5, -1.0, -1.0, -2.0]);
        // A window entirely on padding: lowest value for max, NaN for an excluding average.
        let p = Pool { pads: Some(vec![2, 0]), ..pool(PoolKind::Max, &[1]) };
        let x = t(&[1, 1, 1], vec![-1.0]);
        assert_eq!(vals(&run(&p, &x).unwrap()), [f32::MIN, f32::MIN, -1.0]);
        let y = vals(&run(&Pool { kind: PoolKind::Average, ..p.clone() }, &x).unwrap());
        assert!(y[0].is_nan() && y[2] == -1.0);
        let y = vals(&run(&Pool { kind: PoolKind::Average, count_include_pad: true, ..p }, &x).unwrap());
        assert_eq!(y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), [0.0f32, 0.0, -1.0].map(f32::to_bits));
        // A huge kernel over huge padding is cheap: one window with one input tap.
        let p = Pool {
            strides: Some(vec![1 << 50]),
            pads: Some(vec![(1 << 40) - 1, 1 << 40]),
            count_include_pad: true,
            ..pool(PoolKind::Average, &[1 << 40])
        };
        let y = run(&p, &t(&[1, 1, 1], vec![4.0])).unwrap();
        assert_eq!(vals(&y), [4.0 / (1u64 << 40) as f32]);
        assert_eq!(vals(&run(&Pool { kind: PoolKind::Max, ..p }, &t(&[1, 1, 1], vec![4.0])).unwrap()), [4.0]);
        // NaN inputs are skipped by max.
        let p = pool(PoolKind::Max, &[2]);
        assert_eq!(vals(&run(&p, &t(&[1, 1, 3], vec![f32::NAN, 1.0, 2.0])).unwrap()), [1.0, 2.0]);
    }

    #[test]
    fn three_d_and_batch_channels() {
        // ONNX test_averagepool_3d_dilations_small: four copies of the 4x4 plane.
        let plane: Vec<f32> = (1..=16).map(|v| v as f32).collect();
        let x = t(&[1, 1, 4, 4, 4], plane.repeat(4));
        let p = Pool { dilations: Some(vec![2, 2, 2]), ceil_mode: true, ..pool(PoolKind::Average, &[2, 2, 2]) };
        let y = run(&p, &x).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2, 2]);
        assert_eq!(vals(&y), [6., 7., 10., 11., 6., 7., 10., 11.]);
        // Planes are pooled independently.
        let x = iota(&[2, 3, 4]);
        let y = run(&Pool { strides: Some(vec![2]), ..pool(PoolKind::Max, &[2]) }, &x).unwrap();
        assert_eq!(y.shape(), &[2, 3, 2]);
        assert_eq!(vals(&y), [1., 3., 5., 7., 9., 11., 13., 15., 17., 19., 21., 23.]);
    }

    #[test]
    fn pool_errors_and_infer() {
        let x = iota(&[1, 1, 4, 4]);
        assert!(run(&pool(PoolKind::Max, &[2]), &x).is_err());
        assert!(run(&pool(PoolKind::Max, &[5, 5]), &x).is_err());
        assert!(run(&pool(PoolKind::Max, &[2, 0]), &x).is_err());
        assert!(run(&Pool { strides: Some(vec![1, 0]), ..pool(PoolKind::Max, &[2, 2]) }, &x).is_err());
        assert!(run(&Pool { pads: Some(vec![1, 1]), ..pool(PoolKind::Max, &[2, 2]) }, &x).is_err());
        assert!(run(&pool(PoolKind::Max, &[2]), &iota(&[4, 4])).is_err());
        let xi = Tensor::from_vec(&[1, 1, 4], vec![1u8, 2, 3, 4]).unwrap();
        assert!(run(&pool(PoolKind::Average, &[2]), &xi).is_err());
        let xl = Tensor::from_vec(&[1, 1, 2], vec![1i64, 2]).unwrap();
        assert!(run(&pool(PoolKind::Max, &[2]), &xl).is_err());
        assert!(pool(PoolKind::Max, &[2]).eval(&[]).is_err());
        assert!(pool(PoolKind::Max, &[2]).eval(&[None]).is_err());
        let huge = Pool { pads: Some(vec![1 << 40, 1 << 40]), ..pool(PoolKind::Max, &[1]) };
        assert!(run(&huge, &iota(&[1, 1, 2])).is_err());

        let ty = TypeInfo::new(DType::F32, Shape::parse("[n, 3, h, 9]").unwrap());
        let p = Pool { strides: Some(vec![1, 2]), auto_pad: AutoPad::SameUpper, ..pool(PoolKind::Max, &[3, 3]) };
        let out = p.infer(&[Some(InferIn { ty: &ty, value: None, sym: None })]).unwrap().remove(0);
        assert_eq!(out.shape, Shape::parse("[n, 3, h, 5]").unwrap());
        let p = Pool { strides: Some(vec![2, 2]), ..p };
        let out = p.infer(&[Some(InferIn { ty: &ty, value: None, sym: None })]).unwrap().remove(0);
        assert!(out.shape.0[2].is_unknown());
        assert_eq!(p.flops(&[Some(&ty)], &[TypeInfo::new(DType::F32, Shape::known(&[2, 3, 4, 5]))]), 120 * 9);
    }

    #[test]
    fn global_average_pool() {
        // ONNX test_globalaveragepool_precomputed: mean of 1..=9 is 5.
        let x = Tensor::F32(iota(&[1, 1, 3, 3]).to_f32().mapv(|v| v + 1.0));
        let y = GlobalAveragePool {}.eval(&[Some(&x)]).unwrap().remove(0);
        assert_eq!((y.shape(), vals(&y)), (&[1usize, 1, 1, 1][..], vec![5.0]));
        let x = iota(&[2, 2, 3]);
        let y = GlobalAveragePool {}.eval(&[Some(&x)]).unwrap().remove(0);
        assert_eq!((y.shape(), vals(&y)), (&[2usize, 2, 1][..], vec![1., 4., 7., 10.]));
        let xh = Tensor::from_f32(DType::F16, iota(&[1, 2, 2, 1, 2]).to_f32());
        let y = GlobalAveragePool {}.eval(&[Some(&xh)]).unwrap().remove(0);
        assert_eq!((y.dtype(), y.shape(), vals(&y)), (DType::F16, &[1usize, 2, 1, 1, 1][..], vec![1.5, 5.5]));
        let e = GlobalAveragePool {}.eval(&[Some(&t(&[1, 1, 0], vec![]))]).unwrap().remove(0);
        assert!(vals(&e)[0].is_nan());
        assert!(GlobalAveragePool {}.eval(&[Some(&t(&[3], vec![1.; 3]))]).is_err());
        let xi = Tensor::from_vec(&[1, 1, 2], vec![1i32, 2]).unwrap();
        assert!(GlobalAveragePool {}.eval(&[Some(&xi)]).is_err());
        let ty = TypeInfo::new(DType::F32, Shape::parse("[n, c, h, w]").unwrap());
        let out = GlobalAveragePool {}.infer(&[Some(InferIn { ty: &ty, value: None, sym: None })]).unwrap().remove(0);
        assert_eq!(out.shape, Shape::parse("[n, c, 1, 1]").unwrap());
        let ty = TypeInfo::new(DType::F32, Shape::known(&[2, 3, 4, 5]));
        assert_eq!(GlobalAveragePool {}.flops(&[Some(&ty)], &[]), 120);
    }

    proptest! {
        /// Average pooling that counts padding is a depthwise convolution with constant
        /// weights 1/kernel: an independent path through the geometry.
        #[test]
        fn average_with_pad_count_is_depthwise_conv(
            c in 1usize..3, h in 1usize..7, w in 1usize..7, kh in 1usize..4, kw in 1usize..4,
            s in (1usize..4, 1usize..4), pads in prop::array::uniform4(0usize..2),
            auto in 0usize..3, seed in any::<u32>(),
        ) {
            prop_assume!(h + pads[0] + pads[2] >= kh && w + pads[1] + pads[3] >= kw);
            let auto_pad = [AutoPad::NotSet, AutoPad::SameUpper, AutoPad::SameLower][auto];
            let n = c * h * w;
            let x = t(&[1, c, h, w], (0..n as u32).map(|i| (seed.wrapping_mul(i + 3) % 9) as f32).collect());
            let p = Pool {
                strides: Some(vec![s.0, s.1]), pads: Some(pads.to_vec()), auto_pad, count_include_pad: true,
                ..pool(PoolKind::Average, &[kh, kw])
            };
            let conv = crate::ops::Conv {
                group: c, kernel_shape: None, strides: p.strides.clone(), dilations: None,
                pads: p.pads.clone(), auto_pad,
            };
            let wt = t(&[c, 1, kh, kw], vec![1.0 / (kh * kw) as f32; c * kh * kw]);
            let want = conv.eval(&[Some(&x), Some(&wt)]).unwrap().remove(0);
            let got = run(&p, &x).unwrap();
            prop_assert_eq!(got.shape(), want.shape());
            prop_assert!(close(&vals(&got), &vals(&want)));
        }

        /// Max pooling equals the max over an explicitly padded copy (padding = lowest), with
        /// windows enumerated by plain index arithmetic.
        #[test]
        fn max_matches_padded_reference(
            h in 1usize..8, k in 1usize..4, s in 1usize..4, d in 1usize..3, pads in (0usize..3, 0usize..3),
            ceil in any::<bool>(), seed in any::<u32>(),
        ) {
            let ext = (k - 1) * d + 1;
            prop_assume!(h + pads.0 + pads.1 >= ext);
            let xv: Vec<f32> = (0..h as u32).map(|i| (seed.wrapping_mul(2 * i + 1) % 11) as f32 - 5.0).collect();
            let mut padded = vec![f32::MIN; pads.0];
            padded.extend(&xv);
            padded.extend(vec![f32::MIN; pads.1 + s * 2]);
            let span = h + pads.0 + pads.1 - ext;
            let mut out = if ceil { span.div_ceil(s) + 1 } else { span / s + 1 };
            if ceil && (out - 1) * s >= h + pads.0 { out -= 1; }
            let want: Vec<f32> = (0..out)
                .map(|o| (0..k).map(|j| padded[o * s + j * d]).fold(f32::MIN, f32::max))
                .collect();
            let p = Pool {
                strides: Some(vec![s]), dilations: Some(vec![d]), pads: Some(vec![pads.0, pads.1]),
                ceil_mode: ceil, ..pool(PoolKind::Max, &[k])
            };
            prop_assert_eq!(vals(&run(&p, &t(&[1, 1, h], xv)).unwrap()), want);
        }
    }
}
