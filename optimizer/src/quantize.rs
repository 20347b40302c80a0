//! Build-time quantization of an f32 graph (`slmtvm build --quantize`). Unlike the rewrites of
//! [`crate::rules`], this pass changes the model's arithmetic, so it is a separate, explicit
//! step that runs before the optimizer; its output is an ordinary graph of standard operators,
//! which the optimizer's rules then fuse into the integer kernels.
//!
//! - **int8** ([`Scheme::Int8`]): every MatMul (and Gemm with `transA = 0`, `alpha = 1`,
//!   `beta = 1`) whose B is a constant f32 matrix [K, N] gets symmetric int8 weights with one
//!   scale per output column (`ws[n] = max_k |W[k, n]| / 127`, `Wq = round(W / ws)`, half to
//!   even). Its activation is quantized per row at run time to int8 — `xs = max(max_k |x|,
//!   1e-30) / 127` (ReduceMax over the last axis), `xq = QuantizeLinear(x, xs)` (blocked along
//!   K: one scale per row) — or, with calibration ranges ([`Calibration`]), with one static
//!   scale per tensor. The product is `Cast(MatMulInteger(xq, Wq)) · (xs · ws)`. Embedding
//!   tables (a Gather along axis 0 of a constant f32 matrix) become int8 rows with one scale
//!   per row: `Cast(Gather(Tq, ids)) · Gather(ts, ids)`.
//! - **int4** ([`Scheme::Int4`]): the same products become `com.microsoft::MatMulNBits` with
//!   4-bit weights in groups along K (asymmetric, with packed zero points; scales f32 or f16),
//!   as ONNX Runtime's `MatMulNBitsQuantizer` writes them; the activations stay f32. Embedding
//!   tables become int8 as above.
//!
//! Products whose weight is too small to matter, is not finite, or does not have the shapes
//! above are left in f32 and listed in [`Quantized::skipped`] with the reason.

use crate::{Error, Result};
use half::f16;
use slmtvm_ir::ops::{
    BinaryOp, Cast, Gather, MatMulInteger, MatMulNBits, Op, QuantizeLinear, Reduce, ReduceKind, UnaryOp,
};
use slmtvm_ir::{DType, DataShapeError, Graph, Node, Shape, Tensor, TypeInfo, ValueId};
use std::collections::BTreeMap;

/// Which quantization `slmtvm build --quantize` applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// int8 weights per output channel, int8 activations per row (dynamic) or per tensor
    /// (calibrated).
    Int8,
    /// 4-bit weights in groups of `group` along K, activations in f32.
    Int4 {
        /// Group (block) length along K: 32, 64 or 128.
        group: usize,
        /// Store the group scales as f16 instead of f32.
        f16_scales: bool,
    },
}

/// Static activation ranges: for a value (an activation a quantized product reads), the
/// largest magnitude seen over the calibration inputs.
pub type Calibration = BTreeMap<ValueId, f32>;

/// One quantized weight.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedWeight {
    /// The node it belonged to.
    pub node: String,
    /// What it became (`int8 per column`, `int4 groups of 32`, `int8 rows`).
    pub form: String,
    /// Its dims.
    pub dims: Vec<usize>,
}

/// The quantized graph and what happened to each candidate.
#[derive(Clone, Debug)]
pub struct Quantized {
    /// The graph (inputs and outputs as the original's).
    pub graph: Graph,
    /// The weights that were quantized.
    pub weights: Vec<QuantizedWeight>,
    /// `(node, reason)` for each product or table left in f32.
    pub skipped: Vec<(String, String)>,
}

/// Weights of fewer elements stay f32 (their bytes do not matter, and a tiny product's
/// quantization error is all cost).
pub const MIN_WEIGHT_ELEMENTS: usize = 256;

/// The largest magnitude `xs` may be computed from (keeps an all-zero row's scale finite).
const MIN_RANGE: f32 = 1e-30;

