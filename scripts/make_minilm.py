#!/usr/bin/env python3
"""Writes a MiniLM-class BERT encoder (6 layers, hidden 384, 12 heads, FFN 1536, vocab 30522,
sequence 128: ~90 MB of f32 weights) as ONNX, in the graph shape torch.onnx.export gives a
Hugging Face BertModel (Gather embeddings, MatMul+Add projections, Reshape/Transpose heads,
additive padding mask, Softmax, erf-GELU, LayerNormalization), with random weights (seeded)
and one input set with a padded tail. Used to measure `slmtvm build` time and to check the
compiled code against the reference interpreter on a model of realistic size.

    python3 scripts/make_minilm.py OUT_DIR        # writes OUT_DIR/model.onnx, OUT_DIR/inputs/*.npy
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

L, H, HEADS, FF, VOCAB, SEQ, POS = 6, 384, 12, 1536, 30522, 128, 512
D = H // HEADS


def main(out):
    rng = np.random.default_rng(20261201)
    inits, nodes = [], []

    def w(name, *shape, scale=0.05):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op, ins, outs=None, **attrs):
        outs = outs or [f"{op.lower()}_{len(nodes)}"]
        nodes.append(helper.make_node(op, ins, outs, name=f"/{op}_{len(nodes)}", **attrs))
        return outs[0]

    def layer_norm(x, prefix):
        g = const(prefix + ".weight", (1.0 + rng.standard_normal(H) * 0.1).astype(np.float32))
        b = w(prefix + ".bias", H, scale=0.1)
        return node("LayerNormalization", [x, g, b], axis=-1, epsilon=1e-12)

    def linear(x, prefix, n_in, n_out):
        y = node("MatMul", [x, w(prefix + ".weight", n_in, n_out)])
        return node("Add", [w(prefix + ".bias", n_out, scale=0.02), y])

    ids, mask, types = "input_ids", "attention_mask", "token_type_ids"
    pos_ids = const("position_ids", np.arange(SEQ, dtype=np.int64).reshape(1, SEQ))
    e = node("Gather", [w("embeddings.word_embeddings.weight", VOCAB, H), ids])
    t = node("Gather", [w("embeddings.token_type_embeddings.weight", 2, H), types])
    p = node("Gather", [w("embeddings.position_embeddings.weight", POS, H), pos_ids])
    x = layer_norm(node("Add", [node("Add", [e, t]), p]), "embeddings.LayerNorm")
    # Additive mask: (1 - mask) * min_float, broadcast over heads and query positions.
    m = node("Unsqueeze", [mask, const("axes12", np.array([1, 2], dtype=np.int64))])
    m = node("Cast", [m], to=TensorProto.FLOAT)
    m = node("Sub", [const("one", np.array(1.0, dtype=np.float32)), m])
    m = node("Mul", [m, const("minf", np.array(np.finfo(np.float32).min, dtype=np.float32))])
    heads = const("heads_shape", np.array([1, SEQ, HEADS, D], dtype=np.int64))
    flat = const("flat_shape", np.array([1, SEQ, H], dtype=np.int64))
    scale = const("scale", np.array(np.sqrt(D), dtype=np.float32))
    for i in range(L):
        pre = f"encoder.layer.{i}"
        q = node("Transpose", [node("Reshape", [linear(x, pre + ".attention.self.query", H, H), heads])], perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [linear(x, pre + ".attention.self.key", H, H), heads])], perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [linear(x, pre + ".attention.self.value", H, H), heads])], perm=[0, 2, 1, 3])
        s = node("Add", [node("Div", [node("MatMul", [q, k]), scale]), m])
        a = node("MatMul", [node("Softmax", [s], axis=-1), v])
        a = node("Reshape", [node("Transpose", [a], perm=[0, 2, 1, 3]), flat])
        x = layer_norm(node("Add", [linear(a, pre + ".attention.output.dense", H, H), x]), pre + ".attention.output.LayerNorm")
        h = linear(x, pre + ".intermediate.dense", H, FF)
        g = node("Mul", [node("Mul", [h, node("Add", [node("Erf", [node("Div", [h, const(f"sqrt2_{i}", np.array(np.sqrt(2.0), dtype=np.float32))])]), const(f"one_{i}", np.array(1.0, dtype=np.float32))])]), const(f"half_{i}", np.array(0.5, dtype=np.float32))])
        x = layer_norm(node("Add", [linear(g, pre + ".output.dense", FF, H), x]), pre + ".output.LayerNorm")
    nodes[-1].output[0] = "last_hidden_state"
    graph = helper.make_graph(
        nodes,
        "minilm",
        [helper.make_tensor_value_info(n, TensorProto.INT64, [1, SEQ]) for n in (ids, mask, types)],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [1, SEQ, H])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="slmtvm-make-minilm")
    os.makedirs(os.path.join(out, "inputs"), exist_ok=True)
    onnx.save(model, os.path.join(out, "model.onnx"))
    ids_v = rng.integers(0, VOCAB, size=(1, SEQ), dtype=np.int64)
    mask_v = np.ones((1, SEQ), dtype=np.int64)
    mask_v[0, 100:] = 0
    np.save(os.path.join(out, "inputs", "input_ids.npy"), ids_v)
    np.save(os.path.join(out, "inputs", "attention_mask.npy"), mask_v)
    np.save(os.path.join(out, "inputs", "token_type_ids.npy"), np.zeros((1, SEQ), dtype=np.int64))
    size = os.path.getsize(os.path.join(out, "model.onnx"))
    print(f"make_minilm: wrote {out}/model.onnx ({size / 1e6:.1f} MB, {len(nodes)} nodes)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".cache/minilm")
