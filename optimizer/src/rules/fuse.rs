//! Fusions into one kernel.

use super::predicates::{constant, ty, used_only_within};
use super::{Rule, add_op, same_typed};
use crate::analysis::EG;
use crate::lang::Node;
use egg::{Id, Language};
use slmtvm_ir::ops::{BinaryOp, Dense, DequantizeLinear, FusedMlp, QDense, QuantizeDequantize};
use slmtvm_ir::{DType, Op};

/// The fusion rule set.
pub fn rules() -> Vec<Rule> {
    vec![
        Rule { name: "dense", kind: "Add", rewrite: dense_bias },
        Rule { name: "dense-gemm", kind: "Gemm", rewrite: dense_gemm },
        Rule { name: "dense-relu", kind: "Relu", rewrite: dense_activation },
        Rule { name: "dense-gelu", kind: "Gelu", rewrite: dense_activation },
        Rule { name: "dense-silu", kind: "Silu", rewrite: dense_activation },
        Rule { name: "dense-sigmoid", kind: "Sigmoid", rewrite: dense_activation },
        Rule { name: "dense-tanh", kind: "Tanh", rewrite: dense_activation },
        Rule { name: "qdense", kind: "Mul", rewrite: qdense },
        Rule { name: "qdense-bias", kind: "Add", rewrite: qdense_bias },
        Rule { name: "qdq-dense", kind: "MatMul", rewrite: qdq_dense },
        Rule { name: "quantize-dequantize", kind: "DequantizeLinear", rewrite: quantize_dequantize },
        Rule { name: "gated-mlp", kind: "MatMul", rewrite: gated_mlp },
        Rule { name: "attention", kind: "MatMul", rewrite: attention },
        Rule { name: "attention-gqa", kind: "Attention", rewrite: attention_gqa },
    ]
}

/// A constant f32 matrix [K, N] at class `w`: its dims.
fn const_matrix(egraph: &EG, w: Id) -> Option<(usize, usize)> {
    let t = constant(egraph, w)?;
    match (t.dtype(), t.shape()) {
        (DType::F32, &[k, n]) => Some((k, n)),
        _ => None,
    }
}

/// The `(x, W)` of the `MatMul(x, W)` nodes of class `c` whose W is a constant f32 matrix
/// [K, N] and x an f32 tensor ending in K (its leading dims may be symbolic).
fn weight_products(egraph: &EG, c: Id) -> Vec<(Id, Id)> {
    egraph[c]
        .nodes
        .iter()
        .filter_map(|m| match (m.op(), m.children()) {
            (Some(Op::MatMul(_)), [x, w]) => Some((egraph.find(*x), egraph.find(*w))),
            _ => None,
        })
        .filter(|&(x, w)| {
            let Some((k, _)) = const_matrix(egraph, w) else { return false };
            ty(egraph, x).is_some_and(|t| t.dtype == DType::F32 && t.shape.0.last().and_then(|d| d.known()) == Some(k))
        })
        .collect()
}

/// `MatMul(x, W) + b` with a constant f32 matrix W [K, N] and a constant bias b that only
/// varies along the last axis ([N], or [1, …, 1, N]) → Dense(x, W, b as [N]) without
/// activation (its kernel adds the bias as the result is stored), when the product has no
/// other user (else it would be computed twice). x may have any rank ≥ 1 and symbolic leading
/// dims.
fn dense_bias(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::Binary(BinaryOp::Add)), [p, q]) = (n.op(), n.children()) else { return None };
    for (mm, b) in [(*p, *q), (*q, *p)] {
        let Some(bt) = constant(egraph, b).cloned() else { continue };
        let nn = *bt.shape().last()?;
        if bt.dtype() != DType::F32 || bt.len() != nn {
            continue;
        }
        let mm = egraph.find(mm);
        if !used_only_within(egraph, mm, c, 0) {
            continue;
        }
        for (x, w) in weight_products(egraph, mm) {
            if const_matrix(egraph, w).map(|d| d.1) != Some(nn) {
                continue;
            }
            let node = egraph.analysis.add_const(bt.reshaped(&[nn]).ok()?);
            let bid = egraph.add(node);
            if let Some(d) = same_typed(egraph, c, Op::Dense(Dense { activation: None }), vec![x, w, bid]) {
                return Some(d);
            }
        }
    }
    None
}

