#!/usr/bin/env python3
"""Build the small transformer ONNX test models in tests/models/ (run by hand, not by CI).

Every model is built from a Hugging Face `transformers` config class with tiny
sizes and random weights drawn under a fixed torch seed (nothing is downloaded
from any hub), exported with `torch.onnx.export`, run once through ONNX Runtime
(CPUExecutionProvider, graph optimizations disabled) on deterministic inputs,
and written as one folder per model:

    <out>/<name>/model.onnx              weights embedded (no external data)
    <out>/<name>/inputs/<input>.npy      one per graph input, dtype as in the graph
    <out>/<name>/expected/<output>.npy   ONNX Runtime's outputs, one per graph output
    <out>/<name>/meta.json               config, exporter, opset, shapes, versions,
                                         max |torch - ORT| difference

File names are the ONNX input/output names with every character outside
[A-Za-z0-9._-] replaced by "_".

Usage
-----
    python3 tests/models/make_models.py                  # default set -> tests/models/
    python3 tests/models/make_models.py --only llama_tiny
    python3 tests/models/make_models.py --example        # bert_tiny -> examples/tiny_bert/
    python3 tests/models/make_models.py --only gpt2_tiny   # -> /tmp/extra_models/
    python3 tests/models/make_models.py --list

The default set (what is checked in under tests/models/) is: bert_tiny, llama_tiny.
Extra entries (gpt2_tiny, llama_tiny_dynamo) are only built when named with --only
and are not meant to be written into tests/models/: without --out they go to
/tmp/extra_models/.

Installing the dependencies (Linux x86_64, CPU only, PyPI only; Python 3.11)
---------------------------------------------------------------------------
The PyPI torch wheel for Linux is a CUDA build; its full dependency set pulls in
triton and the whole CUDA toolkit. Without a GPU it is enough to install torch
without dependencies plus the CUDA shared libraries it links against (also
without dependencies; about 4 GB in all), then transformers without its
optional extras:

    pip install "onnx==1.23.2" "onnxruntime==1.31.1" numpy
    pip install --no-deps "torch==2.15.0" filelock fsspec
    pip install sympy networkx jinja2 typing-extensions
    pip install --no-deps \
        "nvidia-cuda-runtime==13.2.86.*" "nvidia-cublas==13.4.1.3.*" \
        "nvidia-cuda-cupti==13.2.86.*" "nvidia-cuda-nvrtc==13.2.86.*" \
        "nvidia-cufft==12.2.0.57.*" "nvidia-cufile==1.17.1.22.*" \
        "nvidia-cusparse==12.7.10.12.*" "nvidia-nvjitlink>=13.2.86,<14" \
        "nvidia-cudnn-cu13==9.26.0.51" "nvidia-cusparselt-cu13==0.8.1" \
        "nvidia-nccl-cu13==2.30.7" "nvidia-nvshmem-cu13==3.7.2"
    pip install --no-deps "transformers==5.23.0"
    pip install "huggingface-hub<3.0,>=1.31.0" "tokenizers<0.24.0,>=0.23.1" \
        "safetensors>=0.8.0" "tqdm>=4.60" typer regex pyyaml packaging
    pip install onnxscript "onnx==1.23.2"    # only for the dynamo exporter entries

(The exact nvidia-* versions are the ones torch 2.15.0's wheel metadata asks
for: `pip download --no-deps torch` and read Requires-Dist in its METADATA;
the cuda-toolkit[...] requirement there expands to the nvidia-* names above.)
Check: python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)"
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

SEED = 0


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


# --------------------------------------------------------------------------
# Model definitions
# --------------------------------------------------------------------------


def _bert_inputs():
    """input_ids / attention_mask / token_type_ids, [2, 16] int64.

    Row 0 has no padding; row 1 is padded on its last 5 positions
    (attention_mask 0, input_ids 0 = pad token, token_type_ids 0).
    """
    rng = np.random.RandomState(1234)
    b, s = 2, 16
    input_ids = rng.randint(1, 128, size=(b, s)).astype(np.int64)
    attention_mask = np.ones((b, s), dtype=np.int64)
    attention_mask[1, -5:] = 0
    input_ids[1, -5:] = 0
    token_type_ids = np.zeros((b, s), dtype=np.int64)
    token_type_ids[0, 8:] = 1
    token_type_ids[1, 6:11] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
    }


def _bert_alt_inputs():
    """A second, different input set used only to check that the exported
    graph really depends on every input (nothing traced in as a constant)."""
    rng = np.random.RandomState(99)
    b, s = 2, 16
    input_ids = rng.randint(1, 128, size=(b, s)).astype(np.int64)
    attention_mask = np.ones((b, s), dtype=np.int64)
    attention_mask[0, -9:] = 0
    input_ids[0, -9:] = 0
    token_type_ids = np.zeros((b, s), dtype=np.int64)
    token_type_ids[1, 3:] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
    }


def build_bert():
    import torch
    from transformers import BertConfig, BertModel

    cfg = dict(
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_act="gelu",
        max_position_embeddings=64,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=0.2,
        pad_token_id=0,
        attn_implementation="eager",
    )
    torch.manual_seed(SEED)
    model = _perturb_params(BertModel(BertConfig(**cfg), add_pooling_layer=True))

    class Wrapper(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.m(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                return_dict=True,
            )
            return out.last_hidden_state, out.pooler_output

    return dict(
        architecture="BertModel",
        hf_config=cfg,
        module=Wrapper(model),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state", "pooler_output"],
        inputs=_bert_inputs(),
        alt_inputs=_bert_alt_inputs(),
    )


def _causal_inputs(vocab, b=2, s=12, seed=4321, left_pad=0):
    """input_ids [b, s] int64 and attention_mask [b, s] int64.

    The recorded inputs use an all-ones mask. The alternative set used for the
    second torch-vs-ORT check left-pads row 1 by `left_pad` positions, which
    checks that the exported graph really honours the mask input.
    """
    rng = np.random.RandomState(seed)
    input_ids = rng.randint(0, vocab, size=(b, s)).astype(np.int64)
    attention_mask = np.ones((b, s), dtype=np.int64)
    if left_pad:
        attention_mask[1, :left_pad] = 0
        input_ids[1, :left_pad] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def _perturb_params(model, scale=0.1):
    """Add seeded Gaussian noise to every 1-D parameter (biases, norm scales).

    Hugging Face initialisation sets biases to 0 and LayerNorm/RMSNorm scales
    to 1; a test model with such values cannot catch a dropped bias or norm
    scale (and the exporter deduplicates the identical tensors into Identity
    nodes). Matrices keep their normal(0, initializer_range) initialisation.
    """
    import torch

    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return model


LLAMA_CFG = dict(
    vocab_size=128,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=64,
    hidden_act="silu",
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=False,
    use_cache=False,
    attention_bias=False,
    mlp_bias=False,
    attention_dropout=0.0,
    initializer_range=0.2,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    attn_implementation="eager",
)


def _logits_wrapper(model, with_mask: bool):
    import torch

    class Wrapper(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask=None):
            out = self.m(
                input_ids=input_ids,
                attention_mask=attention_mask,
                use_cache=False,
                return_dict=True,
            )
            return out.logits

    class WrapperNoMask(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            out = self.m(input_ids=input_ids, use_cache=False, return_dict=True)
            return out.logits

    return Wrapper(model) if with_mask else WrapperNoMask(model)


def build_llama(dynamo: bool = False):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(LLAMA_CFG)
    torch.manual_seed(SEED)
    model = _perturb_params(LlamaForCausalLM(LlamaConfig(**cfg)))
    inputs = _causal_inputs(cfg["vocab_size"])
    alt = _causal_inputs(cfg["vocab_size"], seed=77, left_pad=4)
    return dict(
        architecture="LlamaForCausalLM",
        hf_config=cfg,
        module=_logits_wrapper(model, with_mask=True),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        inputs=inputs,
        alt_inputs=alt,
        # fallback if the exporter cannot handle the mask input
        fallback=lambda: _logits_wrapper(model, with_mask=False),
    )


def build_gpt2():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = dict(
        vocab_size=128,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_inner=64,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        initializer_range=0.2,
        use_cache=False,
        bos_token_id=1,
        eos_token_id=2,
        attn_implementation="eager",
    )
    torch.manual_seed(SEED)
    model = _perturb_params(GPT2LMHeadModel(GPT2Config(**cfg)))
    return dict(
        architecture="GPT2LMHeadModel",
        hf_config=cfg,
        module=_logits_wrapper(model, with_mask=True),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        inputs=_causal_inputs(cfg["vocab_size"]),
        alt_inputs=_causal_inputs(cfg["vocab_size"], seed=77, left_pad=4),
        fallback=lambda: _logits_wrapper(model, with_mask=False),
    )


# name -> (builder, exporter, opset or None for the newest the exporter supports)
MODELS = {
    "bert_tiny": (build_bert, "torchscript", 17),
    "llama_tiny": (build_llama, "torchscript", 17),
    "bert_tiny_dynamic": (build_bert, "torchscript-dynamic", 17),
    "gpt2_tiny": (build_gpt2, "torchscript", 17),
    # None: the newest opset this torch's exporter supports
    # (torch.onnx._constants.ONNX_MAX_OPSET, 23 for torch 2.15).
    "llama_tiny_dynamo": (lambda: build_llama(dynamo=True), "dynamo", None),
}
DEFAULT_SET = ["bert_tiny", "llama_tiny", "bert_tiny_dynamic"]
# Extra entries are not checked in; without --out they go here.
EXTRA_OUT = Path(tempfile.gettempdir()) / "extra_models"


# --------------------------------------------------------------------------
# Export / reference run
# --------------------------------------------------------------------------

_NP_OF_ONNX = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    5: np.int16,
    6: np.int32,
    7: np.int64,
    9: np.bool_,
    10: np.float16,
    11: np.float64,
}


def _eval_all(module):
    module.eval()
    for m in module.modules():
        m.eval()
    return module


def _torch_run(module, names, inputs):
    import torch

    args = tuple(torch.from_numpy(inputs[n]) for n in names)
    with torch.no_grad():
        out = module(*args)
    if not isinstance(out, (tuple, list)):
        out = (out,)
    return [o.detach().cpu().numpy() for o in out]


def _export(module, names, inputs, out_names, path, exporter, opset):
    import torch

    args = tuple(torch.from_numpy(inputs[n]) for n in names)
    if exporter in ("torchscript", "torchscript-dynamic"):
        # torchscript-dynamic: batch and sequence length stay symbolic ("batch", "seq") in
        # the exported graph, as `dynamic_axes` exports do for deployment.
        dynamic_axes = None
        if exporter == "torchscript-dynamic":
            dynamic_axes = {n: {0: "batch", 1: "seq"} for n in names}
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(names),
            output_names=list(out_names),
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
            export_params=True,
            dynamic_axes=dynamic_axes,
        )
    elif exporter == "dynamo":
        kwargs = dict(
            input_names=list(names),
            output_names=list(out_names),
            dynamo=True,
            external_data=False,
            optimize=True,
        )
        if opset is None:
            from torch.onnx import _constants

            opset = _constants.ONNX_MAX_OPSET
        kwargs["opset_version"] = opset
        prog = torch.onnx.export(module, args, **kwargs)
        prog.save(str(path), external_data=False)
    else:
        raise ValueError(exporter)


def _ort_session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _op_histogram(model):
    hist = collections.Counter()

    def walk(graph):
        for node in graph.node:
            key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
            hist[key] += 1
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    for fn in model.functions:
        for node in fn.node:
            hist[f"(fn {fn.name}) {node.op_type}"] += 1
    return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))


def _max_diff(a_list, b_list):
    per = []
    for a, b in zip(a_list, b_list):
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        abs_d = float(np.max(np.abs(a - b))) if a.size else 0.0
        scale = float(np.max(np.abs(a))) if a.size else 0.0
        per.append((abs_d, abs_d / scale if scale > 0 else abs_d))
    return per


def make_one(name: str, out_root: Path, folder_name: str | None = None) -> dict:
    import onnx
    import onnxruntime as ort
    import torch
    import transformers

    builder, exporter, opset = MODELS[name]
    torch.manual_seed(SEED)
    spec = builder()
    module = _eval_all(spec["module"])
    in_names = list(spec["input_names"])
    out_names = list(spec["output_names"])
    inputs = spec["inputs"]
    notes = []

    out_dir = out_root / (folder_name or name)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "inputs").mkdir(parents=True)
    (out_dir / "expected").mkdir(parents=True)
    model_path = out_dir / "model.onnx"

    torch_out = _torch_run(module, in_names, inputs)

    try:
        _export(module, in_names, inputs, out_names, model_path, exporter, opset)
    except Exception as e:  # noqa: BLE001
        if "fallback" not in spec:
            raise
        print(f"[{name}] export with {in_names} failed ({type(e).__name__}: {e}); "
              f"retrying with input_ids only", file=sys.stderr)
        notes.append(f"exported with input_ids only: export with attention_mask failed: {type(e).__name__}")
        module = _eval_all(spec["fallback"]())
        in_names = ["input_ids"]
        inputs = {"input_ids": inputs["input_ids"]}
        spec["alt_inputs"] = {"input_ids": spec["alt_inputs"]["input_ids"]}
        torch_out = _torch_run(module, in_names, inputs)
        _export(module, in_names, inputs, out_names, model_path, exporter, opset)

    # Make sure all weights are embedded and the file is a single self-contained model.
    model = onnx.load(str(model_path), load_external_data=True)
    # The dynamo exporter attaches per-node metadata (stack traces with local
    # file paths, FX node text); drop it so the file is small and reproducible.
    for node in model.graph.node:
        del node.metadata_props[:]
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(model_path), save_as_external_data=False)
    for leftover in out_dir.iterdir():
        if leftover.is_file() and leftover.name != "model.onnx":
            leftover.unlink()  # stray external-data files, if any

    model = onnx.load(str(model_path))
    opset_used = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    graph_inputs = [i for i in model.graph.input]
    init_names = {t.name for t in model.graph.initializer}
    graph_inputs = [i for i in graph_inputs if i.name not in init_names]
    graph_outputs = list(model.graph.output)

    sess = _ort_session(model_path)
    feeds = {}
    meta_inputs = {}
    dropped = [n for n in in_names if n not in {i.name for i in graph_inputs}]
    if dropped:
        notes.append(f"graph has no input(s) {dropped}: the exporter removed them as unused")
    for gi in graph_inputs:
        dt = _NP_OF_ONNX[gi.type.tensor_type.elem_type]
        arr = np.ascontiguousarray(inputs[gi.name].astype(dt))
        feeds[gi.name] = arr
        fname = safe_name(gi.name) + ".npy"
        np.save(out_dir / "inputs" / fname, arr)
        meta_inputs[gi.name] = {"file": f"inputs/{fname}", "dtype": str(arr.dtype), "shape": list(arr.shape)}

    ort_out = sess.run([o.name for o in graph_outputs], feeds)
    meta_outputs = {}
    for go, arr in zip(graph_outputs, ort_out):
        fname = safe_name(go.name) + ".npy"
        np.save(out_dir / "expected" / fname, arr)
        meta_outputs[go.name] = {"file": f"expected/{fname}", "dtype": str(arr.dtype), "shape": list(arr.shape)}

    # torch vs ORT on the recorded inputs
    assert [o.name for o in graph_outputs] == out_names, [o.name for o in graph_outputs]
    per = _max_diff(torch_out, ort_out)
    max_abs = max(p[0] for p in per)
    max_rel = max(p[1] for p in per)

    # torch vs ORT on a second, different input set (detects inputs traced in as constants)
    alt = spec["alt_inputs"]
    alt_feeds = {gi.name: alt[gi.name].astype(feeds[gi.name].dtype) for gi in graph_inputs}
    alt_torch = _torch_run(module, in_names, alt)
    alt_ort = sess.run([o.name for o in graph_outputs], alt_feeds)
    alt_per = _max_diff(alt_torch, alt_ort)
    alt_rel = max(p[1] for p in alt_per)

    # A model exported with dynamic axes is also recorded at a second shape (batch 3,
    # sequence 9, the last row padded), in <name>/shape2/{inputs,expected}/.
    shape2 = None
    if exporter == "torchscript-dynamic":
        s2_feeds = {}
        for gi in graph_inputs:
            a = alt_feeds[gi.name]
            a = np.concatenate([a, a[:1]], axis=0)[:, :9].copy()
            if gi.name == "attention_mask":
                a[2, 6:] = 0
            s2_feeds[gi.name] = np.ascontiguousarray(a)
        s2_out = sess.run([o.name for o in graph_outputs], s2_feeds)
        for sub in ("inputs", "expected"):
            (out_dir / "shape2" / sub).mkdir(parents=True)
        for n, a in s2_feeds.items():
            np.save(out_dir / "shape2" / "inputs" / (safe_name(n) + ".npy"), a)
        for go, a in zip(graph_outputs, s2_out):
            np.save(out_dir / "shape2" / "expected" / (safe_name(go.name) + ".npy"), a)
        shape2 = {n: list(a.shape) for n, a in s2_feeds.items()}

    hist = _op_histogram(model)
    size = model_path.stat().st_size
    meta = {
        "name": name,
        "architecture": spec["architecture"],
        "hf_config": spec["hf_config"],
        "exporter": exporter,
        "opset": opset_used,
        "inputs": meta_inputs,
        "outputs": meta_outputs,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "onnxruntime_version": ort.__version__,
        "onnx_version": onnx.__version__,
        "max_abs_diff_torch_vs_ort": max_abs,
        "max_rel_diff_torch_vs_ort": max_rel,
        "max_abs_diff_per_output": {n: p[0] for n, p in zip(out_names, per)},
        "alt_inputs_max_rel_diff_torch_vs_ort": alt_rel,
        "shape2_inputs": shape2,
        "seed": SEED,
        "ort_graph_optimization": "disabled",
        "op_histogram": hist,
        "model_onnx_bytes": size,
        "notes": notes,
    }
    with open(out_dir / "meta.json", "w") as f:
        json.dump(meta, f, indent=2, sort_keys=False)
        f.write("\n")

    print(f"== {name} -> {out_dir}  ({size} bytes, opset {opset_used}, {exporter})")
    for n, m in meta_inputs.items():
        print(f"   in  {n}: {m['dtype']} {m['shape']}")
    for n, m in meta_outputs.items():
        print(f"   out {n}: {m['dtype']} {m['shape']}")
    print(f"   torch vs ORT: max abs {max_abs:.3g}, max rel {max_rel:.3g}; alt inputs max rel {alt_rel:.3g}")
    print("   ops: " + ", ".join(f"{k} {v}" for k, v in hist.items()))
    for n in notes:
        print(f"   note: {n}")
    if max_rel > 1e-4 or alt_rel > 1e-4:
        raise SystemExit(f"{name}: torch and ONNX Runtime disagree (rel {max_rel:.3g} / alt {alt_rel:.3g})")
    return meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", metavar="NAME",
                    help=f"build only this model (repeatable); one of {', '.join(MODELS)}")
    ap.add_argument("--out", type=Path, default=None,
                    help="output root (default: tests/models for the default set, "
                         f"{EXTRA_OUT} for the extra entries)")
    ap.add_argument("--example", action="store_true",
                    help="write bert_tiny into examples/tiny_bert/ (the README sample) and stop")
    ap.add_argument("--list", action="store_true", help="list model names and exit")
    args = ap.parse_args(argv)

    if args.list:
        for n, (_, exp, ops) in MODELS.items():
            print(f"{n}\t{exp}\topset {ops or 'newest'}\t{'default' if n in DEFAULT_SET else 'extra'}")
        return 0

    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    if args.example:
        make_one("bert_tiny", REPO / "examples", folder_name="tiny_bert")
        return 0

    names = args.only or DEFAULT_SET
    for n in names:
        if n not in MODELS:
            ap.error(f"unknown model {n!r}; known: {', '.join(MODELS)}")
    for n in names:
        out = args.out or (HERE if n in DEFAULT_SET else EXTRA_OUT)
        make_one(n, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
