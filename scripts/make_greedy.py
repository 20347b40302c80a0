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


def main(model_dir, prompts=4, prompt_len=16, steps=32):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), opts, providers=["CPUExecutionProvider"])
    seq = sess.get_inputs()[0].shape[1]
    vocab = sess.get_outputs()[0].shape[2]
    if prompt_len + steps > seq:
        sys.exit(f"{prompt_len} + {steps} tokens do not fit the model's {seq} positions")
    rng = np.random.default_rng(20261202)
    rows = []
    for _ in range(prompts):
        toks = list(rng.integers(0, vocab, prompt_len))
        for _ in range(steps):
            ids = np.zeros((1, seq), np.int64)
            mask = np.zeros((1, seq), np.int64)
            ids[0, : len(toks)] = toks
            mask[0, : len(toks)] = 1
            logits = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            toks.append(int(np.argmax(logits[0, len(toks) - 1])))
        rows.append(toks)
    os.makedirs(os.path.join(model_dir, "greedy"), exist_ok=True)
    np.save(os.path.join(model_dir, "greedy", "tokens.npy"), np.array(rows, np.int64))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], *map(int, sys.argv[2:]))
