"""Make the Hugging Face directory fixtures for tests/hf_dir.rs with transformers itself.

    python hf_fixture.py GGUF OUTDIR

Loads GGUF (SmolLM2-135M-Instruct.Q4_1) with transformers' GGUF loader (dequantized to f32) and
its tokenizer, and writes under OUTDIR:
  f32/      save_pretrained, float32, one model.safetensors
  bf16/     the same weights cast to bfloat16
  sharded/  float32, max_shard_size 100MB (model-0000x-of-0000N + model.safetensors.index.json)
then OUTDIR/.stamp-v1. Idempotent: does nothing when the stamp exists.
"""
import os
import shutil
import sys

STAMP = ".stamp-v1"


def main():
    gguf, out = sys.argv[1], sys.argv[2]
    if os.path.exists(os.path.join(out, STAMP)):
        return
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, name = os.path.split(os.path.abspath(gguf))
    tmp = out + ".tmp%d" % os.getpid()
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    # The GGUF loader marks the model "quantized with gguf" (not serializable): the same
    # dequantized weights go into a plain model built from the same config.
    cfg = loaded.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    assert not unexpected and all("lm_head" in k for k in missing), (missing, unexpected)
    model.tie_weights()
    model.eval()
    for sub, dtype, shard in (("f32", torch.float32, None), ("sharded", torch.float32, "100MB"), ("bf16", torch.bfloat16, None)):
        p = os.path.join(tmp, sub)
        m = model.to(dtype)
        if shard:
            m.save_pretrained(p, max_shard_size=shard)
        else:
            m.save_pretrained(p)
        tok.save_pretrained(p)
    open(os.path.join(tmp, STAMP), "w").write("transformers GGUF loader from %s\n" % name)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


if __name__ == "__main__":
    main()