/// The activations the quantized products of `g` read: calibration observes these.
pub fn calibration_values(g: &Graph, scheme: Scheme) -> Vec<ValueId> {
    if matches!(scheme, Scheme::Int4 { .. }) {
        return Vec::new();
    }
    let mut v: Vec<ValueId> = g.nodes.iter().filter_map(|n| product(g, n).ok().map(|p| p.x)).collect();
    v.sort();
    v.dedup();
    v
}

/// Quantizes `g` as `scheme` says; `calibration` (int8 only) gives static activation scales.
pub fn quantize(g: &Graph, scheme: Scheme, calibration: Option<&Calibration>) -> Result<Quantized> {
    if let Scheme::Int4 { group, .. } = scheme
        && !matches!(group, 32 | 64 | 128)
    {
        return Err(Error::GroupSize(group));
    }
    let mut q = Pass { g: g.clone(), nodes: Vec::new(), weights: Vec::new(), skipped: Vec::new() };
    let nodes = std::mem::take(&mut q.g.nodes);
    for node in nodes {
        let done = match &node.op {
            Op::MatMul(_) | Op::Gemm(_) => match product(&q.g, &node) {
                Ok(p) => q.product(&node, p, scheme, calibration)?,
                Err(why) => {
                    if why != NOT_A_CANDIDATE {
                        q.skipped.push((node.name.clone(), why.to_string()));
                    }
                    false
                }
            },
            Op::Gather(ga) => q.table(&node, ga.axis)?,
            _ => false,
        };
        if !done {
            q.nodes.push(node);
        }
    }
    q.g.nodes = q.nodes;
    q.g.infer().map_err(Error::Quantized)?;
    q.g.remove_dead();
    q.g.validate().map_err(Error::Quantized)?;
    Ok(Quantized { graph: q.g, weights: q.weights, skipped: q.skipped })
}

/// Why a MatMul/Gemm is not looked at (not reported: an activation product such as
/// attention's).
const NOT_A_CANDIDATE: &str = "no constant weight";

/// A product `x · W (+ c)` with a constant weight.
struct Product {
    x: ValueId,
    /// The constant B, and whether it is W transposed (Gemm's `transB`).
    b: ValueId,
    trans_b: bool,
    k: usize,
    n: usize,
    /// Gemm's C, added after the product.
    c: Option<ValueId>,
}

impl Product {
    /// W as a row-major [K, N] matrix (Gemm's `transB` undone).
    fn weight(&self, g: &Graph) -> Vec<f32> {
        let Some(w) = g.consts.get(&self.b).and_then(|t| t.view::<f32>()) else { return Vec::new() };
        let flat: Vec<f32> = w.iter().copied().collect();
        if !self.trans_b {
            return flat;
        }
        (0..self.k * self.n).map(|i| flat[(i % self.n) * self.k + i / self.n]).collect()
    }
}

/// The product node `n` computes, or why it is not quantized (checks only: the weight is read
/// when the product is rewritten).
fn product(g: &Graph, n: &Node) -> std::result::Result<Product, &'static str> {
    let (Some(Some(x)), Some(Some(b))) = (n.inputs.first().copied(), n.inputs.get(1).copied()) else {
        return Err(NOT_A_CANDIDATE);
    };
    let Some(bt) = g.consts.get(&b) else { return Err(NOT_A_CANDIDATE) };
    let (trans_b, c) = match &n.op {
        Op::MatMul(_) => (false, None),
        Op::Gemm(gm) => {
            if gm.trans_a || gm.alpha != 1.0 || (n.inputs.get(2).copied().flatten().is_some() && gm.beta != 1.0) {
                return Err("Gemm with transA, alpha ≠ 1 or beta ≠ 1");
            }
            (gm.trans_b, n.inputs.get(2).copied().flatten())
        }
        _ => return Err(NOT_A_CANDIDATE),
    };
    let Some(w) = bt.view::<f32>() else { return Err("the weight is not f32") };
    if g.ty(x).dtype != DType::F32 {
        return Err("the activation is not f32");
    }
    let &[r, cols] = w.shape() else { return Err("the weight is not a matrix") };
    if r * cols < MIN_WEIGHT_ELEMENTS {
        return Err("the weight is too small to quantize");
    }
    if w.iter().any(|v| !v.is_finite()) {
        return Err("the weight holds non-finite values");
    }
    let (k, nn) = if trans_b { (cols, r) } else { (r, cols) };
    Ok(Product { x, b, trans_b, k, n: nn, c })
}

