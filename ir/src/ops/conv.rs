//! Convolution (1-D/2-D/N-D) with groups, pads, strides, dilations and auto_pad, and the
//! sliding-window geometry (output size, padding, window taps) that pooling shares.

use super::{InferIn, OpDef, arity, check_alloc, opt, req};
use crate::error::{invalid, unsupported};
use crate::{DType, Dim, OpError, Shape, Tensor, TypeInfo};
use ndarray::Dimension;
use serde::{Deserialize, Serialize};

/// How padding is derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AutoPad {
    /// Explicit `pads`.
    NotSet,
    /// Output size `ceil(in/stride)`, extra padding at the end.
    SameUpper,
    /// Output size `ceil(in/stride)`, extra padding at the start.
    SameLower,
    /// No padding.
    Valid,
}

/// Window attributes of one spatial axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisParams {
    /// Number of taps.
    pub kernel: usize,
    /// Distance between consecutive windows.
    pub stride: usize,
    /// Distance between consecutive taps.
    pub dilation: usize,
    /// Explicit (begin, end) pads; only used when `auto_pad` is [`AutoPad::NotSet`].
    pub pads: (usize, usize),
}

/// Output size and padding of one spatial axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisWindow {
    /// Number of window positions (the output size).
    pub out: usize,
    /// Padding before the input.
    pub pad_begin: usize,
    /// Padding after the input.
    pub pad_end: usize,
}

/// Extent `(kernel - 1)·dilation + 1` covered by one window.
pub fn dilated_extent(kernel: usize, dilation: usize) -> Result<usize, OpError> {
    kernel
        .checked_sub(1)
        .and_then(|k| k.checked_mul(dilation))
        .and_then(|k| k.checked_add(1))
        .ok_or_else(|| invalid(format!("kernel {kernel} with dilation {dilation} overflows")))
}

/// Output size and pads of one axis of `input` positions, with the ONNX formulas:
/// explicit pads give `floor((in + pads - extent) / stride) + 1` (or `ceil`, with the last
/// window required to start inside the input or its begin padding); `SAME_*` give
/// `ceil(in / stride)` with the needed padding split evenly, the odd one at the end (upper) or
/// the start (lower); `VALID` pads nothing. `ceil_mode` only matters for explicit pads: with
/// auto padding both roundings give the same size.
pub fn axis_window(input: usize, p: &AxisParams, auto_pad: AutoPad, ceil_mode: bool) -> Result<AxisWindow, OpError> {
    let extent = dilated_extent(p.kernel, p.dilation)?;
    match auto_pad {
        AutoPad::SameUpper | AutoPad::SameLower => {
            let out = input.div_ceil(p.stride);
            // (out - 1)·stride < input, so only the extent can overflow.
            let need = match out.checked_sub(1) {
                None => 0,
                Some(o) => (o * p.stride)
                    .checked_add(extent)
                    .ok_or_else(|| invalid(format!("window extent {extent} overflows")))?
                    .saturating_sub(input),
            };
            let pad_begin = if auto_pad == AutoPad::SameUpper { need / 2 } else { need.div_ceil(2) };
            Ok(AxisWindow { out, pad_begin, pad_end: need - pad_begin })
        }
        AutoPad::Valid => explicit_window(input, p.stride, extent, (0, 0), false),
        AutoPad::NotSet => explicit_window(input, p.stride, extent, p.pads, ceil_mode),
    }
}

fn explicit_window(
    input: usize,
    stride: usize,
    extent: usize,
    (pad_begin, pad_end): (usize, usize),
    ceil_mode: bool,
) -> Result<AxisWindow, OpError> {
    let padded = input
        .checked_add(pad_begin)
        .and_then(|v| v.checked_add(pad_end))
        .ok_or_else(|| invalid(format!("input size {input} plus pads overflows")))?;
    let span = padded.checked_sub(extent).ok_or_else(|| {
        invalid(format!(
            "window extent {extent} is larger than the padded input size {padded} \
             (input {input}, pads {pad_begin}+{pad_end})"
        ))
    })?;
    let mut out = if ceil_mode { span.div_ceil(stride) + 1 } else { span / stride + 1 };
    if ceil_mode && (out - 1).saturating_mul(stride) >= input + pad_begin {
        // The last window would start in the end padding: it is dropped.
        out -= 1;
    }
    Ok(AxisWindow { out, pad_begin, pad_end })
}

/// Sliding-window attributes resolved to one [`AxisParams`] per spatial axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowAttrs {
    /// Per spatial axis.
    pub axes: Vec<AxisParams>,
    /// Padding mode.
    pub auto_pad: AutoPad,
    /// Round the output size up (pooling only).
    pub ceil_mode: bool,
}

impl WindowAttrs {
    /// Resolves optional strides, dilations and pads (ONNX defaults 1, 1, 0) against the
    /// kernel's rank, checking their lengths and that kernel, strides and dilations are positive.
    pub fn new(
        kernel: &[usize],
        strides: Option<&[usize]>,
        dilations: Option<&[usize]>,
        pads: Option<&[usize]>,
        auto_pad: AutoPad,
        ceil_mode: bool,
    ) -> Result<WindowAttrs, OpError> {
        let n = kernel.len();
        let per_axis = |v: Option<&[usize]>, what: &str| -> Result<Vec<usize>, OpError> {
            match v {
                None => Ok(vec![1; n]),
                Some(v) if v.len() != n => Err(invalid(format!("{what} has {} values for {n} spatial axes", v.len()))),
                Some(v) if v.contains(&0) => Err(invalid(format!("{what} {v:?} must be positive"))),
                Some(v) => Ok(v.to_vec()),
            }
        };
        per_axis(Some(kernel), "kernel_shape")?;
        let strides = per_axis(strides, "strides")?;
        let dilations = per_axis(dilations, "dilations")?;
        let pads = match pads {
            None => vec![0; 2 * n],
            Some(p) if p.len() != 2 * n => {
                return Err(invalid(format!("pads has {} values; {n} spatial axes need {}", p.len(), 2 * n)));
            }
            Some(p) => p.to_vec(),
        };
        let axes = (0..n)
            .map(|i| AxisParams {
                kernel: kernel[i],
                stride: strides[i],
                dilation: dilations[i],
                pads: (pads[i], pads[n + i]),
            })
            .collect();
        Ok(WindowAttrs { axes, auto_pad, ceil_mode })
    }

