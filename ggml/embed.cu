// Embedding gather: out[t, :] = decode(table row tokens[t]) · scale (when has_scale).
#include "common.cuh"

extern "C" __global__ void embed_f32(int ty, const uint8_t *table, long long row_bytes, const unsigned *tokens, int n_tok, int n_in,
                                     int has_scale, float scale, float *out) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)n_tok * n_in) return;
    int t = (int)(i / n_in), c = (int)(i % n_in);
    float v = ft_weight(ty, table, row_bytes, tokens[t], c);
    out[i] = has_scale ? v * scale : v;
}
