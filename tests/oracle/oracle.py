#!/usr/bin/env python3
"""Reference answers from the real implementations, for the Rust tests to compare against.

Oracles: the `gguf` PyPI package (ggml's numpy decoders/encoders and GGUFReader), ggml's C
library as built by llama-cpp-python (`quantize_row_*_ref` / `dequantize_row_*` via ctypes), and
llama.cpp itself through llama-cpp-python. Every subcommand prints JSON on stdout.

  meta FILE                      metadata + tensor infos as GGUFReader sees them
  hashes FILE                    sha256 of each tensor dequantized to float32 by gguf
  dequant FILE OUTDIR            each tensor dequantized by gguf, raw float32 in OUTDIR/<name>.f32
  encode-compare DIR             for each DIR/ours.<TYPE>.bin beside DIR/src.<TYPE>.f32: reference
                                 quantization RMSE vs ours, and the oracle's decode of our blocks
                                 written to DIR/deq.<TYPE>.f32
  npy-compare FILE TENSOR NPY    np.load(NPY) vs gguf's dequantization of TENSOR, bit for bit
  bench-ggml DIR                 single-thread time of ggml's C dequantize_row_* on DIR/blocks.<TYPE>.bin
  llama-logits FILE PROMPTS.json OUTDIR   token ids, logits at every position, 32 greedy tokens
  bench-llama FILE NP NG THREADS [REPS]   llama.cpp pp/tg tokens per second (median of REPS)
  llama-logits-ids FILE IDS.json OUT     llama.cpp logits at every position for given ids
  llama-perplexity FILE TEXT N_CTX       llama.cpp perplexity (its method, its logits), and its tokens
  q8-dot DIR                     for each DIR/w.<TYPE>.bin + DIR/x.f32 (rows of the weight's width): the
                                 activation as ggml's CPU backend quantizes it (its `from_float` for the
                                 weight's vec_dot_type) → DIR/act.<TYPE>.bin, and ggml's CPU `vec_dot` of
                                 every weight row with every activation row → DIR/dot.<TYPE>.f32
  q4k-gemm DIR                   llama.cpp's repacked Q4_K matmul (gemm/gemv on block_q4_Kx8) through
                                 ggml's exported kernels: see q4k_oracle.py
  llama-top FILE PROMPT          load FILE in llama.cpp, greedy next token and the last-position logits hash
"""
import ctypes
import hashlib
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES


def _ggml():
    import llama_cpp  # noqa: F401  (only to locate the bundled libraries)
    d = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    return ctypes.CDLL(os.path.join(d, "libggml-base.so"))


def _cname(t):
    # ggml's symbol names: q4_K, q8_0, iq4_nl, bf16 ...
    n = t.name.lower()
    return n[:-2] + "_K" if n.endswith("_k") else n


