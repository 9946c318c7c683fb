// RMSNorm forward and backward, one block per row (blockDim.x = 256). Squares and the
// backward's projection are summed in f64, as src/ops/norm.rs does.
#include "common.cuh"

// out[row] = x[row] · 1/√(mean(x²) + eps) · w  (w may be null)
extern "C" __global__ void rms_norm_f32(const float *x, float *out, int n, float eps, const float *w) {
    __shared__ double scratch[32];
    const float *xr = x + (long long)blockIdx.x * n;
    float *outr = out + (long long)blockIdx.x * n;
    double ss = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += (double)(xr[i] * xr[i]);
    ss = ft_block_sum_f64(ss, scratch);
    float mean = (float)(ss / n);
    float r = 1.0f / sqrtf(mean + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i] * r;
        outr[i] = w ? v * w[i] : v;
    }
}

// dx = r·g − (Σ g·x)·r³/n · x with g = dy·w, r = 1/√(mean(x²) + eps).
extern "C" __global__ void rms_norm_backward_f32(const float *x, const float *w, int n, float eps, const float *dy, float *dx) {
    __shared__ double scratch[32];
    long long off = (long long)blockIdx.x * n;
    const float *xr = x + off, *dyr = dy + off;
    float *dxr = dx + off;
    double ss = 0.0, gx = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += (double)(xr[i] * xr[i]);
    ss = ft_block_sum_f64(ss, scratch);
    float r = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float g = w ? dyr[i] * w[i] : dyr[i];
        gx += (double)g * (double)xr[i];
    }
    gx = ft_block_sum_f64(gx, scratch);
    double rd = (double)r;
    float c = (float)(gx * rd * rd * rd / n);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float g = w ? dyr[i] * w[i] : dyr[i];
        dxr[i] = r * g - c * xr[i];
    }
}
