//! ONNX `Attention` (opsets 23 to 25), decomposed into IR primitives: Reshape/Transpose for
//! 3-D inputs, Concat for the KV cache, Unsqueeze/Expand/Reshape for grouped-query heads,
//! MatMul, Tanh for the softcap, an additive bias built from the mask, the causal constant
//! and `nonpad_kv_seqlen`, Softmax, and a Where that zeroes rows whose bias is all `-inf`.
//! The semantics follow the ONNX reference implementation (`op_attention.py`).

use super::Importer;
use super::attr::Attrs;
use super::proto::NodeProto;
use super::subgraph::{Sub, at_most};
use crate::{Error, Result};
use slmtvm_ir::ops::*;
use slmtvm_ir::{DType, Op, Tensor, ValueId};

/// Imports one `Attention` node: every output it names is defined.
pub(crate) fn import(
    imp: &mut Importer,
    n: &NodeProto,
    name: &str,
    a: &Attrs,
    ins: Vec<Option<ValueId>>,
) -> Result<()> {
    let opset = imp.opset.unwrap_or(0);
    let mut b = Sub::new(imp, n, name);
    let p = read_params(&b, opset, name, a, &ins)?;
    let (q, k, v) = to_heads_layout(&mut b, &p)?;
    let h = head_dims(&b, q, k, v)?;
    let (k, v) = concat_kv_cache(&mut b, &p, k, v)?;
    let (present_k, present_v) = (k, v);
    let (qs, ks) = scale_qk(&mut b, &p, &h, q, k)?;
    let (ks, vr) = expand_kv_heads(&mut b, &h, ks, v)?;
    let capped = scores(&mut b, &p, qs, ks)?;

    // The additive bias.
    let neg_inf = b.floats(p.dt, &[], vec![f32::NEG_INFINITY]);
    let zero = b.floats(p.dt, &[], vec![0.0]);
    let bias = additive_bias(&mut b, &p, q, k, zero, neg_inf)?;
    let with_bias = match bias {
        None => capped,
        Some(m) => b.binary(BinaryOp::Add, capped, m)?,
    };

    let probs = softmax(&mut b, &p, with_bias, bias, neg_inf)?;
    let y = attend(&mut b, &p, probs, vr)?;
    let qk_out = match p.mode {
        0 | 1 => capped,
        2 => with_bias,
        _ => probs,
    };
    define_outputs(&mut b, n, [y, present_k, present_v, qk_out])
}

/// The inputs and attributes of one `Attention` node, read and checked.
struct Params {
    /// Query, as given (3-D or 4-D).
    q: ValueId,
    /// Key, as given.
    k: ValueId,
    /// Value, as given.
    v: ValueId,
    /// `attn_mask`, optional.
    mask: Option<ValueId>,
    /// `past_key`, optional (given with `past_value`).
    past_k: Option<ValueId>,
    /// `past_value`, optional (given with `past_key`).
    past_v: Option<ValueId>,
    /// `nonpad_kv_seqlen`, optional (opset 24).
    nonpad: Option<ValueId>,
    /// The `scale` attribute, when given.
    scale_attr: Option<f32>,
    /// The `is_causal` attribute.
    is_causal: bool,
    /// `q_num_heads`, when given.
    q_heads_attr: Option<i64>,
    /// `kv_num_heads`, when given.
    kv_heads_attr: Option<i64>,
    /// `softcap`; 0 for none.
    softcap: f32,
    /// `qk_matmul_output_mode`, 0 to 3.
    mode: i64,
    /// The sliding window's `left_window_size`; -1 is unbounded.
    left: i64,
    /// The sliding window's `right_window_size`; -1 is unbounded.
    right: i64,
    /// `softmax_precision`, when given.
    precision: Option<DType>,
    /// Q's dtype, which K, V and the past share.
    dt: DType,
    /// Q's rank, which K and V share: 3 or 4.
    rank: usize,
}

/// Head counts and head sizes of the 4-D Q, K and V.
struct Heads {
    /// Query heads.
    hq: usize,
    /// Key/value heads.
    hkv: usize,
    /// Q's head size.
    dq: usize,
    /// K's head size.
    dk: usize,
    /// V's head size.
    dv: usize,
}