    /// The output dim of spatial axis `axis` for input dim `d`. A symbolic input keeps its
    /// symbol when the window preserves the size (stride 1 and "same" padding); otherwise its
    /// output size is unknown.
    pub fn out_dim(&self, axis: usize, d: &Dim) -> Result<Dim, OpError> {
        let p = self.axes.get(axis).ok_or_else(|| invalid(format!("no spatial axis {axis}")))?;
        match d {
            Dim::Known(n) => Ok(Dim::Known(axis_window(*n, p, self.auto_pad, self.ceil_mode)?.out)),
            Dim::Sym { .. } => {
                let extent = dilated_extent(p.kernel, p.dilation)?;
                let same = p.stride == 1
                    && match self.auto_pad {
                        AutoPad::SameUpper | AutoPad::SameLower => true,
                        AutoPad::Valid => extent == 1,
                        AutoPad::NotSet => p.pads.0.checked_add(p.pads.1) == Some(extent - 1),
                    };
                Ok(if same { d.clone() } else { Dim::unknown() })
            }
        }
    }

    /// The output dims for the spatial dims of an input shape.
    pub fn out_dims(&self, spatial: &[Dim]) -> Result<Vec<Dim>, OpError> {
        self.check_rank(spatial.len())?;
        spatial.iter().enumerate().map(|(i, d)| self.out_dim(i, d)).collect()
    }

    /// The geometry of every window over concrete spatial input dims.
    pub fn windows(&self, input: &[usize]) -> Result<Windows, OpError> {
        self.check_rank(input.len())?;
        let axes = input
            .iter()
            .zip(&self.axes)
            .map(|(&n, p)| Ok((*p, axis_window(n, p, self.auto_pad, self.ceil_mode)?)))
            .collect::<Result<_, OpError>>()?;
        Ok(Windows { input: input.to_vec(), axes })
    }

    fn check_rank(&self, spatial: usize) -> Result<(), OpError> {
        if spatial != self.axes.len() {
            return Err(invalid(format!(
                "input has {spatial} spatial axes but the window attributes describe {}",
                self.axes.len()
            )));
        }
        Ok(())
    }
}

/// The taps of one window: those on the input, and how many fall on the padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowTaps {
    /// `(kernel index, input offset)` of every tap on the input, both row-major over the
    /// spatial dims, in row-major kernel order.
    pub inputs: Vec<(usize, usize)>,
    /// Number of taps on the padding; taps past the end padding (only `ceil_mode` creates
    /// them) are not counted.
    pub pads: usize,
}

/// The concrete geometry of all windows over one input's spatial dims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Windows {
    input: Vec<usize>,
    axes: Vec<(AxisParams, AxisWindow)>,
}

impl Windows {
    /// Output spatial dims.
    pub fn out_dims(&self) -> Vec<usize> {
        self.axes.iter().map(|(_, w)| w.out).collect()
    }

    /// Number of taps per window (the product of the kernel dims), saturating.
    pub fn kernel_len(&self) -> usize {
        self.axes.iter().fold(1usize, |n, (p, _)| n.saturating_mul(p.kernel))
    }

    /// The taps of the window at output position `out`. Work and memory are bounded by the
    /// input size, however large the kernel.
    pub fn window(&self, out: &[usize]) -> WindowTaps {
        let mut inputs = vec![(0usize, 0usize)];
        let mut counted = 1usize;
        for (((p, w), &n), &o) in self.axes.iter().zip(&self.input).zip(out) {
            let (axis_inputs, axis_counted) = axis_taps(p, w, n, o);
            counted = counted.saturating_mul(axis_counted);
            inputs = inputs
                .iter()
                .flat_map(|&(k, off)| {
                    axis_inputs
                        .iter()
                        .map(move |&(ka, oa)| (k.saturating_mul(p.kernel).saturating_add(ka), off * n + oa))
                })
                .collect();
        }
        WindowTaps { pads: counted.saturating_sub(inputs.len()), inputs }
    }
}

/// One axis of window `o`: `(kernel index, input index)` of the taps on the input, and the
/// number of taps before the end of the end padding.
fn axis_taps(p: &AxisParams, w: &AxisWindow, n: usize, o: usize) -> (Vec<(usize, usize)>, usize) {
    // Tap k sits at base + k·dilation in padded coordinates.
    let base = o.saturating_mul(p.stride);
    let taps_below = |limit: usize| limit.saturating_sub(base).div_ceil(p.dilation).min(p.kernel);
    let counted = taps_below(n.saturating_add(w.pad_begin).saturating_add(w.pad_end));
    let (first, end) = (taps_below(w.pad_begin), taps_below(w.pad_begin.saturating_add(n)));
    let inputs = (first..end).map(|k| (k, base + k * p.dilation - w.pad_begin)).collect();
    (inputs, counted)
}

/// Checks `t` is f32 or f16 and returns its dtype.
pub(crate) fn float_dtype(what: &str, t: DType) -> Result<DType, OpError> {
    if t.is_float() { Ok(t) } else { Err(invalid(format!("{what} must be f32 or f16, got {t}"))) }
}

/// Inputs `x` [N, C, D...], `w` [M, C/group, K...], optional `b` `[M]`.
/// `None` attributes take the ONNX defaults (kernel from `w`, strides/dilations 1, pads 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv {
    /// Number of groups.
    pub group: usize,
    /// Kernel spatial shape.
    pub kernel_shape: Option<Vec<usize>>,
    /// Stride per spatial axis.
    pub strides: Option<Vec<usize>>,
    /// Dilation per spatial axis.
    pub dilations: Option<Vec<usize>>,
    /// Begin pads for every spatial axis, then end pads.
    pub pads: Option<Vec<usize>>,
    /// Padding mode.
    pub auto_pad: AutoPad,
}

