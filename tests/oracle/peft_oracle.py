#!/usr/bin/env python3
"""PyTorch + transformers + PEFT as the LoRA training reference for tests/peft.rs.

  peft_oracle.py DIR

DIR/case.json (written by the test):
  model_dir, gguf_file      the GGUF that transformers loads (dequantized, float32)
  hf_dir                    instead: a Hugging Face model directory (loaded as float32)
  rank, alpha, steps, lr, beta1, beta2, eps
  n_head, n_head_kv, head_dim
  qk_permute                optional, default true: q/k rows differ between GGUF and HF order
                            (llama); false for the NeoX-rope architectures (qwen2/3, gemma3)
  sequences: [{tokens, labels}]   our data pipeline's output; labels are already shifted
                                  (labels[t] = token t+1, or -1 = not trained)
  tensors: [{layer, target, n_in, n_out, r, offset_a, offset_b}]  into DIR/lora.f32
DIR/lora.f32: our LoRA in GGUF orientation, A [r, n_in] then B [n_out, r], row-major f32.

Loads the pairs into a PEFT LoraConfig model (q/k lora_b rows moved from GGUF to HF order), and
computes on the batch: the loss (sum of -log p over trained positions / their count), its
gradient for every LoRA tensor (moved back to GGUF orientation), written to DIR/grads.f32 in
the layout of lora.f32, and the losses of `steps` torch.optim.AdamW steps on the same batch.
Prints one JSON object: {dtype, loss, count, losses}.
"""
import json
import os
import sys

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

HF = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
      "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}


def gguf_to_hf_rows(n_heads, hd):
    """perm with hf[j] = gguf[perm[j]]: GGUF row h*hd + 2i + s is HF row h*hd + s*hd/2 + i."""
    perm = np.empty(n_heads * hd, dtype=np.int64)
    for h in range(n_heads):
        for s in range(2):
            for i in range(hd // 2):
                perm[h * hd + s * hd // 2 + i] = h * hd + 2 * i + s
    return perm


def main():
    d = sys.argv[1]
    case = json.load(open(os.path.join(d, "case.json")))
    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if case.get("hf_dir"):  # a Hugging Face directory (tests/hf_dir.rs)
        model = AutoModelForCausalLM.from_pretrained(case["hf_dir"], dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(case["model_dir"], gguf_file=case["gguf_file"], dtype=torch.float32)
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    cfg = LoraConfig(r=case["rank"], lora_alpha=case["alpha"], lora_dropout=0.0, bias="none",
                     target_modules=[v.split(".")[1] for v in HF.values()], init_lora_weights=True)
    model = get_peft_model(model, cfg)
    model.eval()  # no dropout anywhere (lora_dropout is 0 too)
    flat = np.fromfile(os.path.join(d, "lora.f32"), dtype="<f4")
    layers = model.base_model.model.model.layers
    perms = {"q": gguf_to_hf_rows(case["n_head"], case["head_dim"]),
             "k": gguf_to_hf_rows(case["n_head_kv"], case["head_dim"])}
    if os.environ.get("PEFT_ORACLE_NO_PERMUTE") or not case.get("qk_permute", True):  # the env var: mutation checks
        perms = {}
    params = []
    seen = set()
    with torch.no_grad():
        for t in case["tensors"]:
            mod = layers[t["layer"]].get_submodule(HF[t["target"]])
            r, n_in, n_out = t["r"], t["n_in"], t["n_out"]
            a = flat[t["offset_a"]:t["offset_a"] + r * n_in].reshape(r, n_in)
            b = flat[t["offset_b"]:t["offset_b"] + n_out * r].reshape(n_out, r)
            if t["target"] in perms:
                b = b[perms[t["target"]]]
            la, lb = mod.lora_A["default"].weight, mod.lora_B["default"].weight
            assert tuple(la.shape) == (r, n_in) and tuple(lb.shape) == (n_out, r), (t, la.shape, lb.shape)
            la.copy_(torch.from_numpy(np.ascontiguousarray(a)))
            lb.copy_(torch.from_numpy(np.ascontiguousarray(b)))
            assert mod.scaling["default"] == case["alpha"] / r
            params.append((t, la, lb))
            seen.add((t["layer"], t["target"]))
    n_lora = sum(1 for n, p in model.named_parameters() if p.requires_grad)
    assert n_lora == 2 * len(seen), f"PEFT has {n_lora} trainable tensors, we gave {2 * len(seen)}"

    seqs = [(torch.tensor([s["tokens"]]), torch.tensor(s["labels"])) for s in case["sequences"]]
    count = sum(int((lab >= 0).sum()) for _, lab in seqs)

    def loss_fn():
        total = torch.zeros((), dtype=torch.float64)
        for ids, lab in seqs:
            logits = model(input_ids=ids).logits[0].float()
            lp = torch.log_softmax(logits, dim=-1)
            keep = lab >= 0
            total = total + (-lp[keep].gather(1, lab[keep].unsqueeze(1))).sum().double()
        return total / count

    opt = torch.optim.AdamW([p for _, a, b in params for p in (a, b)], lr=case["lr"],
                            betas=(case["beta1"], case["beta2"]), eps=case["eps"], weight_decay=0.0)
    losses = []
    grads = None
    for step in range(case["steps"]):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        losses.append(loss.item())
        if step == 0:
            grads = np.zeros_like(flat)
            for t, a, b in params:
                gb = b.grad.numpy()
                if t["target"] in perms:
                    back = np.empty_like(gb)
                    back[perms[t["target"]]] = gb
                    gb = back
                grads[t["offset_a"]:t["offset_a"] + a.numel()] = a.grad.numpy().ravel()
                grads[t["offset_b"]:t["offset_b"] + b.numel()] = gb.ravel()
        opt.step()
    grads.astype("<f4").tofile(os.path.join(d, "grads.f32"))
    print(json.dumps({"dtype": dtypes, "loss": losses[0], "count": count, "losses": losses}))


main()