/// Reads and validates the node's inputs and attributes (nothing is added to the graph).
fn read_params(b: &Sub, opset: i64, name: &str, a: &Attrs, ins: &[Option<ValueId>]) -> Result<Params> {
    let input = |i: usize| ins.get(i).copied().flatten();
    let (Some(q), Some(k), Some(v)) = (input(0), input(1), input(2)) else {
        return Err(b.err("inputs Q, K and V are required"));
    };
    let mask = input(3);
    let (past_k, past_v) = (input(4), input(5));
    let nonpad = input(6);
    at_most(b, ins, 7, "at most 7")?;
    if nonpad.is_some() && opset < 24 {
        return Err(b.err("the nonpad_kv_seqlen input needs opset 24"));
    }
    if past_k.is_some() != past_v.is_some() {
        return Err(b.err("past_key and past_value must be given together"));
    }
    if nonpad.is_some() && past_k.is_some() {
        return Err(b.err("nonpad_kv_seqlen cannot be combined with past_key/past_value"));
    }
    let scale_attr = if a.has("scale") { Some(a.float_or("scale", 1.0)?) } else { None };
    let is_causal = a.flag_or("is_causal", false)?;
    let q_heads_attr = a.int("q_num_heads")?;
    let kv_heads_attr = a.int("kv_num_heads")?;
    let softcap = a.float_or("softcap", 0.0)?;
    let mode = a.int_or("qk_matmul_output_mode", 0)?;
    if !(0..=3).contains(&mode) {
        return Err(Error::Attribute {
            node: name.into(),
            attr: "qk_matmul_output_mode".into(),
            msg: format!("must be 0, 1, 2 or 3, got {mode}"),
        });
    }
    // Opset 25's sliding window: -1 leaves a side unbounded.
    let (left, right) =
        if opset >= 25 { (a.int_or("left_window_size", -1)?, a.int_or("right_window_size", -1)?) } else { (-1, -1) };
    for (w, attr) in [(left, "left_window_size"), (right, "right_window_size")] {
        if w < -1 {
            return Err(Error::Attribute {
                node: name.into(),
                attr: attr.into(),
                msg: format!("must be -1 or non-negative, got {w}"),
            });
        }
    }
    let precision = match a.int("softmax_precision")? {
        None => None,
        Some(c) => Some(super::tensor::dtype_from_onnx(c as i32, &format!("{name}: softmax_precision"))?),
    };

    let dt = b.dtype(q);
    if !matches!(dt, DType::F32 | DType::F16) {
        return Err(b.err(format!("Q must be float32 or float16, got {dt}")));
    }
    for (x, what) in
        [(k, "K"), (v, "V")].into_iter().chain(past_k.map(|p| (p, "past_key"))).chain(past_v.map(|p| (p, "past_value")))
    {
        if b.dtype(x) != dt {
            return Err(b.err(format!("{what} has dtype {}, Q has {dt}", b.dtype(x))));
        }
    }
    let rank = b.rank(q);
    if !matches!(rank, 3 | 4) || b.rank(k) != rank || b.rank(v) != rank {
        return Err(b.err(format!(
            "Q, K and V must all be 3-D or all 4-D, got ranks {}, {} and {}",
            rank,
            b.rank(k),
            b.rank(v)
        )));
    }
    Ok(Params {
        q,
        k,
        v,
        mask,
        past_k,
        past_v,
        nonpad,
        scale_attr,
        is_causal,
        q_heads_attr,
        kv_heads_attr,
        softcap,
        mode,
        left,
        right,
        precision,
        dt,
        rank,
    })
}

