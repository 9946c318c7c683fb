"""Build compressed-tensors `pack-quantized` fixtures with llm-compressor, and dump the reference
decompression of every quantized weight.

Usage: make_ct.py OUT_ROOT
       make_ct.py --smollm2 SRC OUT   (SRC: SmolLM2-135M as a float32 HF directory, tests/oracle/hf_fixture.py)
Writes OUT_ROOT/<name>/ (config.json with quantization_config, model.safetensors, ...) for each
scheme below, plus OUT_ROOT/<name>/oracle/<module>.npy (float32 of the dequantized weight, computed
by compressed-tensors' own PackedQuantizationCompressor.decompress) and oracle/manifest.json
({module: [n_out, n_in]} for quantized modules, plus "dense": modules left unquantized).

A tiny random Llama (fixed seed, dims multiples of 128), quantized on CPU:
  w4g128_sym   QuantizationModifier W4A16 (int4, group 128, symmetric)
  w4g128_asym  QuantizationModifier W4A16_ASYM (int4, group 128, zero points packed along N)
  w8_channel   QuantizationModifier W8A16 (int8, channel strategy)
  mixed        config_groups: attention int3 group 64 asymmetric, MLP int8 channel asymmetric,
               layer 1's o_proj ignored (regex), lm_head ignored
  w4g128_asym_f16  as w4g128_asym on the float16 model (f16 scales)
  gptq_w4g64   GPTQModifier W4A16-style scheme, group 64, actorder "weight", calibrated on random
               token ids (no g_idx: llm-compressor 0.14 writes none)

--smollm2: SmolLM2-135M-Instruct in float16, every linear but lm_head (tied to the embeddings)
quantized data-free by QuantizationModifier (RTN) to int4, group 64 (576 = 9 groups), asymmetric;
its tokenizer and chat template copied; for tests/hf_quant_e2e.rs (logits and PEFT gradients vs
transformers on the same directory).
"""

import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from compressed_tensors.compressors.pack_quantized import PackedQuantizationCompressor
from compressed_tensors.quantization import QuantizationScheme
from llmcompressor import oneshot
from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

SEED = 1234


