"""An independent EXL2 packer and dequantizer (numpy), written from exllamav2's own code facts:
conversion/adaptivegptq.py (pack: q_invperm, q_scale_max, q_groups with each group's first qrow,
columns padded to 32 with q = 2^(bits-1)), exllamav2_ext/cuda/pack_tensor.cu (pack_columns: a unit
of rows per 1/3/5 words, row i of a unit at bits [bits*i, bits*i + bits) via wshift;
pack_rows_4: qscale - 1 per nibble), ext.py make_q_matrix (q_scale_max *= 1/256 in f16) and
q_matrix.cu reconstruct (dq_scale: f16(qs*qs) * max_scale in f16; dq * scale in f16; output row
q_perm[lk] receives quantized row lk).

exllamav2 itself runs only on CUDA; this script is the CPU stand-in reference, NOT exllamav2.
tests/gpu/exl2_check.sh compares against the real thing on a GPU machine.

Usage: exl2_ref.py OUT_DIR
Writes OUT_DIR/model.safetensors + config.json (quant_method exl2), and for each module
OUT_DIR/oracle/<module>.npy: the dequantized weight, float16 values as float32, shape [N, K]
(HF layout, padding columns dropped), plus oracle/manifest.json {module: [N, K]}.
"""

import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file

SEED = 20260  # fixed: the fixture is the same on every run
UNIT_ROWS = {8: 4, 6: 16, 5: 32, 4: 8, 3: 32, 2: 16}  # rows per packing unit
UNIT_WORDS = {8: 1, 6: 3, 5: 5, 4: 1, 3: 3, 2: 1}


def wshift(x, j):
    """pack_tensor.cu's wshift on uint32: x << j, or x >> -j, 0 beyond 32 bits."""
    if j <= -32 or j >= 32:
        return np.uint32(0)
    if j < 0:
        return np.uint32(int(x) >> (-j))
    return np.uint32((int(x) << j) & 0xFFFFFFFF)


def pack_columns(q, bits):
    """q: uint [rows, cols] (rows a whole number of units, or the last partial unit zero-filled)."""
    rows, cols = q.shape
    unit, words = UNIT_ROWS[bits], UNIT_WORDS[bits]
    n_units = -(-rows // unit)
    qpad = np.zeros((n_units * unit, cols), dtype=np.uint32)
    qpad[:rows] = q
    qrows = -(-rows * bits // 32)
    out = np.zeros((n_units * words, cols), dtype=np.uint32)
    for u in range(n_units):
        for c in range(cols):
            packed = [np.uint32(0)] * words
            for i in range(unit):
                x = qpad[u * unit + i, c]
                for w in range(words):
                    packed[w] = np.uint32(packed[w] | wshift(x, i * bits - 32 * w))
            for w in range(words):
                out[u * words + w, c] = packed[w]
    return out[:qrows]


def pack_rows_4(qscale):
    """qscale: values 1..16, [groups, cols] (cols multiple of 8) -> int32 [groups, cols/8]."""
    g, cols = qscale.shape
    out = np.zeros((g, cols // 8), dtype=np.uint32)
    for r in range(g):
        for oc in range(cols // 8):
            packed = 0
            for i in range(8):
                x = (int(qscale[r, oc * 8 + i]) - 1) & 0xFFFF  # uint16 x -= 1
                packed |= (x << (i * 4)) & 0xFFFFFFFF
            out[r, oc] = packed
    return out


def make_module(rng, k, n, plan, write_perm):
    """plan: list of (bits, rows). Returns tensors and the reference dequantized W [N, K]."""
    assert sum(r for _, r in plan) == k
    padding = -n % 32
    np_cols = n + padding
    perm = rng.permutation(k)  # quantization order: quantized row lk is input perm[lk]
    invperm = np.argsort(perm)
    q_rows, qscales, groups = [], [], []
    qscale_max = rng.uniform(0.002, 0.6, size=len(plan)).astype(np.float16)
    qscale_max[0] = np.float16(0.0031)  # /256 lands in f16 subnormals
    out_row = 0
    for bits, rows in plan:
        q = rng.integers(0, 2**bits, size=(rows, n), dtype=np.uint32)
        qs = rng.integers(1, 17, size=(n,), dtype=np.uint32)
        if padding:
            q = np.concatenate([q, np.full((rows, padding), 2 ** (bits - 1), dtype=np.uint32)], axis=1)
            qs = np.concatenate([qs, np.zeros(padding, dtype=np.uint32)])
        packed = pack_columns(q, bits)
        groups += [bits, out_row]
        out_row += packed.shape[0]
        q_rows.append((bits, q, packed))
        qscales.append(qs)
    q_weight = np.concatenate([p for _, _, p in q_rows], axis=0).view(np.int32)
    q_scale = pack_rows_4(np.stack(qscales)).view(np.int32)

    # Reference reconstruct: temp [K, Np] in f16, row perm[lk] <- dequantized quantized row lk.
    max_scale = (qscale_max.astype(np.float32) * np.float32(1 / 256)).astype(np.float16)
    dq = np.zeros((k, np_cols), dtype=np.float16)
    lk = 0
    for g, (bits, q, _) in enumerate(q_rows):
        qs_i = qscales[g].astype(np.int64)
        s = np.float16(1) * (qs_i * qs_i).astype(np.float16) * max_scale[g]  # __hmul, f16
        s = s.astype(np.float16)
        vals = (q.astype(np.int64) - 2 ** (bits - 1)).astype(np.float16)
        for r in range(q.shape[0]):
            dq[perm[lk], :] = (vals[r] * s).astype(np.float16)
            lk += 1
    tensors = {
        "q_weight": q_weight,
        "q_groups": np.array(groups, dtype=np.int16),
        "q_scale": q_scale,
        "q_scale_max": qscale_max,
        "q_invperm": invperm.astype(np.int32),
    }
    if write_perm:
        tensors["q_perm"] = perm.astype(np.int32)
    return tensors, dq[:, :n].T.astype(np.float32)


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(SEED)
    # Module plans: bits descending, as exllamav2's optimizer orders them.
    modules = {
        # every width, N = 200 (padded to 224), last group a partial 2-bit unit count of 16 rows
        "model.layers.0.self_attn.q_proj": (240, 200, [(8, 32), (6, 32), (5, 32), (4, 64), (3, 64), (2, 16)], False),
        # plain 4-bit groups of 32 with q_perm written too
        "model.layers.0.self_attn.k_proj": (128, 96, [(4, 32)] * 4, True),
        # 6/5/3-bit only, N = 45
        "model.layers.0.mlp.down_proj": (192, 45, [(6, 64), (5, 32), (3, 96)], False),
    }
    sd, manifest = {}, {}
    os.makedirs(os.path.join(out, "oracle"), exist_ok=True)
    for name, (k, n, plan, write_perm) in modules.items():
        tensors, w = make_module(rng, k, n, plan, write_perm)
        for t, v in tensors.items():
            sd[f"{name}.{t}"] = np.ascontiguousarray(v)
        np.save(os.path.join(out, "oracle", name + ".npy"), np.ascontiguousarray(w))
        manifest[name] = [n, k]
    save_file(sd, os.path.join(out, "model.safetensors"))
    cfg = {"quantization_config": {"quant_method": "exl2", "version": "0.3.2", "bits": 4.5, "head_bits": 6}}
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=1)
    json.dump({"quantized": manifest}, open(os.path.join(out, "oracle", "manifest.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
