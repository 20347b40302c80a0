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
    python3 tests/models/make_models.py --only llama_kv
    python3 tests/models/make_models.py --example        # bert_tiny -> examples/tiny_bert/
    python3 tests/models/make_models.py --list

The default set (what is checked in under tests/models/) is every entry of MODELS:
bert_tiny, llama_tiny, bert_tiny_dynamic (fixed or batch/seq-dynamic encoders and a
static decoder), gpt2_tiny, qwen2_tiny, phi_tiny, llama_tiny_dynamo,
llama_tiny_dynamo_op23 (decoder prefill graphs with position_ids and dynamic batch and
sequence), llama_kv and gpt2_kv (one KV-cache step graph each, with greedy.json and a
recorded prefill step). An entry not in DEFAULT_SET would be written to
/tmp/extra_models/ unless --out is given.

KV-cache graphs take input_ids [batch, sequence], attention_mask
[batch, past_sequence+sequence], position_ids [batch, sequence] and
past_key_values.{i}.key/value [batch, kv_heads, past_sequence, head_dim], and return
logits and present.{i}.key/value [batch, kv_heads, past_sequence+sequence, head_dim].
The script checks the same graph against torch at past 0 (prefill), at sequence 1
(decode) and at other shapes, and runs a 32-token greedy generation through ONNX
Runtime that must agree with transformers' `generate`.

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