def tiny_llama():
    torch.manual_seed(SEED)
    cfg = LlamaConfig(
        vocab_size=512,
        hidden_size=256,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    m = LlamaForCausalLM(cfg).to(torch.bfloat16)
    # Widen the weight distribution a little so each group has a different range.
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.ndim == 2:
                p.mul_(1.0 + torch.rand(p.shape[0], 1, dtype=p.dtype))
    return m


def tiny_tokenizer():
    """A word-level tokenizer over the 512 ids (llm-compressor wants a processor with a dataset)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(512)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", pad_token="t0", eos_token="t1", bos_token="t2")


def calib_dataset(n=16, seq=64):
    from datasets import Dataset

    g = torch.Generator().manual_seed(SEED)
    ids = torch.randint(0, 512, (n, seq), generator=g)
    return Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})


def recipes():
    attn = ["re:.*self_attn\\.(q|k|v)_proj$", "re:.*layers\\.0\\.self_attn\\.o_proj$"]
    mlp = ["re:.*mlp\\.(gate|up|down)_proj$"]
    mixed = {
        "config_groups": {
            "group_0": {
                "targets": attn,
                "weights": {"num_bits": 3, "type": "int", "symmetric": False, "strategy": "group", "group_size": 64},
            },
            "group_1": {
                "targets": mlp,
                "weights": {"num_bits": 8, "type": "int", "symmetric": False, "strategy": "channel"},
            },
        },
        "ignore": ["lm_head", "re:.*layers\\.1\\.self_attn\\.o_proj$"],
    }
    gptq_scheme = {
        "config_groups": {
            "group_0": {
                "targets": ["Linear"],
                "weights": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 64},
            }
        },
        "ignore": ["lm_head"],
    }
    return {
        "w4g128_sym": (QuantizationModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"]), False),
        "w4g128_asym": (QuantizationModifier(targets="Linear", scheme="W4A16_ASYM", ignore=["lm_head"]), False),
        "w8_channel": (QuantizationModifier(targets="Linear", scheme="W8A16", ignore=["lm_head"]), False),
        "mixed": (QuantizationModifier(**mixed), False),
        "gptq_w4g64": (GPTQModifier(actorder="weight", **gptq_scheme), True),
        # the same model in float16: f16 scales (the others are bfloat16)
        "w4g128_asym_f16": (QuantizationModifier(targets="Linear", scheme="W4A16_ASYM", ignore=["lm_head"]), False),
    }


def dump_oracle(out):
    """Decompress every quantized module of `out` with compressed-tensors' own compressor."""
    cfg = json.load(open(os.path.join(out, "config.json")))
    qc = cfg["quantization_config"]
    assert qc["format"] == "pack-quantized", qc["format"]
    sd = load_file(os.path.join(out, "model.safetensors"))
    odir = os.path.join(out, "oracle")
    os.makedirs(odir, exist_ok=True)
    manifest = {"quantized": {}, "dense": []}
    import re

    def scheme_of(prefix):
        for g in qc["config_groups"].values():
            for t in g["targets"]:
                if (t.startswith("re:") and re.match(t[3:], prefix)) or t == "Linear" or prefix.endswith(t):
                    return QuantizationScheme(**g)
        raise KeyError(prefix)

    for key in sorted(sd):
        if key.endswith(".weight_packed"):
            prefix = key[: -len(".weight_packed")]
            local = {k[len(prefix) + 1 :]: v for k, v in sd.items() if k.startswith(prefix + ".")}
            scheme = scheme_of(prefix)
            w = PackedQuantizationCompressor.decompress(local, scheme)["weight"]
            np.save(os.path.join(odir, prefix + ".npy"), w.float().numpy())
            manifest["quantized"][prefix] = [int(w.shape[0]), int(w.shape[1])]
        elif key.endswith(".weight") and sd[key].ndim == 2 and ("proj" in key or "lm_head" in key):
            manifest["dense"].append(key[: -len(".weight")])
    json.dump(manifest, open(os.path.join(odir, "manifest.json"), "w"), indent=1)
    return manifest


def smollm2(src, out):
    import shutil

    if os.path.exists(os.path.join(out, "config.json")):
        return
    from transformers import AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float16)
    scheme = {"num_bits": 4, "type": "int", "symmetric": False, "strategy": "group", "group_size": 64}
    modifier = QuantizationModifier(config_groups={"group_0": {"targets": ["Linear"], "weights": scheme}}, ignore=["lm_head"])
    oneshot(model=model, recipe=modifier)
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, save_compressed=True)
    AutoTokenizer.from_pretrained(src).save_pretrained(tmp)
    for f in ("chat_template.jinja",):
        if os.path.exists(os.path.join(src, f)) and not os.path.exists(os.path.join(tmp, f)):
            shutil.copy(os.path.join(src, f), tmp)
    qc = json.load(open(os.path.join(tmp, "config.json")))["quantization_config"]
    assert qc["format"] == "pack-quantized", qc
    os.replace(tmp, out)


def main():
    if sys.argv[1] == "--smollm2":
        smollm2(sys.argv[2], sys.argv[3])
        return
    root = sys.argv[1]
    os.makedirs(root, exist_ok=True)
    torch.manual_seed(SEED)
    for name, (modifier, needs_data) in recipes().items():
        out = os.path.join(root, name)
        if os.path.exists(os.path.join(out, "oracle", "manifest.json")):
            continue
        base = os.path.join(root, "_base")
        if not os.path.exists(os.path.join(base, "config.json")):
            tiny_llama().save_pretrained(base)
            tiny_tokenizer().save_pretrained(base)
        dtype = torch.float16 if name.endswith("_f16") else torch.bfloat16
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
        kw = {}
        if needs_data:
            kw = dict(dataset=calib_dataset(), num_calibration_samples=16, max_seq_length=64)
        oneshot(model=model, recipe=modifier, **kw)
        tmp = out + ".tmp"
        model.save_pretrained(tmp, save_compressed=True)
        m = dump_oracle(tmp)
        os.replace(tmp, out)
        print(f"{name}: {len(m['quantized'])} quantized, {len(m['dense'])} dense", file=sys.stderr)


if __name__ == "__main__":
    main()
