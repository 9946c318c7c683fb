"""PyTorch + PEFT anchor for the training benchmark: LoRA r16 on q,k,v,o,gate,up,down of the same GGUF
(transformers dequantizes it to f32), gradient checkpointing, one 512-token sequence per step, the
given thread count. Prints train tokens/s (median of the timed steps) and peak RSS as JSON.

    ~/.cache/finetune/venv/bin/python benches/peft_anchor.py models/SmolLM2-135M-Instruct.Q4_1.gguf 2 [seq] [steps]
"""
import json
import os
import resource
import sys
import time


def main(path, threads, seq=512, steps=4):
    threads, seq, steps = int(threads), int(seq), int(steps)
    import torch
    torch.set_num_threads(threads)
    # `finetune bench --train --isa avx2` caps torch with ATEN_CPU_CAPABILITY (and oneDNN/MKL's
    # variables): check that ATen took it.
    cap = torch.backends.cpu.get_cpu_capability()
    want = os.environ.get("ATEN_CPU_CAPABILITY")
    if want and cap.lower() != want.lower():
        sys.exit(f"ATEN_CPU_CAPABILITY={want} but torch reports CPU capability {cap}")
    from transformers import AutoModelForCausalLM
    from peft import LoraConfig, get_peft_model
    d, name = os.path.split(os.path.abspath(path))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, torch_dtype=torch.float32)
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    cfg = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, cfg)
    model.enable_input_require_grads()
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    times = []
    for i in range(steps + 1):
        ids = torch.randint(100, 20000, (1, seq), generator=g)
        t0 = time.perf_counter()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        if i > 0:  # the first step warms up
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"tok_per_s": seq / med, "step_s": med, "peak_rss": rss, "threads": threads, "seq": seq,
                      "cpu_capability": cap}))


if __name__ == "__main__":
    main(*sys.argv[1:])
