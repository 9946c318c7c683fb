"""GPTQ and AWQ-GEMM fixtures made by the real quantizer (GPTQModel), with its own dequantization.

Usage: venv-quant/bin/python make_gptq_awq.py OUT_DIR

For a tiny random llama (fixed seed, SmolLM2's tokenizer, dims multiples of 128) and for
SmolLM2-135M (as transformers reads it from the GGUF in models/) this quantizes
with GPTQModel on the CPU into several formats (GPTQ v1/v2, sym/asym, desc_act, 2/3/4/8 bits;
AWQ GEMM 4-bit with zero points), each into OUT_DIR/<name>/ (config.json, model.safetensors).
Then it loads each directory back with GPTQModel's pure-torch kernels (TorchLinear for GPTQ,
which converts v1 zeros to v2 on load; AwqTorchLinear for AWQ) in float16 and runs every
quantized layer's forward on an identity input: that yields Wᵀ exactly (one non-zero product per
output). The result, transposed to [out_features, in_features], is written as raw little-endian
f16 to OUT_DIR/<name>/ref/<module>.f16, listed in OUT_DIR/<name>/ref/ref.json (ref/.done when
complete). OUT_DIR/.done-v2 marks a complete run. Progress goes to stderr.
"""

import json
import os
import shutil
import sys
import time

os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")

import torch  # noqa: E402

MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models")
STAMP = ".done-v2"

# name -> (method, bits, group, sym, desc_act, checkpoint format[, source model])
FIXTURES = {
    "gptq-v1-4b-g32-asym-act": ("gptq", 4, 32, False, True, "gptq"),
    "gptq-v2-4b-g32-asym": ("gptq", 4, 32, False, False, "gptq_v2"),
    "gptq-v1-4b-g128-sym": ("gptq", 4, 128, True, False, "gptq"),
    "gptq-v1-3b-g32-asym-act": ("gptq", 3, 32, False, True, "gptq"),
    "gptq-v2-2b-g64-sym": ("gptq", 2, 64, True, False, "gptq_v2"),
    "gptq-v1-8b-gall-asym": ("gptq", 8, -1, False, False, "gptq"),
    "awq-gemm-4b-g32": ("awq", 4, 32, False, False, "gemm"),
    "awq-gemm-4b-g64-sym": ("awq", 4, 64, True, False, "gemm"),
    # SmolLM2-135M (576 inputs: group 128 leaves a partial last group for GPTQ).
    "smollm2-gptq-v1-4b-g128-asym-act": ("gptq", 4, 128, False, True, "gptq", "smollm2"),
    "smollm2-awq-gemm-4b-g64": ("awq", 4, 64, False, False, "gemm", "smollm2"),
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def tiny_llama(out):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1234)
    tok = AutoTokenizer.from_pretrained(MODELS, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=128, intermediate_size=384, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg).to(torch.float16)
    # Spread the weights so that group scales and zero points vary (random init is near-uniform).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                col = torch.exp(torch.randn(p.shape[1]) * 0.7)
                p.mul_(col.to(p.dtype)).add_(torch.randn(p.shape[0], 1).to(p.dtype) * 0.01)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return tok