/// Symmetric int8 quantization of the columns of a row-major [K, N] matrix: the values and one
/// scale per column (`max |w| / 127`; 1 for an all-zero column).
pub fn quantize_columns(w: &[f32], k: usize, n: usize) -> (Vec<i8>, Vec<f32>) {
    quantize_groups(&w[..k * n], n, |i| i % n)
}

/// Symmetric int8 quantization of `w` with `groups` scales, element `i` in group `group(i)`:
/// each scale is its group's `max |w| / 127` (1 for an all-zero group).
fn quantize_groups(w: &[f32], groups: usize, group: impl Fn(usize) -> usize) -> (Vec<i8>, Vec<f32>) {
    let mut scale = vec![0f32; groups];
    for (i, v) in w.iter().enumerate() {
        let s = &mut scale[group(i)];
        *s = s.max(v.abs());
    }
    for s in &mut scale {
        *s = if *s > 0.0 { *s / 127.0 } else { 1.0 };
    }
    let q = w.iter().enumerate().map(|(i, &v)| round_i8(v / scale[group(i)])).collect();
    (q, scale)
}

/// Rounds half to even and saturates to [-127, 127].
fn round_i8(v: f32) -> i8 {
    v.round_ties_even().clamp(-127.0, 127.0) as i8
}

struct Pass {
    g: Graph,
    nodes: Vec<Node>,
    weights: Vec<QuantizedWeight>,
    skipped: Vec<(String, String)>,
}

impl Pass {
    /// A new value named after `base` (types come from inference).
    fn value(&mut self, base: &str, what: &str) -> ValueId {
        let name = self.unique(&format!("{base}/{what}"));
        self.g.add_value(name, TypeInfo::new(DType::F32, Shape(vec![])))
    }

    fn unique(&self, name: &str) -> String {
        let taken = |n: &str| self.g.values.iter().any(|v| v.name == n);
        if !taken(name) {
            return name.to_string();
        }
        (1..).map(|i| format!("{name}_{i}")).find(|n| !taken(n)).unwrap_or_default()
    }

    fn konst(&mut self, base: &str, what: &str, t: Tensor) -> ValueId {
        let name = self.unique(&format!("{base}/{what}"));
        self.g.add_const(name, t)
    }

    /// Appends `op(inputs) -> out`, naming the node after `base`.
    fn emit(&mut self, base: &str, what: &str, op: Op, inputs: Vec<Option<ValueId>>, out: ValueId) {
        self.nodes.push(Node { name: format!("{base}/{what}"), op, inputs, outputs: vec![out] });
    }

    /// `op(inputs)` into a new value.
    fn op(&mut self, base: &str, what: &str, op: Op, inputs: &[ValueId]) -> ValueId {
        let out = self.value(base, what);
        self.emit(base, what, op, inputs.iter().map(|&i| Some(i)).collect(), out);
        out
    }

