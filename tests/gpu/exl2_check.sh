#!/usr/bin/env bash
# EXL2 against exllamav2 itself. exllamav2 converts and dequantizes on CUDA only, so CI checks
# our EXL2 decoder against an independent numpy packer (tests/oracle/exl2_ref.py); this script
# is the check a session with a GPU runs, in two steps:
#
#   1. on a machine with network:  bash tests/gpu/exl2_check.sh --fetch
#      downloads exllamav2 0.3.2's sdist and the pure-Python wheels it needs into
#      shared/exl2-wheels/ (carry that folder to the GPU machine);
#   2. on the GPU machine (torch with CUDA and nvcc on the image):  bash tests/gpu/exl2_check.sh
#      builds exllamav2's extension from the sdist (~10 min on 16 cores), re-saves SmolLM2-135M
#      from models/ as an HF directory (transformers' GGUF loader), converts it to EXL2 at
#      4.0 bpw (lm_head 6 bits) with exllamav2's converter, dumps get_weight_tensor_dq() of every
#      linear layer and the logits of a fixed prompt (tests/gpu/exl2_dump.py), then runs the
#      ignored test `exl2_matches_exllamav2_dumps` of tests/hf_quant_ct_exl2.rs on the dumps
#      (bit-exact decode of every layer).
#
# The logits (target/exl2-gpu/dump/logits.npy) are for the forward comparison once the HF
# directory loader runs EXL2 models end to end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
wheels="${EXL2_WHEELS:-shared/exl2-wheels}"
work="${EXL2_WORK:-target/exl2-gpu}"
py="${PYTHON:-python3}"

if [ "${1:-}" = "--fetch" ]; then
  mkdir -p "$wheels"
  "$py" -m pip download --quiet --no-deps --no-binary exllamav2 "exllamav2==0.3.2" -d "$wheels"
  "$py" -m pip download --quiet -d "$wheels" ninja fastparquet pygments websockets rich "numpy<3" pandas \
    "safetensors>=0.4.3" tokenizers "transformers==5.23.0" "gguf==0.19.0" sentencepiece
  echo "exl2_check: wheels in $wheels; carry it to the GPU machine" >&2
  exit 0
fi

"$py" -c "import torch; assert torch.cuda.is_available(), 'exl2_check needs a CUDA GPU'"
mkdir -p "$work"
venv="$work/venv"
if [ ! -f "$venv/.built" ]; then
  # The image's torch (with CUDA) is reused: --system-site-packages, no torch download.
  "$py" -m venv --system-site-packages "$venv"
  "$venv/bin/python" -m pip install --quiet --no-index --find-links "$wheels" ninja fastparquet pygments \
    websockets rich pandas safetensors tokenizers transformers gguf sentencepiece
  MAX_JOBS="$(nproc)" "$venv/bin/python" -m pip install --no-build-isolation --no-deps --no-index \
    --find-links "$wheels" "exllamav2==0.3.2"
  "$venv/bin/python" -c "import exllamav2, exllamav2_ext"
  touch "$venv/.built"
fi

hf="$work/smollm2-hf"
if [ ! -f "$hf/config.json" ]; then
  "$venv/bin/python" - "$hf" <<'EOF'
import sys
from transformers import AutoModelForCausalLM, AutoTokenizer
src = "models"
m = AutoModelForCausalLM.from_pretrained(src, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", dtype="float16")
t = AutoTokenizer.from_pretrained(src, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
m.save_pretrained(sys.argv[1]); t.save_pretrained(sys.argv[1])
EOF
fi

exl2="$work/smollm2-exl2"
if [ ! -f "$exl2/config.json" ]; then
  rm -rf "$work/convert" && mkdir -p "$work/convert"
  "$venv/bin/python" -m exllamav2.conversion.convert_exl2 -i "$hf" -o "$work/convert" -cf "$exl2" \
    -b 4.0 -hb 6 -r 16 -l 512
fi

dump="$work/dump"
mkdir -p "$dump"
echo '[1, 504, 3158, 282, 4649, 314, 1345, 30, 378, 3255, 282, 4649, 314, 216]' > "$dump/tokens.json"
"$venv/bin/python" tests/gpu/exl2_dump.py "$exl2" "$dump"

FINETUNE_EXL2_DUMP="$(pwd)/$dump" FINETUNE_EXL2_DIR="$(pwd)/$exl2" \
  cargo test --release --test hf_quant_ct_exl2 -- --ignored exl2_matches_exllamav2_dumps --nocapture