impl Conv {
    /// Checks the operand types against each other and the attributes; returns the window
    /// attributes and the output type.
    fn check(&self, x: &TypeInfo, w: &TypeInfo, b: Option<&TypeInfo>) -> Result<(WindowAttrs, TypeInfo), OpError> {
        let dtype = float_dtype("Conv input x", x.dtype)?;
        for (what, t) in [("w", Some(w)), ("b", b)] {
            if let Some(t) = t
                && t.dtype != dtype
            {
                return Err(invalid(format!("Conv input {what} is {} but x is {dtype}", t.dtype)));
            }
        }
        if let Some(b) = b
            && (b.shape.rank() != 1
                || matches!((b.shape.0[0].known(), w.shape.0.first().and_then(Dim::known)), (Some(n), Some(m)) if n != m))
        {
            return Err(invalid(format!("Conv bias shape {} must be [M] with M = w's first dim", b.shape)));
        }
        let (attrs, out) = self.geometry("Conv", &x.shape, &w.shape)?;
        Ok((attrs, TypeInfo::new(dtype, out)))
    }

    /// Checks the shapes of `x` and `w` (named `op` in errors) against each other and the
    /// attributes; returns the window attributes and the output shape.
    fn geometry(&self, op: &str, x: &Shape, w: &Shape) -> Result<(WindowAttrs, Shape), OpError> {
        let (xs, ws) = (&x.0, &w.0);
        if xs.len() < 3 {
            return Err(invalid(format!("{op} input x must be [N, C, D...], got shape {x}")));
        }
        if ws.len() != xs.len() {
            return Err(invalid(format!("{op} weight shape {w} must have the rank of x {x}")));
        }
        let group = self.group;
        if group == 0 {
            return Err(invalid(format!("{op} group must be positive")));
        }
        if let (Some(c), Some(cg)) = (xs[1].known(), ws[1].known())
            && cg.checked_mul(group) != Some(c)
        {
            return Err(invalid(format!("{op} x has {c} channels but w {w} has {cg} per group × {group} groups")));
        }
        if let Some(m) = ws[0].known()
            && m % group != 0
        {
            return Err(invalid(format!("{op} has {m} output channels, not a multiple of group {group}")));
        }
        let w_kernel: Option<Vec<usize>> = ws[2..].iter().map(Dim::known).collect();
        let kernel = match (&self.kernel_shape, w_kernel) {
            (Some(k), Some(wk)) if *k != wk => {
                return Err(invalid(format!("{op} kernel_shape {k:?} disagrees with weight shape {w}")));
            }
            (Some(k), _) => k.clone(),
            (None, Some(wk)) => wk,
            (None, None) => return Err(unsupported(format!("{op} with a symbolic kernel size (w {w})"))),
        };
        let attrs = WindowAttrs::new(
            &kernel,
            self.strides.as_deref(),
            self.dilations.as_deref(),
            self.pads.as_deref(),
            self.auto_pad,
            false,
        )?;
        let mut out = vec![xs[0].clone(), ws[0].clone()];
        out.extend(attrs.out_dims(&xs[2..])?);
        Ok((attrs, Shape(out)))
    }

    /// The direct convolution of row-major `xv` (shape `xs`) by `wv` (shape `ws`), each output
    /// channel starting from `bias[m]` and adding the on-input taps in kernel order per input
    /// channel (padding contributes nothing); returns the output dims and values.
    fn direct<T>(
        &self,
        attrs: &WindowAttrs,
        xs: &[usize],
        ws: &[usize],
        xv: &[T],
        wv: &[T],
        bias: &[T],
    ) -> Result<(Vec<usize>, Vec<T>), OpError>
    where
        T: Copy + Default + std::ops::Add<Output = T> + std::ops::Mul<Output = T> + std::iter::Sum,
    {
        let win = attrs.windows(&xs[2..])?;
        let out_sp = win.out_dims();
        let (n, c, m) = (xs[0], xs[1], ws[0]);
        let mut out_dims = vec![n, m];
        out_dims.extend(&out_sp);
        check_alloc(&out_dims, std::mem::size_of::<T>())?;
        let (cg, mg) = (c / self.group, m / self.group);
        let (in_len, out_len, k_len) =
            (xs[2..].iter().product::<usize>(), out_sp.iter().product::<usize>(), win.kernel_len());
        let mut y = vec![T::default(); out_dims.iter().product()];
        for (o, idx) in ndarray::indices(out_sp.as_slice()).into_iter().enumerate() {
            let live = win.window(idx.slice()).inputs;
            for ni in 0..n {
                for mi in 0..m {
                    let g = mi / mg;
                    let mut acc = bias[mi];
                    for ci in 0..cg {
                        let xb = (ni * c + g * cg + ci) * in_len;
                        let wb = (mi * cg + ci) * k_len;
                        acc = acc + live.iter().map(|&(k, off)| xv[xb + off] * wv[wb + k]).sum::<T>();
                    }
                    y[(ni * m + mi) * out_len + o] = acc;
                }
            }
        }
        Ok((out_dims, y))
    }
}

/// `2·N·M·out_spatial·(C/group)·kernel`: two per multiply-accumulate.
fn conv_flops(ins: &[Option<&TypeInfo>], outs: &[TypeInfo]) -> u64 {
    let per_output =
        ins.get(1).copied().flatten().and_then(|w| Shape(w.shape.0.get(1..)?.to_vec()).numel_upper()).unwrap_or(0)
            as u64;
    let outputs = outs.first().and_then(|t| t.shape.numel_upper()).unwrap_or(0) as u64;
    outputs.saturating_mul(per_output).saturating_mul(2)
}

