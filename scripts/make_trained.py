#!/usr/bin/env python3
"""Trains a small Llama-style decoder on CPU until its next-token predictions are confident,
exports it in the graph shape scripts/make_llama.py writes (the TorchScript exporter's
LlamaForCausalLM prefill graph: inputs input_ids and attention_mask [1, 64], logits
[1, 64, vocab]), and records ONNX Runtime's f32 greedy tokens and its own quantizers'
agreement with them. Random-weight decoders have flat logits, so any quantizer looks bad on
them; this one is what tests/tests/llama_quant.rs judges `--quantize int8` and `int4` by.

    python3 scripts/make_trained.py OUT_DIR

The model: 2 layers, hidden 128, 4 query heads over 2 KV heads of dim 32 (GQA 2:1), SwiGLU FFN
384, RMSNorm, RoPE, vocab 64, untied LM head (~0.4 M parameters). The corpus (synthetic,
learnable, seeded): sequences of 64 tokens from 1..63 of two kinds, half each:
  - repetition: p distinct random tokens (p from 2 to 8) repeated (an induction / copy task);
  - progression: a, a+d, a+2d, ... modulo 63 (shifted to 1..63), d from 1 to 4.
After the first period (or the first two tokens) every next token is determined. Training:
autograd (the numpy forward pass of scripts/make_llama.py differentiated), Adam, batch 32,
cross-entropy on every next token, until the accuracy on determined positions of a held-out
batch reaches 99.5 % (a few minutes on 2 cores); it stops with an error if it never does.

Writes OUT_DIR/model.onnx, OUT_DIR/inputs/*.npy (one held-out sequence, last 5 positions
padded), OUT_DIR/expected/logits.npy (ONNX Runtime's), OUT_DIR/greedy/tokens.npy (int64
[4, 48]: 4 held-out prompts of 16 tokens, each followed by the 32 tokens ONNX Runtime's f32
greedy decoding picks, as scripts/make_greedy.py records them), OUT_DIR/ort_int8/model.onnx
(quantize_dynamic, per channel) and OUT_DIR/ort_q4/model.onnx (MatMulNBitsQuantizer, block 32,
asymmetric) and OUT_DIR/greedy/ort_agreement.json: the share of the 4 x 32 steps where each of
those two, run by ONNX Runtime over the recorded sequences (teacher forcing, as the test does),
picks the recorded token.
"""
import json
import logging
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_llama import THETA, Config, build, reference, save_and_check  # noqa: E402

CFG = Config(layers=2, hidden=128, heads=4, kv_heads=2, head_dim=32, ff=384, vocab=64, seq=64, batch=1)
PROMPTS, PROMPT_LEN, STEPS = 4, 16, 32
BATCH, LR, MAX_STEPS, TARGET = 32, 5e-3, 4000, 0.995
TRAIN_SEQ = PROMPT_LEN + STEPS  # the positions greedy decoding uses


def sample(rng, n, seq=CFG.seq):
    """n corpus sequences [n, seq] and a mask of the positions whose next token is determined."""
    top = CFG.vocab - 1
    ids = np.zeros((n, seq), np.int64)
    known = np.zeros((n, seq), bool)  # known[:, t]: token t + 1 follows from tokens ..= t
    for r in range(n):
        if rng.random() < 0.5:
            p = int(rng.integers(2, 9))
            period = rng.permutation(top)[:p] + 1
            ids[r] = np.resize(period, seq)
            known[r, p - 1 :] = True
        else:
            a, d = int(rng.integers(0, top)), int(rng.integers(1, 5))
            ids[r] = (a + d * np.arange(seq)) % top + 1
            known[r, 1:] = True
    known[:, -1] = False
    return ids, known


def angles():
    inv_freq = 1.0 / (THETA ** (np.arange(0, CFG.head_dim, 2, dtype=np.float32) / CFG.head_dim))
    ang = np.outer(np.arange(CFG.seq, dtype=np.float32), inv_freq)
    return np.concatenate([ang, ang], axis=-1).reshape(1, CFG.seq, CFG.head_dim).astype(np.float32)


