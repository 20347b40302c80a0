"""Input files and output checks for runtime-stub/test/run_tests.sh (python3 + numpy).

    python3 cases.py make WORK                    writes WORK/<model>/<case>/*.npy
    python3 cases.py check MODEL IN_DIR OUT_DIR   checks the harness's outputs exactly

IN_DIR for `check` is a case written by np.save (`ok`): the other valid cases hold the same
values in headers numpy itself may not read (Python 2 longs).

`check` compares every output with numpy's result bit for bit (dtype, shape and bytes) and
checks that the file is byte-identical to what np.save writes. It prints one line per problem
and exits 1 if there was any.
"""

import io
import os
import struct
import sys

import numpy as np
from numpy.lib import format as npf


def save(path, arr, version=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if version is None:
        np.save(path, arr)
    else:
        with open(path, "wb") as f:
            npf.write_array(f, arr, version=version)


def raw(path, header, data, version=(1, 0)):
    """A .npy file with a hand-written header dict (padded to 64 like numpy, not required)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    h = header.encode("utf-8")
    size_fmt = "<H" if version[0] == 1 else "<I"
    pre = 6 + 2 + struct.calcsize(size_fmt)
    h += b" " * ((64 - (pre + len(h) + 1) % 64) % 64) + b"\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY" + bytes(version) + struct.pack(size_fmt, len(h)) + h + data)


def npy_bytes(arr, version=None):
    b = io.BytesIO()
    npf.write_array(b, arr, version=version)
    return b.getvalue()


# The inputs every `ok`-like case uses, and the model functions.
X = np.array([[0.5, -1.25, 3.0e38], [-0.0, 1.0e-45, 12345.678]], dtype=np.float32)
IDS = np.array([0, -1, 2**62, 2**63 - 1], dtype=np.int64)
K = np.array(2, dtype=np.int32)
E = np.array(-1.5, dtype=np.float16)
B = np.array(True)


def make(work):
    f = os.path.join(work, "fake")
    # Valid inputs, written by np.save.
    save(f"{f}/ok/x.npy", X)
    save(f"{f}/ok/ids.npy", IDS)
    # Valid inputs in .npy versions 2.0 and 3.0.
    save(f"{f}/v2v3/x.npy", X, version=(2, 0))
    save(f"{f}/v2v3/ids.npy", IDS, version=(3, 0))
    # Valid hand-written headers: double quotes, other key order, '=' byte order, trailing
    # commas in the shape (as Rust's npyz writes), Python 2 long dims.
    raw(f"{f}/hand/x.npy", '{"shape": (2, 3, ), "fortran_order": False, "descr": "=f4"}', X.tobytes())
    raw(f"{f}/hand/ids.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (4L,), }", IDS.tobytes())
    # Broken inputs: each case differs from `ok` in x.npy only, except `missing` (no ids.npy).
    save(f"{f}/missing/x.npy", X)
    for case, arr in {
        "bad_shape": X.reshape(3, 2),
        "bad_rank": X.reshape(6),
        "bad_dtype": X.astype(np.float64),
        "big_endian": X.astype(">f4"),
        "fortran": np.asfortranarray(X),
        "structured": np.zeros((2, 3), dtype=[("a", "<f4")]),
    }.items():
        save(f"{f}/{case}/x.npy", arr)
        save(f"{f}/{case}/ids.npy", IDS)
    good = npy_bytes(X)
    for case, data in {
        "bad_magic": b"\x93NUMPX" + good[6:],
        "bad_version": good[:6] + b"\x04\x00" + good[8:],
        "truncated": good[:-4],
        "trailing": good + b"\0\0\0\0",
        "bad_header": good[:10] + good[10:].replace(b"'shape'", b"'shap' "),
    }.items():
        save(f"{f}/{case}/ids.npy", IDS)
        with open(f"{f}/{case}/x.npy", "wb") as fh:
            fh.write(data)

    e = os.path.join(work, "edge")
    for case, b in {"ok": B, "bad_bool": np.array(2, dtype=np.uint8).view(np.bool_)}.items():
        save(f"{e}/{case}/k_0.npy", K)
        save(f"{e}/{case}/_.npy", E)
        save(f"{e}/{case}/b.npy", b)
    os.makedirs(os.path.join(work, "noin", "ok"), exist_ok=True)


def expected(model, in_dir):
    """{output file stem: expected array} computed by numpy from the input files."""
    if model == "fake":
        x, ids = np.load(f"{in_dir}/x.npy"), np.load(f"{in_dir}/ids.npy")
        with np.errstate(over="ignore"):
            return {"y": np.float32(2) * x + np.float32(1), "n": ids + np.int64(1)}
    if model == "edge":
        k = int(np.load(f"{in_dir}/k_0.npy"))
        e, b = np.load(f"{in_dir}/_.npy"), bool(np.load(f"{in_dir}/b.npy"))
        return {
            "m_0": np.array([b and k > i for i in range(3)]),
            "m_0_1": np.array([k, -k], dtype=np.int64).astype(np.int8),
            "h": e.copy(),
            "u": np.zeros(0, dtype=np.uint8),
            "_": np.array([[2 * k]], dtype=np.int64).astype(np.int32),
        }
    if model == "noin":
        return {"c": np.array([1.5, -2.0], dtype=np.float32)}
    raise SystemExit(f"unknown model {model}")


def check(model, in_dir, out_dir):
    problems = []
    want = expected(model, in_dir)
    files = sorted(os.listdir(out_dir))
    if files != sorted(f"{s}.npy" for s in want):
        problems.append(f"output files {files}, expected {sorted(f'{s}.npy' for s in want)}")
    for stem, exp in want.items():
        path = os.path.join(out_dir, f"{stem}.npy")
        if not os.path.exists(path):
            continue
        with open(path, "rb") as fh:
            data = fh.read()
        try:
            got = np.load(path)
        except Exception as err:  # noqa: BLE001 - any failure to load is a problem to report
            problems.append(f"{stem}.npy: numpy cannot load it: {err}")
            continue
        if data[6:8] != b"\x01\x00":
            problems.append(f"{stem}.npy: version {data[6]}.{data[7]}, expected 1.0")
        hlen = struct.unpack("<H", data[8:10])[0]
        if (10 + hlen) % 64 or data[10 + hlen - 1 : 10 + hlen] != b"\n":
            problems.append(f"{stem}.npy: header is not padded to 64 bytes ending in a newline")
        if got.dtype != exp.dtype or got.shape != exp.shape or got.tobytes() != exp.tobytes():
            problems.append(f"{stem}.npy: got {got.dtype}{list(got.shape)} {got!r}, expected {exp.dtype}{list(exp.shape)} {exp!r}")
        elif hasattr(npf, "GROWTH_AXIS_MAX_DIGITS") and data != npy_bytes(exp):
            # numpy >= 1.24 pads the header with spare room for the first dim; the harness does too.
            problems.append(f"{stem}.npy: bytes differ from np.save's ({data[:10 + hlen]!r})")
    for p in problems:
        print(f"check {model}: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "check":
        sys.exit(check(*sys.argv[2:]))
    else:
        sys.exit(__doc__)
