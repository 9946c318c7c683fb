#!/usr/bin/env bash
# Install the reference implementations (oracles) into a venv kept outside the clone:
#   gguf (ggml's own numpy decoders/encoders), numpy, llama-cpp-python (real llama.cpp, built from source).
# Prints nothing on success but the venv's python path on stdout. Idempotent: reuses the venv when complete.
set -euo pipefail
root="${FINETUNE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/finetune}"
venv="$root/venv"
py=python3
stamp="$venv/.oracle-v1"
if [ ! -f "$stamp" ]; then
  echo "oracle: creating $venv (first run builds llama.cpp, ~10 min on 2 cores)" >&2
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet "numpy<3" "gguf==0.19.0" >&2
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON}" \
    "$venv/bin/python" -m pip install --quiet "llama-cpp-python==0.3.36" >&2
  "$venv/bin/python" -c "import gguf, numpy, llama_cpp" >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
