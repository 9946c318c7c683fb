#!/usr/bin/env bash
# The project's whole test suite, as CI runs it: install the oracles (gguf, llama-cpp-python,
# CPU torch + transformers + peft; cached outside the clone), fetch the real test models (sha256-checked), then run every test.
# A missing oracle or model fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FINETUNE_PYTHON="$(bash tests/oracle/setup.sh)"
export FINETUNE_PYTHON
bash models/fetch.sh
cargo build --release --benches --bins
cargo test --release -- --test-threads=2
