#!/usr/bin/env python3
"""Writes a Llama-class decoder (SmolLM-135M-like but shallower: 4 layers, hidden 576, 9 query
heads and 3 KV heads of dim 64 (GQA 3:1), SwiGLU FFN 1536, RMSNorm eps 1e-5, RoPE theta 1e4,
vocab 8192, untied LM head; batch 1, sequence 64: ~94 MB of f32 weights) as ONNX, as a prefill
graph (no KV cache) in the graph shape torch.onnx.export (TorchScript, opset 17) gives a Hugging
Face LlamaForCausalLM: node for node what tests/models/llama_tiny holds (Gather embeddings; the
causal mask from constant position ranges And-ed with the attention_mask gathered per batch row,
turned additive by Where(mask, 0, min-float); RMSNorm as Pow 2 → ReduceMean → Add eps → Sqrt →
Div 1/· → Mul → Mul weight, with the exporter's Casts; RoPE from constant angle tables through
Cos/Sin, rotate_half as Slice/Neg/Concat; repeat_kv as Unsqueeze → Expand → Reshape; Q·Kᵀ,
Mul 1/√d, Add mask, Softmax, ·V; SiLU as Mul(x, Sigmoid(x))), with random weights (seeded) and
one input set whose attention_mask pads the last 5 positions. Used to measure `slmtvm bench`
against ONNX Runtime and tract on a decoder of realistic size and to check the compiled code
against the reference interpreter.

    python3 scripts/make_llama.py OUT_DIR   # writes OUT_DIR/model.onnx, OUT_DIR/inputs/*.npy and,
                                            # when onnxruntime imports, OUT_DIR/expected/logits.npy
    python3 scripts/make_llama.py OUT_DIR --dynamic

`--dynamic` writes the same model with a dynamic sequence length (`dim_param` `sequence`), as
an export with dynamic axes gives it: the causal mask from Range over the run-time length, the
RoPE angles sliced from a 512-position table, reshapes that copy the length (0) or infer it
(-1); inputs and ONNX Runtime's logits at 64 tokens (padded as above) in `inputs/`/`expected/`
and at 8 tokens (unpadded) in `len8/inputs/`/`len8/expected/`. One object built with
`--bound sequence=512` serves every prompt length; `slmtvm bench` compares it with an object
built for exactly 8 tokens (`--dim sequence=8`).

When onnxruntime imports, the script runs the model there and checks it against a direct numpy
implementation of the Llama forward pass (max abs error ≤ 1e-4 × max |logit|).
"""
import os
import sys
from typing import NamedTuple

import numpy
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper



class Config(NamedTuple):
    """The decoder's dimensions (the defaults are this script's model)."""

    layers: int = 4
    hidden: int = 576
    heads: int = 9
    kv_heads: int = 3
    head_dim: int = 64
    ff: int = 1536
    vocab: int = 8192
    seq: int = 64
    batch: int = 1


EPS, THETA, PAD, MAXPOS = 1e-5, 10000.0, 5, 512
I64_MAX = np.iinfo(np.int64).max


def main(out, dynamic=False):
    rng = np.random.default_rng(20261202)
    weights = {}

    def param(name, shape, scale):
        """Random weights (seeded): N(0, scale²), or 1 + N(0, 0.01) for a norm (scale None)."""
        if scale is None:
            a = 1.0 + rng.standard_normal(shape) * 0.1
        else:
            a = rng.standard_normal(shape) * scale
        weights[name] = a.astype(np.float32)
        return weights[name]

    cfg = Config()
    model, ang = build(cfg, param, dynamic)
    save_and_check(out, cfg, model, weights, ang, rng, dynamic)


