// One-token decode: y[N] = W · x for a single row x (T = 1), one warp per output row, lanes
// striding over the row's elements, decoded straight from the quantized blocks.
#include "common.cuh"

// block (32, 8): 8 rows per block; grid ceil(N/8).
extern "C" __global__ void mmvq_f32(int ty, const uint8_t *w, long long row_bytes, const float *x, float *y, int N, int K) {
    int n = blockIdx.x * blockDim.y + threadIdx.y;
    if (n >= N) return;
    float acc = 0.0f;
    for (int k = threadIdx.x; k < K; k += 32) acc += ft_weight(ty, w, row_bytes, n, k) * x[k];
    acc = ft_warp_sum(acc);
    if (threadIdx.x == 0) y[n] = acc;
}