/// Q, K and V as [B, heads, S, D]: 3-D inputs split into their heads, 4-D ones checked against
/// the head-count attributes.
fn to_heads_layout(b: &mut Sub, p: &Params) -> Result<(ValueId, ValueId, ValueId)> {
    let (q, k, v) = (p.q, p.k, p.v);
    let (q_heads_attr, kv_heads_attr) = (p.q_heads_attr, p.kv_heads_attr);
    // To [B, heads, S, D].
    let (q, k, v) = if p.rank == 3 {
        let heads = |attr: Option<i64>, what: &str| -> Result<i64> {
            attr.filter(|&h| h > 0).ok_or_else(|| b.err(format!("3-D inputs need a positive {what} attribute")))
        };
        let hq = heads(q_heads_attr, "q_num_heads")?;
        let hkv = heads(kv_heads_attr, "kv_num_heads")?;
        for (x, h, what) in [(q, hq, "Q"), (k, hkv, "K"), (v, hkv, "V")] {
            let hidden = b.known_dim(x, 2, &format!("{what} hidden size"))?;
            if hidden % h as usize != 0 {
                return Err(b.err(format!("{what}'s hidden size {hidden} is not divisible by its {h} heads")));
            }
        }
        let mut split = |x: ValueId, h: i64| -> Result<ValueId> {
            let r = b.reshape(x, &[0, 0, h, -1])?;
            b.transpose(r, &[0, 2, 1, 3])
        };
        (split(q, hq)?, split(k, hkv)?, split(v, hkv)?)
    } else {
        if q_heads_attr.is_some() || kv_heads_attr.is_some() {
            let (hq, hkv) = (b.known_dim(q, 1, "Q head count")?, b.known_dim(k, 1, "K head count")?);
            if q_heads_attr.is_some_and(|h| h != hq as i64) || kv_heads_attr.is_some_and(|h| h != hkv as i64) {
                return Err(b.err("q_num_heads/kv_num_heads disagree with the 4-D inputs' head dims"));
            }
        }
        (q, k, v)
    };
    Ok((q, k, v))
}

/// The head counts and sizes of the 4-D Q, K and V, checked to agree.
fn head_dims(b: &Sub, q: ValueId, k: ValueId, v: ValueId) -> Result<Heads> {
    let hq = b.known_dim(q, 1, "Q head count")?;
    let hkv = b.known_dim(k, 1, "K head count")?;
    let dq = b.known_dim(q, 3, "Q head size")?;
    let dk = b.known_dim(k, 3, "K head size")?;
    let dv = b.known_dim(v, 3, "V head size")?;
    if b.known_dim(v, 1, "V head count")? != hkv {
        return Err(b.err(format!("K has {hkv} heads but V has {}", b.known_dim(v, 1, "V head count")?)));
    }
    if dq != dk {
        return Err(b.err(format!("Q's head size {dq} differs from K's {dk}")));
    }
    if hkv == 0 || hq % hkv != 0 {
        return Err(b.err(format!("the {hkv} KV heads do not divide the {hq} query heads")));
    }
    Ok(Heads { hq, hkv, dq, dk, dv })
}

/// K and V after the past keys and values (which are the present outputs).
fn concat_kv_cache(b: &mut Sub, p: &Params, k: ValueId, v: ValueId) -> Result<(ValueId, ValueId)> {
    // KV cache.
    let mut concat_past = |past: Option<ValueId>, x: ValueId, what: &str| -> Result<ValueId> {
        match past {
            None => Ok(x),
            Some(p) if b.rank(p) != 4 => Err(b.err(format!("{what} must be 4-D, got rank {}", b.rank(p)))),
            Some(p) => b.node(Op::Concat(Concat { axis: 2 }), vec![p, x]),
        }
    };
    let k = concat_past(p.past_k, k, "past_key")?;
    let v = concat_past(p.past_v, v, "past_value")?;
    Ok((k, v))
}

/// Q and K each multiplied by √scale.
fn scale_qk(b: &mut Sub, p: &Params, h: &Heads, q: ValueId, k: ValueId) -> Result<(ValueId, ValueId)> {
    // Scores: (Q·√scale)(K·√scale)ᵀ.
    let scale = p.scale_attr.unwrap_or_else(|| 1.0 / (h.dq as f32).sqrt());
    let root = b.floats(p.dt, &[], vec![scale.sqrt()]);
    let qs = b.binary(BinaryOp::Mul, q, root)?;
    let ks = b.binary(BinaryOp::Mul, k, root)?;
    Ok((qs, ks))
}