def smollm2(out):
    """SmolLM2-135M-Instruct in Hugging Face form, as transformers reads it from the GGUF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(MODELS, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(MODELS, gguf_file=gguf, dtype=torch.float16)
    # A model read from a GGUF is marked "quantized with gguf" and refuses to save: copy its
    # (dequantized) weights into a plain model of the same config.
    cfg = {k: v for k, v in model.config.to_dict().items() if k != "quantization_config"}
    plain = LlamaForCausalLM(LlamaConfig.from_dict(cfg)).to(torch.float16)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(out)
    tok.save_pretrained(out)


def calibration(tok):
    text = [
        "The quick brown fox jumps over the lazy dog while the farmer watches from the porch.",
        "In 1969, astronauts landed on the Moon and walked on its dusty surface for hours.",
        "Photosynthesis converts light energy into chemical energy stored in glucose molecules.",
        "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
        "Der schnelle braune Fuchs springt über den faulen Hund.",
        "Once upon a time, a small robot learned to paint the sunrise over the sea.",
        "Water boils at 100 degrees Celsius at sea level, but lower on high mountains.",
        "Les enfants jouent dans le parc pendant que leurs parents discutent.",
    ]
    return [t * 3 for t in text] * 2


def quantize(src, dst, spec, calib):
    from gptqmodel import GPTQModel
    from gptqmodel.quantization import FORMAT, METHOD, QuantizeConfig

    method, bits, group, sym, desc_act, fmt = spec[:6]
    if method == "gptq":
        q = QuantizeConfig(bits=bits, group_size=group, sym=sym, desc_act=desc_act,
                           format=FORMAT.GPTQ if fmt == "gptq" else FORMAT.GPTQ_V2, act_group_aware=False)
    else:
        q = QuantizeConfig(bits=bits, group_size=group, sym=sym, quant_method=METHOD.AWQ, format=FORMAT.GEMM)
    model = GPTQModel.load(src, q, device="cpu", dtype=torch.float16)
    model.quantize(calib, batch_size=1)
    model.save(dst)


@torch.inference_mode()
def reference(dst):
    from gptqmodel import BACKEND, GPTQModel
    from gptqmodel.nn_modules.qlinear import BaseQuantLinear

    cfg = json.load(open(os.path.join(dst, "config.json")))["quantization_config"]
    backend = BACKEND.AWQ_TORCH if cfg["quant_method"] == "awq" else BACKEND.TORCH
    model = GPTQModel.load(dst, backend=backend, device="cpu", dtype=torch.float16)
    refdir = os.path.join(dst, "ref")
    os.makedirs(refdir, exist_ok=True)
    listing = {}
    for name, mod in model.model.named_modules():
        if not isinstance(mod, BaseQuantLinear):
            continue
        mod.eval()
        eye = torch.eye(mod.in_features, dtype=torch.float16)
        bias, mod.bias = mod.bias, None  # the weight alone (llama has no biases anyway)
        wt = mod(eye)  # [in, out] = Wᵀ
        mod.bias = bias
        assert wt.dtype == torch.float16, (name, wt.dtype)
        w = wt.t().contiguous().view(torch.int16).numpy()
        w.tofile(os.path.join(refdir, name + ".f16"))
        listing[name] = {"kind": type(mod).__name__, "shape": list(w.shape)}
    with open(os.path.join(refdir, "ref.json"), "w") as f:
        json.dump(listing, f, indent=1)
    log(f"  reference: {len(listing)} layers dequantized by {sorted({v['kind'] for v in listing.values()})}")
    return listing


def main():
    out = os.path.abspath(sys.argv[1])
    if os.path.exists(os.path.join(out, STAMP)):
        return
    os.makedirs(out, exist_ok=True)
    os.chdir(out)  # GPTQModel writes its logs/ into the working directory
    sources = {"tiny": os.path.join(out, "tiny-llama-f16"), "smollm2": os.path.join(out, "smollm2-f16")}
    tok = None
    for name, spec in FIXTURES.items():
        dst = os.path.join(out, name)
        if os.path.exists(os.path.join(dst, "ref", ".done")):
            continue  # made by an earlier (interrupted) run
        src = sources[spec[6] if len(spec) > 6 else "tiny"]
        if tok is None:
            tok = tiny_llama(sources["tiny"])
        if src == sources["smollm2"] and not os.path.exists(os.path.join(src, "config.json")):
            smollm2(src)
        shutil.rmtree(dst, ignore_errors=True)
        t = time.time()
        log(f"hf-quant: {name}: quantizing with GPTQModel ({spec})")
        quantize(src, dst, spec, calibration(tok))
        reference(dst)
        open(os.path.join(dst, "ref", ".done"), "w").close()
        log(f"hf-quant: {name}: done in {time.time() - t:.0f} s")
    for src in sources.values():
        shutil.rmtree(src, ignore_errors=True)  # the float sources are not needed any more
    with open(os.path.join(out, STAMP), "w") as f:
        f.write(json.dumps(sorted(FIXTURES)) + "\n")


if __name__ == "__main__":
    main()
