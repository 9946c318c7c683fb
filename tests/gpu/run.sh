#!/usr/bin/env bash
# The CUDA backend's GPU checks, in one call of at most 9 minutes (the per-check timeouts sum to
# 545 s; run it with the device tool's timeout_s=600).
#
# The device machine has a GPU and nvcc but no Rust toolchain, no network and takes at most
# 64 MiB of working tree, so the work is split in two:
#
#   bash tests/gpu/run.sh --prepare   # here (CPU machine): builds with --features cuda, writes
#                                     # .gpu/bin/{gpu-tests,finetune} (stripped) and .gpu/models/
#                                     # (both real models cut to 2 blocks and 16384 tokens, every
#                                     # kept tensor byte for byte; the test checks that)
#   bash tests/gpu/run.sh             # on the GPU (device tool: carry [".gpu"]): runs every
#                                     # check below, logs to $OUT/gpu.log (or .gpu/gpu.log)
#
# Checks (tests/gpu/main.rs, compiled only with the feature, so CI never reports them): block
# decoding bit-exact on every format (random blocks and the real tensors); quantized matmul,
# GEMV and dY·W, RMSNorm, RoPE (bit-exact), GLU, element-wise ops, attention forward/backward
# (GQA, window, softcap, packed segments), LoRA products, chunked cross-entropy, AdamW — each
# against the CPU backend with the tolerance it states; whole-model LoRA gradients vs the CPU
# (rel L2 ≤ 1e-4) and prompt/decode logits with an adapter on both models; 40 training steps
# whose held-out loss falls as on the CPU; benchmark (a): the Qwen2-7B-shaped Q4_K_M model at
# seq 512, r16 on all seven projections, streamed under the 4 GiB plan and fully resident, with
# the sampled peak device memory and tokens/s. Then `finetune --device cuda --gpu-mem 4G`
# prints its plan for that model.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if [ "${1:-}" = "--prepare" ]; then
    set -e
    NVCC="$(bash tests/cuda_ptx.sh --install)"
    export FINETUNE_NVCC="$NVCC"
    cargo build --release --features cuda --bins
    bin="$(cargo test --release --features cuda --test gpu --no-run --message-format=json 2>/dev/null |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)"
    [ -x "$bin" ] || { echo "run.sh: the gpu test binary was not built" >&2; exit 1; }
    rm -rf .gpu
    mkdir -p .gpu/bin .gpu/models
    FINETUNE_GPU_CUT="$PWD/.gpu/models" "$bin" cut_models_for_the_device --exact --nocapture --test-threads=1
    strip -o .gpu/bin/gpu-tests "$bin"
    strip -o .gpu/bin/finetune target/release/finetune
    cp tests/gpu/run.sh .gpu/
    du -sh .gpu
    size=$(du -sm .gpu | cut -f1)
    [ "$size" -le 60 ] || { echo "run.sh: .gpu is ${size} MiB; the device takes 64 MiB with the tree" >&2; exit 1; }
    echo "prepared: carry .gpu with the device tool and run: bash tests/gpu/run.sh"
    exit 0
fi

LOG="${OUT:-.gpu}/gpu.log"
mkdir -p "$(dirname "$LOG")"
exec > >(tee "$LOG") 2>&1
[ -x .gpu/bin/gpu-tests ] || { echo "run.sh: run 'bash tests/gpu/run.sh --prepare' on the build machine first"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
export FINETUNE_GPU_MODELS="$PWD/.gpu/models" FINETUNE_GPU_7B="${TMPDIR:-/tmp}/qwen2-7b-q4km-synth.gguf"
status=0
run() { # name, seconds, test filter
    echo "=== $1"
    local t0=$SECONDS
    timeout "$2" .gpu/bin/gpu-tests "$3" --nocapture --test-threads=1 || { echo "=== $1 FAILED"; status=1; }
    echo "=== $1: $((SECONDS - t0)) s"
}
run "block decoding" 60 block_decoding_is_bit_exact
run "real tensors" 30 real_tensors_decode_bit_exact
run "matmul" 45 quantized_matmul_and_input_backward
run "norm/rope/glu/elementwise" 30 norm_rope_glu_elementwise
run "attention" 45 attention_forward_backward
run "lora/loss/adamw" 30 lora_products_loss_adamw
run "whole model" 60 whole_model_gradients_and_logits_match_the_cpu
run "40 steps" 60 forty_training_steps_lower_the_held_out_loss_as_on_the_cpu
run "bench 7B at 4 GiB" 150 bench_7b_streaming_at_4_gib
echo "=== finetune --device cuda --gpu-mem 4G (plan)"
printf '{"text": "a b c d e f g h"}\n' > "${TMPDIR:-/tmp}/gpu-data.jsonl"
timeout 30 .gpu/bin/finetune --device cuda --gpu-mem 4G --model "$FINETUNE_GPU_7B" --data "${TMPDIR:-/tmp}/gpu-data.jsonl" \
    --seq-len 512 --rank 16 --targets all --steps 1 2>&1 | grep -E "gpu plan|device|error" || true
echo "=== status $status"
exit $status