def ggml_quantize(t, x):
    lib = _ggml()
    bs, ts = GGML_QUANT_SIZES[t]
    x = np.ascontiguousarray(x, dtype=np.float32).ravel()
    out = np.zeros(x.size // bs * ts, dtype=np.uint8)
    fn = getattr(lib, f"quantize_row_{_cname(t)}_ref")
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    fn.restype = None
    fn(x.ctypes.data, out.ctypes.data, x.size)
    return out


def ggml_dequantize(t, raw):
    lib = _ggml()
    bs, ts = GGML_QUANT_SIZES[t]
    raw = np.ascontiguousarray(raw, dtype=np.uint8).ravel()
    n = raw.size // ts * bs
    out = np.zeros(n, dtype=np.float32)
    fn = getattr(lib, f"dequantize_row_{_cname(t)}")
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    fn.restype = None
    fn(raw.ctypes.data, out.ctypes.data, n)
    return out


def dequantize(t, raw):
    """gguf's numpy decoder; ggml's C decoder only for types gguf lacks (Q8_K)."""
    raw = np.ascontiguousarray(raw, dtype=np.uint8).ravel()
    bs, ts = GGML_QUANT_SIZES[t]
    try:
        return gguf.quants.dequantize(raw.reshape(-1, ts), t).ravel().astype(np.float32, copy=False)
    except NotImplementedError:
        return ggml_dequantize(t, raw)


def tensor_raw(tensor):
    return np.frombuffer(tensor.data.tobytes(), dtype=np.uint8)


def jsonable(v):
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.floating, float)):
        return float(v)
    if isinstance(v, (np.integer, int)):
        return int(v)
    if isinstance(v, np.ndarray):
        return [jsonable(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8")
    return v


def field_value(f):
    types = list(f.types)
    if types[0] == gguf.GGUFValueType.ARRAY:
        sub = types[1] if len(types) > 1 else None
        if sub == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [jsonable(f.parts[i][0]) for i in f.data]
    if types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return jsonable(f.parts[f.data[0]][0])


def cmd_meta(path):
    r = gguf.GGUFReader(path)
    kv = []
    for name, f in r.fields.items():
        if name.startswith("GGUF."):
            continue
        types = [t.name for t in f.types]
        kv.append({"key": name, "types": types, "value": field_value(f)})
    tensors = [
        {"name": t.name, "type": t.tensor_type.name, "ne": [int(x) for x in t.shape],
         "offset": int(t.data_offset) - int(r.data_offset), "n_bytes": int(t.n_bytes)}
        for t in r.tensors
    ]
    print(json.dumps({"kv": kv, "tensors": tensors, "alignment": int(r.alignment),
                      "data_offset": int(r.data_offset)}))


def cmd_hashes(path):
    r = gguf.GGUFReader(path)
    out = {}
    for t in r.tensors:
        y = dequantize(t.tensor_type, tensor_raw(t))
        out[t.name] = {"type": t.tensor_type.name, "n": int(y.size),
                       "sha256": hashlib.sha256(y.astype("<f4").tobytes()).hexdigest()}
    print(json.dumps(out))


def cmd_dequant(path, outdir):
    r = gguf.GGUFReader(path)
    os.makedirs(outdir, exist_ok=True)
    names = []
    for t in r.tensors:
        y = dequantize(t.tensor_type, tensor_raw(t))
        y.astype("<f4").tofile(os.path.join(outdir, t.name + ".f32"))
        names.append(t.name)
    print(json.dumps({"tensors": names}))


def reference_quantize(t, x):
    """gguf's encoder where it has one (the issue's reference), else ggml's C reference."""
    if t == T.F16:
        return x.astype("<f2").view(np.uint8).ravel(), "numpy"
    bs, _ = GGML_QUANT_SIZES[t]
    try:
        q = gguf.quants.quantize(x.reshape(-1, bs), t)
        return np.ascontiguousarray(q).view(np.uint8).ravel(), "gguf"
    except NotImplementedError:
        return ggml_quantize(t, x), "ggml-c"


def cmd_encode_compare(d):
    res = {}
    for fn in sorted(os.listdir(d)):
        if not (fn.startswith("ours.") and fn.endswith(".bin")):
            continue
        tname = fn[len("ours."):-len(".bin")]
        t = T[tname]
        x = np.fromfile(os.path.join(d, f"src.{tname}.f32"), dtype="<f4")
        ours = np.fromfile(os.path.join(d, fn), dtype=np.uint8)
        ref, ref_src = reference_quantize(t, x)
        deq_ours = dequantize(t, ours)
        deq_ref = dequantize(t, ref)
        deq_ours.astype("<f4").tofile(os.path.join(d, f"deq.{tname}.f32"))
        _, ts = GGML_QUANT_SIZES[t]
        same_blocks = int(np.sum(np.all(ours.reshape(-1, ts) == ref.reshape(-1, ts), axis=1)))
        ggml_same = None
        try:
            g = ggml_quantize(t, x)
            ggml_same = int(np.sum(np.all(ours.reshape(-1, ts) == g.reshape(-1, ts), axis=1)))
        except AttributeError:
            pass
        res[tname] = {
            "reference": ref_src,
            "rmse_ours": float(np.sqrt(np.mean((deq_ours.astype(np.float64) - x) ** 2))),
            "rmse_ref": float(np.sqrt(np.mean((deq_ref.astype(np.float64) - x) ** 2))),
            "blocks": int(ours.size // ts),
            "identical_blocks": same_blocks,
            "identical_blocks_ggml_c": ggml_same,
        }
    print(json.dumps(res))


def cmd_npy_compare(path, name, npy):
    r = gguf.GGUFReader(path)
    t = next(t for t in r.tensors if t.name == name)
    want = dequantize(t.tensor_type, tensor_raw(t)).reshape([int(x) for x in reversed(t.shape)])
    got = np.load(npy)
    print(json.dumps({"shape": list(got.shape), "want_shape": list(want.shape), "dtype": str(got.dtype),
                      "bit_equal": bool(got.shape == want.shape and np.array_equal(got.view(np.uint32), want.view(np.uint32)))}))


def cmd_bench_ggml(d):
    """Single-thread throughput of ggml's C dequantize_row_* on DIR/blocks.<TYPE>.bin (best of 7)."""
    import time
    lib = _ggml()
    res = {}
    for fn in sorted(os.listdir(d)):
        if not (fn.startswith("blocks.") and fn.endswith(".bin")):
            continue
        tname = fn[len("blocks."):-len(".bin")]
        t = T[tname]
        raw = np.fromfile(os.path.join(d, fn), dtype=np.uint8)
        bs, ts = GGML_QUANT_SIZES[t]
        n = raw.size // ts * bs
        out = np.zeros(n, dtype=np.float32)
        try:
            f = getattr(lib, f"dequantize_row_{_cname(t)}")
        except AttributeError:
            continue
        f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        f.restype = None
        best = float("inf")
        for _ in range(7):
            t0 = time.perf_counter()
            f(raw.ctypes.data, out.ctypes.data, n)
            best = min(best, time.perf_counter() - t0)
        res[tname] = {"seconds": best, "elements": n}
    print(json.dumps(res))


def cmd_llama_logits(path, prompts_json, outdir):
    """For each prompt: llama.cpp's token ids (add_bos per the model) and logits at every position,
    written to OUTDIR/logits.<i>.f32 ([n_tokens, n_vocab]); also 32 greedy tokens."""
    from llama_cpp import Llama
    prompts = json.load(open(prompts_json))
    llm = Llama(model_path=path, n_ctx=1024, n_threads=2, n_batch=512, logits_all=True, verbose=False)
    os.makedirs(outdir, exist_ok=True)
    res = []
    for i, p in enumerate(prompts):
        llm.reset()
        toks = llm.tokenize(p.encode("utf-8"), add_bos=True, special=True)
        llm.eval(toks)
        np.array(llm.scores[: len(toks)], dtype="<f4").tofile(os.path.join(outdir, f"logits.{i}.f32"))
        # 32 greedy tokens continuing the prompt
        gen = []
        for _ in range(32):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            gen.append(nxt)
            if llm.token_eos() == nxt:
                break
            llm.eval([nxt])
        res.append({"tokens": toks, "greedy": gen, "n_vocab": llm.n_vocab()})
    print(json.dumps(res))


def cmd_bench_llama(path, n_prompt, n_gen, threads, reps="3"):
    """llama.cpp prompt processing (one batch of n_prompt random tokens, logits for the last) and
    generation (n_gen single-token steps) speed, median of REPS runs, like llama-bench."""
    import time
    from llama_cpp import Llama
    n_prompt, n_gen, threads, reps = int(n_prompt), int(n_gen), int(threads), int(reps)
    llm = Llama(model_path=path, n_ctx=n_prompt + n_gen + 8, n_batch=n_prompt, n_ubatch=n_prompt,
                n_threads=threads, n_threads_batch=threads, logits_all=False, verbose=False)
    rng = np.random.default_rng(0)
    toks = [int(t) for t in rng.integers(100, min(20000, llm.n_vocab()), n_prompt)]
    pp, tg = [], []
    llm.reset(); llm.eval(toks[:16])  # warm-up
    for _ in range(reps):
        llm.reset()
        t0 = time.perf_counter(); llm.eval(toks); pp.append(n_prompt / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for i in range(n_gen):
            llm.eval([toks[i % n_prompt]])
        tg.append(n_gen / (time.perf_counter() - t0))
    print(json.dumps({"pp_tps": float(np.median(pp)), "tg_tps": float(np.median(tg)),
                      "pp_all": pp, "tg_all": tg}))


def cmd_llama_logits_ids(path, ids_json, out):
    """llama.cpp logits at every position for the given token ids → OUT ([n, n_vocab] f32)."""
    from llama_cpp import Llama
    ids = json.load(open(ids_json))
    llm = Llama(model_path=path, n_ctx=max(64, len(ids) + 8), n_threads=2, n_batch=512, logits_all=True, verbose=False)
    llm.eval(ids)
    np.array(llm.scores[: len(ids)], dtype="<f4").tofile(out)
    print(json.dumps({"n": len(ids), "n_vocab": llm.n_vocab()}))


def cmd_llama_logits_lora(path, ids_json, out, *adapters):
    """llama.cpp logits at every position for the given token ids with LoRA adapters applied
    (each ADAPTER given as PATH:SCALE; loaded with llama_adapter_lora_init and set together with
    llama_set_adapters_lora, as llama.cpp's --lora A:scale does) → OUT ([n, n_vocab] f32)."""
    from llama_cpp import Llama
    ids = json.load(open(ids_json))
    llm = Llama(model_path=path, n_ctx=max(64, len(ids) + 8), n_threads=2, n_batch=512, logits_all=True, verbose=False)
    set_adapters(llm, adapters)
    llm.eval(ids)
    np.array(llm.scores[: len(ids)], dtype="<f4").tofile(out)
    print(json.dumps({"n": len(ids), "n_vocab": llm.n_vocab(), "adapters": len(adapters)}))


def set_adapters(llm, adapters):
    """Load PATH:SCALE adapters into llm's context (llama.cpp's --lora-scaled)."""
    import ctypes
    import llama_cpp
    if not adapters:
        return
    handles, scales = [], []
    for spec in adapters:
        p, _, sc = spec.rpartition(":")
        h = llama_cpp.llama_adapter_lora_init(llm._model.model, p.encode("utf-8"))
        if not h:
            print(f"llama.cpp could not load the adapter {p}", file=sys.stderr)
            sys.exit(3)
        handles.append(h)
        scales.append(float(sc))
    arr = (llama_cpp.llama_adapter_lora_p_ctypes * len(handles))(*handles)
    sarr = (ctypes.c_float * len(scales))(*scales)
    if llama_cpp.llama_set_adapters_lora(llm._ctx.ctx, arr, len(handles), sarr):
        print("llama_set_adapters_lora failed", file=sys.stderr)
        sys.exit(4)


def cmd_llama_perplexity(path, text_file, n_ctx, *adapters):
    """llama.cpp's perplexity method (default mode) with llama.cpp computing the logits:
    tokenize with add_bos, chunks of n_ctx, BOS as each chunk's first token when the model adds
    BOS, score positions n_ctx/2 .. n_ctx-2. Optional ADAPTERS as PATH:SCALE."""
    from llama_cpp import Llama
    n_ctx = int(n_ctx)
    llm = Llama(model_path=path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=2, logits_all=True, verbose=False)
    set_adapters(llm, adapters)
    text = open(text_file, encoding="utf-8").read()
    toks = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    add_bos = llm._model.add_bos_token() if hasattr(llm._model, "add_bos_token") else True
    bos = llm.token_bos()
    n_chunk = len(toks) // n_ctx
    first = n_ctx // 2
    nll, count, running = 0.0, 0, []
    for c in range(n_chunk):
        chunk = list(toks[c * n_ctx:(c + 1) * n_ctx])
        if add_bos:
            chunk[0] = bos
        llm.reset()
        llm.eval(chunk)
        logits = np.array(llm.scores[:n_ctx], dtype=np.float64)
        for j in range(first, n_ctx - 1):
            row = logits[j]
            m = row.max()
            lse = np.log(np.exp(row - m).sum()) + m
            nll -= row[toks[c * n_ctx + j + 1]] - lse
            count += 1
        running.append(float(np.exp(nll / count)))
    print(json.dumps({"ppl": float(np.exp(nll / count)), "per_chunk": running, "scored": count,
                      "tokens": [int(t) for t in toks], "add_bos": bool(add_bos), "bos": int(bos)}))


class _CpuTraits(ctypes.Structure):
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p),
                ("vec_dot_type", ctypes.c_int), ("nrows", ctypes.c_int64)]


def cmd_q8_dot(d):
    """ggml's own CPU activation quantization and vec_dot (libggml-cpu's type traits)."""
    import llama_cpp  # noqa: F401
    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-cpu.so"))
    lib.ggml_cpu_init()  # fills the f16 → f32 table its kernels read scales through
    lib.ggml_get_type_traits_cpu.restype = ctypes.POINTER(_CpuTraits)
    lib.ggml_get_type_traits_cpu.argtypes = [ctypes.c_int]
    from_float_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    vec_dot_t = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                 ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    x = np.fromfile(os.path.join(d, "x.f32"), dtype="<f4")
    res = {}
    for fn in sorted(os.listdir(d)):
        if not (fn.startswith("w.") and fn.endswith(".bin")):
            continue
        tname = fn[len("w."):-len(".bin")]
        t = T[tname]
        w = np.fromfile(os.path.join(d, fn), dtype=np.uint8)
        bs, ts = GGML_QUANT_SIZES[t]
        tr = lib.ggml_get_type_traits_cpu(int(t)).contents
        vt = T(tr.vec_dot_type)
        base = _ggml()
        base.ggml_type_size.restype = ctypes.c_size_t
        base.ggml_blck_size.restype = ctypes.c_int64
        # ggml's own sizes: gguf-py lists Q8_1 as 40 bytes, ggml's block_q8_1 is 36.
        vbs, vts = int(base.ggml_blck_size(int(vt))), int(base.ggml_type_size(int(vt)))
        k = int(open(os.path.join(d, f"k.{tname}")).read())
        rows_w = w.size // (k // bs * ts)
        xr = x[: (x.size // k) * k].reshape(-1, k)
        act = np.zeros((xr.shape[0], k // vbs * vts), dtype=np.uint8)
        ff = from_float_t(lib.ggml_get_type_traits_cpu(int(vt)).contents.from_float)
        for i in range(xr.shape[0]):
            row = np.ascontiguousarray(xr[i])
            ff(row.ctypes.data, act[i].ctypes.data, k)
        vd = vec_dot_t(tr.vec_dot)
        out = np.zeros((xr.shape[0], rows_w), dtype=np.float32)
        wr = w.reshape(rows_w, -1)
        s = ctypes.c_float()
        for i in range(xr.shape[0]):
            for r in range(rows_w):
                vd(k, ctypes.addressof(s), 0, wr[r].ctypes.data, 0, act[i].ctypes.data, 0, 1)
                out[i, r] = s.value
        act.tofile(os.path.join(d, f"act.{tname}.bin"))
        out.astype("<f4").tofile(os.path.join(d, f"dot.{tname}.f32"))
        res[tname] = {"vec_dot_type": vt.name, "rows": int(rows_w), "acts": int(xr.shape[0])}
    print(json.dumps(res))


def cmd_llama_top(path, prompt):
    from llama_cpp import Llama
    llm = Llama(model_path=path, n_ctx=256, n_threads=2, logits_all=True, verbose=False)
    toks = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
    llm.eval(toks)
    logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    top = int(np.argmax(logits))
    print(json.dumps({"n_prompt": len(toks), "top": top,
                      "top_piece": llm.detokenize([top]).decode("utf-8", "replace"),
                      "logits_sha256": hashlib.sha256(logits.tobytes()).hexdigest()}))


def cmd_q4k_gemm(d):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import q4k_oracle
    q4k_oracle.cmd_q4k_gemm(d)


def main(argv):
    cmds = {"meta": cmd_meta, "hashes": cmd_hashes, "dequant": cmd_dequant,
            "encode-compare": cmd_encode_compare, "llama-top": cmd_llama_top, "q8-dot": cmd_q8_dot, "q4k-gemm": cmd_q4k_gemm,
            "npy-compare": cmd_npy_compare, "bench-ggml": cmd_bench_ggml,
            "llama-logits": cmd_llama_logits, "bench-llama": cmd_bench_llama,
            "llama-logits-ids": cmd_llama_logits_ids, "llama-logits-lora": cmd_llama_logits_lora, "llama-perplexity": cmd_llama_perplexity}
    if len(argv) < 2 or argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    cmds[argv[1]](*argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
