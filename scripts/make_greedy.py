#!/usr/bin/env python3
"""Greedy continuations of random prompts by ONNX Runtime on a prefill decoder (inputs
input_ids and attention_mask [1, S], output logits [1, S, vocab]; scripts/make_llama.py writes
one): the reference tokens that tests/tests/llama_quant.rs compares quantized builds with.

    python3 scripts/make_greedy.py MODEL_DIR [PROMPTS [PROMPT_LEN [STEPS]]]

Writes MODEL_DIR/greedy/tokens.npy, int64 [PROMPTS, PROMPT_LEN + STEPS]: each row a prompt of
uniform random tokens (seeded) followed by the STEPS tokens greedy decoding picks, one step
at a time (the sequence so far, padded with the attention mask to S). Defaults: 4 prompts of
16 tokens, 32 steps.
"""
import os
import sys

import numpy as np
import onnxruntime as ort


def session(model):
    """An ONNX Runtime CPU session on one thread."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def padded(sess, toks):
    """The logits [S, vocab] of `toks` padded with the attention mask to the model's S."""
    seq = sess.get_inputs()[0].shape[1]
    ids = np.zeros((1, seq), np.int64)
    mask = np.zeros((1, seq), np.int64)
    ids[0, : len(toks)] = toks
    mask[0, : len(toks)] = 1
    return sess.run(None, {"input_ids": ids, "attention_mask": mask})[0][0]


def greedy(sess, prompts, steps):
    """Each prompt followed by the `steps` tokens greedy decoding picks, one step at a time."""
    seq = sess.get_inputs()[0].shape[1]
    rows = []
    for prompt in prompts:
        toks = [int(t) for t in prompt]
        if len(toks) + steps > seq:
            sys.exit(f"{len(toks)} + {steps} tokens do not fit the model's {seq} positions")
        for _ in range(steps):
            toks.append(int(np.argmax(padded(sess, toks)[len(toks) - 1])))
        rows.append(toks)
    return np.array(rows, np.int64)


def agreement(sess, rows, prompt_len):
    """The share of the steps after `prompt_len` where the model, run once over each recorded
    row (teacher forcing), picks the recorded token."""
    hits = 0
    for row in rows:
        pick = padded(sess, row).argmax(-1)
        hits += int((pick[prompt_len - 1 : len(row) - 1] == row[prompt_len:]).sum())
    return hits / (len(rows) * (rows.shape[1] - prompt_len))


def main(model_dir, prompts=4, prompt_len=16, steps=32):
    sess = session(os.path.join(model_dir, "model.onnx"))
    vocab = sess.get_outputs()[0].shape[2]
    rng = np.random.default_rng(20261202)
    rows = greedy(sess, [rng.integers(0, vocab, prompt_len) for _ in range(prompts)], steps)
    os.makedirs(os.path.join(model_dir, "greedy"), exist_ok=True)
    np.save(os.path.join(model_dir, "greedy", "tokens.npy"), rows)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], *map(int, sys.argv[2:]))