def init(rng):
    """Weights in graph order: N(0, 1/fan_in) matrices, unit norms, N(0, 1) embeddings."""
    weights = {}

    def param(name, shape, scale):
        if scale is None:
            a = np.ones(shape)
        elif name == "model.embed_tokens.weight":
            a = rng.standard_normal(shape)
        else:
            a = rng.standard_normal(shape) / np.sqrt(shape[0])
        weights[name] = a.astype(np.float32)
        return weights[name]

    build(CFG, param)
    return weights


def train(weights, rng):
    import autograd.numpy as anp
    from autograd import grad

    ang = angles()[:, :TRAIN_SEQ]
    names = list(weights)

    def loss(params, ids, known):
        wt = dict(zip(names, params))
        logits = reference(CFG, wt, ids, np.ones_like(ids), ang, np=anp, dtype=np.float32)[:, :-1]
        target = ids[:, 1:]
        picked = anp.sum(logits * (np.arange(CFG.vocab) == target[..., None]), axis=-1)
        top = anp.max(logits, axis=-1)
        nll = top + anp.log(anp.sum(anp.exp(logits - top[..., None]), axis=-1)) - picked
        return anp.mean(nll)

    def accuracy(params, ids, known):
        wt = dict(zip(names, params))
        logits = reference(CFG, wt, ids, np.ones_like(ids), ang, dtype=np.float32)
        hit = logits.argmax(-1)[:, :-1] == ids[:, 1:]
        return float(hit[known[:, :-1]].mean())

    weight = np.ones((BATCH, TRAIN_SEQ), np.float32) / (BATCH * (TRAIN_SEQ - 1))
    weight[:, -1] = 0
    g = grad(loss)
    params = [weights[n] for n in names]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    held = sample(np.random.default_rng(99), 256, TRAIN_SEQ)
    t0 = time.time()
    for step in range(1, MAX_STEPS + 1):
        ids, known = sample(rng, BATCH, TRAIN_SEQ)
        grads = g(params, ids, known)
        lr = LR * min(1.0, step / 100)
        for i, gr in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * gr
            v[i] = b2 * v[i] + (1 - b2) * gr * gr
            mh, vh = m[i] / (1 - b1**step), v[i] / (1 - b2**step)
            params[i] = (params[i] - lr * mh / (np.sqrt(vh) + eps)).astype(np.float32)
        if step % 100 == 0:
            acc = accuracy(params, *held)
            print(f"make_trained: step {step}: loss {float(loss(params, ids, known)):.3f}, "
                  f"held-out accuracy on determined tokens {100 * acc:.2f}% ({time.time() - t0:.0f} s)", flush=True)
            if acc >= TARGET:
                return dict(zip(names, params))
    sys.exit(f"make_trained: accuracy stayed below {100 * TARGET}% after {MAX_STEPS} steps")


def main(out):
    logging.disable(logging.WARNING)
    rng = np.random.default_rng(20261208)
    trained = train(init(rng), rng)
    model, ang = build(CFG, lambda name, shape, scale: trained[name])
    held = np.random.default_rng(5)
    ids, _ = sample(held, 1)
    save_and_check(out, CFG, model, trained, ang, held, False, ids_v=ids)

    from make_greedy import agreement, greedy, session
    from make_quantized import quantize

    prompts = sample(held, PROMPTS)[0][:, :PROMPT_LEN]
    rows = greedy(session(os.path.join(out, "model.onnx")), prompts, STEPS)
    os.makedirs(os.path.join(out, "greedy"), exist_ok=True)
    np.save(os.path.join(out, "greedy", "tokens.npy"), rows)
    shares = {}
    for kind in ("int8", "q4"):
        os.makedirs(os.path.join(out, f"ort_{kind}"), exist_ok=True)
        path = os.path.join(out, f"ort_{kind}", "model.onnx")
        quantize(os.path.join(out, "model.onnx"), path, kind)
        shares[kind] = agreement(session(path), rows, PROMPT_LEN)
        print(f"make_trained: ONNX Runtime's {kind} quantization picks the f32 greedy token at "
              f"{100 * shares[kind]:.1f}% of {PROMPTS} x {STEPS} steps")
    with open(os.path.join(out, "greedy", "ort_agreement.json"), "w") as f:
        json.dump(shares, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
