// Cross-entropy over one chunk of logits rows (the host computes each chunk of at most 128
// rows with mmq_f32 on the output projection, so no T × vocab matrix exists, then turns the
// gradient rows into dhidden with mmq_backward_input_f32). As src/ops/loss.rs: z = c·tanh(y/c)
// (or y), loss = logsumexp(z) − z[target] (sum in f64); with grad the row becomes
// scale·(softmax(z) − onehot)·(1 − (z/c)²). A target < 0 gives loss 0 and a zero row.
#include "common.cuh"

// One block (256 threads) per row.
extern "C" __global__ void cross_entropy_rows_f32(float *logits, const int *targets, int V, float softcap, float scale, int grad,
                                                  double *row_loss) {
    __shared__ float scratch[32];
    __shared__ double dscratch[32];
    float *row = logits + (long long)blockIdx.x * V;
    int target = targets[blockIdx.x], tid = threadIdx.x;
    if (target < 0) {
        if (grad)
            for (int j = tid; j < V; j += blockDim.x) row[j] = 0.0f;
        if (tid == 0) row_loss[blockIdx.x] = 0.0;
        return;
    }
    float mx = -INFINITY;
    for (int j = tid; j < V; j += blockDim.x) {
        float z = row[j];
        if (softcap > 0.0f) {
            z = softcap * tanhf(z / softcap);
            row[j] = z;
        }
        mx = fmaxf(mx, z);
    }
    mx = ft_block_max(mx, scratch);
    double sum = 0.0;
    for (int j = tid; j < V; j += blockDim.x) sum += (double)expf(row[j] - mx);
    sum = ft_block_sum_f64(sum, dscratch);
    __syncthreads();
    float zt = row[target];
    __syncthreads();
    if (tid == 0) row_loss[blockIdx.x] = (double)mx + log(sum) - (double)zt;
    if (!grad) return;
    float inv = (float)(1.0 / sum);
    for (int j = tid; j < V; j += blockDim.x) {
        float z = row[j];
        float g = expf(z - mx) * inv - (j == target ? 1.0f : 0.0f);
        float th = softcap > 0.0f ? z / softcap : 0.0f;
        row[j] = softcap > 0.0f ? scale * g * (1.0f - th * th) : scale * g;
    }
}
