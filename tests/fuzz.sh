#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz / libFuzzer, nightly toolchain) of the four readers of
# untrusted files: the GGUF reader, the safetensors reader, the training-data reader and the
# chat-template renderer (targets in fuzz/fuzz_targets/). Each runs for a fixed budget
# (FUZZ_SECONDS per target, default 40: 4 × 40 s ≤ 3 minutes) from a corpus seeded at run time
# from the real files: the test models' GGUF headers and chat templates, an adapter GGUF and its
# PEFT safetensors made by the built binary, examples/ and tests/data. A crash, a leak, an
# out-of-memory (> 2 GB RSS) or a slow unit (> 10 s) fails the script; libFuzzer leaves the
# input in fuzz/artifacts/<target>/ — turn it into a regression test in tests/hostile.rs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECS="${FUZZ_SECONDS:-40}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal

corpus=fuzz/corpus
rm -rf "$corpus"
mkdir -p "$corpus"/{gguf,safetensors,data,template}
seeds="$(mktemp -d)"
trap 'rm -rf "$seeds"' EXIT

# GGUF: the first 64 KiB of each real model (header, metadata, start of the vocabulary), a
# small valid adapter GGUF, and its PEFT export (safetensors).
bin=target/release/finetune
[ -x "$bin" ] || cargo build --release --bin finetune
for m in models/*.gguf; do
  head -c 65536 "$m" > "$corpus/gguf/$(basename "$m" .gguf).head"
done
smol=models/SmolLM2-135M-Instruct.Q4_1.gguf
printf '{"text":"The quick brown fox jumps over the lazy dog."}\n' > "$seeds/d.jsonl"
"$bin" --model "$smol" --data "$seeds/d.jsonl" --steps 1 --rank 1 --targets q --seq-len 16 --grad-accum 1 \
  --threads 2 --quiet --out "$seeds/a.gguf"
cp "$seeds/a.gguf" "$corpus/gguf/adapter.gguf"
"$bin" export --peft "$seeds/peft" --model "$smol" --lora "$seeds/a.gguf" >/dev/null
cp "$seeds/peft/adapter_model.safetensors" "$corpus/safetensors/adapter.safetensors"
# Data files.
for f in examples/*.jsonl tests/data/*.txt; do cp "$f" "$corpus/data/"; done
# Templates: the models' own (read with the oracle's gguf package) and the Ollama test ones.
py="${FINETUNE_PYTHON:-$(bash tests/oracle/setup.sh)}"
"$py" - "$corpus/template" models/*.gguf <<'PY'
import sys, gguf
out = sys.argv[1]
for i, path in enumerate(sys.argv[2:]):
    f = gguf.GGUFReader(path).fields.get("tokenizer.chat_template")
    if f is not None:
        open(f"{out}/model{i}.jinja", "wb").write(bytes(f.parts[f.data[0]]))
PY
cp tests/data/ollama/*.jinja "$corpus/template/"

# The fuzz build is cached outside the clone (like the oracles): only this crate is rebuilt.
fuzz_target="${FUZZ_TARGET_DIR:-$HOME/.cache/finetune/fuzz-target}"
for t in gguf safetensors data template; do
  echo "fuzz: $t for ${SECS}s ($(ls "$corpus/$t" | wc -l) seeds)"
  log="$seeds/$t.log"
  st=0
  cargo +nightly fuzz run -O --target-dir "$fuzz_target" "$t" "$corpus/$t" -- \
    -max_total_time="$SECS" -max_len=1048576 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1 || st=$?
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|INFO: seed corpus)' "$log" || true
  if [ "$st" -ne 0 ]; then
    tail -n 60 "$log"
    echo "fuzz: $t FAILED (exit $st; the input is in fuzz/artifacts/$t/)"
    exit 1
  fi
done
echo "fuzz: all targets ran ${SECS}s without a failure"
