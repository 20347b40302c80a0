#!/usr/bin/env python3
"""Quantizes a generated fp32 model with ONNX Runtime's own tools and records ONNX Runtime's
outputs on the model's inputs, so the tests can compare slmtvm with ONNX Runtime on the
quantized forms users bring:

    python3 scripts/make_quantized.py SRC_DIR OUT_DIR KIND

SRC_DIR holds model.onnx and inputs/*.npy (as scripts/make_minilm.py writes them). KIND:
  int8  quantize_dynamic(per_channel=True, weight_type=QInt8): DynamicQuantizeLinear,
        MatMulInteger, Cast, Mul (per-tensor uint8 activations, per-column int8 weights)
  q4    MatMulNBitsQuantizer(block_size=32, asymmetric): com.microsoft::MatMulNBits with
        4-bit weights, f32 scales and packed 4-bit zero points
  q4s   the same, block_size=128 and symmetric (no zero points)
  qop   quantize_static(quant_format=QOperator, per_channel=True): QLinearMatMul (per-column
        int8 weights), com.microsoft QLinearAdd, QLinearMul, QLinearSoftmax, with uint8
        activation scales calibrated (MinMax) on the recorded inputs and 7 variants of them
        with random token ids (seeded)
  qdq   the same calibration in the QDQ format (quant_format=QDQ): QuantizeLinear →
        DequantizeLinear pairs on the activations, DequantizeLinear on per-column int8
        weights, every operator left in f32
Writes OUT_DIR/model.onnx, OUT_DIR/inputs/*.npy (copies of SRC_DIR's) and OUT_DIR/ort/NAME.npy
(ONNX Runtime's outputs, one thread, all graph optimizations off so that it computes the
graph as written).
"""
import logging
import os
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort


def calibration(src_dir):
    """The recorded inputs, then 7 copies with random input_ids (same shapes, seeded)."""
    from onnxruntime.quantization import CalibrationDataReader

    base = {f[:-4]: np.load(os.path.join(src_dir, "inputs", f)) for f in os.listdir(os.path.join(src_dir, "inputs"))}
    rng = np.random.default_rng(7)
    sets = [base]
    for _ in range(7):
        d = dict(base)
        if "input_ids" in d:
            d["input_ids"] = rng.integers(0, 1000, d["input_ids"].shape).astype(d["input_ids"].dtype)
        sets.append(d)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(sets)

        def get_next(self):
            return next(self.it, None)

    return Reader()


def quantize(src, out, kind):
    if kind in ("qop", "qdq"):
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        m = onnx.load(src)
        m.ir_version = min(m.ir_version, 10)  # ONNX Runtime's calibration session refuses newer ones
        tmp = out + ".f32.onnx"
        onnx.save(m, tmp)
        fmt = QuantFormat.QOperator if kind == "qop" else QuantFormat.QDQ
        quantize_static(tmp, out, calibration(os.path.dirname(src)), quant_format=fmt,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        os.remove(tmp)
        return
    if kind == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(src, out, per_channel=True, weight_type=QuantType.QInt8)
        return
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    block, symmetric = {"q4": (32, False), "q4s": (128, True)}[kind]
    cfg = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=symmetric)
    q = MatMulNBitsQuantizer(onnx.load(src), block_size=block, is_symmetric=symmetric, algo_config=cfg)
    q.process()
    onnx.save(q.model.model, out)


def main(src_dir, out_dir, kind):
    logging.disable(logging.WARNING)
    os.makedirs(os.path.join(out_dir, "ort"), exist_ok=True)
    model = os.path.join(out_dir, "model.onnx")
    quantize(os.path.join(src_dir, "model.onnx"), model, kind)
    m = onnx.load(model)
    m.ir_version = min(m.ir_version, 10)  # the tools stamp the newest IR version; ONNX Runtime refuses it
    onnx.save(m, model)
    shutil.copytree(os.path.join(src_dir, "inputs"), os.path.join(out_dir, "inputs"), dirs_exist_ok=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.load(os.path.join(out_dir, "inputs", i.name + ".npy")) for i in sess.get_inputs()}
    for o, v in zip(sess.get_outputs(), sess.run(None, feeds)):
        np.save(os.path.join(out_dir, "ort", o.name + ".npy"), v)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[3] not in ("int8", "q4", "q4s", "qop", "qdq"):
        sys.exit(__doc__)
    main(*sys.argv[1:])
