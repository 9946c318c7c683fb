// Element-wise ops of the Backend trait: add, add_rows (bias), scale, mul, softcap, the
// bound check behind find_not_below, and the f32 copy into a KV cache row.
#include "common.cuh"

#define FT_IDX long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; if (i >= n) return;

extern "C" __global__ void add_f32(float *x, const float *y, long long n) { FT_IDX x[i] += y[i]; }

extern "C" __global__ void add_rows_f32(float *x, const float *bias, int width, long long n) { FT_IDX x[i] += bias[i % width]; }

extern "C" __global__ void scale_f32(float *x, float s, long long n) { FT_IDX x[i] *= s; }

extern "C" __global__ void mul_f32(const float *x, const float *m, float *out, long long n) { FT_IDX out[i] = x[i] * m[i]; }

extern "C" __global__ void softcap_f32(float *x, float cap, long long n) { FT_IDX x[i] = cap * tanhf(x[i] / cap); }

// first[0] = smallest index whose value is NaN or has |v| ≥ bound (first[0] starts at n).
extern "C" __global__ void find_not_below_f32(const float *x, float bound, unsigned long long *first, long long n) {
    FT_IDX float v = x[i];
    if (isnan(v) || fabsf(v) >= bound) atomicMin(first, (unsigned long long)i);
}