/// An imported `Gemm(x, W, C)` with alpha 1, beta 1 (or no C), x not transposed, a constant
/// f32 W ([K, N], or [N, K] with `transB`: transposed here, once) and a constant C that only
/// varies along N → Dense(x, W, C as [N]), so that an activation after it can be fused.
fn dense_gemm(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::Gemm(g)), ch) = (n.op(), n.children()) else { return None };
    let (x, w) = (egraph.find(*ch.first()?), egraph.find(*ch.get(1)?));
    if g.alpha != 1.0 || g.trans_a || const_matrix(egraph, w).is_none() {
        return None;
    }
    let mut wt = constant(egraph, w)?.clone();
    if g.trans_b {
        let t = slmtvm_ir::ops::Transpose { perm: Some(vec![1, 0]) };
        wt = Op::Transpose(t).eval(&[Some(&wt)]).ok()?.pop()?;
    }
    let nn = wt.shape()[1];
    let mut ins = vec![x];
    let wnode = egraph.analysis.add_const(wt);
    ins.push(egraph.add(wnode));
    if let Some(&b) = ch.get(2).filter(|&&b| !egraph[b].nodes.iter().any(|m| matches!(m, Node::Absent))) {
        let bt = constant(egraph, b)?.clone();
        if g.beta != 1.0 || bt.dtype() != DType::F32 || bt.len() != nn || bt.shape().last() != Some(&nn) {
            return None;
        }
        let node = egraph.analysis.add_const(bt.reshaped(&[nn]).ok()?);
        ins.push(egraph.add(node));
    }
    same_typed(egraph, c, Op::Dense(Dense { activation: None }), ins)
}

/// `act(Dense(x, W[, b]))` (a Dense without activation) or `act(MatMul(x, W))` with a
/// constant f32 matrix W, for an activation the Dense kernel computes in registers
/// ([`slmtvm_ir::ops::dense::fusable_activation`]) → Dense(x, W[, b]) with that activation,
/// when the product has no other user; likewise `act(QDense(…))` → QDense with it.
fn dense_activation(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::Unary(act)), [y]) = (n.op(), n.children()) else { return None };
    if !slmtvm_ir::ops::dense::fusable_activation(act) {
        return None;
    }
    let y = egraph.find(*y);
    // An activation recognized from its decomposed form uses the product at several depths
    // (x·sigmoid(x): 1; GELU's tanh form, x + 0.044715·x³ … times 0.5·x: 7).
    if !used_only_within(egraph, y, c, 8) {
        return None;
    }
    let dense = Op::Dense(Dense { activation: Some(act.clone()) });
    let qdense = Op::QDense(QDense { activation: Some(act.clone()) });
    let mut forms: Vec<(Op, Vec<Id>)> = egraph[y]
        .nodes
        .iter()
        .filter_map(|m| match (m.op(), m.children()) {
            (Some(Op::Dense(Dense { activation: None })), ch) => Some((dense.clone(), ch.to_vec())),
            (Some(Op::QDense(QDense { activation: None })), ch) => Some((qdense.clone(), ch.to_vec())),
            _ => None,
        })
        .collect();
    forms.extend(weight_products(egraph, y).into_iter().map(|(x, w)| (dense.clone(), vec![x, w])));
    forms.into_iter().find_map(|(op, ins)| same_typed(egraph, c, op, ins))
}

