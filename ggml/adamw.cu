// AdamW (torch's formula, as the CPU backend): m = β₁m + (1−β₁)g, v = β₂v + (1−β₂)g²,
// p = p·decay − step_size·m / (√v / bc2_sqrt + ε).
#include "common.cuh"

extern "C" __global__ void adamw_f32(float *p, const float *g, float *m, float *v, float beta1, float beta2, float eps,
                                     float step_size, float bc2_sqrt, float decay, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i];
    float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi) / bc2_sqrt + eps;
    p[i] = p[i] * decay - step_size * mi / denom;
}
