// Causal attention, forward and backward, flash-style: keys are visited in chunks of 128 with
// an online softmax, so no T×T score matrix exists. GQA (query head h reads KV head
// h / (n_head / n_head_kv)), sliding window, score soft-capping, packed-sequence segments.
// One thread block (128 threads) per (query row, head). q is pre-scaled by the host.
// Query row i sits at position n_past + i and sees key j iff j ≤ pos, pos − j < window
// (window 0: none) and, with segments, seg[j] == seg[pos]. Keys are rows of k [Tk, n_kv·hd],
// values rows of v [Tk, n_kv·vd]; out [Tq, n_head·vd], lse [Tq, n_head] (may be null).
#include "common.cuh"

#define CH 128
#define MAXD 512

__device__ __forceinline__ int ft_key_lo(int pos, int window) { return window > 0 && pos + 1 > window ? pos + 1 - window : 0; }

__device__ __forceinline__ bool ft_visible(const unsigned *seg, int pos, int j) { return seg == nullptr || seg[j] == seg[pos]; }

extern "C" __global__ void attention_fwd_f32(const float *q, const float *k, const float *v, float *out, float *lse, const unsigned *seg,
                                             int n_past, int n_head, int n_kv, int hd, int vd, int window, float softcap) {
    __shared__ float qs[MAXD];
    __shared__ float ps[CH];
    __shared__ float scratch[32];
    int i = blockIdx.x / n_head, h = blockIdx.x % n_head, tid = threadIdx.x;
    int kvh = h / (n_head / n_kv), pos = n_past + i;
    const float *qr = q + ((long long)i * n_head + h) * hd;
    for (int d = tid; d < hd; d += CH) qs[d] = qr[d];
    float acc[MAXD / CH];
#pragma unroll
    for (int r = 0; r < MAXD / CH; r++) acc[r] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    __syncthreads();
    for (int j0 = ft_key_lo(pos, window); j0 <= pos; j0 += CH) {
        int j = j0 + tid;
        float z = -INFINITY;
        if (j <= pos && ft_visible(seg, pos, j)) {
            const float *kr = k + ((long long)j * n_kv + kvh) * hd;
            float s = 0.0f;
            for (int d = 0; d < hd; d++) s += qs[d] * kr[d];
            z = softcap > 0.0f ? softcap * tanhf(s / softcap) : s;
        }
        float cm = ft_block_max(z, scratch);
        if (cm == -INFINITY) continue;  // the whole chunk is masked (uniform across the block)
        float mn = fmaxf(m, cm);
        float corr = m == -INFINITY ? 0.0f : expf(m - mn);
        float p = z == -INFINITY ? 0.0f : expf(z - mn);
        __syncthreads();
        ps[tid] = p;
        l = l * corr + ft_block_sum(p, scratch);
        m = mn;
        __syncthreads();
        int n = min(CH, pos + 1 - j0);
#pragma unroll
        for (int r = 0; r < MAXD / CH; r++) {
            int d = tid + r * CH;
            if (d < vd) {
                float a = acc[r] * corr;
                for (int jj = 0; jj < n; jj++) a += ps[jj] * v[((long long)(j0 + jj) * n_kv + kvh) * vd + d];
                acc[r] = a;
            }
        }
    }
    float *orow = out + ((long long)i * n_head + h) * vd;
#pragma unroll
    for (int r = 0; r < MAXD / CH; r++) {
        int d = tid + r * CH;
        if (d < vd) orow[d] = l > 0.0f ? acc[r] / l : 0.0f;
    }
    if (lse && tid == 0) lse[(long long)i * n_head + h] = l > 0.0f ? m + logf(l) : -INFINITY;
}

// Backward given q (pre-scaled), k, v, out, lse, dout: dq overwritten (of the scaled q; the
// host multiplies by the scale), dk and dv accumulated atomically (the host zeroes them).
// p = exp(z − lse), D = dout·out, dp = dout·v_j, dz = p·(dp − D), ds = dz·(1 − (z/c)²).
extern "C" __global__ void attention_bwd_f32(const float *q, const float *k, const float *v, const float *out, const float *lse,
                                             const float *dout, float *dq, float *dk, float *dv, const unsigned *seg, int n_head,
                                             int n_kv, int hd, int vd, int window, float softcap) {
    __shared__ float qs[MAXD];
    __shared__ float dos[MAXD];
    __shared__ float ps[CH];
    __shared__ float dss[CH];
    __shared__ float scratch[32];
    int i = blockIdx.x / n_head, h = blockIdx.x % n_head, tid = threadIdx.x;
    int kvh = h / (n_head / n_kv), pos = i;
    long long qo = ((long long)i * n_head + h) * hd, oo = ((long long)i * n_head + h) * vd;
    for (int d = tid; d < hd; d += CH) qs[d] = q[qo + d];
    float dd = 0.0f;
    for (int d = tid; d < vd; d += CH) {
        dos[d] = dout[oo + d];
        dd += dout[oo + d] * out[oo + d];
    }
    float D = ft_block_sum(dd, scratch);
    float L = lse[(long long)i * n_head + h];
    float dqa[MAXD / CH];
#pragma unroll
    for (int r = 0; r < MAXD / CH; r++) dqa[r] = 0.0f;
    __syncthreads();
    for (int j0 = ft_key_lo(pos, window); j0 <= pos && L != -INFINITY; j0 += CH) {
        int j = j0 + tid;
        float p = 0.0f, ds = 0.0f;
        if (j <= pos && ft_visible(seg, pos, j)) {
            const float *kr = k + ((long long)j * n_kv + kvh) * hd;
            const float *vr = v + ((long long)j * n_kv + kvh) * vd;
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < hd; d++) s += qs[d] * kr[d];
            for (int d = 0; d < vd; d++) dp += dos[d] * vr[d];
            float z = softcap > 0.0f ? softcap * tanhf(s / softcap) : s;
            p = expf(z - L);
            float dz = p * (dp - D);
            float th = softcap > 0.0f ? z / softcap : 0.0f;
            ds = softcap > 0.0f ? dz * (1.0f - th * th) : dz;
        }
        __syncthreads();
        ps[tid] = p;
        dss[tid] = ds;
        __syncthreads();
        int n = min(CH, pos + 1 - j0);
#pragma unroll
        for (int r = 0; r < MAXD / CH; r++) {
            int d = tid + r * CH;
            if (d < hd) {
                float a = dqa[r];
                for (int jj = 0; jj < n; jj++) a += dss[jj] * k[((long long)(j0 + jj) * n_kv + kvh) * hd + d];
                dqa[r] = a;
            }
        }
        for (int e = tid; e < n * hd; e += CH) {
            int jj = e / hd, d = e % hd;
            if (dss[jj] != 0.0f) atomicAdd(&dk[((long long)(j0 + jj) * n_kv + kvh) * hd + d], dss[jj] * qs[d]);
        }
        for (int e = tid; e < n * vd; e += CH) {
            int jj = e / vd, d = e % vd;
            if (ps[jj] != 0.0f) atomicAdd(&dv[((long long)(j0 + jj) * n_kv + kvh) * vd + d], ps[jj] * dos[d]);
        }
    }
#pragma unroll
    for (int r = 0; r < MAXD / CH; r++) {
        int d = tid + r * CH;
        if (d < hd) dq[qo + d] = dqa[r];
    }
}