GPT2_CFG = dict(
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


# --------------------------------------------------------------------------
# Decoders with position_ids and dynamic axes (prefill) and with a KV cache
# --------------------------------------------------------------------------

# dim_params of the dynamic axes
PREFILL_AXES = {0: "batch", 1: "sequence"}


def _positions(mask):
    """position_ids for a (left-)padded mask, as Hugging Face `generate` makes them:
    cumsum(mask) - 1 on real tokens, 1 on padding."""
    pos = np.cumsum(mask, axis=1) - 1
    pos[mask == 0] = 1
    return pos.astype(np.int64)


def _prefill_inputs(vocab, b, s, seed, pads):
    """input_ids / attention_mask / position_ids [b, s] int64; row r left-padded by pads[r]."""
    rng = np.random.RandomState(seed)
    input_ids = rng.randint(3, vocab, size=(b, s)).astype(np.int64)
    mask = np.ones((b, s), dtype=np.int64)
    for r, p in enumerate(pads):
        mask[r, :p] = 0
        input_ids[r, :p] = 0
    return {"input_ids": input_ids, "attention_mask": mask, "position_ids": _positions(mask)}


def _prefill_wrapper(model):
    import torch

    class Prefill(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, position_ids):
            out = self.m(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=False,
                return_dict=True,
            )
            return out.logits

    return Prefill(model)


def _prefill_spec(architecture, cfg, model):
    """A prefill (no cache) export with position_ids: recorded at batch 2, sequence 12,
    row 1 left-padded by 4; checked again at batch 3, sequence 9 (rows 0 and 2 padded),
    which also shows the dynamic axes really are dynamic."""
    names = ["input_ids", "attention_mask", "position_ids"]
    return dict(
        architecture=architecture,
        hf_config=cfg,
        module=_prefill_wrapper(model),
        input_names=names,
        output_names=["logits"],
        inputs=_prefill_inputs(cfg["vocab_size"], 2, 12, 4321, [0, 4]),
        alt_inputs=_prefill_inputs(cfg["vocab_size"], 3, 9, 77, [2, 0, 5]),
        dynamic_axes={n: PREFILL_AXES for n in names + ["logits"]},
    )


def build_gpt2():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = dict(GPT2_CFG)
    torch.manual_seed(SEED)
    model = _perturb_params(GPT2LMHeadModel(GPT2Config(**cfg)))
    return _prefill_spec("GPT2LMHeadModel", cfg, model)


QWEN2_CFG = dict(
    vocab_size=192,
    hidden_size=48,
    num_hidden_layers=2,
    num_attention_heads=6,
    num_key_value_heads=2,
    head_dim=8,
    intermediate_size=96,
    hidden_act="silu",
    max_position_embeddings=64,
    rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    tie_word_embeddings=True,
    use_sliding_window=False,
    use_cache=False,
    attention_dropout=0.0,
    initializer_range=0.2,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    attn_implementation="eager",
)


def build_qwen2():
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = dict(QWEN2_CFG)
    torch.manual_seed(SEED)
    model = _perturb_params(Qwen2ForCausalLM(Qwen2Config(**cfg)))
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "embeddings not tied"
    return _prefill_spec("Qwen2ForCausalLM", cfg, model)


PHI_CFG = dict(
    vocab_size=160,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    intermediate_size=128,
    hidden_act="gelu_new",
    max_position_embeddings=64,
    layer_norm_eps=1e-5,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
    qk_layernorm=False,
    tie_word_embeddings=False,
    use_cache=False,
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attention_dropout=0.0,
    initializer_range=0.2,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    attn_implementation="eager",
)


def build_phi():
    import torch
    from transformers import PhiConfig, PhiForCausalLM

    cfg = dict(PHI_CFG)
    torch.manual_seed(SEED)
    model = _perturb_params(PhiForCausalLM(PhiConfig(**cfg)))
    return _prefill_spec("PhiForCausalLM", cfg, model)


def build_llama_prefill():
    """The llama_tiny weights (same config and seed) as a prefill export with position_ids."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(LLAMA_CFG)
    torch.manual_seed(SEED)
    model = _perturb_params(LlamaForCausalLM(LlamaConfig(**cfg)))
    return _prefill_spec("LlamaForCausalLM", cfg, model)


# --- KV-cache graphs -------------------------------------------------------

KV_PROMPT_LEN = 7
KV_GREEDY_TOKENS = 32


def _kv_names(n_layers):
    past = [f"past_key_values.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    return past, present


def _kv_wrapper(model, n_layers):
    """forward(input_ids, attention_mask, position_ids, *flat_past) -> (logits, *flat_present):
    the flat past tensors [batch, kv_heads, past, head_dim] become a transformers
    `DynamicCache` (filled through its `ddp_cache_data` argument, one (key, value) pair
    per layer), and the cache the model returns is flattened back in the same order."""
    import torch
    from transformers import DynamicCache

    class Kv(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, position_ids, *past):
            assert len(past) == 2 * n_layers
            cache = DynamicCache(
                ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(n_layers)],
                config=self.m.config,
            )
            out = self.m(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
                return_dict=True,
            )
            flat = []
            for layer in out.past_key_values.layers:
                flat += [layer.keys, layer.values]
            return (out.logits, *flat)

    return Kv(model)


def _kv_feed(ids, mask, past, names_past):
    """One step's inputs: ids [b, s]; mask [b, past+s]; past: list of arrays (flat)."""
    s = ids.shape[1]
    pos = _positions(mask)[:, -s:]
    d = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64), "position_ids": pos}
    for n, a in zip(names_past, past):
        d[n] = np.ascontiguousarray(a.astype(np.float32))
    return d


def _empty_past(n_layers, b, kv_heads, head_dim):
    return [np.zeros((b, kv_heads, 0, head_dim), np.float32) for _ in range(2 * n_layers)]


