#!/usr/bin/env bash
# The AArch64 build and its kernel tests under user-mode qemu, as CI runs them (after
# tests/run.sh). Installs what is missing, the way a user would: the Rust target (rustup), the
# cross linker and libc (Debian gcc-aarch64-linux-gnu, libc6-dev-arm64-cross) and qemu-user.
# The linker and runner are set here by environment variables only, so x86 builds are untouched.
#
# Runs, with QEMU_CPU=max (NEON + dotprod + i8mm): tests/simd_arm.rs (every NEON kernel, the
# i8mm ones included, against its scalar reference, bit for bit, and the dispatch check), the
# library's op tests (SIMD vs scalar op kernels), tests/grad_ops.rs (finite-difference
# gradients) and tests/arm_bits.rs (logits of both real models, both numerics, with the bits of
# the x86-64 run just before); then
# tests/simd_arm.rs again with QEMU_CPU=cortex-a76 (dotprod, no i8mm) and QEMU_CPU=cortex-a53
# (no dotprod), so every dispatch path runs;
# tests/matmul_q8_bwd.rs's bit tests (NEON input-backward kernels vs scalar) under max and cortex-a53.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=aarch64-unknown-linux-gnu
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || ! command -v qemu-aarch64 >/dev/null 2>&1; then
  echo "arm: installing gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user (Debian packages)" >&2
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >&2
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
run() { cargo test --release --target "$target" "$@"; }
# The library and the binary must build for AArch64; then the test targets run below.
cargo build --release --target "$target" --lib --bins
run --no-run --lib --test simd_arm --test grad_ops --test arm_bits --test matmul_q8_bwd
bash models/fetch.sh
bits="$PWD/target/arm-bits-x86_64.txt"
FINETUNE_BITS_OUT="$bits" cargo test --release --test arm_bits -- --ignored
echo "arm: QEMU_CPU=max (NEON + dotprod + i8mm)" >&2
QEMU_CPU=max FINETUNE_EXPECT_ISA=neon+i8mm run --test simd_arm -- --test-threads=2
QEMU_CPU=max FINETUNE_EXPECT_ISA=neon+i8mm run --lib ops:: -- --test-threads=2
QEMU_CPU=max run --test grad_ops -- --test-threads=2
QEMU_CPU=max FINETUNE_EXPECT_ISA=neon+dotprod run --test matmul_q8_bwd -- --test-threads=2 every_level scalar_reference
QEMU_CPU=max FINETUNE_BITS_IN="$bits" run --test arm_bits -- --ignored
echo "arm: QEMU_CPU=cortex-a76 (NEON + dotprod, no i8mm)" >&2
QEMU_CPU=cortex-a76 FINETUNE_EXPECT_ISA=neon+dotprod run --test simd_arm -- --test-threads=2
echo "arm: QEMU_CPU=cortex-a53 (NEON without dotprod)" >&2
QEMU_CPU=cortex-a53 FINETUNE_EXPECT_ISA=neon run --test simd_arm -- --test-threads=2
QEMU_CPU=cortex-a53 FINETUNE_EXPECT_ISA=neon run --test matmul_q8_bwd -- --test-threads=2 every_level scalar_reference
