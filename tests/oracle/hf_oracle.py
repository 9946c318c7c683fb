#!/usr/bin/env python3
"""transformers (+ PEFT) as the reference for a Hugging Face model directory (tests/hf_dir.rs).

  hf_oracle.py CASE.json

CASE.json:
  dir              the model directory (loaded with AutoModelForCausalLM, dtype float32)
  texts            strings: AutoTokenizer ids with add_special_tokens True and False, and
                   decode(ids, skip_special_tokens=True) of the former
  conversations    message lists: apply_chat_template(tokenize=False) with
                   add_generation_prompt False and True
  ids              token ids: the float32 logits written to OUT/logits.f32 ([T, vocab])
  peft_dir         optional: a PEFT adapter directory loaded on the model; its logits on `ids`
                   go to OUT/peft_logits.f32
  out              output directory
Prints one JSON object: {tokens: [{with, without, decoded}], templates: [[plain, gen]], dtype}.
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    case = json.load(open(sys.argv[1]))
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tok = AutoTokenizer.from_pretrained(case["dir"])
    res = {"tokens": [], "templates": []}
    for t in case.get("texts", []):
        w = tok(t, add_special_tokens=True)["input_ids"]
        wo = tok(t, add_special_tokens=False)["input_ids"]
        res["tokens"].append({"with": w, "without": wo, "decoded": tok.decode(w, skip_special_tokens=True)})
    for conv in case.get("conversations", []):
        res["templates"].append([tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=g) for g in (False, True)])
    if case.get("ids"):
        model = AutoModelForCausalLM.from_pretrained(case["dir"], dtype=torch.float32, attn_implementation="eager")
        model.eval()
        res["dtype"] = sorted({str(p.dtype) for p in model.parameters()})
        ids = torch.tensor([case["ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0].float().numpy()
        logits.astype("<f4").tofile(os.path.join(case["out"], "logits.f32"))
        if case.get("peft_dir"):
            from peft import PeftModel
            pm = PeftModel.from_pretrained(model, case["peft_dir"])
            pm.eval()
            with torch.no_grad():
                pl = pm(input_ids=ids).logits[0].float().numpy()
            pl.astype("<f4").tofile(os.path.join(case["out"], "peft_logits.f32"))
    print(json.dumps(res))


main()
