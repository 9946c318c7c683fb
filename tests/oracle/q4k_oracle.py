#!/usr/bin/env python3
"""llama.cpp's repacked Q4_K matmul (the CPU_REPACK buffer, `block_q4_Kx8`, 8x8 interleave), run
through ggml's own exported kernels via ctypes.

  q4k-gemm DIR   DIR/w.bin: Q4_K weight rows (144 B per 256-element block); DIR/x.f32: f32
                 activation rows; DIR/meta.json: {"k": row width, "n": weight rows, "t": act rows}.
                 Writes, as llama.cpp's repack forward_mul_mat computes them:
                   DIR/act4.bin  rows 0 .. t - t%4, quantized 4 at a time by ggml_quantize_mat_q8_K_4x8
                                 (block_q8_Kx4, 1168 B per 256 columns of 4 rows)
                   DIR/act1.bin  rows t - t%4 .. t, quantized by the Q8_K from_float (block_q8_K, 292 B)
                   DIR/y.f32     y[t][n]: ggml_gemm_q4_K_8x8_q8_K on the 4-row groups (all columns in
                                 one call), ggml_gemv_q4_K_8x8_q8_K on each remaining row
                   DIR/y8.f32    the same with the gemm / gemv called on 8 columns at a time (how a
                                 thread's chunk may end: exercises the kernels' narrow paths)
                 and prints JSON: {"gemm_rows", "gemv_rows", "chunked_same": y8 == y bit for bit}.

The repack is restated here from ggml's make_block_q4_Kx8 (interleave 8): d[8], dmin[8], the
sub-block scales/mins of the 8 rows regrouped per sub-block (12 B each), and the quants taken 8
bytes at a time from each row in turn.
"""
import ctypes
import json
import os

import numpy as np

QK_K = 256
Q4K = 144
Q8K = 292
Q8KX4 = 16 + 4 * QK_K + 2 * 64
Q4KX8 = 32 + 96 + 1024


def _lib():
    import llama_cpp  # noqa: F401  (only to locate the bundled libraries)
    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-cpu.so"))
    lib.ggml_cpu_init()  # fills the f16 tables the kernels read scales through
    kern = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    for name in ("ggml_gemm_q4_K_8x8_q8_K", "ggml_gemv_q4_K_8x8_q8_K"):
        getattr(lib, name).argtypes = kern
        getattr(lib, name).restype = None
    lib.ggml_quantize_mat_q8_K_4x8.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.ggml_quantize_mat_q8_K_4x8.restype = None
    lib.quantize_row_q8_K.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.quantize_row_q8_K.restype = None
    return lib


def _scales(sc):
    """The 8 (scale, min) 6-bit pairs of one block_q4_K's 12 scale bytes (get_scale_min_k4)."""
    s, m = [0] * 8, [0] * 8
    for j in range(8):
        if j < 4:
            s[j], m[j] = sc[j] & 63, sc[j + 4] & 63
        else:
            s[j] = (sc[j + 4] & 15) | ((sc[j - 4] >> 6) << 4)
            m[j] = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4)
    return s, m