def _kv_spec(architecture, cfg, model, n_layers, kv_heads, head_dim):
    """A KV-cache step graph. The export example has past 3, sequence 2 (batch 2); the
    recorded inputs/ are one decode step: batch 2, past 5 (row 1 left-padded by 2),
    sequence 1, whose past tensors are torch's presents for that 5-token prefill."""
    names_past, names_present = _kv_names(n_layers)
    in_names = ["input_ids", "attention_mask", "position_ids"] + names_past
    module = _eval_all(_kv_wrapper(model, n_layers))
    vocab = cfg["vocab_size"]
    rng = np.random.RandomState(2024)

    def run_torch(feed):
        return _torch_run(module, in_names, feed)

    def step_after_prefill(b, past_len, s, pads, seed):
        """Run a (past_len)-token prefill in torch, then return the next step's feed of s tokens."""
        r = np.random.RandomState(seed)
        pre = _prefill_inputs(vocab, b, past_len, seed, pads)
        pre_feed = _kv_feed(pre["input_ids"], pre["attention_mask"], _empty_past(n_layers, b, kv_heads, head_dim), names_past)
        presents = run_torch(pre_feed)[1:]
        ids = r.randint(3, vocab, size=(b, s)).astype(np.int64)
        mask = np.concatenate([pre["attention_mask"], np.ones((b, s), np.int64)], axis=1)
        return _kv_feed(ids, mask, presents, names_past)

    def prefill(b, s, pads, seed):
        pre = _prefill_inputs(vocab, b, s, seed, pads)
        return _kv_feed(pre["input_ids"], pre["attention_mask"], _empty_past(n_layers, b, kv_heads, head_dim), names_past)

    export_inputs = step_after_prefill(2, 3, 2, [0, 1], 11)
    decode = step_after_prefill(2, 5, 1, [0, 2], 12)
    prompt = rng.randint(3, vocab, size=(1, KV_PROMPT_LEN)).astype(np.int64)
    dyn = {"input_ids": PREFILL_AXES, "position_ids": PREFILL_AXES,
           "attention_mask": {0: "batch", 1: "past_sequence+sequence"}, "logits": PREFILL_AXES}
    for n in names_past:
        dyn[n] = {0: "batch", 2: "past_sequence"}
    for n in names_present:
        dyn[n] = {0: "batch", 2: "past_sequence+sequence"}
    return dict(
        architecture=architecture,
        hf_config=cfg,
        module=module,
        input_names=in_names,
        output_names=["logits"] + names_present,
        inputs=decode,
        export_inputs=export_inputs,
        alt_inputs=step_after_prefill(3, 4, 3, [1, 0, 3], 13),
        # further torch-vs-ORT checks of the same graph at other shapes
        checks={
            "export example (batch 2, past 3, sequence 2)": export_inputs,
            "prefill (batch 2, past 0, sequence 6, row 1 left-padded by 3)": prefill(2, 6, [0, 3], 14),
            "decode (batch 1, past 6, sequence 1)": step_after_prefill(1, 6, 1, [0], 15),
        },
        dynamic_axes=dyn,
        post=lambda sess, out_dir: _kv_greedy(sess, out_dir, model, module, in_names, names_past, names_present,
                                              prompt, n_layers, kv_heads, head_dim),
    )


