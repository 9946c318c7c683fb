// Matrix products on quantized weights for prompt-sized batches, forward and input backward,
// on every format of common.cuh (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K; F32/F16/BF16).
// Straightforward tiling: each 16×16 thread block decodes a 16×16 tile of W into shared memory
// (the same f32 values as the CPU decoders) and multiplies it with a tile of the activations;
// weights stay quantized in device memory, never expanded beyond one tile.
#include "common.cuh"

#define TILE 16

// y[T, N] = x[T, K] · Wᵀ, W [N, K] in blocks of type ty, rows of row_bytes.
// grid (ceil(N/16), ceil(T/16)), block (16, 16).
extern "C" __global__ void mmq_f32(int ty, const uint8_t *w, long long row_bytes, const float *x, float *y, int T, int N, int K) {
    __shared__ float xs[TILE][TILE + 1];
    __shared__ float ws[TILE][TILE + 1];
    int tx = threadIdx.x, ty_ = threadIdx.y;
    int n = blockIdx.x * TILE + tx;  // output column
    int t = blockIdx.y * TILE + ty_; // output row
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        int kx = k0 + tx;
        xs[ty_][tx] = (t < T && kx < K) ? x[(long long)t * K + kx] : 0.0f;
        int wn = blockIdx.x * TILE + ty_, wk = k0 + tx;
        ws[ty_][tx] = (wn < N && wk < K) ? ft_weight(ty, w, row_bytes, wn, wk) : 0.0f;
        __syncthreads();
#pragma unroll
        for (int j = 0; j < TILE; j++) acc += xs[ty_][j] * ws[tx][j];
        __syncthreads();
    }
    if (t < T && n < N) y[(long long)t * N + n] = acc;
}

// dx[T, K] = dy[T, N] · W (+ dx when accumulate). grid (ceil(K/16), ceil(T/16)), block (16, 16).
extern "C" __global__ void mmq_backward_input_f32(int ty, const uint8_t *w, long long row_bytes, const float *dy, float *dx, int T, int N,
                                                  int K, int accumulate) {
    __shared__ float ds[TILE][TILE + 1];
    __shared__ float ws[TILE][TILE + 1];
    int tx = threadIdx.x, ty_ = threadIdx.y;
    int k = blockIdx.x * TILE + tx;
    int t = blockIdx.y * TILE + ty_;
    float acc = 0.0f;
    for (int n0 = 0; n0 < N; n0 += TILE) {
        int nd = n0 + tx;
        ds[ty_][tx] = (t < T && nd < N) ? dy[(long long)t * N + nd] : 0.0f;
        int wn = n0 + ty_, wk = blockIdx.x * TILE + tx;
        ws[ty_][tx] = (wn < N && wk < K) ? ft_weight(ty, w, row_bytes, wn, wk) : 0.0f;
        __syncthreads();
#pragma unroll
        for (int j = 0; j < TILE; j++) acc += ds[ty_][j] * ws[j][tx];
        __syncthreads();
    }
    if (t < T && k < K) {
        long long o = (long long)t * K + k;
        dx[o] = accumulate ? dx[o] + acc : acc;
    }
}

// Bit-exact block decoding check: out[r, c] = W[r, c] for rows r0..r0+rows (the GPU test
// compares it with the CPU decoders).
extern "C" __global__ void dequant_rows_f32(int ty, const uint8_t *w, long long row_bytes, int r0, int rows, int K, float *out) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)rows * K) return;
    out[i] = ft_weight(ty, w, row_bytes, r0 + i / K, (int)(i % K));
}