impl OpDef for Conv {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 2, 3)?;
        let (x, w) = (req(ins, 0)?, req(ins, 1)?);
        let (_, ty) = self.check(x.ty, w.ty, opt(ins, 2).map(|b| b.ty))?;
        Ok(vec![ty])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 2, 3)?;
        let (x, w, b) = (req(ins, 0)?, req(ins, 1)?, opt(ins, 2));
        let ty_of = |t: &Tensor| TypeInfo::new(t.dtype(), t.static_shape());
        let (attrs, out_ty) = self.check(&ty_of(x), &ty_of(w), b.map(ty_of).as_ref())?;
        let xv: Vec<f32> = x.to_f32().iter().copied().collect();
        let wv: Vec<f32> = w.to_f32().iter().copied().collect();
        let bias: Vec<f32> = b.map_or_else(|| vec![0.0; w.shape()[0]], |b| b.to_f32().iter().copied().collect());
        let (out_dims, y) = self.direct(&attrs, x.shape(), w.shape(), &xv, &wv, &bias)?;
        let y = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&out_dims), y).map_err(|e| invalid(e.to_string()))?;
        Ok(vec![Tensor::from_f32(out_ty.dtype, y)])
    }

    fn flops(&self, ins: &[Option<&TypeInfo>], outs: &[TypeInfo]) -> u64 {
        conv_flops(ins, outs)
    }
}

/// ONNX `ConvInteger`: inputs `x` [N, C, D...] (i8/u8), `w` [M, C/group, K...] (i8/u8),
/// optional `x_zero_point` (one element, x's dtype) and `w_zero_point` (one element, or one per
/// output channel `[M]`; w's dtype). `y` (i32) is the convolution of `x − x_zero_point` by
/// `w − w_zero_point`, exact, with padding contributing nothing (as if padded with the zero
/// point); the attributes are [`Conv`]'s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvInteger {
    /// The window attributes and groups.
    pub conv: Conv,
}

impl ConvInteger {
    fn check(&self, ins: &[Option<&TypeInfo>]) -> Result<(WindowAttrs, TypeInfo), OpError> {
        arity(ins, 2, 4)?;
        let (x, w) = (req(ins, 0)?, req(ins, 1)?);
        for (what, t) in [("x", x), ("w", w)] {
            if !matches!(t.dtype, DType::I8 | DType::U8) {
                return Err(invalid(format!("ConvInteger input {what} must be i8 or u8, got {}", t.dtype)));
            }
        }
        let (attrs, out) = self.conv.geometry("ConvInteger", &x.shape, &w.shape)?;
        for (i, operand, per_channel) in [(2, x, false), (3, w, true)] {
            let Some(zp) = opt(ins, i) else { continue };
            let what = if i == 2 { "x_zero_point" } else { "w_zero_point" };
            if zp.dtype != operand.dtype {
                return Err(invalid(format!(
                    "ConvInteger {what} is {} but its operand is {}",
                    zp.dtype, operand.dtype
                )));
            }
            let one = zp.shape.0.iter().all(|d| *d == Dim::Known(1));
            let channels = per_channel && zp.shape.rank() == 1 && zp.shape.0[0] == out.0[1];
            if !one && !channels {
                let want = if per_channel { "one element or one per output channel" } else { "one element" };
                return Err(invalid(format!("ConvInteger {what} of shape {} must have {want}", zp.shape)));
            }
        }
        Ok((attrs, TypeInfo::new(DType::I32, out)))
    }
}