    /// Replaces product `node` (`p`); false when it stays f32.
    fn product(&mut self, node: &Node, p: Product, scheme: Scheme, cal: Option<&Calibration>) -> Result<bool> {
        let base = node.name.clone();
        if let Scheme::Int4 { f16_scales: true, .. } = scheme {
            // A block's scale is at most 2·max |w| / 15; past f16's largest value it cannot be stored.
            let max = p.weight(&self.g).iter().fold(0f32, |m, v| m.max(v.abs()));
            if 2.0 * max / 15.0 > f16::MAX.to_f32() {
                self.skipped.push((base, "the weights are too large for f16 scales".into()));
                return Ok(false);
            }
        }
        let y = node.outputs[0];
        // With Gemm's C the product goes to a new value and C is added into y.
        let prod = if p.c.is_some() { self.value(&base, "product") } else { y };
        match scheme {
            Scheme::Int8 => self.int8_product(&base, &p, cal, prod)?,
            Scheme::Int4 { group, f16_scales } => self.int4_product(&base, &p, group, f16_scales, prod)?,
        }
        if let Some(c) = p.c {
            self.emit(&base, "bias", Op::Binary(BinaryOp::Add), vec![Some(prod), Some(c)], y);
        }
        Ok(true)
    }

    fn int8_product(&mut self, base: &str, p: &Product, cal: Option<&Calibration>, y: ValueId) -> Result<()> {
        let (wq, ws) = quantize_columns(&p.weight(&self.g), p.k, p.n);
        let tensor = |what: &'static str, r: std::result::Result<Tensor, DataShapeError>| {
            r.map_err(|source| Error::QuantizedTensor { node: base.to_string(), what, source })
        };
        let wq = tensor("weight", Tensor::from_vec(&[p.k, p.n], wq))?;
        let wq = self.konst(base, "weight_q8", wq);
        let quant = |axis: i64, block: usize| {
            Op::QuantizeLinear(QuantizeLinear { axis, block_size: block, output_dtype: DType::I8 })
        };
        let x = p.x;
        let (xq, s) = match cal.and_then(|c| c.get(&x)) {
            Some(&range) => {
                let xs = range.max(MIN_RANGE) / 127.0;
                let xs_c = self.konst(base, "x_scale", Tensor::scalar(xs));
                let xq = self.op(base, "x_q8", quant(1, 0), &[x, xs_c]);
                let s: Vec<f32> = ws.iter().map(|w| xs * w).collect();
                let s = tensor("scale", Tensor::from_vec(&[p.n], s))?;
                (xq, self.konst(base, "scale", s))
            }
            None => {
                let abs = self.op(base, "x_abs", Op::Unary(UnaryOp::Abs), &[x]);
                let red = Op::Reduce(Reduce { kind: ReduceKind::Max, axes: Some(vec![-1]), keepdims: true });
                let amax = self.op(base, "x_absmax", red, &[abs]);
                let floor = self.konst(base, "x_min_range", Tensor::scalar(MIN_RANGE));
                let amax = self.op(base, "x_range", Op::Binary(BinaryOp::Max), &[amax, floor]);
                let div = self.konst(base, "q8_max", Tensor::scalar(127f32));
                let xs = self.op(base, "x_scale", Op::Binary(BinaryOp::Div), &[amax, div]);
                let xq = self.op(base, "x_q8", quant(-1, p.k), &[x, xs]);
                let ws = tensor("weight scale", Tensor::from_vec(&[p.n], ws))?;
                let ws = self.konst(base, "weight_scale", ws);
                (xq, self.op(base, "scale", Op::Binary(BinaryOp::Mul), &[xs, ws]))
            }
        };
        let acc = self.op(base, "acc", Op::MatMulInteger(MatMulInteger {}), &[xq, wq]);
        let accf = self.op(base, "acc_f32", Op::Cast(Cast { to: DType::F32, saturate: false }), &[acc]);
        self.emit(base, "scaled", Op::Binary(BinaryOp::Mul), vec![Some(accf), Some(s)], y);
        self.weights.push(QuantizedWeight {
            node: base.to_string(),
            form: "int8 per column".into(),
            dims: vec![p.k, p.n],
        });
        Ok(())
    }

    /// `y = x · W` as a `MatMulNBits` of 4-bit weights in blocks of `group` along K (ONNX
    /// Runtime's layout, so the model is what its `MatMulNBitsQuantizer` writes): asymmetric
    /// round to nearest per block, the range widened to hold 0 (`scale = (max(hi, 0) −
    /// min(lo, 0)) / 15`, 1 for an all-zero block, rounded up to an f16 with `f16_scales`;
    /// `zp = round(−min(lo, 0) / scale)`; `q = clamp(round(w / scale) + zp, 0, 15)`, ties to
    /// even), so every dequantized weight is within half a step of the f32 one.
    fn int4_product(&mut self, base: &str, p: &Product, group: usize, f16_scales: bool, y: ValueId) -> Result<()> {
        let w = p.weight(&self.g);
        let (k, n) = (p.k, p.n);
        let nb_op = MatMulNBits { k, n, bits: 4, block_size: group };
        let (nb, blob, zrow) = (nb_op.blocks(), nb_op.blob(), nb_op.zp_row_bytes());
        let mut bq = vec![0u8; n * nb * blob];
        let mut scales = vec![0f32; n * nb];
        let mut zps = vec![0u8; n * zrow];
        for c in 0..n {
            for j in 0..nb {
                let rows = j * group..((j + 1) * group).min(k);
                let (lo, hi) =
                    rows.clone().fold((0f32, 0f32), |(lo, hi), r| (lo.min(w[r * n + c]), hi.max(w[r * n + c])));
                let mut s = if hi > lo { (hi - lo) / 15.0 } else { 1.0 };
                if f16_scales {
                    // Rounded up, so the block's range stays within the 16 levels.
                    let h = f16::from_f32(s);
                    s = if h.to_f32() < s { f16::from_bits(h.to_bits() + 1) } else { h }.to_f32();
                }
                let z = (-lo / s).round_ties_even().clamp(0.0, 15.0);
                scales[c * nb + j] = s;
                zps[c * zrow + j / 2] |= (z as u8) << (4 * (j % 2));
                for r in rows {
                    let q = ((w[r * n + c] / s).round_ties_even() + z).clamp(0.0, 15.0) as u8;
                    let i = r - j * group;
                    bq[(c * nb + j) * blob + i / 2] |= q << (4 * (i % 2));
                }
            }
        }
        let tensor = |what: &'static str, r: std::result::Result<Tensor, DataShapeError>| {
            r.map_err(|source| Error::QuantizedTensor { node: base.to_string(), what, source })
        };
        let bq = tensor("weight", Tensor::from_vec(&[n, nb, blob], bq))?;
        let sc = if f16_scales {
            Tensor::from_vec(&[n * nb], scales.iter().map(|&v| f16::from_f32(v)).collect())
        } else {
            Tensor::from_vec(&[n * nb], scales)
        };
        let sc = tensor("scales", sc)?;
        let zp = tensor("zero points", Tensor::from_vec(&[n * zrow], zps))?;
        let ins =
            [self.konst(base, "weight_q4", bq), self.konst(base, "scales", sc), self.konst(base, "zero_points", zp)];
        let inputs = [Some(p.x)].into_iter().chain(ins.map(Some)).collect();
        self.emit(base, "q4", Op::MatMulNBits(nb_op), inputs, y);
        self.weights.push(QuantizedWeight {
            node: base.to_string(),
            form: format!("int4 blocks of {group}"),
            dims: vec![k, n],
        });
        Ok(())
    }

    /// Replaces an embedding lookup `Gather(T, ids)` of a constant f32 matrix along axis 0
    /// with int8 rows; false when it stays as it is.
    fn table(&mut self, node: &Node, axis: i64) -> Result<bool> {
        let (Some(Some(t)), Some(Some(ids))) = (node.inputs.first().copied(), node.inputs.get(1).copied()) else {
            return Ok(false);
        };
        let Some(w) = self.g.consts.get(&t).and_then(|t| t.view::<f32>()) else { return Ok(false) };
        let &[rows, cols] = w.shape() else { return Ok(false) };
        if !(axis == 0 || axis == -2) || rows * cols < MIN_WEIGHT_ELEMENTS {
            return Ok(false);
        }
        if w.iter().any(|v| !v.is_finite()) {
            self.skipped.push((node.name.clone(), "the table holds non-finite values".into()));
            return Ok(false);
        }
        let flat: Vec<f32> = w.iter().copied().collect();
        let (q, scale) = quantize_groups(&flat, rows, |i| i / cols);
        let base = node.name.clone();
        let bad = |what, source| Error::QuantizedTensor { node: base.clone(), what, source };
        let tq = Tensor::from_vec(&[rows, cols], q).map_err(|e| bad("table", e))?;
        let ts = Tensor::from_vec(&[rows, 1], scale).map_err(|e| bad("table scale", e))?;
        let (tq, ts) = (self.konst(&base, "table_q8", tq), self.konst(&base, "table_scale", ts));
        let gather = || Op::Gather(Gather { axis: 0 });
        let gq = self.op(&base, "rows_q8", gather(), &[tq, ids]);
        let gf = self.op(&base, "rows_f32", Op::Cast(Cast { to: DType::F32, saturate: false }), &[gq]);
        let gs = self.op(&base, "row_scale", gather(), &[ts, ids]);
        self.emit(&base, "rows", Op::Binary(BinaryOp::Mul), vec![Some(gf), Some(gs)], node.outputs[0]);
        self.weights.push(QuantizedWeight { node: base, form: "int8 rows".into(), dims: vec![rows, cols] });
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slmtvm_ir::ops::MatMul;
    use slmtvm_ir::{Dim, interp};

    /// x [rows, K] (rows symbolic when `sym`) · W [K, N], W from a fixed pattern.
    fn product_graph(k: usize, n: usize, sym: bool) -> Graph {
        let mut g = Graph::new("p");
        let rows = if sym { Dim::sym("seq", Some(8)) } else { Dim::Known(3) };
        let x = g.add_input("x", TypeInfo::new(DType::F32, Shape(vec![Dim::Known(2), rows, Dim::Known(k)])));
        let w: Vec<f32> = (0..k * n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0).collect();
        let w = g.add_const("w", Tensor::from_vec(&[k, n], w).unwrap());
        let y = g.add_node("mm", Op::MatMul(MatMul {}), vec![Some(x), Some(w)], &["y".into()]);
        g.outputs = y;
        g.infer().unwrap();
        g
    }

    fn input(rows: usize, k: usize) -> Tensor {
        let x: Vec<f32> = (0..2 * rows * k).map(|i| ((i * 53 % 97) as f32 - 48.0) / 16.0).collect();
        Tensor::from_vec(&[2, rows, k], x).unwrap()
    }

    #[test]
    fn bad_requests_are_typed_errors() {
        let g = product_graph(64, 16, false);
        let int4 = |group| Scheme::Int4 { group, f16_scales: false };
        assert_eq!(quantize(&g, int4(48), None).err(), Some(Error::GroupSize(48)));
        let sets = crate::Options { sets: Some(vec!["fuse".into(), "nope".into()]), ..crate::Options::default() };
        match crate::optimize(&g, &sets) {
            Err(Error::UnknownRuleSet { given, .. }) => assert_eq!(given, "nope"),
            r => panic!("an unknown rule set: {:?}", r.err()),
        }
    }

    #[test]
    fn columns_quantize_symmetrically_with_one_scale_each() {
        let w = [1.0, -0.5, 0.0, -2.0, 0.25, 0.0];
        let (q, s) = quantize_columns(&w, 2, 3);
        assert_eq!(s, [2.0 / 127.0, 0.5 / 127.0, 1.0]);
        assert_eq!(q, [64, -127, 0, -127, 64, 0]); // 63.5 rounds to even (64)
    }

    #[test]
    fn int8_products_stay_close_to_f32_and_keep_the_interface() {
        for sym in [false, true] {
            let g = product_graph(40, 24, sym);
            let q = quantize(&g, Scheme::Int8, None).unwrap();
            assert_eq!(q.weights.len(), 1);
            assert!(q.graph.nodes.iter().any(|n| matches!(n.op, Op::MatMulInteger(_))));
            assert!(!q.graph.nodes.iter().any(|n| matches!(n.op, Op::MatMul(_))));
            assert_eq!(q.graph.ty(q.graph.outputs[0]), g.ty(g.outputs[0]));
            let x = input(3, 40);
            let want = interp::run(&g, std::slice::from_ref(&x)).unwrap()[0].to_f32();
            let got = interp::run(&q.graph, &[x]).unwrap()[0].to_f32();
            let (err, big) =
                want.iter().zip(&got).fold((0f32, 0f32), |(e, b), (w, g)| (e.max((w - g).abs()), b.max(w.abs())));
            assert!(err > 0.0 && err < 0.02 * big, "max error {err} of {big}");
        }
    }

    #[test]
    fn int4_weights_are_within_half_a_step_and_products_stay_close() {
        // K = 72: two whole blocks of 32 and a partial one; symbolic rows too; f32 and f16 scales.
        for (sym, group, f16_scales) in [(false, 32, false), (true, 32, true), (false, 64, false)] {
            let g = product_graph(72, 24, sym);
            let q = quantize(&g, Scheme::Int4 { group, f16_scales }, None).unwrap();
            let node = q.graph.nodes.iter().find(|n| matches!(n.op, Op::MatMulNBits(_))).expect("a MatMulNBits");
            let Op::MatMulNBits(op) = &node.op else { unreachable!() };
            assert_eq!((op.k, op.n, op.bits, op.block_size), (72, 24, 4, group));
            assert!(!q.graph.nodes.iter().any(|n| matches!(n.op, Op::MatMul(_))));
            assert_eq!(q.graph.ty(q.graph.outputs[0]), g.ty(g.outputs[0]));
            let konst = |i: usize| &q.graph.consts[&node.inputs[i].unwrap()];
            let scales = konst(2);
            assert_eq!(scales.dtype(), if f16_scales { DType::F16 } else { DType::F32 });
            let deq = op.dequantize(konst(1), scales, Some(konst(3))).unwrap();
            let w = g.consts.values().next().unwrap().to_f32();
            let s = scales.to_f32();
            let nb = op.blocks();
            for r in 0..72 {
                for c in 0..24 {
                    let step = s[c * nb + r / group];
                    let d = (deq[[r, c]] - w[[r, c]]).abs();
                    assert!(d <= step * 0.5 * (1.0 + 1e-5), "w[{r},{c}] = {} off by {d} (step {step})", w[[r, c]]);
                }
            }
            // Each output is off by at most Σ_k |x_k| · step_k / 2 (and by something: it is 4-bit).
            let x = input(3, 72);
            let want = interp::run(&g, std::slice::from_ref(&x)).unwrap()[0].to_f32();
            let got = interp::run(&q.graph, std::slice::from_ref(&x)).unwrap()[0].to_f32();
            let xs = x.to_f32();
            let mut total = 0f32;
            for (idx, &y) in got.indexed_iter() {
                let (b, i, c) = (idx[0], idx[1], idx[2]);
                let bound: f32 = (0..72).map(|r| xs[[b, i, r]].abs() * s[c * nb + r / group] * 0.5).sum();
                let d = (y - want[&idx]).abs();
                total += d;
                assert!(d <= bound * 1.001 + 1e-4, "y[{idx:?}] off by {d}, bound {bound}");
            }
            assert!(total > 0.0);
        }
    }

    #[test]
    fn calibrated_scales_are_constants_and_clip_beyond_the_range() {
        let g = product_graph(40, 24, false);
        let x = g.inputs[0];
        let cal = Calibration::from([(x, 1.0f32)]);
        let q = quantize(&g, Scheme::Int8, Some(&cal)).unwrap();
        assert!(!q.graph.nodes.iter().any(|n| matches!(n.op, Op::Reduce(_))), "no run-time range");
        // Inputs within ±1 quantize with step 1/127; the product then follows f32 closely.
        let t: Vec<f32> = (0..2 * 3 * 40).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
        let t = Tensor::from_vec(&[2, 3, 40], t).unwrap();
        let want = interp::run(&g, std::slice::from_ref(&t)).unwrap()[0].to_f32();
        let got = interp::run(&q.graph, &[t]).unwrap()[0].to_f32();
        let err = want.iter().zip(&got).map(|(w, g)| (w - g).abs()).fold(0f32, f32::max);
        assert!(err < 0.05, "max error {err}");
    }

    #[test]
    fn gemm_with_trans_b_and_c_and_embedding_tables_quantize() {
        use slmtvm_ir::ops::Gemm;
        let (k, n, vocab) = (32, 16, 40);
        let mut g = Graph::new("t");
        let ids = g.add_input("ids", TypeInfo::new(DType::I64, Shape::known(&[2, 3])));
        let table: Vec<f32> = (0..vocab * k).map(|i| ((i * 29 % 83) as f32 - 41.0) / 30.0).collect();
        let table = g.add_const("table", Tensor::from_vec(&[vocab, k], table).unwrap());
        let e = g.add_node("emb", Op::Gather(Gather { axis: 0 }), vec![Some(table), Some(ids)], &["e".into()]);
        let flat = g.add_const("shape", Tensor::from_vec(&[2], vec![6i64, k as i64]).unwrap());
        let r = g.add_node(
            "flat",
            Op::Reshape(slmtvm_ir::ops::Reshape { allowzero: false }),
            vec![Some(e[0]), Some(flat)],
            &["r".into()],
        );
        // B is [N, K] with transB; C a bias row.
        let b: Vec<f32> = (0..n * k).map(|i| ((i * 41 % 67) as f32 - 33.0) / 25.0).collect();
        let b = g.add_const("b", Tensor::from_vec(&[n, k], b).unwrap());
        let c = g.add_const("c", Tensor::from_vec(&[n], (0..n).map(|i| i as f32 / 8.0).collect()).unwrap());
        let gemm = Op::Gemm(Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true });
        let y = g.add_node("fc", gemm, vec![Some(r[0]), Some(b), Some(c)], &["y".into()]);
        g.outputs = y;
        g.infer().unwrap();
        let q = quantize(&g, Scheme::Int8, None).unwrap();
        let forms: Vec<&str> = q.weights.iter().map(|w| w.form.as_str()).collect();
        assert_eq!(forms, ["int8 rows", "int8 per column"]);
        assert_eq!(q.weights[1].dims, [k, n], "W is B transposed");
        let x = Tensor::from_vec(&[2, 3], vec![0i64, 5, 39, 7, 7, 21]).unwrap();
        let want = interp::run(&g, std::slice::from_ref(&x)).unwrap()[0].to_f32();
        let got = interp::run(&q.graph, &[x]).unwrap()[0].to_f32();
        let big = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = want.iter().zip(&got).map(|(w, g)| (w - g).abs()).fold(0f32, f32::max);
        assert!(err > 0.0 && err < 0.02 * big, "max error {err} of {big}");
        // alpha ≠ 1 stays f32, with the reason.
        let mut g2 = g.clone();
        if let Op::Gemm(gm) = &mut g2.nodes[2].op {
            gm.alpha = 0.5;
        }
        let q2 = quantize(&g2, Scheme::Int8, None).unwrap();
        assert_eq!(q2.skipped, [("fc".to_string(), "Gemm with transA, alpha ≠ 1 or beta ≠ 1".to_string())]);
    }

    #[test]
    fn small_and_activation_products_stay_f32() {
        let g = product_graph(8, 8, false);
        let q = quantize(&g, Scheme::Int8, None).unwrap();
        assert!(q.weights.is_empty());
        assert_eq!(q.skipped, [("mm".to_string(), "the weight is too small to quantize".to_string())]);
        assert!(quantize(&g, Scheme::Int4 { group: 48, f16_scales: false }, None).is_err());
    }
}
