//! `finetune bench --train --isa avx2` caps both sides at AVX2, as on an AVX2-only CPU: this
//! engine's kernel table, int8 dots and f32 GEMMs report AVX2 (and the native run the AVX-512
//! levels where this CPU has them, so the check can tell the two apart), and the PyTorch anchor
//! child reports `torch.backends.cpu.get_cpu_capability() == "AVX2"`. x86-64 only (`--isa avx2`
//! is an error elsewhere).
#![cfg(target_arch = "x86_64")]
mod common;

use std::process::Command;

fn bench(extra: &[&str]) -> (bool, String, String) {
    let m = common::smollm();
    let mut args = vec!["bench", "--train", "--model", m.to_str().unwrap(), "-p", "16", "--reps", "1", "--threads", "2"];
    args.extend_from_slice(extra);
    let o = Command::new(common::bin()).args(&args).env_remove("FINETUNE_SIMD").output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn levels(out: &str) -> &str {
    out.lines().find_map(|l| l.strip_prefix("finetune levels: ")).unwrap_or_else(|| panic!("no levels line:\n{out}"))
}

#[test]
fn isa_avx2_reaches_both_sides() {
    let py = common::python();
    let (ok, out, err) = bench(&["--isa", "avx2", "--matmul", "q8", "--peft-python", py.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(levels(&out), "kernels avx2, int8 dots avx2, f32 GEMM avx2", "{out}");
    assert!(out.lines().any(|l| l == "PyTorch CPU capability: AVX2"), "{out}");
    assert!(out.contains("| ratio |"), "{out}");
}

#[test]
fn native_uses_what_the_cpu_has() {
    let (ok, out, err) = bench(&["--matmul", "q8"]);
    assert!(ok, "{err}");
    let vnni = std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vnni");
    // The AVX-512 kernels are compiled where rustc has the intrinsics (build.rs).
    let wide = cfg!(finetune_avx512);
    let want = format!(
        "kernels {}, int8 dots {}, f32 GEMM {}",
        if vnni { "avx2+vnni" } else { "avx2" },
        if vnni && wide { "avx512-vnni" } else { "avx2" },
        if std::arch::is_x86_feature_detected!("avx512f") && wide { "avx512" } else { "avx2" }
    );
    assert_eq!(levels(&out), want, "{out}");
    let (ok, _, err) = bench(&["--isa", "avx512"]);
    assert!(!ok && err.contains("--isa avx512: use native or avx2"), "{err}");
}
