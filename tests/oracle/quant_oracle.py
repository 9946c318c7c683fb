#!/usr/bin/env python3
"""transformers + GPTQModel's CPU torch kernels (+ PEFT) as the reference for a quantized
Hugging Face directory (GPTQ, AWQ-GEMM; tests/hf_quant_e2e.rs). Runs in venv-quant.
A compressed-tensors directory (venv-ct) or a dense one (any venv with transformers) is loaded by
transformers itself in float32 instead: compressed-tensors decompresses every pack-quantized
module into an nn.Linear on the first forward pass, which PEFT then wraps as it wraps any Linear.

  quant_oracle.py CASE.json

CASE.json:
  dir        the quantized directory, loaded by GPTQModel.load (BACKEND.TORCH for GPTQ,
             BACKEND.AWQ_TORCH for AWQ) in float16, as the kernels require
  compute    "f32": every non-quantized module (embeddings, norms, lm_head) widened to float32,
             so the quantized layers see float32 inputs: their kernel dequantizes in float16
             exactly as shipped and multiplies in float32 (the weights widen exactly);
             "f16": the model as GPTQModel runs it, float16 throughout
  ids        token ids: logits to OUT/logits.f32 ([T, vocab], float32)
  grads      optional: a peft_oracle.py-style case (rank, alpha, n_head, n_head_kv, head_dim,
             sequences, tensors, lora_file): LoRA via get_peft_model on the quantized model,
             loss and gradients to OUT/grads.f32 (then the LoRA layers are unloaded again)
  peft_dir   optional: a PEFT adapter loaded on the quantized model; logits on `ids` to
             OUT/peft_logits.f32
  out        output directory
Prints one JSON object: {kinds, n_quant, logits_dtype, lora_kinds, peft_kinds, loss, count, scales_dtype}.
"""
import json
import os
import sys
import types

import numpy as np
import torch

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


def load(case):
    qc = json.load(open(os.path.join(case["dir"], "config.json"))).get("quantization_config")
    if qc is None or qc["quant_method"] == "compressed-tensors":
        return load_transformers(case)
    from gptqmodel import BACKEND, GPTQModel
    from gptqmodel.nn_modules.qlinear import BaseQuantLinear

    backend = BACKEND.AWQ_TORCH if qc["quant_method"] == "awq" else BACKEND.TORCH
    cwd = os.getcwd()
    os.chdir(case["out"])  # GPTQModel writes logs/ into the working directory
    model = GPTQModel.load(case["dir"], backend=backend, device="cpu", dtype=torch.float16).model
    os.chdir(cwd)
    model.eval()
    quant = [m for m in model.modules() if isinstance(m, BaseQuantLinear)]
    if case["compute"] == "f32":
        widen_floats(model, skip=BaseQuantLinear)
        for m in quant:
            if type(m).__name__ == "AwqTorchLinear":
                m.forward = types.MethodType(awq_f32_forward, m)
    return model, quant


def widen_floats(model, skip=()):
    """Every floating parameter and buffer of the modules (except those of type `skip`) widened
    to float32 (exact); the config says float32."""
    for m in model.modules():
        if isinstance(m, skip):
            continue
        for n, p in m.named_parameters(recurse=False):
            if p.is_floating_point():
                p.data = p.data.float()
        for n, b in m.named_buffers(recurse=False):
            if b.is_floating_point():
                setattr(m, n, b.float())
    model.config.torch_dtype = torch.float32


def load_transformers(case):
    """The directory in its own dtype (compressed-tensors decompresses each module as shipped:
    (q - zero point) * scale in the scales' float16, which is what its compressor's decompress
    and vLLM compute), then every floating tensor widened to float32 (exact), as for GPTQModel."""
    from transformers import AutoModelForCausalLM

    assert case["compute"] == "f32", case["compute"]
    model = AutoModelForCausalLM.from_pretrained(case["dir"], dtype="auto")
    model.eval()
    with torch.no_grad():
        model(input_ids=torch.tensor([[0, 1]]))  # compressed-tensors decompresses here
    quant = [m for m in model.modules() if getattr(m, "quantization_scheme", None) is not None]
    global SCALES
    SCALES = sorted({str(m.weight_scale.dtype) for m in quant} | {"weights " + str(m.weight.dtype) for m in quant})
    widen_floats(model)
    for m in quant:
        assert m.weight.dtype == torch.float32, m.weight.dtype
    return model, quant


SCALES = None


def awq_f32_forward(self, x):
    """AwqTorchLinear.forward with its float16 dequantization (its own
    _dequantize_weight_for_inference, unchanged) but a float32 product, as GPTQModel's GPTQ
    TorchLinear does for float32 inputs; as shipped it rounds x and x·W to float16 first."""
    x_flat = x.reshape(-1, x.shape[-1])
    w = self._dequantize_weight_for_inference(x_flat.half(), dtype=torch.float16)
    assert w.dtype == torch.float16 and self.bias is None and not self.adapter
    return torch.matmul(x_flat, w.float()).reshape(x.shape[:-1] + (self.out_features,))


