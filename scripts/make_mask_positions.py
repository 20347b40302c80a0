#!/usr/bin/env python3
"""Writes the committed decoders with dynamic axes (tests/models/{gpt2_tiny, qwen2_tiny,
phi_tiny, llama_tiny_dynamo}) with their position ids computed in the graph from the attention
mask, as Hugging Face's generate computes them for left-padded batches:

    position_ids = where(attention_mask == 0, 1, cumsum(attention_mask, -1) - 1)

(CumSum, Sub, Equal and Where nodes in front of the graph; `position_ids` is no longer an
input), and ONNX Runtime's logits for them at several sequence lengths: batch 2, row 1
left-padded, lengths 1, 5, 12 and 20 (the committed models were recorded at 12 only).

    python3 scripts/make_mask_positions.py OUT_DIR
        # writes OUT_DIR/<model>/model.onnx and OUT_DIR/<model>/len<L>/{inputs,expected}/*.npy

tests/cli_symbolic.rs compiles each model once with `--bound batch=2 --bound sequence=24` and
runs that object at every length against these outputs.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

MODELS = ["gpt2_tiny", "qwen2_tiny", "phi_tiny", "llama_tiny_dynamo"]
LENGTHS = [1, 5, 12, 20]
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def with_mask_positions(m: onnx.ModelProto) -> onnx.ModelProto:
    g = m.graph
    keep = [i for i in g.input if i.name != "position_ids"]
    assert len(keep) == len(g.input) - 1, "the model takes position_ids"
    del g.input[:]
    g.input.extend(keep)
    consts = [
        helper.make_tensor("mp_axis", TensorProto.INT64, [], [-1]),
        helper.make_tensor("mp_one", TensorProto.INT64, [], [1]),
        helper.make_tensor("mp_zero", TensorProto.INT64, [], [0]),
    ]
    nodes = [
        helper.make_node("CumSum", ["attention_mask", "mp_axis"], ["mp_cumsum"], name="mp/CumSum"),
        helper.make_node("Sub", ["mp_cumsum", "mp_one"], ["mp_positions"], name="mp/Sub"),
        helper.make_node("Equal", ["attention_mask", "mp_zero"], ["mp_padded"], name="mp/Equal"),
        helper.make_node("Where", ["mp_padded", "mp_one", "mp_positions"], ["position_ids"], name="mp/Where"),
    ]
    g.initializer.extend(consts)
    old = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old)
    onnx.checker.check_model(m)
    return m


def main(out: str) -> None:
    rng = np.random.default_rng(20)
    for name in MODELS:
        src = os.path.join(ROOT, "tests", "models", name, "model.onnx")
        m = with_mask_positions(onnx.load(src))
        vocab = next(
            d.dim_value for o in m.graph.output if o.name == "logits" for d in o.type.tensor_type.shape.dim[2:]
        ) or 128
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        onnx.save(m, os.path.join(d, "model.onnx"))
        sess = ort.InferenceSession(os.path.join(d, "model.onnx"), providers=["CPUExecutionProvider"])
        for length in LENGTHS:
            ids = rng.integers(3, vocab, size=(2, length), dtype=np.int64)
            mask = np.ones((2, length), dtype=np.int64)
            mask[1, : min(3, length - 1)] = 0  # row 1 left-padded (never entirely)
            ids[1, : min(3, length - 1)] = 0
            feeds = {"input_ids": ids, "attention_mask": mask}
            (logits,) = sess.run(["logits"], feeds)
            ld = os.path.join(d, f"len{length}")
            for sub, arrays in (("inputs", feeds), ("expected", {"logits": logits})):
                os.makedirs(os.path.join(ld, sub), exist_ok=True)
                for k, v in arrays.items():
                    np.save(os.path.join(ld, sub, f"{k}.npy"), v)
        print(f"make_mask_positions: {name}: lengths {LENGTHS} -> {d}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