/// Grouped-query attention: the KV heads (of the scaled K and of V) repeated to Q's head count.
fn expand_kv_heads(b: &mut Sub, h: &Heads, ks: ValueId, v: ValueId) -> Result<(ValueId, ValueId)> {
    let (hq, hkv, dk, dv) = (h.hq, h.hkv, h.dk, h.dv);
    let (ks, vr) = if hq != hkv {
        let r = (hq / hkv) as i64;
        let mut repeat = |x: ValueId, d: usize| -> Result<ValueId> {
            let u = b.node(Op::Unsqueeze(Unsqueeze { axes: vec![2] }), vec![x])?;
            let shape = b.ints(&[1, 1, r, 1, 1]);
            let e = b.node(Op::Expand(Expand {}), vec![u, shape])?;
            b.reshape(e, &[0, hq as i64, -1, d as i64])
        };
        (repeat(ks, dk)?, repeat(v, dv)?)
    } else {
        (ks, v)
    };
    Ok((ks, vr))
}

/// The scores Qs·Ksᵀ, capped by `softcap` when it is positive.
fn scores(b: &mut Sub, p: &Params, qs: ValueId, ks: ValueId) -> Result<ValueId> {
    let (dt, softcap) = (p.dt, p.softcap);
    let kt = b.transpose(ks, &[0, 1, 3, 2])?;
    let mut scores = b.node(Op::MatMul(MatMul {}), vec![qs, kt])?;
    if softcap > 0.0 {
        let c = b.floats(dt, &[], vec![softcap]);
        let d = b.binary(BinaryOp::Div, scores, c)?;
        let t = b.node(Op::Unary(UnaryOp::Tanh), vec![d])?;
        scores = b.binary(BinaryOp::Mul, t, c)?;
    }
    Ok(scores)
}

/// The additive bias: the sum of the mask's, the causal, the sliding window's and the
/// `nonpad_kv_seqlen` terms that apply, or `None` when none does.
fn additive_bias(
    b: &mut Sub,
    p: &Params,
    q: ValueId,
    k: ValueId,
    zero: ValueId,
    neg_inf: ValueId,
) -> Result<Option<ValueId>> {
    let mut bias: Option<ValueId> = None;
    if let Some(m) = p.mask {
        bias = Some(mask_bias(b, p, m, k, zero, neg_inf)?);
    }
    if p.is_causal {
        let causal = causal_bias(b, p, q, k, zero, neg_inf)?;
        bias = Some(match bias {
            None => causal,
            Some(m) => b.binary(BinaryOp::Add, m, causal)?,
        });
    }
    if p.left >= 0 || p.right >= 0 {
        let window = window_bias(b, p, q, k, zero, neg_inf)?;
        bias = Some(match bias {
            None => window,
            Some(m) => b.binary(BinaryOp::Add, m, window)?,
        });
    }
    if let Some(np) = p.nonpad {
        let pad = nonpad_bias(b, k, np, zero, neg_inf)?;
        bias = Some(match bias {
            None => pad,
            Some(m) => b.binary(BinaryOp::Add, m, pad)?,
        });
    }
    Ok(bias)
}

/// The mask `m` as an additive bias in Q's dtype, its last dim padded with `-inf` to the KV
/// sequence length.
fn mask_bias(b: &mut Sub, p: &Params, m: ValueId, k: ValueId, zero: ValueId, neg_inf: ValueId) -> Result<ValueId> {
    let dt = p.dt;
    let mdt = b.dtype(m);
    let mut m = match mdt {
        DType::Bool => b.node(Op::Where(Where {}), vec![m, zero, neg_inf])?,
        d if d == dt => m,
        d => return Err(b.err(format!("attn_mask must be bool or Q's dtype {dt}, got {d}"))),
    };
    let mr = b.rank(m);
    if !(1..=4).contains(&mr) {
        return Err(b.err(format!("attn_mask must have rank 1 to 4, got rank {mr}")));
    }
    let ml = b.known_dim(m, mr - 1, "attn_mask last dim")?;
    let l = b.known_dim(k, 2, "KV sequence length")?;
    if ml > l {
        return Err(b.err(format!("attn_mask's last dim {ml} exceeds the KV sequence length {l}")));
    }
    if ml < l {
        let mut shape =
            b.ty(m).shape.as_known().ok_or_else(|| b.unsupported("Attention padding a symbolic attn_mask"))?;
        shape[mr - 1] = l - ml;
        let n = shape.iter().product();
        let pad = b.floats(dt, &shape, vec![f32::NEG_INFINITY; n]);
        m = b.node(Op::Concat(Concat { axis: -1 }), vec![m, pad])?;
    }
    Ok(m)
}