/// `Cast<f32>(MatMulInteger(a, b, a_zp, b_zp)) · (a_scale · b_scale)` in either operand order
/// (ONNX Runtime's `quantize_dynamic` products, `--quantize int8`'s) → QDense(a, b, a_zp,
/// b_zp, a_scale, b_scale), which computes exactly these operations in one kernel, when
/// neither the integer product nor its conversion has another user. Which factor of the scale
/// product is a's and which b's is left to QDense's type check (a's: one element or one per
/// row of a; b's: one element or one per column); the scale product itself may have other
/// users (it is a few values, recomputed in the kernel). Any other scale `s` (the imported
/// QLinearMatMul's `(a_scale·b_scale)/y_scale`) is taken as `1 · s`, which is exact.
fn qdense(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::Binary(BinaryOp::Mul)), [p, q]) = (n.op(), n.children()) else { return None };
    for (cast, scale) in [(*p, *q), (*q, *p)] {
        let (cast, scale) = (egraph.find(cast), egraph.find(scale));
        if !used_only_within(egraph, cast, c, 0) {
            continue;
        }
        let products: Vec<Id> = egraph[cast]
            .nodes
            .iter()
            .filter_map(|m| match (m.op(), m.children()) {
                (Some(Op::Cast(k)), [x]) if k.to == DType::F32 => Some(egraph.find(*x)),
                _ => None,
            })
            .collect();
        let mut factors: Vec<(Id, Id)> = egraph[scale]
            .nodes
            .iter()
            .filter_map(|m| match (m.op(), m.children()) {
                (Some(Op::Binary(BinaryOp::Mul)), [x, y]) => Some((egraph.find(*x), egraph.find(*y))),
                _ => None,
            })
            .collect();
        // Any other scale (QLinearMatMul's `(a_scale·b_scale)/y_scale`) times 1, exactly.
        let one = egraph.analysis.add_const(slmtvm_ir::Tensor::scalar(1.0f32));
        factors.push((egraph.add(one), scale));
        for mi in products {
            if !used_only_within(egraph, mi, cast, 0) {
                continue;
            }
            let forms: Vec<Vec<Id>> = egraph[mi]
                .nodes
                .iter()
                .filter_map(|m| match (m.op(), m.children()) {
                    (Some(Op::MatMulInteger(_)), ch) if ch.len() >= 2 => Some(ch.to_vec()),
                    _ => None,
                })
                .collect();
            for ch in forms {
                let absent = egraph.add(Node::Absent);
                let (za, zb) = (ch.get(2).copied().unwrap_or(absent), ch.get(3).copied().unwrap_or(absent));
                for &(x, y) in &factors {
                    for (sa, sb) in [(x, y), (y, x)] {
                        let op = Op::QDense(QDense { activation: None });
                        if let Some(d) = same_typed(egraph, c, op, vec![ch[0], ch[1], za, zb, sa, sb]) {
                            return Some(d);
                        }
                    }
                }
            }
        }
    }
    None
}

/// The unblocked DequantizeLinear forms of class `c`: (operator, operands).
fn dequantizations(egraph: &EG, c: Id) -> Vec<(DequantizeLinear, Vec<Id>)> {
    egraph[c]
        .nodes
        .iter()
        .filter_map(|m| match (m.op(), m.children()) {
            (Some(Op::DequantizeLinear(d)), ch) if d.block_size == 0 && ch.len() >= 2 => {
                Some((d.clone(), ch.iter().map(|&i| egraph.find(i)).collect()))
            }
            _ => None,
        })
        .collect()
}

/// `MatMul(DequantizeLinear(a, a_scale[, a_zp]), DequantizeLinear(B, b_scale[, b_zp]))`, the
/// QDQ form of a quantized product (`quantize_static(quant_format=QDQ)`, the QDQ exporters),
/// with `a` (u8/i8) dequantized per tensor and a constant 8-bit `B` [K, N] dequantized per
/// tensor or per column (axis 1) → QDense(a, B, a_zp, b_zp, a_scale, b_scale). The value is the
/// same up to f32 rounding: the graph sums `(a − a_zp)·a_scale·(b − b_zp)·b_scale` in f32,
/// QDense sums `(a − a_zp)(b − b_zp)` exactly and scales once (what ONNX Runtime's own QDQ
/// fusion computes). The dequantized operands may have other users.
fn qdq_dense(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::MatMul(_)), [x, w]) = (n.op(), n.children()) else { return None };
    let (x, w) = (egraph.find(*x), egraph.find(*w));
    let one = |egraph: &EG, id: Id| ty(egraph, id).and_then(|t| t.shape.numel()) == Some(1);
    let mut weights = Vec::new();
    for (d, ch) in dequantizations(egraph, w) {
        let Some(b) = constant(egraph, ch[0]) else { continue };
        if b.shape().len() != 2 || !matches!(b.dtype(), DType::I8 | DType::U8) {
            continue;
        }
        // A scale with several elements must run along N (axis 1); one along K is no QDense.
        if !one(egraph, ch[1]) && d.axis != 1 && d.axis != -1 {
            continue;
        }
        weights.push(ch);
    }
    for (_, a) in dequantizations(egraph, x) {
        if !one(egraph, a[1]) {
            continue;
        }
        for b in &weights {
            let absent = egraph.add(Node::Absent);
            let (za, zb) = (a.get(2).copied().unwrap_or(absent), b.get(2).copied().unwrap_or(absent));
            let op = Op::QDense(QDense { activation: None });
            if let Some(q) = same_typed(egraph, c, op, vec![a[0], b[0], za, zb, a[1], b[1]]) {
                return Some(q);
            }
        }
    }
    None
}

