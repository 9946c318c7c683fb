#!/usr/bin/env bash
# Install the reference implementations (oracles) into a venv kept outside the clone:
#   gguf (ggml's own numpy decoders/encoders), numpy, llama-cpp-python (real llama.cpp, built from source);
#   v2 adds PyTorch (CPU) + transformers + peft for the LoRA training reference (tests/peft.rs);
#   then the openai client for the server test (tests/serve.rs).
# Prints nothing on success but the venv's python path on stdout. Idempotent: reuses the venv when complete.
set -euo pipefail
root="${FINETUNE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/finetune}"
venv="$root/venv"
py=python3
if [ ! -f "$venv/.oracle-v1" ]; then
  echo "oracle: creating $venv (first run builds llama.cpp, ~10 min on 2 cores)" >&2
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet "numpy<3" "gguf==0.19.0" >&2
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON}" \
    "$venv/bin/python" -m pip install --quiet "llama-cpp-python==0.3.36" >&2
  "$venv/bin/python" -c "import gguf, numpy, llama_cpp" >&2
  touch "$venv/.oracle-v1"
fi
if [ ! -f "$venv/.oracle-v2" ]; then
  # PyPI's Linux torch wheel (539 MB) is a CUDA build whose dependencies add ~2.3 GB more of
  # nvidia-*/triton wheels (2.8 GB download, 5.6 GB installed). The oracle runs on CPU only, so
  # torch, accelerate, transformers and peft go in with --no-deps, their pure-Python/CPU
  # dependencies are listed here, and torch_cpu_stubs.py builds stand-ins for the CUDA sonames.
  echo "oracle: adding torch (CPU) + transformers + peft to $venv (~600 MB download)" >&2
  pip() { "$venv/bin/python" -m pip install --quiet "$@" >&2; }
  pip --no-deps "torch==2.15.0" "accelerate==1.15.0" "transformers==5.23.0" "peft==0.21.2"
  pip "filelock" "typing-extensions>=4.13.0" "setuptools>=77.0.3" "sympy>=1.13.3" "networkx>=2.5.1" \
    "jinja2" "fsspec>=0.8.5" "huggingface-hub>=1.31.0,<3.0" "packaging>=20.0" "pyyaml>=5.1" \
    "regex>=2025.10.22" "tokenizers>=0.23.1,<0.24.0" "typer" "safetensors>=0.8.0" "tqdm>=4.60" "psutil"
  "$venv/bin/python" "$(dirname "$0")/torch_cpu_stubs.py"
  "$venv/bin/python" -c "import torch, transformers, peft; assert not torch.cuda.is_available(); \
torch.ones(2, requires_grad=True).sum().backward()" >&2
  touch "$venv/.oracle-v2"
fi
if [ ! -f "$venv/.oracle-openai" ]; then
  # The official OpenAI Python client drives `finetune serve` in tests/serve.rs.
  echo "oracle: adding the openai client to $venv" >&2
  "$venv/bin/python" -m pip install --quiet "openai==3.63.0" >&2
  "$venv/bin/python" -c "import openai" >&2
  touch "$venv/.oracle-openai"
fi
# llama.cpp's own command-line tools, from the llama.cpp source that the llama-cpp-python sdist
# above vendors (same version, same numerics): llama-completion (raw-prompt generation; llama-cli
# is chat-only since late 2025), llama-cli, llama-server and llama-export-lora, for tests/llama_bins.rs.
# CPU only (CMAKE_ARGS as for the venv's build), static, no network at build time (no prebuilt
# web UI, no HTTPS). ~12 min of CPU on 2 cores.
llama_version="0.3.36"
llama_dir="$root/llama.cpp-$llama_version"
if [ ! -f "$llama_dir/.built-v1" ]; then
  echo "oracle: building llama.cpp tools from llama-cpp-python $llama_version's sdist into $llama_dir/bin" >&2
  "$venv/bin/python" -m pip install --quiet --only-binary :all: "cmake==4.4.5" >&2
  work="$(mktemp -d "$root/llama.cpp-build.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  "$venv/bin/python" -m pip download --quiet --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$llama_version" -d "$work" >&2
  tar -xzf "$work/llama_cpp_python-$llama_version.tar.gz" -C "$work"
  src="$work/llama_cpp_python-$llama_version/vendor/llama.cpp"
  "$venv/bin/cmake" -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    ${CMAKE_ARGS:--DGGML_NATIVE=ON} -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
  nice "$venv/bin/cmake" --build "$work/build" --config Release -j "$(nproc)" \
    --target llama-completion llama-cli llama-server llama-export-lora >&2
  mkdir -p "$llama_dir/bin"
  for t in llama-completion llama-cli llama-server llama-export-lora; do
    install -m 755 "$work/build/bin/$t" "$llama_dir/bin/$t"
  done
  "$llama_dir/bin/llama-completion" --version >&2
  rm -rf "$work"
  touch "$llama_dir/.built-v1"
