#!/usr/bin/env python3
"""Writes the ONNX backend node tests in the classic on-disk layout.

onnx >= 1.19 no longer ships `onnx/backend/test/data/node`: the node cases are built in memory by
`onnx.backend.test.loader.load_model_tests(kind="node")`. This script writes them out, one folder
per case, the way older onnx releases shipped them:

    <out>/<test_name>/model.onnx
    <out>/<test_name>/meta.json                       {"rtol", "atol"} declared by the case, and
                                                      "op_types": its top-level nodes' operators
    <out>/<test_name>/test_data_set_<k>/input_<i>.pb  serialized onnx.TensorProto, name = graph input
    <out>/<test_name>/test_data_set_<k>/output_<i>.pb serialized onnx.TensorProto, name = graph output
    <out>/MANIFEST.json                               onnx version, case count, skipped cases

Cases whose inputs or outputs are sequences, optionals or maps cannot be written as a TensorProto;
they are skipped and listed, with the reason, under "skipped" in MANIFEST.json.

Usage: python3 scripts/gen_node_tests.py [OUT]        (default OUT: .cache/onnx-node-tests)

Idempotent: when OUT/MANIFEST.json names the installed onnx version and the same case count (and
that many case folders exist), nothing is done. Otherwise the cases are written to a temporary
sibling folder that then replaces OUT, so an interrupted run never leaves a half-written OUT.
Deterministic: NumPy's global generator is seeded with 0 before the case generators run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

# Bump when the written layout changes, so that an older generation is rewritten.
LAYOUT = 1


def case_folders(out: str) -> int:
    """The number of case folders (those holding a model.onnx) under `out`."""
    try:
        names = os.listdir(out)
    except OSError:
        return -1
    return sum(1 for n in names if os.path.isfile(os.path.join(out, n, "model.onnx")))


def up_to_date(out: str, onnx_version: str) -> bool:
    """True when `out` already holds a complete generation for this onnx version."""
    try:
        with open(os.path.join(out, "MANIFEST.json"), encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, ValueError):
        return False
    return (
        isinstance(m, dict)
        and m.get("onnx_version") == onnx_version
        and m.get("layout") == LAYOUT
        and isinstance(m.get("count"), int)
        and m["count"] == case_folders(out)
    )


def non_tensor_reason(vi) -> str | None:
    """Why a graph input/output (ValueInfoProto) cannot be stored as a TensorProto, or None."""
    kind = vi.type.WhichOneof("value")
    if kind == "tensor_type":
        return None
    return f"graph value '{vi.name}' has {kind or 'no'} type (only tensors are written)"


def to_tensor_proto(value, name: str):
    """`value` (ndarray or TensorProto) as a TensorProto named `name`; raises ValueError else."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    if isinstance(value, TensorProto):
        t = TensorProto()
        t.CopyFrom(value)
        t.name = name
        return t
    if isinstance(value, (np.ndarray, np.generic)):
        return numpy_helper.from_array(np.asarray(value), name)
    raise ValueError(f"'{name}' holds a {type(value).__name__}, not a tensor")


def op_key(node) -> str:
    """A node's operator as `Op` (default domain) or `domain::Op`."""
    if node.domain in ("", "ai.onnx"):
        return node.op_type
    return f"{node.domain}::{node.op_type}"


def meta(case) -> dict:
    """The per-case facts the Rust harness needs without parsing protobuf."""
    return {
        "rtol": float(case.rtol),
        "atol": float(case.atol),
        # The top-level graph's operators, in node order.
        "op_types": [op_key(n) for n in case.model.graph.node],
    }


def write_case(case, case_dir: str) -> str | None:
    """Writes one case into `case_dir`; returns a skip reason instead when it cannot be written."""
    model = case.model
    graph = model.graph
    for vi in list(graph.input) + list(graph.output):
        why = non_tensor_reason(vi)
        if why:
            return why
    files: list[tuple[str, bytes]] = []
    for k, (inputs, outputs) in enumerate(case.data_sets):
        if len(inputs) != len(graph.input) or len(outputs) != len(graph.output):
            return (
                f"data set {k} has {len(inputs)} inputs / {len(outputs)} outputs, the graph "
                f"{len(graph.input)} / {len(graph.output)}"
            )
        ds = f"test_data_set_{k}"
        for role, values, vis in (("input", inputs, graph.input), ("output", outputs, graph.output)):
            for i, (value, vi) in enumerate(zip(values, vis)):
                try:
                    t = to_tensor_proto(value, vi.name)
                except Exception as e:  # noqa: BLE001 - any conversion failure is a skip reason
                    return f"data set {k} {role} {i}: cannot write as TensorProto: {e}"
                files.append((os.path.join(ds, f"{role}_{i}.pb"), t.SerializeToString()))
    os.makedirs(case_dir)
    with open(os.path.join(case_dir, "model.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    with open(os.path.join(case_dir, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(meta(case), f, sort_keys=True)
        f.write("\n")
    for rel, data in files:
        p = os.path.join(case_dir, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    return None


def main() -> int:
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".cache/onnx-node-tests")
    import onnx

    if up_to_date(out, onnx.__version__):
        print(f"gen_node_tests: {out} is up to date (onnx {onnx.__version__})", file=sys.stderr)
        return 0

    t0 = time.time()
    import numpy as np

    import warnings

    from onnx.backend.test.loader import load_model_tests

    np.random.seed(0)  # the case generators draw from NumPy's global generator
    # Some generators overflow on purpose (casts to narrow floats, log(0)): silence their warnings.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        cases = sorted(load_model_tests(kind="node"), key=lambda c: c.name)

    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = f"{out}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    written = 0
    skipped: list[dict[str, str]] = []
    for case in cases:
        why = write_case(case, os.path.join(tmp, case.name))
        if why is None:
            written += 1
        else:
            skipped.append({"name": case.name, "reason": why})
    manifest = {
        "onnx_version": onnx.__version__,
        "layout": LAYOUT,
        "numpy_version": np.__version__,
        "count": written,
        "total_cases": len(cases),
        "skipped": skipped,
    }
    with open(os.path.join(tmp, "MANIFEST.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    # Replace OUT. Another generator may have finished meanwhile: then keep its result.
    if up_to_date(out, onnx.__version__):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        old = f"{out}.old-{os.getpid()}"
        if os.path.exists(out):
            os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    print(
        f"gen_node_tests: wrote {written} of {len(cases)} node cases to {out} "
        f"({len(skipped)} skipped, see MANIFEST.json) in {time.time() - t0:.1f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
