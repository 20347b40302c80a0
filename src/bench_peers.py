"""Peers of `slmtvm bench`: times ONNX Runtime and tract (when importable) on the same model
and inputs, in this process, with the same thread count where the runtime lets it be set (ONNX
Runtime: intra-op threads, one inter-op; tract's Python API sets none: it runs on one thread).
Prints one JSON line per runtime: {"runtime", "version", "threads", "median_us", "min_us",
"max_us"} or {"runtime", "error"}.
Usage: python3 bench_peers.py CONFIG_JSON (model, threads, runs, inputs: [[name, npy], ...])."""
import json
import sys
import time

cfg = json.loads(sys.argv[1])
try:
    import numpy as np
except ImportError as e:
    for r in ("onnxruntime", "tract"):
        print(json.dumps({"runtime": r, "error": f"numpy is not importable ({e})"}))
    sys.exit(0)
feed = {name: np.load(path) for name, path in cfg["inputs"]}
runs = cfg["runs"]


def timed(fn):
    fn()  # warm-up, as slmtvm's harness does one run before the timed ones
    t = []
    for _ in range(runs):
        a = time.perf_counter()
        fn()
        t.append((time.perf_counter() - a) * 1e6)
    t.sort()
    return {"median_us": float(np.median(t)), "min_us": t[0], "max_us": t[-1]}


def report(name, body):
    try:
        version, res = body()
        res.update({"runtime": name, "version": version})
    except ImportError as e:
        res = {"runtime": name, "error": f"not importable ({e})"}
    except Exception as e:  # a runtime that cannot load or run the model: say why
        res = {"runtime": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    print(json.dumps(res), flush=True)


def onnxruntime():
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads = cfg["threads"]
    o.inter_op_num_threads = 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    model = cfg["model"]
    try:
        import onnx
        m = onnx.load(model)
        m.ir_version = min(m.ir_version, 10)  # older ONNX Runtime wheels refuse newer IR versions
        model = m.SerializeToString()
    except ImportError:
        pass
    s = ort.InferenceSession(model, o, providers=["CPUExecutionProvider"])
    f = {i.name: feed[i.name] for i in s.get_inputs()}
    return ort.__version__, dict(timed(lambda: s.run(None, f)), threads=cfg["threads"])


def tract():
    import tract as tr
    m = tr.onnx().load(cfg["model"])
    names = [m.input_name(i) for i in range(m.input_count())]
    dt = {"float32": "f32", "float16": "f16", "int64": "i64", "int32": "i32", "int8": "i8", "uint8": "u8", "bool": "bool"}
    for i, n in enumerate(names):
        a = feed[n]
        m.set_input_fact(i, ",".join([str(d) for d in a.shape] + [dt[str(a.dtype)]]))
    typed = m.into_model()
    r = tr.runtime_for_name("default").prepare(typed)
    args = [feed[n] for n in names]
    import importlib.metadata as md
    # tract's Python API has no thread setting; its kernels run on the calling thread.
    return md.version("tract"), dict(timed(lambda: r.run(args)), threads=1)


report("onnxruntime", onnxruntime)
report("tract", tract)
