// Rotary position embedding forward and backward on rows of n_heads·head_dim values. The
// host builds the per-row cos/sin tables (cs[t·half + i] = (cos θ, sin θ) of pair i at row t's
// position, θ in f32 exactly as src/ops/rope.rs), so angles match the CPU bit for bit.
// style 0: adjacent pairs (x[2i], x[2i+1]); 1: NeoX halves (x[i], x[i + n_rot/2]).
#include "common.cuh"

// One thread per (row, head, pair); back = 1 turns by −θ (the transpose).
extern "C" __global__ void rope_f32(float *x, const float2 *cs, int rows, int n_heads, int head_dim, int n_rot, int style, int back) {
    int half = n_rot / 2;
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)rows * n_heads * half;
    if (idx >= total) return;
    int i = (int)(idx % half);
    long long th = idx / half;
    int h = (int)(th % n_heads);
    long long t = th / n_heads;
    float2 c = cs[t * half + i];
    float s = back ? -c.y : c.y;
    float *v = x + t * (long long)n_heads * head_dim + (long long)h * head_dim;
    int a = style ? i : 2 * i;
    int b = style ? i + half : 2 * i + 1;
    float x0 = v[a], x1 = v[b];
    v[a] = __fsub_rn(__fmul_rn(x0, c.x), __fmul_rn(x1, s));
    v[b] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c.x));
}
