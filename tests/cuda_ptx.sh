#!/usr/bin/env bash
# The CUDA toolchain for `--features cuda`, and the PTX check CI runs.
#
# Installs nvcc from PyPI's CUDA 13.0 wheels (nvidia-cuda-nvcc, nvidia-nvvm for cicc, nvidia-cuda-crt
# and nvidia-cuda-runtime for the headers; the CUDA 12 nvcc wheel holds only ptxas) into a cache
# outside the clone (~/.cache/finetune/cuda-13.0, about 150 MB once; 13.0 because its PTX must
# load on drivers from 580 on), then compiles every
# ggml/*.cu to PTX for compute_80 and to sm_90 machine code, failing on any error or warning. No GPU and no
# system CUDA toolkit are needed. Prints the nvcc path on its last line (build.rs reads
# FINETUNE_NVCC, or finds this cache itself).
#   bash tests/cuda_ptx.sh            # install if missing, compile every kernel file
#   bash tests/cuda_ptx.sh --install  # install only
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VER=13.0
CACHE="${FINETUNE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/finetune}/cuda-$VER"
NVCC="$CACHE/nvidia/cu13/bin/nvcc"
if [ ! -x "$NVCC" ]; then
    PY="${FINETUNE_PYTHON:-python3}"
    tmp="$CACHE.tmp$$"
    rm -rf "$tmp"
    "$PY" -m pip install --quiet --no-deps --target "$tmp" \
        "nvidia-cuda-nvcc==$VER.*" "nvidia-nvvm==$VER.*" "nvidia-cuda-crt==$VER.*" "nvidia-cuda-runtime==$VER.*" >&2
    rm -rf "$CACHE"
    mv "$tmp" "$CACHE"
fi
INC="$CACHE/nvidia/cu13/include"
[ "${1:-}" = "--install" ] && { echo "$NVCC"; exit 0; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
n=0
for cu in ggml/*.cu; do
    # PTX for compute_80 (what build.rs embeds) and sm_90 machine code (ptxas runs: register
    # and shared-memory limits are checked too).
    for arch in compute_80 sm_90; do
        log="$out/log"
        kind=-ptx
        [ "$arch" = sm_90 ] && kind=-cubin
        if ! "$NVCC" "$kind" -arch="$arch" -std=c++17 -I"$INC" -Iggml --Werror all-warnings \
            -o "$out/$(basename "$cu" .cu).$arch.out" "$cu" >"$log" 2>&1 || [ -s "$log" ]; then
            echo "cuda_ptx: $cu ($arch) failed:" >&2
            cat "$log" >&2
            exit 1
        fi
        n=$((n + 1))
    done
done
echo "cuda_ptx: $n compilations without warnings ($(ls ggml/*.cu | wc -l) kernel files × 2 architectures)" >&2
echo "$NVCC"
