#!/usr/bin/env python3
"""Writes one small model per QOperator-form operator case (ONNX QLinearMatMul, QLinearConv
and ONNX Runtime's com.microsoft QGemm, QLinearAdd, QLinearMul, QLinearSoftmax, QLinearConcat,
QLinearSigmoid, QLinearLeakyRelu, QLinearGlobalAveragePool) with random inputs and ONNX
Runtime's outputs, for tests/tests/qlinear.rs:

    python3 scripts/make_qlinear.py OUT_DIR

Each case is OUT_DIR/CASE/model.onnx, inputs/NAME.npy and ort/NAME.npy (ONNX Runtime, one
thread, graph optimizations off). The int8 weights of u8 x s8 products stay within [-64, 63]:
on a CPU with AVX2 and without VNNI, ONNX Runtime multiplies u8 by s8 with vpmaddubsw, whose
16-bit pair sums saturate beyond that, and the check is of the operators, not of that.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

MS = "com.microsoft"
rng = np.random.default_rng(20261207)


def u8(*shape):
    return rng.integers(0, 256, shape).astype(np.uint8)


def i8(*shape, lo=-128, hi=128):
    return rng.integers(lo, hi, shape).astype(np.int8)


def f(v):
    return np.array(v, dtype=np.float32)


class Case:
    def __init__(self, name):
        self.name, self.inits, self.inputs, self.feeds, self.nodes = name, [], [], {}, []

    def const(self, name, v):
        self.inits.append(numpy_helper.from_array(np.asarray(v), name))
        return name

    def input(self, name, v):
        self.inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape))
        self.feeds[name] = v
        return name

    def node(self, op, ins, domain="", out=None, **attrs):
        """Adds the case's one node; its output y has the dtype `out` (a NumPy dtype), else
        that of the first 8-bit operand."""
        if out is None:
            out = next(v.dtype for v in list(self.feeds.values()) if v.dtype in (np.uint8, np.int8))
        self.out = helper.np_dtype_to_tensor_dtype(np.dtype(out))
        self.nodes.append(helper.make_node(op, ins, ["y"], domain=domain, **attrs))

    def write(self, out_dir):
        d = os.path.join(out_dir, self.name)
        os.makedirs(os.path.join(d, "inputs"), exist_ok=True)
        os.makedirs(os.path.join(d, "ort"), exist_ok=True)
        y = helper.make_tensor_value_info("y", self.out, None)
        g = helper.make_graph(self.nodes, self.name, self.inputs, [y], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
        m.ir_version = 10
        path = os.path.join(d, "model.onnx")
        onnx.save(m, path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        for k, v in self.feeds.items():
            np.save(os.path.join(d, "inputs", k + ".npy"), v)
        (out,) = sess.run(None, self.feeds)
        np.save(os.path.join(d, "ort", "y.npy"), out)


def cases():
    # QLinearMatMul: batched u8 activations, constant per-column int8 weights.
    c = Case("qlinearmatmul_u8s8_per_column")
    c.node("QLinearMatMul", [c.input("a", u8(2, 3, 37)), c.const("as", f(0.02)), c.const("az", np.uint8(131)),
                             c.const("b", i8(37, 19, lo=-64, hi=64)), c.const("bs", f(rng.uniform(0.005, 0.02, 19))),
                             c.const("bz", np.zeros(19, np.int8)), c.const("ys", f(0.11)), c.const("yz", np.uint8(120))])
    yield c
    # Both operands run-time u8, per tensor.
    c = Case("qlinearmatmul_u8u8")
    c.node("QLinearMatMul", [c.input("a", u8(7, 33)), c.const("as", f(0.015)), c.const("az", np.uint8(100)),
                             c.input("b", u8(33, 9)), c.const("bs", f(0.01)), c.const("bz", np.uint8(140)),
                             c.const("ys", f(0.3)), c.const("yz", np.uint8(128))])
    yield c
    # int8 x int8 to int8.
    c = Case("qlinearmatmul_s8s8")
    c.node("QLinearMatMul", [c.input("a", i8(5, 50)), c.const("as", f(0.03)), c.const("az", np.int8(-3)),
                             c.const("b", i8(50, 11)), c.const("bs", f(0.01)), c.const("bz", np.int8(0)),
                             c.const("ys", f(0.9)), c.const("yz", np.int8(5))])
    yield c
    # QLinearConv: per-output-channel int8 weights, int32 bias, pads and strides; depthwise.
    c = Case("qlinearconv_u8s8_per_channel_bias")
    c.node("QLinearConv", [c.input("x", u8(2, 3, 9, 8)), c.const("xs", f(0.02)), c.const("xz", np.uint8(120)),
                           c.const("w", i8(5, 3, 3, 3, lo=-64, hi=64)), c.const("ws", f(rng.uniform(0.005, 0.02, 5))),
                           c.const("wz", np.zeros(5, np.int8)), c.const("ys", f(0.05)), c.const("yz", np.uint8(100)),
                           c.const("b", rng.integers(-2000, 2000, 5).astype(np.int32))],
           pads=[1, 1, 0, 2], strides=[2, 1])
    yield c
    c = Case("qlinearconv_u8u8_depthwise")
    c.node("QLinearConv", [c.input("x", u8(1, 4, 7, 7)), c.const("xs", f(0.03)), c.const("xz", np.uint8(128)),
                           c.const("w", u8(4, 1, 3, 3)), c.const("ws", f(0.01)), c.const("wz", np.uint8(128)),
                           c.const("ys", f(0.02)), c.const("yz", np.uint8(128))], group=4, pads=[1, 1, 1, 1])
    yield c
    # QGemm: transB, int32 bias, alpha, u8 output.
    c = Case("qgemm_transb_bias")
    c.node("QGemm", [c.input("a", u8(5, 40)), c.const("as", f(0.02)), c.const("az", np.uint8(128)),
                     c.const("b", i8(24, 40, lo=-64, hi=64)), c.const("bs", f(rng.uniform(0.005, 0.02, 24))),
                     c.const("bz", np.zeros(24, np.int8)), c.const("c", rng.integers(-3000, 3000, 24).astype(np.int32)),
                     c.const("ys", f(0.2)), c.const("yz", np.uint8(110))], domain=MS, transB=1, alpha=0.5)
    yield c
    # QGemm with a float output (no y_scale, y_zero_point) and transA.
    c = Case("qgemm_transa_float")
    c.node("QGemm", [c.input("a", u8(30, 6)), c.const("as", f(0.05)), c.const("az", np.uint8(90)),
                     c.const("b", i8(30, 13, lo=-64, hi=64)), c.const("bs", f(0.01)), c.const("bz", np.int8(0))],
           domain=MS, out=np.float32, transA=1)
    yield c
    # Elementwise, with broadcasting and both 8-bit types.
    c = Case("qlinearadd_u8_broadcast")
    c.node("QLinearAdd", [c.input("a", u8(2, 3, 4)), c.const("as", f(0.05)), c.const("az", np.uint8(120)),
                          c.input("b", u8(4)), c.const("bs", f(0.02)), c.const("bz", np.uint8(3)),
                          c.const("cs", f(0.07)), c.const("cz", np.uint8(100))], domain=MS)
    yield c
    c = Case("qlinearadd_s8")
    c.node("QLinearAdd", [c.input("a", i8(3, 17)), c.const("as", f(0.05)), c.const("az", np.int8(-10)),
                          c.input("b", i8(3, 17)), c.const("bs", f(0.03)), c.const("bz", np.int8(7)),
                          c.const("cs", f(0.06)), c.const("cz", np.int8(-2))], domain=MS)
    yield c
    c = Case("qlinearmul_u8_broadcast")
    c.node("QLinearMul", [c.input("a", u8(3, 1, 5)), c.const("as", f(0.02)), c.const("az", np.uint8(128)),
                          c.input("b", u8(4, 5)), c.const("bs", f(0.03)), c.const("bz", np.uint8(100)),
                          c.const("cs", f(0.05)), c.const("cz", np.uint8(130))], domain=MS)
    yield c
    c = Case("qlinearsoftmax_u8")
    c.node("QLinearSoftmax", [c.input("x", u8(2, 3, 16)), c.const("xs", f(0.08)), c.const("xz", np.uint8(128)),
                              c.const("ys", f(1 / 256)), c.const("yz", np.uint8(0))], domain=MS, axis=-1, opset=13)
    yield c
    c = Case("qlinearsoftmax_s8_opset12_axis1")
    c.node("QLinearSoftmax", [c.input("x", i8(2, 3, 5)), c.const("xs", f(0.05)), c.const("xz", np.int8(0)),
                              c.const("ys", f(1 / 256)), c.const("yz", np.int8(-128))], domain=MS, axis=1, opset=12)
    yield c
    c = Case("qlinearsigmoid_u8")
    c.node("QLinearSigmoid", [c.input("x", u8(4, 33)), c.const("xs", f(0.05)), c.const("xz", np.uint8(128)),
                              c.const("ys", f(1 / 256)), c.const("yz", np.uint8(0))], domain=MS)
    yield c
    c = Case("qlinearleakyrelu_s8")
    c.node("QLinearLeakyRelu", [c.input("x", i8(4, 33)), c.const("xs", f(0.05)), c.const("xz", np.int8(3)),
                                c.const("ys", f(0.03)), c.const("yz", np.int8(-20))], domain=MS, alpha=0.1)
    yield c
    c = Case("qlinearconcat_u8")
    c.node("QLinearConcat", [c.const("ys", f(0.1)), c.const("yz", np.uint8(128)),
                             c.input("x0", u8(2, 3, 4)), c.const("s0", f(0.1)), c.const("z0", np.uint8(128)),
                             c.input("x1", u8(2, 5, 4)), c.const("s1", f(0.03)), c.const("z1", np.uint8(10)),
                             c.input("x2", u8(2, 1, 4)), c.const("s2", f(0.2)), c.const("z2", np.uint8(200))],
           domain=MS, axis=1)
    yield c
    c = Case("qlinearglobalaveragepool_u8")
    c.node("QLinearGlobalAveragePool", [c.input("x", u8(2, 3, 5, 4)), c.const("xs", f(0.05)),
                                        c.const("xz", np.uint8(128)), c.const("ys", f(0.01)),
                                        c.const("yz", np.uint8(128))], domain=MS)
    yield c
    c = Case("qlinearglobalaveragepool_s8_channels_last")
    c.node("QLinearGlobalAveragePool", [c.input("x", i8(2, 5, 4, 3)), c.const("xs", f(0.05)),
                                        c.const("xz", np.int8(-5)), c.const("ys", f(0.02)),
                                        c.const("yz", np.int8(3))], domain=MS, channels_last=1)
    yield c


def main(out_dir):
    for c in cases():
        c.write(out_dir)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