def _kv_greedy(sess, out_dir, model, module, in_names, names_past, names_present, prompt, n_layers, kv_heads, head_dim):
    """greedy.json (prefill + greedy steps through ONNX Runtime, against HF `generate`) and
    prefill_inputs/ + prefill_expected/ (the prompt's prefill step)."""
    import torch

    out_names = ["logits"] + names_present
    feed = _kv_feed(prompt, np.ones_like(prompt), _empty_past(n_layers, 1, kv_heads, head_dim), names_past)
    for sub in ("prefill_inputs", "prefill_expected"):
        (out_dir / sub).mkdir()
    for n in in_names:
        np.save(out_dir / "prefill_inputs" / (safe_name(n) + ".npy"), feed[n])
    generated, margins = [], []
    mask = np.ones_like(prompt)
    for step in range(KV_GREEDY_TOKENS):
        outs = sess.run(out_names, feed)
        if step == 0:
            for n, a in zip(out_names, outs):
                np.save(out_dir / "prefill_expected" / (safe_name(n) + ".npy"), a)
            prefill_torch = _torch_run(module, in_names, feed)
            prefill_rel = max(p[1] for p in _max_diff(prefill_torch, outs))
        last = outs[0][0, -1].astype(np.float64)
        tok = int(np.argmax(last))
        top2 = np.sort(last)[-2:]
        margins.append(float(top2[1] - top2[0]))
        generated.append(tok)
        mask = np.concatenate([mask, np.ones((1, 1), np.int64)], axis=1)
        feed = _kv_feed(np.array([[tok]], np.int64), mask, outs[1:], names_past)

    with torch.no_grad():
        hf = model.generate(
            input_ids=torch.from_numpy(prompt),
            attention_mask=torch.ones_like(torch.from_numpy(prompt)),
            max_new_tokens=KV_GREEDY_TOKENS,
            min_new_tokens=KV_GREEDY_TOKENS,
            do_sample=False,
            num_beams=1,
            use_cache=True,
            pad_token_id=0,
        )
    hf_ids = [int(t) for t in hf[0, prompt.shape[1]:]]
    greedy = {
        "prompt": [int(t) for t in prompt[0]],
        "generated": generated,
        "hf_torch_generated": hf_ids,
        "agree": hf_ids == generated,
        "steps": (f"prefill of the {prompt.shape[1]}-token prompt (batch 1, past 0) gives generated[0]; "
                  f"then {KV_GREEDY_TOKENS - 1} decode steps (sequence 1), each feeding the previous step's "
                  "presents back as past, an all-ones attention_mask of length past+1 and "
                  "position_ids [[past]], give generated[1:]"),
        "reference": "ONNX Runtime, CPUExecutionProvider, graph optimizations disabled; "
                     "hf_torch_generated: transformers generate(do_sample=False, num_beams=1, "
                     f"min_new_tokens=max_new_tokens={KV_GREEDY_TOKENS}) on the same prompt",
        "min_top2_logit_margin": min(margins),
    }
    with open(out_dir / "greedy.json", "w") as f:
        json.dump(greedy, f, indent=2)
        f.write("\n")
    print(f"   greedy: ORT {generated}")
    print(f"   greedy: HF  {hf_ids}  agree={greedy['agree']}, min top-2 margin {min(margins):.3g}")
    notes = [] if greedy["agree"] else ["greedy ids of ONNX Runtime and HF generate differ"]
    return {"greedy_agree_with_hf": greedy["agree"], "prefill_max_rel_diff_torch_vs_ort": prefill_rel}, notes


def build_llama_kv():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(LLAMA_CFG, use_cache=True)
    torch.manual_seed(SEED)
    model = _eval_all(_perturb_params(LlamaForCausalLM(LlamaConfig(**cfg))))
    hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    return _kv_spec("LlamaForCausalLM", cfg, model, cfg["num_hidden_layers"], cfg["num_key_value_heads"], hd)


def build_gpt2_kv():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = dict(GPT2_CFG, use_cache=True)
    torch.manual_seed(SEED)
    model = _eval_all(_perturb_params(GPT2LMHeadModel(GPT2Config(**cfg))))
    hd = cfg["n_embd"] // cfg["n_head"]
    return _kv_spec("GPT2LMHeadModel", cfg, model, cfg["n_layer"], cfg["n_head"], hd)


# name -> (builder, exporter, opset; for "dynamo" a list of opsets tried newest first)
MODELS = {
    "bert_tiny": (build_bert, "torchscript", 17),
    "llama_tiny": (build_llama, "torchscript", 17),
    "bert_tiny_dynamic": (build_bert, "torchscript-dynamic", 17),
    "gpt2_tiny": (build_gpt2, "torchscript", 17),
    "qwen2_tiny": (build_qwen2, "torchscript", 18),
    "phi_tiny": (build_phi, "torchscript", 17),
    # dynamo: the first opset of the list that exports and that ONNX Runtime loads. torch 2.15
    # translates at opset 23 at most and version-converts upwards; only at exactly 23 does the
    # onnxscript optimizer fuse RMSNormalization and RotaryEmbedding, hence the second entry.
    "llama_tiny_dynamo": (build_llama_prefill, "dynamo", [28, 27, 26, 25, 24, 23]),
    "llama_tiny_dynamo_op23": (build_llama_prefill, "dynamo", [23]),
    "llama_kv": (build_llama_kv, "torchscript", 17),
    "gpt2_kv": (build_gpt2_kv, "torchscript", 17),
}
DEFAULT_SET = ["bert_tiny", "llama_tiny", "bert_tiny_dynamic", "gpt2_tiny", "qwen2_tiny", "phi_tiny",
               "llama_tiny_dynamo", "llama_tiny_dynamo_op23", "llama_kv", "gpt2_kv"]
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


