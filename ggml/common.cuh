// Shared device helpers of finetune's CUDA kernels: f16/bf16 decoding, exact block decoding of
// the ggml formats (one element at a time, the same f32 operations as src/quant's scalar
// decoders, no fused multiply-add), warp and block reductions.
//
// Type ids are ggml's (src/quant/types.rs): F32 0, F16 1, Q4_0 2, Q4_1 3, Q5_0 6, Q5_1 7,
// Q8_0 8, Q4_K 12, Q5_K 13, Q6_K 14, BF16 30.
#pragma once
#include <stdint.h>

#define FT_F32 0
#define FT_F16 1
#define FT_Q4_0 2
#define FT_Q4_1 3
#define FT_Q5_0 6
#define FT_Q5_1 7
#define FT_Q8_0 8
#define FT_Q4_K 12
#define FT_Q5_K 13
#define FT_Q6_K 14
#define FT_BF16 30

// IEEE half at p (little-endian, any alignment) to f32, exactly.
__device__ __forceinline__ float ft_f16(const uint8_t *p) {
    unsigned h = (unsigned)p[0] | ((unsigned)p[1] << 8);
    unsigned sign = (h & 0x8000u) << 16;
    unsigned e = (h >> 10) & 0x1fu;
    unsigned m = h & 0x3ffu;
    if (e == 31u) return __uint_as_float(sign | 0x7f800000u | (m << 13));
    if (e != 0u) return __uint_as_float(sign | ((e + 112u) << 23) | (m << 13));
    float v = (float)m * 5.9604644775390625e-8f;  // m · 2^-24, exact
    return sign ? -v : v;
}

__device__ __forceinline__ float ft_bf16(const uint8_t *p) {
    unsigned h = (unsigned)p[0] | ((unsigned)p[1] << 8);
    return __uint_as_float(h << 16);
}

// Elements and bytes per block of each supported type (0 for an unsupported type).
__device__ __forceinline__ int ft_block_elems(int ty) {
    switch (ty) {
    case FT_F32: case FT_F16: case FT_BF16: return 1;
    case FT_Q4_0: case FT_Q4_1: case FT_Q5_0: case FT_Q5_1: case FT_Q8_0: return 32;
    case FT_Q4_K: case FT_Q5_K: case FT_Q6_K: return 256;
    default: return 0;
    }
}

__device__ __forceinline__ int ft_block_bytes(int ty) {
    switch (ty) {
    case FT_F32: return 4;
    case FT_F16: case FT_BF16: return 2;
    case FT_Q4_0: return 18;
    case FT_Q4_1: return 20;
    case FT_Q5_0: return 22;
    case FT_Q5_1: return 24;
    case FT_Q8_0: return 34;
    case FT_Q4_K: return 144;
    case FT_Q5_K: return 176;
    case FT_Q6_K: return 210;
    default: return 0;
    }
}

// Q4_K/Q5_K: the 6-bit scale and min of sub-block j (ggml get_scale_min_k4).
__device__ __forceinline__ void ft_scale_min_k4(int j, const uint8_t *s, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Element k (0 ≤ k < block elems) of the block at b.
__device__ __forceinline__ float ft_decode(int ty, const uint8_t *b, int k) {
    switch (ty) {
    case FT_F32: return __uint_as_float((unsigned)b[0] | ((unsigned)b[1] << 8) | ((unsigned)b[2] << 16) | ((unsigned)b[3] << 24));
    case FT_F16: return ft_f16(b);
    case FT_BF16: return ft_bf16(b);
    case FT_Q4_0: {
        int q = k < 16 ? (b[2 + k] & 15) : (b[2 + k - 16] >> 4);
        return __fmul_rn((float)(q - 8), ft_f16(b));
    }
    case FT_Q4_1: {
        int q = k < 16 ? (b[4 + k] & 15) : (b[4 + k - 16] >> 4);
        return __fadd_rn(__fmul_rn(ft_f16(b), (float)q), ft_f16(b + 2));
    }
    case FT_Q5_0: {
        unsigned qh = (unsigned)b[2] | ((unsigned)b[3] << 8) | ((unsigned)b[4] << 16) | ((unsigned)b[5] << 24);
        int lo = k < 16 ? (b[6 + k] & 15) : (b[6 + k - 16] >> 4);
        int q = lo | (int)(((qh >> k) & 1u) << 4);
        return __fmul_rn((float)(q - 16), ft_f16(b));
    }
    case FT_Q5_1: {
        unsigned qh = (unsigned)b[4] | ((unsigned)b[5] << 8) | ((unsigned)b[6] << 16) | ((unsigned)b[7] << 24);
        int lo = k < 16 ? (b[8 + k] & 15) : (b[8 + k - 16] >> 4);
        int q = lo | (int)(((qh >> k) & 1u) << 4);
        return __fadd_rn(__fmul_rn(ft_f16(b), (float)q), ft_f16(b + 2));
    }
    case FT_Q8_0: return __fmul_rn((float)(int8_t)b[2 + k], ft_f16(b));
    case FT_Q4_K:
    case FT_Q5_K: {
        // 64-element chunk c holds sub-blocks 2c (low nibbles) and 2c+1 (high nibbles).
        int c = k >> 6, w = k & 63, sub = 2 * c + (w >> 5), l = w & 31;
        int sc, m;
        ft_scale_min_k4(sub, b + 4, &sc, &m);
        const uint8_t *qs = b + (ty == FT_Q4_K ? 16 : 48);
        int q = (w < 32) ? (qs[32 * c + l] & 15) : (qs[32 * c + l] >> 4);
        if (ty == FT_Q5_K) q |= ((b[16 + l] >> sub) & 1) << 4;
        float d = __fmul_rn(ft_f16(b), (float)sc);
        float dm = __fmul_rn(ft_f16(b + 2), (float)m);
        return __fsub_rn(__fmul_rn(d, (float)q), dm);
    }
    case FT_Q6_K: {
        int n = k >> 7, r = k & 127, quarter = r >> 5, l = r & 31, i = l >> 4;
        const uint8_t *ql = b + 64 * n, *qh = b + 128 + 32 * n;
        const int8_t *sc = (const int8_t *)(b + 192 + 8 * n);
        int lo = (quarter & 1) ? ql[l + 32] : ql[l];
        lo = (quarter & 2) ? (lo >> 4) : (lo & 15);
        int q = (lo | (((qh[l] >> (2 * quarter)) & 3) << 4)) - 32;
        float d = __fmul_rn(ft_f16(b + 208), (float)sc[i + 2 * quarter]);
        return __fmul_rn(d, (float)q);
    }
    default: return __int_as_float(0x7fc00000);  // NaN: an unsupported type is refused on the host
    }
}

// Element (r, c) of a row-major matrix of ggml blocks, rows of row_bytes bytes.
__device__ __forceinline__ float ft_weight(int ty, const uint8_t *w, long long row_bytes, long long r, int c) {
    int be = ft_block_elems(ty);
    const uint8_t *blk = w + r * row_bytes + (long long)(c / be) * ft_block_bytes(ty);
    return ft_decode(ty, blk, c % be);
}

__device__ __forceinline__ float ft_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float ft_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 32 floats of shared memory.
__device__ __forceinline__ float ft_block_sum(float v, float *scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = ft_warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : 0.0f;
    return ft_warp_sum(v);
}

__device__ __forceinline__ float ft_block_max(float v, float *scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = ft_warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : -INFINITY;
    return ft_warp_max(v);
}

// Double-precision block sum (RMSNorm sums squares in f64 as the CPU backend does).
__device__ __forceinline__ double ft_block_sum_f64(double v, double *scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
