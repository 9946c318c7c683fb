#!/usr/bin/env python3
"""transformers + PEFT as the reference for `finetune export --peft` / `finetune import --peft`
(tests/peft_export.rs).

  peft_export_oracle.py DIR

DIR/case.json (written by the test):
  model_dir, gguf_file   the GGUF that transformers loads (dequantized, float32)
  ids                    the token ids to score
  load: [{name, peft_dir}]
      PeftModel.from_pretrained(base, peft_dir) — a directory our export wrote.
  make: [{name, peft_dir, r, lora_alpha, use_rslora, rank_pattern, alpha_pattern, seed, b_scale}]
      get_peft_model(base, LoraConfig(...all 7 projections...)), then every lora_A set to
      uniform(±1/sqrt(in)) and every lora_B to uniform(±b_scale) (torch generator `seed`), then
      save_pretrained(peft_dir) — an adapter made by PEFT for our import.
Writes the logits ([len(ids), n_vocab] little-endian f32) of the base model to DIR/base.f32
and of each adapted model to DIR/{name}.f32. Prints one JSON object:
  {dtype, model_class, n_vocab, cases: {name: {modules, scaling: [distinct PEFT scalings]}}}
"""
import copy
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def logits(model, ids):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids])).logits[0].float()
    return out.numpy().astype("<f4")


def lora_modules(model):
    return [m for _, m in model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A]


def main():
    d = sys.argv[1]
    case = json.load(open(os.path.join(d, "case.json")))
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    base = AutoModelForCausalLM.from_pretrained(case["model_dir"], gguf_file=case["gguf_file"], dtype=torch.float32)
    base.eval()
    dtypes = sorted({str(p.dtype) for p in base.parameters()})
    ids = case["ids"]
    base_logits = logits(base, ids)
    base_logits.tofile(os.path.join(d, "base.f32"))
    out = {"dtype": dtypes, "model_class": type(base).__name__, "n_vocab": int(base_logits.shape[1]), "cases": {}}

    for c in case.get("load", []):
        m = PeftModel.from_pretrained(copy.deepcopy(base), c["peft_dir"], is_trainable=False)
        m.eval()
        mods = lora_modules(m)
        logits(m, ids).tofile(os.path.join(d, c["name"] + ".f32"))
        out["cases"][c["name"]] = {"modules": len(mods), "scaling": sorted({float(x.scaling["default"]) for x in mods})}
        del m

    for c in case.get("make", []):
        cfg = LoraConfig(r=c["r"], lora_alpha=c["lora_alpha"], use_rslora=c["use_rslora"], lora_dropout=0.0,
                         bias="none", target_modules=TARGETS, task_type="CAUSAL_LM",
                         rank_pattern=c.get("rank_pattern") or {}, alpha_pattern=c.get("alpha_pattern") or {})
        m = get_peft_model(copy.deepcopy(base), cfg)
        m.eval()
        g = torch.Generator().manual_seed(c["seed"])
        mods = lora_modules(m)
        with torch.no_grad():
            for mod in mods:
                a, b = mod.lora_A["default"].weight, mod.lora_B["default"].weight
                a.copy_((torch.rand(a.shape, generator=g) * 2 - 1) / a.shape[1] ** 0.5)
                b.copy_((torch.rand(b.shape, generator=g) * 2 - 1) * c["b_scale"])
        m.save_pretrained(c["peft_dir"])
        logits(m, ids).tofile(os.path.join(d, c["name"] + ".f32"))
        out["cases"][c["name"]] = {"modules": len(mods), "scaling": sorted({float(x.scaling["default"]) for x in mods})}
        del m

    print(json.dumps(out))


main()