/// The causal bias: `-inf` where a key lies after the query (past keys and `nonpad_kv_seqlen`
/// shifting the query positions).
fn causal_bias(b: &mut Sub, p: &Params, q: ValueId, k: ValueId, zero: ValueId, neg_inf: ValueId) -> Result<ValueId> {
    let (dt, nonpad, past_k) = (p.dt, p.nonpad, p.past_k);
    let (s, l) = (b.known_dim(q, 2, "query sequence length")?, b.known_dim(k, 2, "KV sequence length")?);
    b.check_size(&[s, l], 8)?;
    let causal = match nonpad {
        None => {
            let past = match past_k {
                Some(p) => b.known_dim(p, 2, "past sequence length")?,
                None => 0,
            };
            let data =
                (0..s).flat_map(|i| (0..l).map(move |j| if j > i + past { f32::NEG_INFINITY } else { 0.0 })).collect();
            b.floats(dt, &[s, l], data)
        }
        Some(np) => {
            // Query i attends key j iff j <= i + nonpad[b] - S, i.e. j - i + S <= nonpad[b].
            let rel: Vec<i64> = (0..s).flat_map(|i| (0..l).map(move |j| j as i64 - i as i64 + s as i64)).collect();
            let rel = b.konst(Tensor::from_vec(&[s, l], rel).expect("the shape matches the data"));
            let np4 = nonpad_4d(b, np)?;
            let ok = b.binary(BinaryOp::LessOrEqual, rel, np4)?;
            b.node(Op::Where(Where {}), vec![ok, zero, neg_inf])?
        }
    };
    Ok(causal)
}

/// The sliding window's bias: `-inf` outside `left`/`right` of each query's position.
fn window_bias(b: &mut Sub, p: &Params, q: ValueId, k: ValueId, zero: ValueId, neg_inf: ValueId) -> Result<ValueId> {
    let (dt, nonpad, past_k, left, right) = (p.dt, p.nonpad, p.past_k, p.left, p.right);
    let (s, l) = (b.known_dim(q, 2, "query sequence length")?, b.known_dim(k, 2, "KV sequence length")?);
    b.check_size(&[s, l], 8)?;
    // Query i at absolute position p = offset + i attends key j iff
    // p - left <= j <= p + right, for each bounded side.
    let window = match nonpad.filter(|_| past_k.is_none()) {
        None => {
            let offset = match past_k {
                Some(p) => b.known_dim(p, 2, "past sequence length")? as i64,
                None => 0,
            };
            let data = (0..s as i64)
                .flat_map(|i| {
                    (0..l as i64).map(move |j| {
                        let d = i + offset - j;
                        if (left < 0 || d <= left) && (right < 0 || -d <= right) { 0.0 } else { f32::NEG_INFINITY }
                    })
                })
                .collect();
            b.floats(dt, &[s, l], data)
        }
        Some(np) => {
            // d = i + nonpad[b] - S - j.
            let rel: Vec<i64> = (0..s as i64).flat_map(|i| (0..l as i64).map(move |j| i - s as i64 - j)).collect();
            let rel = b.konst(Tensor::from_vec(&[s, l], rel).expect("the shape matches the data"));
            let np4 = nonpad_4d(b, np)?;
            let d = b.binary(BinaryOp::Add, rel, np4)?;
            let mut ok: Option<ValueId> = None;
            for (bound, cmp, limit) in [(left, BinaryOp::LessOrEqual, left), (right, BinaryOp::GreaterOrEqual, -right)]
            {
                if bound >= 0 {
                    let lim = b.konst(Tensor::scalar(limit));
                    let c = b.binary(cmp, d, lim)?;
                    ok = Some(match ok {
                        None => c,
                        Some(o) => b.binary(BinaryOp::And, o, c)?,
                    });
                }
            }
            let ok = ok.expect("one side is bounded");
            b.node(Op::Where(Where {}), vec![ok, zero, neg_inf])?
        }
    };
    Ok(window)
}

