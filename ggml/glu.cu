// Gated activations of the feed-forward block, forward and backward (src/ops/activation.rs):
// act 0 = SwiGLU silu(g)·u, act 1 = GeGLU gelu_tanh(g)·u.
#include "common.cuh"

__device__ __forceinline__ float ft_silu(float x) { return x / (1.0f + expf(-x)); }

__device__ __forceinline__ float ft_gelu(float x) {
    const float k = 0.7978846f;
    return 0.5f * x * (1.0f + tanhf(k * x * (1.0f + 0.044715f * x * x)));
}

__device__ __forceinline__ float ft_silu_grad(float x) {
    float s = 1.0f / (1.0f + expf(-x));
    return s * (1.0f + x * (1.0f - s));
}

__device__ __forceinline__ float ft_gelu_grad(float x) {
    const float k = 0.7978846f;
    float t = tanhf(k * x * (1.0f + 0.044715f * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * 0.044715f * x * x);
}

extern "C" __global__ void glu_f32(int act, float *gate, const float *up, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = gate[i];
    gate[i] = (act ? ft_gelu(g) : ft_silu(g)) * up[i];
}

// dgate = dh·up·act'(gate), dup = dh·act(gate); gate is the forward's input.
extern "C" __global__ void glu_backward_f32(int act, const float *gate, const float *up, const float *dh, float *dgate, float *dup, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = gate[i], d = dh[i];
    dgate[i] = d * up[i] * (act ? ft_gelu_grad(g) : ft_silu_grad(g));
    dup[i] = d * (act ? ft_gelu(g) : ft_silu(g));
}