impl OpDef for ConvInteger {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        let tys = super::input_types(ins);
        Ok(vec![self.check(&tys)?.1])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let tys = super::tensor_types(ins);
        let (attrs, _) = self.check(&tys.iter().map(Option::as_ref).collect::<Vec<_>>())?;
        let (x, w) = (req(ins, 0)?, req(ins, 1)?);
        let m = w.shape()[0];
        let ints = |t: &Tensor| -> Result<Vec<i64>, OpError> { t.to_i64_vec().map_err(invalid) };
        let xz = opt(ins, 2).map(ints).transpose()?.map_or(0, |z| z[0]);
        let wz = match opt(ins, 3).map(ints).transpose()? {
            None => vec![0; m],
            Some(z) if z.len() == 1 => vec![z[0]; m],
            Some(z) => z,
        };
        let xv: Vec<i64> = ints(x)?.into_iter().map(|v| v - xz).collect();
        let per_m = w.len() / m.max(1);
        let wv: Vec<i64> = ints(w)?.into_iter().enumerate().map(|(i, v)| v - wz[i / per_m]).collect();
        let (out_dims, y) = self.conv.direct(&attrs, x.shape(), w.shape(), &xv, &wv, &vec![0; m])?;
        // Every product is below 2^16 in magnitude, so the sums are exact in i64; the i32
        // result wraps as an int32 accumulator would.
        let y: Vec<i32> = y.into_iter().map(|v| v as i32).collect();
        Ok(vec![Tensor::from_vec(&out_dims, y).map_err(|e| invalid(e.to_string()))?])
    }

    fn flops(&self, ins: &[Option<&TypeInfo>], outs: &[TypeInfo]) -> u64 {
        conv_flops(ins, outs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};
    use proptest::prelude::*;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape, v).unwrap()
    }
    fn iota(shape: &[usize]) -> Tensor {
        let n = shape.iter().product::<usize>();
        t(shape, (0..n).map(|v| v as f32).collect())
    }
    fn conv(group: usize, strides: Option<Vec<usize>>, pads: Option<Vec<usize>>, auto_pad: AutoPad) -> Conv {
        Conv { group, kernel_shape: None, strides, dilations: None, pads, auto_pad }
    }
    fn run(c: &Conv, ins: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
        Ok(c.eval(ins)?.remove(0))
    }
    fn vals(t: &Tensor) -> Vec<f32> {
        t.to_f32().iter().copied().collect()
    }
    fn ty(s: &str) -> TypeInfo {
        TypeInfo::new(DType::F32, Shape::parse(s).unwrap())
    }
    fn infer(c: &Conv, x: &str, w: &str) -> Result<Shape, OpError> {
        let (x, w) = (ty(x), ty(w));
        let ins = [Some(InferIn { ty: &x, value: None, sym: None }), Some(InferIn { ty: &w, value: None, sym: None })];
        Ok(c.infer(&ins)?.remove(0).shape)
    }

    fn p(kernel: usize, stride: usize, dilation: usize, pads: (usize, usize)) -> AxisParams {
        AxisParams { kernel, stride, dilation, pads }
    }
    fn aw(out: usize, pad_begin: usize, pad_end: usize) -> AxisWindow {
        AxisWindow { out, pad_begin, pad_end }
    }

    #[test]
    fn axis_window_formulas() {
        // Explicit: floor((5 + 2 - 3) / 2) + 1 = 3.
        assert_eq!(axis_window(5, &p(3, 2, 1, (1, 1)), AutoPad::NotSet, false).unwrap(), aw(3, 1, 1));
        // Dilation 2 on a 4-wide input with kernel 2: extent 3, output 2.
        assert_eq!(axis_window(4, &p(2, 1, 2, (0, 0)), AutoPad::NotSet, false).unwrap(), aw(2, 0, 0));
        // SAME: output ceil(5/2) = 3, pad (3-1)·2 + 3 - 5 = 2; lower puts the odd pad first.
        assert_eq!(axis_window(5, &p(3, 2, 1, (9, 9)), AutoPad::SameUpper, false).unwrap(), aw(3, 1, 1));
        assert_eq!(axis_window(32, &p(2, 1, 1, (0, 0)), AutoPad::SameUpper, false).unwrap(), aw(32, 0, 1));
        assert_eq!(axis_window(32, &p(2, 1, 1, (0, 0)), AutoPad::SameLower, false).unwrap(), aw(32, 1, 0));
        // SAME where no padding is needed (stride larger than the kernel): pads clamp at 0.
        assert_eq!(axis_window(6, &p(1, 4, 1, (0, 0)), AutoPad::SameUpper, false).unwrap(), aw(2, 0, 0));
        // VALID ignores pads; ceil_mode makes no difference there.
        assert_eq!(axis_window(7, &p(3, 2, 1, (5, 5)), AutoPad::Valid, true).unwrap(), aw(3, 0, 0));
        // ceil_mode: ceil((4 - 3) / 2) + 1 = 2.
        assert_eq!(axis_window(4, &p(3, 2, 1, (0, 0)), AutoPad::NotSet, true).unwrap(), aw(2, 0, 0));
        assert_eq!(axis_window(4, &p(3, 2, 1, (0, 0)), AutoPad::NotSet, false).unwrap(), aw(1, 0, 0));
        // ceil_mode where the last window would start on the end pad: dropped (2 → 1).
        assert_eq!(axis_window(2, &p(3, 3, 1, (1, 1)), AutoPad::NotSet, true).unwrap(), aw(1, 1, 1));
        assert_eq!(axis_window(2, &p(1, 2, 1, (0, 0)), AutoPad::NotSet, true).unwrap(), aw(1, 0, 0));
        // Empty input with SAME padding: empty output.
        assert_eq!(axis_window(0, &p(3, 1, 1, (0, 0)), AutoPad::SameUpper, false).unwrap(), aw(0, 0, 0));
    }

    #[test]
    fn axis_window_errors() {
        assert!(axis_window(2, &p(3, 1, 1, (0, 0)), AutoPad::NotSet, false).is_err());
        assert!(axis_window(2, &p(3, 1, 1, (0, 0)), AutoPad::Valid, false).is_err());
        assert!(axis_window(usize::MAX, &p(1, 1, 1, (1, 0)), AutoPad::NotSet, false).is_err());
        assert!(axis_window(5, &p(usize::MAX, 1, 2, (0, 0)), AutoPad::NotSet, false).is_err());
        assert!(axis_window(5, &p(usize::MAX, 1, 2, (0, 0)), AutoPad::SameUpper, false).is_err());
        // Huge strides are fine: a single window.
        assert_eq!(axis_window(5, &p(2, usize::MAX, 1, (0, 0)), AutoPad::NotSet, true).unwrap().out, 1);
    }

    #[test]
    fn window_attrs_validation() {
        assert!(WindowAttrs::new(&[3, 3], Some(&[1]), None, None, AutoPad::NotSet, false).is_err());
        assert!(WindowAttrs::new(&[3, 3], None, Some(&[1, 0]), None, AutoPad::NotSet, false).is_err());
        assert!(WindowAttrs::new(&[3, 0], None, None, None, AutoPad::NotSet, false).is_err());
        assert!(WindowAttrs::new(&[3, 3], Some(&[0, 1]), None, None, AutoPad::NotSet, false).is_err());
        assert!(WindowAttrs::new(&[3, 3], None, None, Some(&[1, 1]), AutoPad::NotSet, false).is_err());
        let a = WindowAttrs::new(&[3], None, None, None, AutoPad::NotSet, false).unwrap();
        assert!(a.windows(&[4, 4]).is_err());
    }

    #[test]
    fn window_taps_on_input_and_padding() {
        let taps = |inputs: &[(usize, usize)], pads: usize| WindowTaps { inputs: inputs.to_vec(), pads };
        // 1-D: input 4, kernel 3, stride 2, pads (1, 0), ceil: out = ceil((5-3)/2)+1 = 2.
        let a = WindowAttrs::new(&[3], Some(&[2]), None, Some(&[1, 0]), AutoPad::NotSet, true).unwrap();
        let w = a.windows(&[4]).unwrap();
        assert_eq!(w.out_dims(), vec![2]);
        assert_eq!(w.window(&[0]), taps(&[(1, 0), (2, 1)], 1));
        assert_eq!(w.window(&[1]), taps(&[(0, 1), (1, 2), (2, 3)], 0));
        // 2-D, kernel 2x2 dilation 2 on a 3x3 input, pads 1: window (0, 0) covers rows/cols -1, 1.
        let a = WindowAttrs::new(&[2, 2], None, Some(&[2, 2]), Some(&[1, 1, 1, 1]), AutoPad::NotSet, false).unwrap();
        let w = a.windows(&[3, 3]).unwrap();
        assert_eq!((w.out_dims(), w.kernel_len()), (vec![3, 3], 4));
        assert_eq!(w.window(&[0, 0]), taps(&[(3, 4)], 3));
        assert_eq!(w.window(&[1, 1]), taps(&[(0, 0), (1, 2), (2, 6), (3, 8)], 0));
        assert_eq!(w.window(&[2, 0]), taps(&[(1, 4)], 3));
        // Ceil overflow past the end: neither input nor padding.
        let a = WindowAttrs::new(&[3], Some(&[2]), None, None, AutoPad::NotSet, true).unwrap();
        assert_eq!(a.windows(&[4]).unwrap().window(&[1]), taps(&[(0, 2), (1, 3)], 0));
        // A huge kernel over huge padding costs nothing: one window, its last tap on the input.
        let k = 1usize << 40;
        let a = WindowAttrs::new(&[k], Some(&[1 << 50]), None, Some(&[k - 1, k]), AutoPad::NotSet, false).unwrap();
        let w = a.windows(&[1]).unwrap();
        assert_eq!(w.out_dims(), vec![1]);
        assert_eq!(w.window(&[0]), taps(&[(k - 1, 0)], k - 1));
    }

    #[test]
    fn conv_basic_with_and_without_padding() {
        // ONNX test_basic_conv_with_padding / without_padding: 5x5 iota, 3x3 ones.
        let x = iota(&[1, 1, 5, 5]);
        let w = t(&[1, 1, 3, 3], vec![1.0; 9]);
        let c = conv(1, None, Some(vec![1, 1, 1, 1]), AutoPad::NotSet);
        let y = run(&c, &[Some(&x), Some(&w)]).unwrap();
        assert_eq!(y.shape(), &[1, 1, 5, 5]);
        #[rustfmt::skip]
        let want = [12., 21., 27., 33., 24., 33., 54., 63., 72., 51., 63., 99., 108., 117., 81.,
                    93., 144., 153., 162., 111., 72., 111., 117., 123., 84.];
        assert_eq!(vals(&y), want);
        let c = conv(1, None, None, AutoPad::NotSet);
        let y = run(&c, &[Some(&x), Some(&w)]).unwrap();
        assert_eq!(y.shape(), &[1, 1, 3, 3]);
        assert_eq!(vals(&y), [54., 63., 72., 99., 108., 117., 144., 153., 162.]);
    }

    #[test]
    fn conv_strides_asymmetric_pads_and_auto_pad() {
        // ONNX test_conv_with_strides_and_asymmetric_padding: 7x5 iota, pads [1, 0, 1, 0].
        let x = iota(&[1, 1, 7, 5]);
        let w = t(&[1, 1, 3, 3], vec![1.0; 9]);
        let c = conv(1, Some(vec![2, 2]), Some(vec![1, 0, 1, 0]), AutoPad::NotSet);
        let y = run(&c, &[Some(&x), Some(&w)]).unwrap();
        assert_eq!(y.shape(), &[1, 1, 4, 2]);
        assert_eq!(vals(&y), [21., 33., 99., 117., 189., 207., 171., 183.]);
        // ONNX test_conv_with_autopad_same: SAME_LOWER, stride 2 on 5x5.
        let x = iota(&[1, 1, 5, 5]);
        let c = Conv { kernel_shape: Some(vec![3, 3]), ..conv(1, Some(vec![2, 2]), None, AutoPad::SameLower) };
        let y = run(&c, &[Some(&x), Some(&w)]).unwrap();
        assert_eq!(vals(&y), [12., 27., 24., 63., 108., 81., 72., 117., 84.]);
        // SAME_UPPER puts the odd pad at the end (numpy: pad (0, 1) then valid conv, stride 2).
        let x = iota(&[1, 1, 4, 4]);
        let w2 = t(&[1, 1, 2, 2], vec![1.0; 4]);
        let up = run(&conv(1, Some(vec![2, 2]), None, AutoPad::SameUpper), &[Some(&x), Some(&w2)]).unwrap();
        assert_eq!(vals(&up), [10., 18., 42., 50.]);
        let w3 = t(&[1, 1, 3, 3], vec![1.0; 9]);
        let up = run(&conv(1, Some(vec![2, 2]), None, AutoPad::SameUpper), &[Some(&x), Some(&w3)]).unwrap();
        let lo = run(&conv(1, Some(vec![2, 2]), None, AutoPad::SameLower), &[Some(&x), Some(&w3)]).unwrap();
        assert_eq!(vals(&up), [45., 39., 66., 50.]);
        assert_eq!(vals(&lo), [10., 24., 51., 90.]);
    }

    #[test]
    fn conv_1d_groups_bias_dilation() {
        // x [1, 2, 5], depthwise (group 2), kernel 2 dilation 2, bias [10, 20].
        let x = t(&[1, 2, 5], vec![1., 2., 3., 4., 5., 10., 20., 30., 40., 50.]);
        let w = t(&[2, 1, 2], vec![1., -1., 2., 1.]);
        let b = t(&[2], vec![10., 20.]);
        let c = Conv { dilations: Some(vec![2]), ..conv(2, None, None, AutoPad::NotSet) };
        let y = run(&c, &[Some(&x), Some(&w), Some(&b)]).unwrap();
        assert_eq!(y.shape(), &[1, 2, 3]);
        // ch0: x[i] - x[i+2] + 10; ch1: 2·x[i] + x[i+2] + 20.
        assert_eq!(vals(&y), [8., 8., 8., 70., 100., 130.]);
        // Two groups of two channels each, two outputs per group, batch 2.
        let x = iota(&[2, 4, 3]);
        let w = t(&[4, 2, 1], vec![1., 0., 0., 1., 1., 1., 1., -1.]);
        let y = run(&conv(2, None, None, AutoPad::NotSet), &[Some(&x), Some(&w)]).unwrap();
        // numpy: group 0 uses channels 0,1; group 1 channels 2,3.
        #[rustfmt::skip]
        let want = [0., 1., 2., 3., 4., 5., 15., 17., 19., -3., -3., -3.,
                    12., 13., 14., 15., 16., 17., 39., 41., 43., -3., -3., -3.];
        assert_eq!(vals(&y), want);
    }

    #[test]
    fn conv_3d_and_f16() {
        let x = iota(&[1, 1, 3, 3, 3]);
        let w = t(&[1, 1, 2, 2, 2], vec![1.0; 8]);
        let y = run(&conv(1, None, None, AutoPad::NotSet), &[Some(&x), Some(&w)]).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2, 2]);
        assert_eq!(vals(&y), [52., 60., 76., 84., 124., 132., 148., 156.]);
        let xh = Tensor::from_f32(DType::F16, x.to_f32());
        let wh = Tensor::from_f32(DType::F16, w.to_f32());
        let yh = run(&conv(1, None, None, AutoPad::NotSet), &[Some(&xh), Some(&wh)]).unwrap();
        assert_eq!(yh.dtype(), DType::F16);
        assert_eq!(vals(&yh), vals(&y));
    }

    #[test]
    fn conv_empty_batch() {
        let x = t(&[0, 1, 4], vec![]);
        let w = t(&[3, 1, 2], vec![1.0; 6]);
        let y = run(&conv(1, None, None, AutoPad::NotSet), &[Some(&x), Some(&w)]).unwrap();
        assert_eq!(y.shape(), &[0, 3, 3]);
    }

    #[test]
    fn conv_errors() {
        let x = iota(&[1, 2, 4, 4]);
        let w = t(&[1, 2, 3, 3], vec![1.0; 18]);
        let ok = conv(1, None, None, AutoPad::NotSet);
        // Channel mismatch under groups; output channels not divisible by group.
        assert!(run(&conv(2, None, None, AutoPad::NotSet), &[Some(&x), Some(&w)]).is_err());
        let w3 = t(&[3, 1, 3, 3], vec![1.0; 27]);
        assert!(run(&conv(2, None, None, AutoPad::NotSet), &[Some(&x), Some(&w3)]).is_err());
        // Wrong ranks, dtypes, bias, kernel_shape; too few inputs.
        assert!(run(&ok, &[Some(&iota(&[2, 4])), Some(&w)]).is_err());
        assert!(run(&ok, &[Some(&x), Some(&iota(&[1, 2, 9]))]).is_err());
        let xi = Tensor::from_vec(&[1, 2, 4, 4], vec![0i32; 32]).unwrap();
        assert!(run(&ok, &[Some(&xi), Some(&w)]).is_err());
        let xh = Tensor::from_f32(DType::F16, x.to_f32());
        assert!(run(&ok, &[Some(&xh), Some(&w)]).is_err());
        assert!(run(&ok, &[Some(&x), Some(&w), Some(&iota(&[2]))]).is_err());
        let k = Conv { kernel_shape: Some(vec![2, 2]), ..ok.clone() };
        assert!(run(&k, &[Some(&x), Some(&w)]).is_err());
        assert!(run(&ok, &[Some(&x)]).is_err());
        assert!(run(&ok, &[Some(&x), None]).is_err());
        // Kernel larger than the input; zero stride; absurd padding.
        assert!(run(&ok, &[Some(&iota(&[1, 2, 2, 2])), Some(&w)]).is_err());
        assert!(run(&conv(1, Some(vec![0, 1]), None, AutoPad::NotSet), &[Some(&x), Some(&w)]).is_err());
        let huge = conv(1, None, Some(vec![1 << 40, 1 << 40, 1 << 40, 1 << 40]), AutoPad::NotSet);
        assert!(run(&huge, &[Some(&x), Some(&w)]).is_err());
        let zero = Conv { group: 0, ..ok };
        assert!(run(&zero, &[Some(&x), Some(&w)]).is_err());
    }

    #[test]
    fn conv_infer_symbolic() {
        let same = conv(1, None, None, AutoPad::SameUpper);
        assert_eq!(infer(&same, "[n, 3, h, 10]", "[8, 3, 3, 3]").unwrap(), Shape::parse("[n, 8, h, 10]").unwrap());
        let padded = conv(1, None, Some(vec![1, 1, 1, 1]), AutoPad::NotSet);
        assert_eq!(infer(&padded, "[n, 3, h, 10]", "[8, 3, 3, 3]").unwrap(), Shape::parse("[n, 8, h, 10]").unwrap());
        let strided = conv(1, Some(vec![2, 2]), None, AutoPad::NotSet);
        let s = infer(&strided, "[n, 3, h, 10]", "[8, 3, 3, 3]").unwrap();
        assert!(s.0[2].is_unknown());
        assert_eq!(s.0[3], Dim::Known(4));
        assert_eq!(infer(&strided, "[1, c, 9, 9]", "[m, 3, 3, 3]").unwrap(), Shape::parse("[1, m, 4, 4]").unwrap());
        assert!(infer(&strided, "[1, 4, 9, 9]", "[8, 3, 3, 3]").is_err());
        assert!(matches!(infer(&strided, "[1, 3, 9, 9]", "[8, 3, k, 3]"), Err(OpError::Unsupported(_))));
    }

    #[test]
    fn conv_integer_centres_both_operands_and_pads_with_the_zero_point() {
        // x = [10, 20, 30] (u8, zero point 10), w = [[1, -1]] (i8, zero point per channel -1),
        // pads 1 on each side: centred x = [0, 10, 20], w − zp = [2, 0];
        // y = [0·2 (pad) + 0·0, 0·2 + 10·0, 10·2 + 20·0, 20·2 + 0 (pad)] = [0, 0, 20, 40].
        let ci = ConvInteger { conv: conv(1, None, Some(vec![1, 1]), AutoPad::NotSet) };
        let x = Tensor::from_vec(&[1, 1, 3], vec![10u8, 20, 30]).unwrap();
        let w = Tensor::from_vec(&[1, 1, 2], vec![1i8, -1]).unwrap();
        let (xz, wz) = (Tensor::scalar(10u8), Tensor::from_vec(&[1], vec![-1i8]).unwrap());
        let y = ci.eval(&[Some(&x), Some(&w), Some(&xz), Some(&wz)]).unwrap().remove(0);
        assert_eq!(y.dtype(), DType::I32);
        assert_eq!(y.to_i64_vec().unwrap(), vec![0, 0, 20, 40]);
        // Without zero points: [10·1 + 20·(−1) ...] with zero padding = [−10, −10, −10, 30].
        let y = ci.eval(&[Some(&x), Some(&w)]).unwrap().remove(0);
        assert_eq!(y.to_i64_vec().unwrap(), vec![-10, -10, -10, 30]);
        // A w zero point per channel must have M elements; x's one; the operands are 8-bit.
        let bad = Tensor::from_vec(&[2], vec![0i8, 0]).unwrap();
        let e = ci.eval(&[Some(&x), Some(&w), None, Some(&bad)]).unwrap_err().to_string();
        assert!(e.contains("w_zero_point") && e.contains("one per output channel"), "{e}");
        let bad = Tensor::from_vec(&[2], vec![0u8, 0]).unwrap();
        let e = ci.eval(&[Some(&x), Some(&w), Some(&bad)]).unwrap_err().to_string();
        assert!(e.contains("x_zero_point") && e.contains("one element"), "{e}");
        let xf = iota(&[1, 1, 3]);
        let e = ci.eval(&[Some(&xf), Some(&w)]).unwrap_err().to_string();
        assert!(e.contains("ConvInteger input x must be i8 or u8"), "{e}");
    }

    #[test]
    fn conv_flops() {
        let c = conv(2, None, None, AutoPad::NotSet);
        let (x, w, y) = (ty("[2, 4, 5, 5]"), ty("[6, 2, 3, 3]"), ty("[2, 6, 3, 3]"));
        // 2 · (2·6·3·3 outputs) · (2 channels · 9 taps).
        assert_eq!(c.flops(&[Some(&x), Some(&w)], &[y]), 2 * 108 * 18);
    }

    /// Independent reference: materialize the zero-padded input, then correlate directly.
    fn reference_conv2d(
        x: &ArrayD<f32>,
        w: &ArrayD<f32>,
        group: usize,
        s: [usize; 2],
        d: [usize; 2],
        pads: [usize; 4],
    ) -> ArrayD<f32> {
        let (n, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let (m, cg, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
        let (ph, pw) = (h + pads[0] + pads[2], wd + pads[1] + pads[3]);
        let mut xp = ArrayD::<f32>::zeros(IxDyn(&[n, c, ph, pw]));
        for ((i, j, a, b), v) in x.view().into_dimensionality::<ndarray::Ix4>().unwrap().indexed_iter() {
            xp[[i, j, a + pads[0], b + pads[1]]] = *v;
        }
        let oh = (ph - ((kh - 1) * d[0] + 1)) / s[0] + 1;
        let ow = (pw - ((kw - 1) * d[1] + 1)) / s[1] + 1;
        ArrayD::from_shape_fn(IxDyn(&[n, m, oh, ow]), |i| {
            let g = i[1] / (m / group);
            let mut acc = 0.0;
            for ci in 0..cg {
                for a in 0..kh {
                    for b in 0..kw {
                        acc += xp[[i[0], g * cg + ci, i[2] * s[0] + a * d[0], i[3] * s[1] + b * d[1]]]
                            * w[[i[1], ci, a, b]];
                    }
                }
            }
            acc
        })
    }

    proptest! {
        #[test]
        fn conv2d_matches_padded_reference(
            n in 1usize..3, group in 1usize..3, cg in 1usize..3, mg in 1usize..3,
            h in 1usize..7, wd in 1usize..7, kh in 1usize..4, kw in 1usize..4,
            s in (1usize..4, 1usize..4), d in (1usize..3, 1usize..3), pads in prop::array::uniform4(0usize..3),
            seed in any::<u64>(),
        ) {
            let (c, m) = (group * cg, group * mg);
            let ext = |k: usize, d: usize| (k - 1) * d + 1;
            prop_assume!(h + pads[0] + pads[2] >= ext(kh, d.0) && wd + pads[1] + pads[3] >= ext(kw, d.1));
            // Small integers keep the f32 sums exact, so both orders of summation agree.
            let sample = |len: usize, salt: u64| -> Vec<f32> {
                (0..len as u64).map(|i| ((seed ^ salt).wrapping_mul(i + 7).rotate_left(17) % 7) as f32 - 3.0).collect()
            };
            let x = ArrayD::from_shape_vec(IxDyn(&[n, c, h, wd]), sample(n * c * h * wd, 1)).unwrap();
            let w = ArrayD::from_shape_vec(IxDyn(&[m, cg, kh, kw]), sample(m * cg * kh * kw, 2)).unwrap();
            let op = Conv {
                group, kernel_shape: None, strides: Some(vec![s.0, s.1]), dilations: Some(vec![d.0, d.1]),
                pads: Some(pads.to_vec()), auto_pad: AutoPad::NotSet,
            };
            let (xt, wt) = (Tensor::F32(x.clone()), Tensor::F32(w.clone()));
            let y = op.eval(&[Some(&xt), Some(&wt)]).unwrap().remove(0);
            let want = reference_conv2d(&x, &w, group, [s.0, s.1], [d.0, d.1], pads);
            prop_assert_eq!(&y, &Tensor::F32(want));
            let tx = TypeInfo::new(DType::F32, xt.static_shape());
            let tw = TypeInfo::new(DType::F32, wt.static_shape());
            let ins = [Some(InferIn { ty: &tx, value: None, sym: None }), Some(InferIn { ty: &tw, value: None, sym: None })];
            prop_assert_eq!(&op.infer(&ins).unwrap()[0].shape, &y.static_shape());
        }
    }
}
