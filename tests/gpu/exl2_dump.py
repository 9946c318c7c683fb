"""Dump exllamav2's own dequantization of every EXL2 linear layer, and its logits.

Usage (on a CUDA machine, exllamav2 installed): exl2_dump.py EXL2_DIR OUT_DIR
Writes OUT_DIR/oracle/<module>.npy (get_weight_tensor_dq(), [K, Np] f16 → [N, K] float32, the
padding columns dropped), OUT_DIR/oracle/manifest.json ({"quantized": {module: [N, K]}}, the
layout tests/hf_quant_ct_exl2.rs reads) and OUT_DIR/logits.npy (float32 [T, vocab]) for the
token ids in OUT_DIR/tokens.json.
"""

import json
import os
import sys

import numpy as np
import torch
from exllamav2 import ExLlamaV2, ExLlamaV2Config
from exllamav2.linear import ExLlamaV2Linear


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(os.path.join(out, "oracle"), exist_ok=True)
    cfg = ExLlamaV2Config(src)
    cfg.prepare()
    model = ExLlamaV2(cfg)
    model.load()
    manifest = {}
    seen = set()

    def visit(m):
        if isinstance(m, ExLlamaV2Linear) and m.key not in seen and m.q_handle is not None:
            seen.add(m.key)
            dq = m.get_weight_tensor_dq()  # [in_features, out_features + padding], f16
            n = m.out_features - m.padding
            w = dq[:, :n].T.float().cpu().numpy()
            np.save(os.path.join(out, "oracle", m.key + ".npy"), np.ascontiguousarray(w))
            manifest[m.key] = [int(n), int(m.in_features)]
        for s in getattr(m, "submodules", []):
            visit(s)

    for m in model.modules:
        visit(m)
    json.dump({"quantized": manifest}, open(os.path.join(out, "oracle", "manifest.json"), "w"), indent=1)

    tokens = json.load(open(os.path.join(out, "tokens.json")))
    from exllamav2 import ExLlamaV2Cache

    cache = ExLlamaV2Cache(model, max_seq_len=len(tokens) + 16)
    ids = torch.tensor([tokens], dtype=torch.long)
    logits = model.forward(ids, cache, last_id_only=False)
    np.save(os.path.join(out, "logits.npy"), logits[0].float().cpu().numpy())
    print(f"exl2_dump: {len(manifest)} linear layers, logits {tuple(logits.shape)}", file=sys.stderr)


if __name__ == "__main__":
    main()
