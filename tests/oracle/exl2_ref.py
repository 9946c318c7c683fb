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
       exl2_ref.py --model SRC EXL2_DIR DENSE_DIR
Writes OUT_DIR/model.safetensors + config.json (quant_method exl2), and for each module
OUT_DIR/oracle/<module>.npy: the dequantized weight, float16 values as float32, shape [N, K]
(HF layout, padding columns dropped), plus oracle/manifest.json {module: [N, K]}.

--model: quantizes every q/k/v/o/gate/up/down projection of the float Hugging Face directory SRC
(one model.safetensors) into EXL2_DIR: groups of 32 input rows (in a random act-order
permutation), mixed 8/6/5/4/3/2-bit widths in descending order as exllamav2's optimizer orders
them, per-column 4-bit scales under a per-group q_scale_max chosen from the weights (round to
nearest). Every other tensor, the tokenizer and the config are copied. DENSE_DIR is the same model
with each projection replaced by the reference reconstruction above (float16 values, stored as
float32) and no quantization_config: transformers on DENSE_DIR is the reference forward for
EXL2_DIR.
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
    """q: uint [rows, cols] (rows a whole number of units, or the last partial unit zero-filled).
    Row i of a unit goes to word w shifted by i*bits - 32*w (wshift), all units and columns at once."""
    rows, cols = q.shape
    unit, words = UNIT_ROWS[bits], UNIT_WORDS[bits]
    n_units = -(-rows // unit)
    qpad = np.zeros((n_units * unit, cols), dtype=np.uint64)
    qpad[:rows] = q
    qpad = qpad.reshape(n_units, unit, cols)
    qrows = -(-rows * bits // 32)
    out = np.zeros((n_units, words, cols), dtype=np.uint64)
    for i in range(unit):
        for w in range(words):
            j = i * bits - 32 * w
            if -32 < j < 32:
                x = qpad[:, i, :]
                out[:, w, :] |= ((x << np.uint64(j)) if j >= 0 else (x >> np.uint64(-j))) & np.uint64(0xFFFFFFFF)
    return out.reshape(n_units * words, cols).astype(np.uint32)[:qrows]


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


PATTERN = [8, 6, 5, 5, 4, 4, 4, 3, 2]  # bits of the groups of a module (rotated per module), ~4.6 on average
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def reconstruct(q_rows, qscales, qscale_max, perm, k, np_cols):
    """q_matrix.cu reconstruct in float16: row perm[lk] <- dequantized quantized row lk."""
    max_scale = (qscale_max.astype(np.float32) * np.float32(1 / 256)).astype(np.float16)
    dq = np.zeros((k, np_cols), dtype=np.float16)
    lk = 0
    for g, (bits, q, _) in enumerate(q_rows):
        qs_i = qscales[g].astype(np.int64)
        s = (qs_i * qs_i).astype(np.float16) * max_scale[g]
        vals = (q.astype(np.int64) - 2 ** (bits - 1)).astype(np.float16)
        dq[perm[lk : lk + q.shape[0]], :] = (vals * s.astype(np.float16)).astype(np.float16)
        lk += q.shape[0]
    return dq


def quantize_module(rng, w, offset):
    """w: float32 [N, K]. Returns the EXL2 tensors and the reference dequantized W [N, K]."""
    n, k = w.shape
    assert k % 32 == 0, k
    n_groups = k // 32
    plan = sorted((PATTERN[(g + offset) % len(PATTERN)] for g in range(n_groups)), reverse=True)
    padding = -n % 32
    perm = rng.permutation(k)
    invperm = np.argsort(perm)
    wt = np.zeros((k, n + padding), dtype=np.float32)
    wt[:, :n] = w.T[perm]  # quantized row lk is input perm[lk]
    q_rows, qscales, groups, maxes = [], [], [], []
    out_row = 0
    for g, bits in enumerate(plan):
        rows = wt[g * 32 : (g + 1) * 32]
        half = 2 ** (bits - 1)
        need = np.abs(rows).max(axis=0) / half  # the scale each column wants
        m = np.float16(max(need.max(), 1e-6))
        if np.float32(m) < need.max():
            m = np.nextafter(m, np.float16(np.inf))
        max_scale = np.float16(np.float32(m) * np.float32(1 / 256))
        qs = np.clip(np.round(np.sqrt(need / np.float32(max_scale))), 1, 16).astype(np.uint32)
        if padding:
            qs[n:] = 0
        scale = ((qs.astype(np.int64) ** 2).astype(np.float16) * max_scale).astype(np.float32)
        safe = np.where(scale > 0, scale, 1)
        q = np.clip(np.round(rows / safe) + half, 0, 2 * half - 1).astype(np.uint32)
        q[:, n:] = half
        packed = pack_columns(q, bits)
        groups += [bits, out_row]
        out_row += packed.shape[0]
        q_rows.append((bits, q, packed))
        qscales.append(qs)
        maxes.append(m)
    qscale_max = np.array(maxes, dtype=np.float16)
    tensors = {
        "q_weight": np.concatenate([p for _, _, p in q_rows], axis=0).view(np.int32),
        "q_groups": np.array(groups, dtype=np.int16),
        "q_scale": pack_rows_4(np.stack(qscales)).view(np.int32),
        "q_scale_max": qscale_max,
        "q_invperm": invperm.astype(np.int32),
    }
    dq = reconstruct(q_rows, qscales, qscale_max, perm, k, n + padding)
    return tensors, dq[:, :n].T.astype(np.float32), plan


def from_model(src, exl2_dir, dense_dir):
    import shutil

    from safetensors.numpy import load_file

    rng = np.random.default_rng(SEED)
    sd = load_file(os.path.join(src, "model.safetensors"))
    q_sd, d_sd, bits = {}, {}, []
    for i, name in enumerate(sorted(sd)):
        v = sd[name].astype(np.float32) if sd[name].dtype != np.float32 else sd[name]
        mod = name[: -len(".weight")]
        if name.endswith(".weight") and mod.rsplit(".", 1)[-1] in PROJ:
            tensors, w, plan = quantize_module(rng, v, i)
            for t, x in tensors.items():
                q_sd[f"{mod}.{t}"] = np.ascontiguousarray(x)
            d_sd[name] = np.ascontiguousarray(w)
            bits += plan
        else:
            q_sd[name] = d_sd[name] = v
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg.pop("quantization_config", None)
    for d, tensors, qc in ((exl2_dir, q_sd, True), (dense_dir, d_sd, False)):
        tmp = d + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        for f in os.listdir(src):
            if f.startswith("tokenizer") or f in ("chat_template.jinja", "generation_config.json", "special_tokens_map.json"):
                shutil.copy(os.path.join(src, f), tmp)
        c = dict(cfg)
        if qc:
            c["quantization_config"] = {"quant_method": "exl2", "version": "0.3.2",
                                        "bits": round(float(np.mean(bits)), 3), "head_bits": 16}
        c["torch_dtype"] = "float32"
        json.dump(c, open(os.path.join(tmp, "config.json"), "w"), indent=1)
        save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        shutil.rmtree(d, ignore_errors=True)
        os.replace(tmp, d)
    print(f"exl2: {len(bits)} groups, bits {sorted(set(bits))}, mean {np.mean(bits):.2f}", file=sys.stderr)


def main():
    if sys.argv[1] == "--model":
        from_model(*sys.argv[2:5])
        return
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
