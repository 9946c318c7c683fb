// LoRA products: one tiled f32 GEMM with transposes, C[M, N] = α·op(A)·op(B) + β·C, which
// gives the down projection u = x·Aᵀ, the up projection y += s·u·Bᵀ and the backward
// (du = s·dy·B, grad.b += s·dyᵀ·u, grad.a += duᵀ·x, dx += du·A). Row-major; op(A) is
// [M, K] (A stored [K, M] when ta), op(B) is [K, N] (B stored [N, K] when tb).
#include "common.cuh"

#define TILE 16

__device__ __forceinline__ float ft_at(const float *a, int ld, int trans, int r, int c) {
    return trans ? a[(long long)c * ld + r] : a[(long long)r * ld + c];
}

// grid (ceil(N/16), ceil(M/16)), block (16, 16).
extern "C" __global__ void gemm_f32(int M, int N, int K, const float *a, int lda, int ta, const float *b, int ldb, int tb, float *c, int ldc,
                                    float alpha, float beta) {
    __shared__ float as[TILE][TILE + 1];
    __shared__ float bs[TILE][TILE + 1];
    int tx = threadIdx.x, ty = threadIdx.y;
    int m = blockIdx.y * TILE + ty, n = blockIdx.x * TILE + tx;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        int ka = k0 + tx, kb = k0 + ty;
        as[ty][tx] = (m < M && ka < K) ? ft_at(a, lda, ta, m, ka) : 0.0f;
        bs[ty][tx] = (kb < K && n < N) ? ft_at(b, ldb, tb, kb, n) : 0.0f;
        __syncthreads();
#pragma unroll
        for (int j = 0; j < TILE; j++) acc += as[ty][j] * bs[j][tx];
        __syncthreads();
    }
    if (m < M && n < N) {
        long long o = (long long)m * ldc + n;
        c[o] = beta == 0.0f ? alpha * acc : alpha * acc + beta * c[o];
    }
}