fi
# GPTQModel (the GPTQ / AWQ quantizer and its pure-torch dequantizing kernels) for
# tests/hf_quant_awq_gptq.rs, in a second venv: its requirements would pull CUDA torch wheels
# and newer pins into the main venv. venv-quant reuses the main venv's torch/transformers through
# a .pth file, and GPTQModel plus its pure-Python dependencies go in with --no-deps.
quant="$root/venv-quant"
if [ ! -f "$quant/.quant-v1" ]; then
  echo "oracle: creating $quant (GPTQModel 7.7.0 on the main venv's torch)" >&2
  "$py" -m venv "$quant"
  main_sp="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  quant_sp="$("$quant/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$main_sp" > "$quant_sp/finetune-main-venv.pth"
  "$quant/bin/python" -m pip install --quiet --no-deps "gptqmodel==7.7.0" "Defuser==0.0.28" "Device-SMI==0.5.7" \
    "LogBar==0.4.15" "PyPcre==0.6.4" "TokeNicer==0.0.14" "threadpoolctl==3.8.0" "torchao==0.18.0" \
    "protobuf==7.36.2" "pillow==13.0.0" >&2
  GPTQMODEL_CPU_WORKERS=2 "$quant/bin/python" -c "import gptqmodel, torch; assert not torch.cuda.is_available()" >&2
  touch "$quant/.quant-v1"
fi
# PEFT wraps GPTQModel's quantized linears in its own GPTQ / AWQ LoRA layers only when optimum is
# installed (peft.import_utils checks its version, nothing more): tests/hf_quant_e2e.rs.
if [ ! -f "$quant/.quant-peft-v1" ]; then
  "$quant/bin/python" -m pip install --quiet --no-deps "optimum==2.3.0" >&2
  touch "$quant/.quant-peft-v1"
fi
if ! command -v go >/dev/null 2>&1; then
  # Go's standard text/template renders Ollama Modelfile templates in tests/ollama.rs.
  echo "oracle: installing golang-go (Debian package) for the Ollama template oracle" >&2
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y golang-go >&2
fi
# compressed-tensors `pack-quantized` fixtures (tests/hf_quant_ct_exl2.rs): llm-compressor pins
# torch<=2.14 and transformers<=5.17, which the main venv must not change, so it lives in its own
# venv ($root/venv-ct) that sees the main venv's torch through a .pth file and installs
# llm-compressor, compressed-tensors, auto-round and transformers 5.17 with --no-deps (~60 MB).
ct_venv="$root/venv-ct"
if [ ! -f "$ct_venv/.oracle-ct-v1" ]; then
  echo "oracle: creating $ct_venv (llm-compressor 0.14.0.1 + compressed-tensors 0.19.0, torch shared)" >&2
  "$py" -m venv "$ct_venv"
  site="$("$venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')"
  ct_site="$("$ct_venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')"
  echo "$site" > "$ct_site/finetune-main-venv.pth"
  ctpip() { "$ct_venv/bin/python" -m pip install --quiet "$@" >&2; }
  ctpip "datasets==5.2.0" "loguru==0.7.3" "pydantic>=2.0" "nvidia-ml-py==13.615.71" "pillow==13.0.0" \
    "httpx==0.29.0" "huggingface-hub==1.33.0" "numpy<3"
  ctpip --no-deps "llmcompressor==0.14.0.1" "compressed-tensors==0.19.0" "transformers==5.17.0" "auto-round==0.15.1"
  "$ct_venv/bin/python" -c "import llmcompressor, compressed_tensors, torch, transformers; \
assert transformers.__version__ == '5.17.0'" >&2
  touch "$ct_venv/.oracle-ct-v1"
fi
# (The SmolLM2 compressed-tensors fixture, make_ct.py --smollm2, needs models/ fetched after this
# script, so tests/hf_quant_e2e.rs makes it in this venv on first use, cached in hf-quant/ct-smollm2.)
ct_fixtures="$root/hf-quant/ct"
if [ ! -f "$ct_fixtures/.built-v2" ]; then
  echo "oracle: quantizing the compressed-tensors fixtures into $ct_fixtures (~1 min)" >&2
  HF_HUB_OFFLINE=1 nice "$ct_venv/bin/python" "$(dirname "$0")/make_ct.py" "$ct_fixtures" >&2
  touch "$ct_fixtures/.built-v2"
fi
echo "$venv/bin/python"
