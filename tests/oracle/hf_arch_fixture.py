#!/usr/bin/env python3
"""Tiny random Llama 3.1-style, Qwen2, Qwen3 and Gemma 3 directories made by transformers itself (tests/hf_archs.rs).

    python hf_arch_fixture.py TOKDIR OUTDIR

For each architecture, a model built by transformers from a small config (random weights with a
fixed seed, initializer_range 0.2 so the logits are not near-uniform), saved with save_pretrained
(float32, safetensors) into OUTDIR/<arch>/, with the tokenizer files of TOKDIR (SmolLM2's; the
vocabulary size matches). Shapes are chosen to reach the code paths that differ between the
architectures: Llama's llama3 rope scaling (original context 64, so that the 96 test tokens and
the 8 frequencies of head_dim 16 reach all three of its regimes) and q/k row order; Qwen2's q/k/v biases and tied embeddings; Qwen3's q/k norms, head_dim × heads ≠
hidden, an untied lm_head; Gemma 3's sliding-window layers (window 16 < the 96 test tokens) with
their own rope base, GeGLU, the embedding scale, the four norms per block and the final soft-cap.
Writes OUTDIR/.stamp-v1 last; does nothing when it exists.
"""
import os
import shutil
import sys

STAMP = ".stamp-v2"
TOKFILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def configs():
    from transformers import Gemma3TextConfig, LlamaConfig, Qwen2Config, Qwen3Config

    common = dict(vocab_size=49152, hidden_size=64, intermediate_size=160, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2,
                  rms_norm_eps=1e-6)
    return {
        "llama3": LlamaConfig(num_hidden_layers=2, head_dim=16, tie_word_embeddings=False,
                              rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                               "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                               "original_max_position_embeddings": 64}, **common),
        "qwen2": Qwen2Config(num_hidden_layers=3, tie_word_embeddings=True,
                             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, **common),
        "qwen3": Qwen3Config(num_hidden_layers=3, head_dim=32, tie_word_embeddings=False,
                             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, **common),
        "gemma3": Gemma3TextConfig(num_hidden_layers=4, head_dim=16, query_pre_attn_scalar=16, sliding_window=16,
                                   layer_types=["sliding_attention", "full_attention"] * 2,
                                   final_logit_softcapping=30.0, tie_word_embeddings=True,
                                   rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                                                    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
                                   **common),
    }


def main():
    tokdir, out = sys.argv[1], sys.argv[2]
    if os.path.exists(os.path.join(out, STAMP)):
        return
    import torch
    from transformers import AutoModelForCausalLM

    tmp = out + ".tmp%d" % os.getpid()
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for i, (name, cfg) in enumerate(sorted(configs().items())):
        torch.manual_seed(1234 + i)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        # Norm weights start at 1 (Gemma: 0, stored as w − 1): perturb them so that a missing
        # or doubled norm cannot go unnoticed.
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "norm" in n:
                    p.add_(0.1 * torch.randn_like(p))
                if n.endswith(".bias"):
                    p.copy_(0.5 * torch.randn_like(p))
        p = os.path.join(tmp, name)
        model.save_pretrained(p)
        for f in TOKFILES:
            if os.path.exists(os.path.join(tokdir, f)):
                shutil.copy(os.path.join(tokdir, f), p)
    open(os.path.join(tmp, STAMP), "w").write("tiny random llama3/qwen2/qwen3/gemma3 from transformers\n")
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


if __name__ == "__main__":
    main()