def _export(module, names, inputs, out_names, path, exporter, opset, dynamic_axes=None):
    """Exports; returns notes. For "dynamo", `opset` is a list tried in order (newest first)."""
    import torch

    args = tuple(torch.from_numpy(inputs[n]) for n in names)
    notes = []
    if exporter in ("torchscript", "torchscript-dynamic"):
        # torchscript-dynamic: batch and sequence length stay symbolic ("batch", "seq") in
        # the exported graph, as `dynamic_axes` exports do for deployment.
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
        if dynamic_axes is not None:
            # keyed by the wrapper's forward() argument names, which are the input names
            kwargs["dynamic_shapes"] = {n: dict(dynamic_axes[n]) for n in names}
        errors = []
        for o in opset:
            try:
                prog = torch.onnx.export(module, args, opset_version=o, **kwargs)
            except Exception as e:  # noqa: BLE001
                errors.append(f"opset {o}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                print(f"   dynamo export at opset {o} failed: {errors[-1]}", file=sys.stderr)
                continue
            prog.save(str(path), external_data=False)
            try:
                _ort_session(path)
            except Exception as e:  # noqa: BLE001
                errors.append(f"opset {o}: exported, but ONNX Runtime cannot load it: {str(e).splitlines()[0][-160:]}")
                print(f"   {errors[-1]}", file=sys.stderr)
                continue
            notes += [f"dynamo export: {e}" for e in errors]
            notes.append(f"dynamo export at opset {o}: the newest of {opset} that exported and ONNX Runtime loads")
            break
        else:
            raise SystemExit("dynamo export failed at every opset: " + "; ".join(errors))
    else:
        raise ValueError(exporter)
    return notes


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

    export_inputs = spec.get("export_inputs", inputs)
    dyn = spec.get("dynamic_axes")
    try:
        notes += _export(module, in_names, export_inputs, out_names, model_path, exporter, opset, dyn)
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
        notes += _export(module, in_names, inputs, out_names, model_path, exporter, opset)

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

    # further torch-vs-ORT checks at other shapes (KV graphs: past 0, sequence 1, ...)
    checks = {}
    for label, feed in spec.get("checks", {}).items():
        f = {gi.name: feed[gi.name].astype(feeds[gi.name].dtype) for gi in graph_inputs}
        rel = max(p[1] for p in _max_diff(_torch_run(module, in_names, feed),
                                           sess.run([o.name for o in graph_outputs], f)))
        checks[label] = {"shapes": {n: list(a.shape) for n, a in f.items() if n in ("input_ids", "attention_mask")},
                         "max_rel_diff_torch_vs_ort": rel}
        alt_rel = max(alt_rel, rel)
    extra_meta = {}
    if "post" in spec:
        extra_meta, post_notes = spec["post"](sess, out_dir)
        notes += post_notes

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
        **({"alt_inputs_shapes": {n: list(a.shape) for n, a in alt_feeds.items()},
            "dynamic_axes": spec["dynamic_axes"]} if "dynamic_axes" in spec else {}),
        **({"other_shape_checks": checks} if checks else {}),
        **extra_meta,
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
    for label, c in checks.items():
        print(f"   torch vs ORT at {label}: max rel {c['max_rel_diff_torch_vs_ort']:.3g}")
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