/// `DequantizeLinear(QuantizeLinear(x, s, z), s, z)` (the same scale and zero point, or
/// neither zero point; the same axis and blocks) of an f32 `x`, when nothing else reads the
/// quantized value → QuantizeDequantize(x, s, z): one kernel and no 8-bit intermediate for
/// each activation a QDQ model quantizes and dequantizes (the products' own QuantizeLinear
/// feeds QDense as well, so it stays). Exact.
fn quantize_dequantize(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::DequantizeLinear(d)), ch) = (n.op(), n.children()) else { return None };
    let q = egraph.find(*ch.first()?);
    if ch.len() < 2 || !used_only_within(egraph, q, c, 0) {
        return None;
    }
    let same = |egraph: &EG, a: Option<&Id>, b: Option<&Id>| match (a, b) {
        (Some(&a), Some(&b)) => egraph.find(a) == egraph.find(b),
        (None, None) => true,
        _ => false,
    };
    let forms: Vec<(slmtvm_ir::ops::QuantizeLinear, Vec<Id>)> = egraph[q]
        .nodes
        .iter()
        .filter_map(|m| match (m.op(), m.children()) {
            (Some(Op::QuantizeLinear(ql)), qch) => Some((ql.clone(), qch.to_vec())),
            _ => None,
        })
        .collect();
    // One scale for the whole tensor: the axes do not matter (the exporters write the default).
    let per_tensor = ty(egraph, ch[1]).and_then(|t| t.shape.numel()) == Some(1);
    let rank = ty(egraph, q)?.shape.rank();
    let axis = |a: i64| slmtvm_ir::shape::normalize_axis(a, rank).ok();
    for (ql, qch) in forms {
        if (axis(ql.axis) != axis(d.axis) && !per_tensor) || ql.block_size != d.block_size {
            continue;
        }
        if !same(egraph, qch.get(1), ch.get(1)) || !same(egraph, qch.get(2), ch.get(2)) {
            continue;
        }
        let op = QuantizeDequantize { axis: ql.axis, block_size: ql.block_size, output_dtype: ql.output_dtype };
        if let Some(f) = same_typed(egraph, c, Op::QuantizeDequantize(op), qch) {
            return Some(f);
        }
    }
    None
}

/// `QDense(…) + b` (a QDense without bias or activation) with a constant f32 bias that only
/// varies along the last axis → QDense(…, b as [N]), when the QDense has no other user.
fn qdense_bias(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::Binary(BinaryOp::Add)), [p, q]) = (n.op(), n.children()) else { return None };
    for (d, b) in [(*p, *q), (*q, *p)] {
        let Some(bt) = constant(egraph, b).cloned() else { continue };
        let nn = *bt.shape().last()?;
        let d = egraph.find(d);
        if bt.dtype() != DType::F32 || bt.len() != nn || !used_only_within(egraph, d, c, 0) {
            continue;
        }
        let forms: Vec<Vec<Id>> = egraph[d]
            .nodes
            .iter()
            .filter_map(|m| match (m.op(), m.children()) {
                (Some(Op::QDense(QDense { activation: None })), ch) if ch.len() == 6 => Some(ch.to_vec()),
                _ => None,
            })
            .collect();
        for mut ins in forms {
            let node = egraph.analysis.add_const(bt.reshaped(&[nn]).ok()?);
            ins.push(egraph.add(node));
            if let Some(q) = same_typed(egraph, c, Op::QDense(QDense { activation: None }), ins) {
                return Some(q);
            }
        }
    }
    None
}