def scales_dtypes(quant):
    if SCALES is not None:  # compressed-tensors: as loaded, before widening
        return SCALES
    return sorted({str(m.scales.dtype) for m in quant})


def main():
    case = json.load(open(sys.argv[1]))
    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model, quant = load(case)
    res = {"kinds": sorted({type(m).__name__ for m in quant}), "n_quant": len(quant)}
    if case.get("ids"):
        ids = torch.tensor([case["ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0].float().numpy()
        logits.astype("<f4").tofile(os.path.join(case["out"], "logits.f32"))
        res["logits_dtype"] = str(model(input_ids=ids[:, :2]).logits.dtype)
    if case.get("grads"):
        pm, r = grads(model, case["grads"], case["out"])
        res.update(r)
        model = pm.unload()  # the quantized model again, without LoRA layers
    if case.get("peft_dir"):
        from peft import PeftModel
        pm = PeftModel.from_pretrained(model, case["peft_dir"])
        pm.eval()
        res["peft_kinds"] = sorted({type(m).__name__ for m in pm.modules() if hasattr(m, "lora_A")})
        with torch.no_grad():
            pl = pm(input_ids=torch.tensor([case["ids"]])).logits[0].float().numpy()
        pl.astype("<f4").tofile(os.path.join(case["out"], "peft_logits.f32"))
    res["scales_dtype"] = scales_dtypes(quant)  # still float16: the kernels dequantized as shipped
    print(json.dumps(res))


def grads(model, g, out):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=g["rank"], lora_alpha=g["alpha"], lora_dropout=0.0, bias="none",
                     target_modules=[v.split(".")[1] for v in HF.values()], init_lora_weights=True)
    model = get_peft_model(model, cfg)
    model.eval()
    kinds = sorted({type(m).__name__ for m in model.modules() if hasattr(m, "lora_A")})
    flat = np.fromfile(g["lora_file"], dtype="<f4")
    layers = model.base_model.model.model.layers
    perms = {"q": gguf_to_hf_rows(g["n_head"], g["head_dim"]), "k": gguf_to_hf_rows(g["n_head_kv"], g["head_dim"])}
    params = []
    with torch.no_grad():
        for t in g["tensors"]:
            mod = layers[t["layer"]].get_submodule(HF[t["target"]])
            r, n_in, n_out = t["r"], t["n_in"], t["n_out"]
            a = flat[t["offset_a"]:t["offset_a"] + r * n_in].reshape(r, n_in)
            b = flat[t["offset_b"]:t["offset_b"] + n_out * r].reshape(n_out, r)
            if t["target"] in perms:
                b = b[perms[t["target"]]]
            la, lb = mod.lora_A["default"].weight, mod.lora_B["default"].weight
            assert tuple(la.shape) == (r, n_in) and tuple(lb.shape) == (n_out, r), (t, la.shape, lb.shape)
            assert la.dtype == torch.float32, la.dtype
            la.copy_(torch.from_numpy(np.ascontiguousarray(a)))
            lb.copy_(torch.from_numpy(np.ascontiguousarray(b)))
            assert mod.scaling["default"] == g["alpha"] / r
            params.append((t, la, lb))
    n_lora = sum(1 for _, p in model.named_parameters() if p.requires_grad)
    assert n_lora == 2 * len(params), f"PEFT has {n_lora} trainable tensors, we gave {2 * len(params)}"
    seqs = [(torch.tensor([s["tokens"]]), torch.tensor(s["labels"])) for s in g["sequences"]]
    count = sum(int((lab >= 0).sum()) for _, lab in seqs)
    total = torch.zeros((), dtype=torch.float64)
    for ids, lab in seqs:
        lp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
        keep = lab >= 0
        total = total + (-lp[keep].gather(1, lab[keep].unsqueeze(1))).sum().double()
    loss = total / count
    loss.backward()
    out_g = np.zeros_like(flat)
    for t, a, b in params:
        gb = b.grad.numpy()
        if t["target"] in perms:
            back = np.empty_like(gb)
            back[perms[t["target"]]] = gb
            gb = back
        out_g[t["offset_a"]:t["offset_a"] + a.numel()] = a.grad.numpy().ravel()
        out_g[t["offset_b"]:t["offset_b"] + b.numel()] = gb.ravel()
    out_g.astype("<f4").tofile(os.path.join(out, "grads.f32"))
    return model, {"lora_kinds": kinds, "loss": loss.item(), "count": count}


main()