def make_block_q4_kx8(blocks):
    """ggml's make_block_q4_Kx8(in, 8): eight block_q4_K (bytes, row r = blocks[r]) → 1152 bytes."""
    out = bytearray(Q4KX8)
    for r, b in enumerate(blocks):
        out[2 * r:2 * r + 2] = b[0:2]
        out[16 + 2 * r:16 + 2 * r + 2] = b[2:4]
    qs = [b[16:144] for b in blocks]
    for i in range(QK_K * 4 // 8):
        src, off = i % 8, (i // 8) * 8
        out[128 + 8 * i:128 + 8 * i + 8] = qs[src][off:off + 8]
    sm = [_scales(b[4:16]) for b in blocks]
    # sub-block j of the 8 rows: 12 bytes at 12*j — low 6 bits of s[0..4], m[0..4] with the top two
    # bits of s[4..8], m[4..8] in bits 6..7, then the low nibbles of s[4..8] | m[4..8] << 4.
    for j in range(8):
        s = [sm[r][0][j] for r in range(8)]
        m = [sm[r][1][j] for r in range(8)]
        o = 32 + 12 * j
        for r in range(4):
            out[o + r] = (s[r] & 63) + ((s[r + 4] & 48) << 2)
            out[o + 4 + r] = (m[r] & 63) + ((m[r + 4] & 48) << 2)
            out[o + 8 + r] = (s[r + 4] & 15) + ((m[r + 4] & 15) << 4)
    return bytes(out)


def repack(w, n, k):
    """The weight matrix (n rows of k) as ggml's repack lays it out: per 8 rows, per block column."""
    nb = k // QK_K
    rows = w.reshape(n, nb * Q4K)
    out = bytearray()
    for g in range(n // 8):
        for x in range(nb):
            out += make_block_q4_kx8([bytes(rows[8 * g + r, x * Q4K:(x + 1) * Q4K]) for r in range(8)])
    return np.frombuffer(bytes(out), dtype=np.uint8).copy()


def run(lib, wp, a4, a1, n, k, t, cols):
    """forward_mul_mat for one weight range of `cols` columns at a time."""
    t4 = t - t % 4
    y = np.zeros((t, n), dtype=np.float32)
    nb = k // QK_K
    for c0 in range(0, n, cols):
        nc = min(cols, n - c0)
        wptr = wp.ctypes.data + (c0 // 8) * nb * Q4KX8
        if t4:
            lib.ggml_gemm_q4_K_8x8_q8_K(k, y.ctypes.data + 4 * c0, n, wptr, a4.ctypes.data, t4, nc)
        for i in range(t4, t):
            lib.ggml_gemv_q4_K_8x8_q8_K(k, y.ctypes.data + 4 * (i * n + c0), n, wptr, a1[i - t4].ctypes.data, 1, nc)
    return y


def cmd_q4k_gemm(d):
    lib = _lib()
    meta = json.load(open(os.path.join(d, "meta.json")))
    k, n, t = int(meta["k"]), int(meta["n"]), int(meta["t"])
    assert k % QK_K == 0 and n % 8 == 0, "k must be a multiple of 256 and n of 8"
    w = np.fromfile(os.path.join(d, "w.bin"), dtype=np.uint8)
    assert w.size == n * k // QK_K * Q4K, "w.bin size"
    x = np.fromfile(os.path.join(d, "x.f32"), dtype="<f4").reshape(t, k)
    t4 = t - t % 4
    nb = k // QK_K
    a4 = np.zeros(max(t4 // 4, 1) * nb * Q8KX4, dtype=np.uint8)
    for g in range(t4 // 4):
        xs = np.ascontiguousarray(x[4 * g:4 * g + 4])
        lib.ggml_quantize_mat_q8_K_4x8(xs.ctypes.data, a4.ctypes.data + g * nb * Q8KX4, k)
    a1 = np.zeros((max(t - t4, 1), nb * Q8K), dtype=np.uint8)
    for i in range(t4, t):
        xs = np.ascontiguousarray(x[i])
        lib.quantize_row_q8_K(xs.ctypes.data, a1[i - t4].ctypes.data, k)
    wp = repack(w, n, k)
    y = run(lib, wp, a4, a1, n, k, t, n)
    y8 = run(lib, wp, a4, a1, n, k, t, 8)
    a4[: t4 // 4 * nb * Q8KX4].tofile(os.path.join(d, "act4.bin"))
    a1[: t - t4].tofile(os.path.join(d, "act1.bin"))
    y.astype("<f4").tofile(os.path.join(d, "y.f32"))
    y8.astype("<f4").tofile(os.path.join(d, "y8.f32"))
    print(json.dumps({"gemm_rows": t4, "gemv_rows": t - t4,
                      "chunked_same": bool(np.array_equal(y.view(np.uint32), y8.view(np.uint32)))}))


if __name__ == "__main__":
    import sys
    cmd_q4k_gemm(*sys.argv[1:])