/// `MatMul(act(MatMul(x, W_gate)) ⊙ MatMul(x, W_up), W_down)` (the product in either operand
/// order) with constant f32 weights and a fusable activation (Silu: SwiGLU, Gelu: GeGLU) →
/// FusedMlp(x, W_gate, W_up, W_down), whose kernel never materializes the [rows, F] hidden
/// layer; only when none of the intermediates has a user outside the MLP.
fn gated_mlp(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::MatMul(_)), [h, wd]) = (n.op(), n.children()) else { return None };
    let (h, wd) = (egraph.find(*h), egraph.find(*wd));
    const_matrix(egraph, wd)?;
    if !used_only_within(egraph, h, c, 0) {
        return None;
    }
    let mut pairs = Vec::new();
    for m in &egraph[h].nodes {
        if let (Some(Op::Binary(BinaryOp::Mul)), [a, b]) = (m.op(), m.children()) {
            let (a, b) = (egraph.find(*a), egraph.find(*b));
            pairs.extend([(a, b), (b, a)]);
        }
    }
    for (gated, up) in pairs {
        let acts: Vec<(slmtvm_ir::ops::UnaryOp, Id)> = egraph[gated]
            .nodes
            .iter()
            .filter_map(|m| match (m.op(), m.children()) {
                (Some(Op::Unary(u)), [g]) if slmtvm_ir::ops::dense::fusable_activation(u) => {
                    Some((u.clone(), egraph.find(*g)))
                }
                _ => None,
            })
            .collect();
        // The gate's product dies in the activation (through x·sigmoid(x)'s Sigmoid too), the
        // activation and the up product in the gating product.
        if !used_only_within(egraph, gated, h, 0) || !used_only_within(egraph, up, h, 0) {
            continue;
        }
        let ups = weight_products(egraph, up);
        for (act, g) in acts {
            if !used_only_within(egraph, g, gated, 1) {
                continue;
            }
            for (x, wg) in weight_products(egraph, g) {
                for &(x2, wu) in &ups {
                    if x2 != x {
                        continue;
                    }
                    let op = Op::FusedMlp(FusedMlp { activation: act.clone() });
                    if let Some(f) = same_typed(egraph, c, op, vec![x, wg, wu, wd]) {
                        return Some(f);
                    }
                }
            }
        }
    }
    None
}

/// `Softmax(Q·Kᵀ · scale [+ mask]) · V` over rank-4 tensors, softmax along the last axis →
/// one Attention(Q, K, V, mask) with K = Transpose(Kᵀ) (which the transpose rules cancel
/// against the exporter's own transpose). The new class only stands if Attention's inference
/// accepts the shapes (else it is invalid and extraction never picks it).
fn attention(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::MatMul(_)), [p, v]) = (n.op(), n.children()) else { return None };
    let (p, v) = (egraph.find(*p), egraph.find(*v));
    if ty(egraph, p)?.shape.rank() != 4 || ty(egraph, v)?.shape.rank() != 4 || ty(egraph, c)?.dtype != DType::F32 {
        return None;
    }
    // Softmax over the last axis (a Cast to f32 between is allowed: exporters add one).
    let mut logits = None;
    for node in &egraph[p].nodes {
        if let (Some(Op::Softmax(s)), [z]) = (node.op(), node.children())
            && (s.axis == -1 || s.axis == 3)
        {
            logits = Some(egraph.find(*z));
        }
    }
    let z = logits?;
    // Optional additive mask, optional scale.
    let mut forms: Vec<(Id, Option<Id>)> = vec![(z, None)];
    for node in &egraph[z].nodes {
        if let (Some(Op::Binary(BinaryOp::Add)), [a, b]) = (node.op(), node.children()) {
            forms.push((egraph.find(*a), Some(egraph.find(*b))));
            forms.push((egraph.find(*b), Some(egraph.find(*a))));
        }
    }
    for (y, mask) in forms {
        let mut scaled: Vec<(Id, f32)> = vec![(y, 1.0)];
        for node in &egraph[y].nodes {
            if let (Some(Op::Binary(BinaryOp::Mul)), [a, b]) = (node.op(), node.children()) {
                for (qk, k) in [(*a, *b), (*b, *a)] {
                    if let Some(s) =
                        constant(egraph, k).filter(|t| t.len() == 1).and_then(|t| t.to_f64().iter().next().copied())
                    {
                        scaled.push((egraph.find(qk), s as f32));
                    }
                }
            }
        }
        for (qk, scale) in scaled {
            let mms: Vec<(Id, Id)> = egraph[qk]
                .nodes
                .iter()
                .filter_map(|m| match (m.op(), m.children()) {
                    (Some(Op::MatMul(_)), [q, kt]) => Some((*q, *kt)),
                    _ => None,
                })
                .collect();
            for (q, kt) in mms {
                if ty(egraph, q).map(|t| t.shape.rank()) != Some(4) || ty(egraph, kt).map(|t| t.shape.rank()) != Some(4)
                {
                    continue;
                }
                if let Some(m) = mask
                    && ty(egraph, m).is_none_or(|t| t.dtype != DType::F32)
                {
                    continue;
                }
                let k =
                    add_op(egraph, Op::Transpose(slmtvm_ir::ops::Transpose { perm: Some(vec![0, 1, 3, 2]) }), vec![kt]);
                let mut ins = vec![q, k, v];
                ins.extend(mask);
                let op = Op::Attention(slmtvm_ir::ops::Attention { scale: Some(scale), causal: false });
                let a = add_op(egraph, op, ins);
                if egraph[a].data.valid && ty(egraph, a) == ty(egraph, c) {
                    return Some(a);
                }
            }
        }
    }
    None
}