/// The `nonpad_kv_seqlen` bias: `-inf` on the keys past each batch entry's valid length.
fn nonpad_bias(b: &mut Sub, k: ValueId, np: ValueId, zero: ValueId, neg_inf: ValueId) -> Result<ValueId> {
    let l = b.known_dim(k, 2, "KV sequence length")?;
    let idx = b.ints(&(0..l as i64).collect::<Vec<_>>());
    let np4 = nonpad_4d(b, np)?;
    let ok = b.binary(BinaryOp::Less, idx, np4)?;
    b.node(Op::Where(Where {}), vec![ok, zero, neg_inf])
}

/// The attention probabilities: Softmax of the biased scores (in `softmax_precision`), rows
/// whose bias is all `-inf` zeroed, back in Q's dtype.
fn softmax(b: &mut Sub, p: &Params, with_bias: ValueId, bias: Option<ValueId>, neg_inf: ValueId) -> Result<ValueId> {
    let dt = p.dt;
    // Softmax, in `softmax_precision` when it differs from Q's dtype.
    let cast_to = p.precision.filter(|&p| p != dt);
    if let Some(p) = cast_to
        && !matches!(p, DType::F32 | DType::F16)
    {
        return Err(b.unsupported(format!("Attention softmax_precision {p}")));
    }
    let sm_in = match cast_to {
        Some(p) => b.node(Op::Cast(Cast { to: p, saturate: true }), vec![with_bias])?,
        None => with_bias,
    };
    let mut probs = b.node(Op::Softmax(Softmax { axis: -1 }), vec![sm_in])?;
    if let Some(m) = bias {
        // Rows whose bias is all -inf attend nothing: their probabilities are 0.
        let mx = b.node(Op::Reduce(Reduce { kind: ReduceKind::Max, axes: Some(vec![-1]), keepdims: true }), vec![m])?;
        let masked = b.binary(BinaryOp::Equal, mx, neg_inf)?;
        let pdt = b.dtype(probs);
        let pz = b.floats(pdt, &[], vec![0.0]);
        probs = b.node(Op::Where(Where {}), vec![masked, pz, probs])?;
    }
    if cast_to.is_some() {
        probs = b.node(Op::Cast(Cast { to: dt, saturate: true }), vec![probs])?;
    }
    Ok(probs)
}

/// The output `probs`·V, back to [B, S, hidden] for 3-D inputs.
fn attend(b: &mut Sub, p: &Params, probs: ValueId, vr: ValueId) -> Result<ValueId> {
    let mut y = b.node(Op::MatMul(MatMul {}), vec![probs, vr])?;
    if p.rank == 3 {
        let t = b.transpose(y, &[0, 2, 1, 3])?;
        y = b.reshape(t, &[0, 0, -1])?;
    }
    Ok(y)
}

/// Defines each output `n` names from `outs` (Y, present_key, present_value, qk_matmul_output).
fn define_outputs(b: &mut Sub, n: &NodeProto, outs: [ValueId; 4]) -> Result<()> {
    if n.output.len() > outs.len() {
        return Err(b.err(format!("has {} outputs; Attention produces at most 4", n.output.len())));
    }
    for (o, &id) in n.output.iter().zip(&outs) {
        if !o.is_empty() {
            finish_output(b, id, o)?;
        }
    }
    Ok(())
}

/// `nonpad_kv_seqlen` ([B] int64) as [B, 1, 1, 1].
fn nonpad_4d(b: &mut Sub, np: ValueId) -> Result<ValueId> {
    if b.rank(np) != 1 || b.dtype(np) != DType::I64 {
        return Err(b.err(format!("nonpad_kv_seqlen must be a 1-D int64 tensor, got {}", b.ty(np))));
    }
    b.reshape(np, &[-1, 1, 1, 1])
}

/// An Identity onto the ONNX output name `out`.
fn finish_output(b: &mut Sub, v: ValueId, out: &str) -> Result<()> {
    b.output(Op::Unary(UnaryOp::Identity), vec![v], out)
}