def build(cfg, param, dynamic=False):
    """The decoder as an ONNX model, and its RoPE angle table [1, positions, head_dim].
    `param(name, shape, scale)` gives each weight, in graph order (scale: the random
    initialization's standard deviation, None for a norm weight)."""
    L, H, HEADS, KV, D, FF, VOCAB, SEQ, B = cfg
    REP = HEADS // KV
    inits, nodes = [], []

    def w(name, *shape, scale=0.05):
        inits.append(numpy_helper.from_array(param(name, shape, scale), name))
        return name

    def norm_weight(name):
        inits.append(numpy_helper.from_array(param(name, H, None), name))
        return name

    def node(op, ins, outs=None, **attrs):
        outs = outs or [f"/{op}_{len(nodes)}_output_0"]
        nodes.append(helper.make_node(op, ins, outs, name=f"/{op}_{len(nodes)}", **attrs))
        return outs[0]

    def const(arr):
        """A Constant node (the TorchScript exporter writes constants so, not as initializers)."""
        return node("Constant", [], value=numpy_helper.from_array(np.asarray(arr)))

    def i64(*v):
        return const(np.array(v, dtype=np.int64))

    def f32(v):
        return const(np.array(v, dtype=np.float32))

    def rms_norm(x, prefix):
        x = node("Cast", [x], to=TensorProto.FLOAT)
        v = node("ReduceMean", [node("Pow", [x, f32(2.0)])], axes=[-1], keepdims=1)
        inv = node("Div", [f32(1.0), node("Sqrt", [node("Add", [v, f32(EPS)])])])
        y = node("Cast", [node("Mul", [x, inv])], to=TensorProto.FLOAT)
        return x, node("Mul", [norm_weight(prefix + ".weight"), y])

    def shape_of(dims):
        """The exporter's Expand target: `dims` with -1 replaced by 1 (Equal/Where on ones)."""
        target = i64(*dims)
        ones = node("ConstantOfShape", [i64(len(dims))], value=numpy_helper.from_array(np.array([1], dtype=np.int64)))
        neg = node("Mul", [ones, const(np.array(-1, dtype=np.int64))])
        return node("Where", [node("Equal", [target, neg]), ones, target])

    ids, mask = "input_ids", "attention_mask"
    x = node("Gather", [w("model.embed_tokens.weight", VOCAB, H, scale=1.0), ids])

    # The causal mask (key position ≤ query position) And the padding mask, as [B, 1, S, S]
    # bool, then additive: Where(allowed, 0, min-float).
    m = node("Cast", [mask], to=TensorProto.BOOL)
    true = node("ConstantOfShape", [i64()], value=numpy_helper.from_array(np.array([True])))
    seq = node("Gather", [node("Shape", [m]), i64(1)], axis=0)
    seq1 = seq  # [1]: the length as a 1-element shape piece
    if dynamic:
        n = node("Squeeze", [seq, i64(0)])
        pos = node("Range", [const(np.array(0, dtype=np.int64)), n, const(np.array(1, dtype=np.int64))])
        kv_pos = node("Reshape", [pos, i64(1, 1, 1, -1)])
        q_pos = node("Reshape", [pos, i64(1, 1, -1, 1)])
    else:
        kv_pos = const(np.arange(SEQ, dtype=np.int64).reshape(1, 1, 1, SEQ))
        q_pos = const(np.arange(SEQ, dtype=np.int64).reshape(1, 1, SEQ, 1))
    causal = node("And", [true, node("Cast", [node("LessOrEqual", [kv_pos, q_pos])], to=TensorProto.BOOL)])
    flat = node("Flatten", [m], axis=2)
    idx = node("Add", [kv_pos, node("Mul", [const(np.arange(B, dtype=np.int64).reshape(B, 1, 1, 1)), seq])])
    padm = node("Reshape", [node("Gather", [flat, idx], axis=0), i64(-1)])
    padm = node("Reshape", [padm, node("Concat", [node("Shape", [idx])], axis=0)])
    allowed = node("And", [causal, node("Cast", [padm], to=TensorProto.BOOL)])
    if dynamic:
        allowed = node("Expand", [allowed, node("Concat", [i64(B, 1), seq1, seq1], axis=0)])
    else:
        allowed = node("Expand", [allowed, shape_of([B, -1, SEQ, SEQ])])
    additive = node("Where", [allowed, f32(0.0), f32(np.finfo(np.float32).min)])

    # RoPE tables: angles position × inv_freq, repeated over both halves of the head dim.
    inv_freq = 1.0 / (THETA ** (np.arange(0, D, 2, dtype=np.float32) / D))
    npos = MAXPOS if dynamic else SEQ
    ang = np.outer(np.arange(npos, dtype=np.float32), inv_freq)
    ang = np.concatenate([ang, ang], axis=-1).reshape(1, npos, D).astype(np.float32)
    angles = const(ang)
    if dynamic:
        angles = node("Slice", [angles, i64(0), seq1, i64(1)])
    cos = node("Cast", [node("Mul", [node("Cos", [angles]), f32(1.0)])], to=TensorProto.FLOAT)
    sin = node("Cast", [node("Mul", [node("Sin", [angles]), f32(1.0)])], to=TensorProto.FLOAT)
    cos4 = node("Unsqueeze", [cos, i64(1)])
    sin4 = node("Unsqueeze", [sin, i64(1)])

    def heads(y):
        return node("Transpose", [node("Reshape", [y, i64(B, 0 if dynamic else SEQ, -1, D)])], perm=[0, 2, 1, 3])

    def rope(t):
        x1 = node("Slice", [t, i64(0), i64(D // 2), i64(3), i64(1)])
        x2 = node("Slice", [t, i64(D // 2), i64(I64_MAX), i64(3), i64(1)])
        rot = node("Concat", [node("Neg", [x2]), x1], axis=-1)
        return node("Add", [node("Mul", [t, cos4]), node("Mul", [rot, sin4])])

    def repeat_kv(t):
        t = node("Unsqueeze", [t, i64(2)])
        if dynamic:
            t = node("Expand", [t, node("Concat", [i64(B, KV, REP), seq1, i64(D)], axis=0)])
            return node("Reshape", [t, i64(B, HEADS, -1, D)])
        t = node("Expand", [t, shape_of([B, KV, REP, SEQ, D])])
        return node("Reshape", [t, i64(B, HEADS, SEQ, D)])

    for i in range(L):
        pre = f"model.layers.{i}"
        res, h = rms_norm(x, pre + ".input_layernorm")
        q = heads(node("MatMul", [h, w(pre + ".self_attn.q_proj.weight", H, HEADS * D)]))
        k = heads(node("MatMul", [h, w(pre + ".self_attn.k_proj.weight", H, KV * D)]))
        v = heads(node("MatMul", [h, w(pre + ".self_attn.v_proj.weight", H, KV * D)]))
        q, k = rope(q), rope(k)
        k, v = repeat_kv(k), repeat_kv(v)
        s = node("MatMul", [q, node("Transpose", [k], perm=[0, 1, 3, 2])])
        s = node("Add", [node("Mul", [s, f32(np.float32(1.0 / np.sqrt(D)))]), additive])
        p = node("Cast", [node("Cast", [node("Softmax", [s], axis=-1)], to=TensorProto.FLOAT)], to=TensorProto.FLOAT)
        a = node("Transpose", [node("MatMul", [p, v])], perm=[0, 2, 1, 3])
        a = node("Reshape", [a, i64(B, 0 if dynamic else SEQ, -1)])
        x = node("Add", [res, node("MatMul", [a, w(pre + ".self_attn.o_proj.weight", HEADS * D, H)])])
        res, h = rms_norm(x, pre + ".post_attention_layernorm")
        g = node("MatMul", [h, w(pre + ".mlp.gate_proj.weight", H, FF)])
        g = node("Mul", [g, node("Sigmoid", [g])])
        u = node("MatMul", [h, w(pre + ".mlp.up_proj.weight", H, FF)])
        d = node("MatMul", [node("Mul", [g, u]), w(pre + ".mlp.down_proj.weight", FF, H, scale=0.03)])
        x = node("Add", [res, d])
    _, h = rms_norm(x, "model.norm")
    node("MatMul", [h, w("lm_head.weight", H, VOCAB)], outs=["logits"])

    s_dim = "sequence" if dynamic else SEQ
    graph = helper.make_graph(
        nodes,
        "llama",
        [helper.make_tensor_value_info(n, TensorProto.INT64, [B, s_dim]) for n in (ids, mask)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [B, s_dim, VOCAB])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="slmtvm-make-llama")
    model.ir_version = 8  # what torch.onnx.export writes at opset 17 (ONNX Runtime wheels refuse newer IR versions)
    onnx.checker.check_model(model)
    return model, ang


def save_and_check(out, cfg, model, weights, ang, rng, dynamic, ids_v=None):
    """Writes OUT/model.onnx and an input set (`ids_v`, by default random ids; the last PAD
    positions padded); when onnxruntime imports, checks its logits against `reference` and
    records them."""
    L, H, HEADS, KV, D, FF, VOCAB, SEQ, B = cfg
    ids, mask = "input_ids", "attention_mask"
    os.makedirs(os.path.join(out, "inputs"), exist_ok=True)
    path = os.path.join(out, "model.onnx")
    onnx.save(model, path)
    if ids_v is None:
        ids_v = rng.integers(0, VOCAB, size=(B, SEQ), dtype=np.int64)
    mask_v = np.ones((B, SEQ), dtype=np.int64)
    mask_v[:, SEQ - PAD :] = 0
    np.save(os.path.join(out, "inputs", "input_ids.npy"), ids_v)
    np.save(os.path.join(out, "inputs", "attention_mask.npy"), mask_v)
    print(f"make_llama: wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB, {len(model.graph.node)} nodes)")

    try:
        import onnxruntime as ort
    except ImportError:
        print("make_llama: onnxruntime not importable: model not checked")
        return
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    sets = [("", ids_v, mask_v)]
    if dynamic:
        short = rng.integers(0, VOCAB, size=(B, 8), dtype=np.int64)
        sets.append(("len8", short, np.ones((B, 8), dtype=np.int64)))
    for sub, ids_s, mask_s in sets:
        (got,) = sess.run(None, {ids: ids_s, mask: mask_s})
        want = reference(cfg, weights, ids_s, mask_s, ang[:, : ids_s.shape[1]])
        err, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
        assert err <= 1e-4 * scale, f"ONNX Runtime and the numpy Llama differ: {err} > 1e-4 x {scale}"
        os.makedirs(os.path.join(out, sub, "expected"), exist_ok=True)
        os.makedirs(os.path.join(out, sub, "inputs"), exist_ok=True)
        np.save(os.path.join(out, sub, "expected", "logits.npy"), got)
        np.save(os.path.join(out, sub, "inputs", "input_ids.npy"), ids_s)
        np.save(os.path.join(out, sub, "inputs", "attention_mask.npy"), mask_s)
        print(
            f"make_llama: ONNX Runtime {ort.__version__} runs it at {ids_s.shape[1]} tokens; vs numpy Llama: "
            f"max abs error {err:.2e}, max |logit| {scale:.2f}"
        )


def reference(cfg, wt, ids, mask, ang, np=numpy, dtype=numpy.float64):
    """The Llama forward pass written directly in numpy (float64), for the ONNX Runtime check.
    With `np` autograd's numpy wrapper it is also the model scripts/make_trained.py trains
    (logits [batch, S, vocab]; `dtype` the activations' type)."""
    L, H, HEADS, KV, D, FF, VOCAB, SEQ, _ = cfg
    REP = HEADS // KV
    B = ids.shape[0]

    def rms(x, name):
        return wt[name] * (x / np.sqrt((x * x).mean(-1, keepdims=True) + EPS))

    # rotate_half as a product with a signed permutation (exact; slices' gradients are slow
    # scatters in autograd)
    half = numpy.eye(D // 2, dtype=dtype)
    rotation = numpy.block([[numpy.zeros_like(half), half], [-half, numpy.zeros_like(half)]])

    def rot(t):
        return t @ rotation

    def mm(x, name):
        """x @ weight as one 2-D product (numpy's stacked matmul runs one small one per row)."""
        w = wt[name]
        return (x.reshape((-1, x.shape[-1])) @ w).reshape(x.shape[:-1] + (w.shape[1],))

    S = ids.shape[1]
    cos, sin = np.cos(ang.astype(dtype))[:, None], np.sin(ang.astype(dtype))[:, None]
    allowed = np.tril(np.ones((S, S), dtype=bool))[None, None] & (mask[:, None, None, :] != 0)
    if np is numpy:
        x = wt["model.embed_tokens.weight"][ids].astype(dtype)
    else:  # as a one-hot product: autograd's gradient of a gather is a slow scatter (ufunc.at)
        x = mm((ids[..., None] == numpy.arange(VOCAB)).astype(dtype), "model.embed_tokens.weight")
    for i in range(L):
        p = f"model.layers.{i}"
        h = rms(x, p + ".input_layernorm.weight")
        q, k, v = (
            mm(h, f"{p}.self_attn.{n}_proj.weight").reshape((B, S, -1, D)).transpose((0, 2, 1, 3)) for n in "qkv"
        )
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        k, v = np.repeat(k, REP, axis=1), np.repeat(v, REP, axis=1)
        s = np.where(allowed, q @ k.transpose((0, 1, 3, 2)) / float(np.sqrt(D)), -1e30)
        e = np.exp(s - s.max(-1, keepdims=True))
        a = (e / e.sum(-1, keepdims=True)) @ v
        x = x + mm(a.transpose((0, 2, 1, 3)).reshape((B, S, -1)), p + ".self_attn.o_proj.weight")
        h = rms(x, p + ".post_attention_layernorm.weight")
        g = mm(h, p + ".mlp.gate_proj.weight")
        x = x + mm(g / (1 + np.exp(-g)) * mm(h, p + ".mlp.up_proj.weight"), p + ".mlp.down_proj.weight")
    return mm(rms(x, "model.norm.weight"), "lm_head.weight")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--dynamic"]
    main(args[0] if args else ".cache/llama", dynamic="--dynamic" in sys.argv[1:])