/// The un-repeated K/V of class `c` when it is the exporters' `repeat_kv`:
/// `Reshape(Expand(Unsqueeze(x, axes=[2]), [B, Hkv, r, T, D]), [B, Hkv·r, T, D])`. The head
/// counts must be static; batch, sequence and head size may be symbolic (compared as
/// polynomials of the symbols).
fn unrepeated(egraph: &EG, c: Id) -> Option<Id> {
    let out = &ty(egraph, c)?.shape.0;
    let same = |a: &slmtvm_ir::Dim, b: &slmtvm_ir::Dim| a == b || a.poly() == b.poly();
    for n in &egraph[c].nodes {
        let (Some(Op::Reshape(_)), [e, _]) = (n.op(), n.children()) else { continue };
        for m in &egraph[*e].nodes {
            let (Some(Op::Expand(_)), [u, _]) = (m.op(), m.children()) else { continue };
            for k in &egraph[*u].nodes {
                let (Some(Op::Unsqueeze(un)), [x]) = (k.op(), k.children()) else { continue };
                let xd = &ty(egraph, *x)?.shape.0;
                let ed = &ty(egraph, *e)?.shape.0;
                if un.axes != [2] || xd.len() != 4 || ed.len() != 5 || out.len() != 4 {
                    continue;
                }
                let heads = match (xd[1].known(), ed[2].known(), out[1].known()) {
                    (Some(h), Some(r), Some(o)) => h * r == o && ed[1].known() == Some(h),
                    _ => false,
                };
                let ok = heads
                    && same(&ed[0], &xd[0])
                    && same(&ed[3], &xd[2])
                    && same(&ed[4], &xd[3])
                    && same(&out[0], &xd[0])
                    && same(&out[2], &xd[2])
                    && same(&out[3], &xd[3]);
                if ok {
                    return Some(egraph.find(*x));
                }
            }
        }
    }
    None
}

/// Attention over K and V repeated per query head group (`repeat_kv`) → Attention over the
/// un-repeated K and V (grouped-query heads share them in the kernel, no copies).
fn attention_gqa(egraph: &mut EG, c: Id, n: &Node) -> Option<Id> {
    let (Some(Op::Attention(a)), ch) = (n.op(), n.children()) else { return None };
    let (q, k, v) = (*ch.first()?, *ch.get(1)?, *ch.get(2)?);
    let (k0, v0) = (unrepeated(egraph, egraph.find(k))?, unrepeated(egraph, egraph.find(v))?);
    let mut ins = vec![q, k0, v0];
    ins.extend(ch.get(3).copied());
    let new = add_op(egraph, Op::Attention(a.clone()), ins);
    (egraph[new].data.valid && ty(egraph, new) == ty(egraph, c)).then_some(new)
}
