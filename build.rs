//! Build script. It sets `cfg(finetune_avx512)` when rustc has the AVX-512 intrinsics (≥ 1.89).
//! Without the `cuda` feature it does nothing else (no C/C++ or CUDA toolchain is
//! needed). With it, every `ggml/*.cu` is compiled to PTX (`compute_80`, which the driver JIT-compiles
//! for the card, Ampere and newer) by `nvcc`, and `$OUT_DIR/ptx.rs` lists them for
//! `include_str!`. nvcc is `$FINETUNE_NVCC`, else the PyPI toolchain that `tests/cuda_ptx.sh`
//! installs in `~/.cache/finetune/cuda-13.0`, else `nvcc` on the PATH.
use std::path::{Path, PathBuf};
use std::process::Command;

fn nvcc() -> Option<(PathBuf, Option<PathBuf>)> {
    let works = |p: &Path| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success());
    if let Some(p) = std::env::var_os("FINETUNE_NVCC").map(PathBuf::from) {
        return works(&p).then(|| (p.clone(), runtime_include(&p)));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = Path::new(&home).join(".cache/finetune/cuda-13.0/nvidia/cu13/bin/nvcc");
        if works(&p) {
            let inc = runtime_include(&p);
            return Some((p, inc));
        }
    }
    let p = PathBuf::from("nvcc");
    works(&p).then_some((p, None))
}

/// The PyPI wheels' headers beside their nvcc (`nvidia/cu13/include`).
fn runtime_include(nvcc: &Path) -> Option<PathBuf> {
    let inc = nvcc.parent()?.parent()?.join("include");
    inc.is_dir().then_some(inc)
}

/// Whether the compiler has the AVX-512 intrinsics and target features (stable since Rust
/// 1.89; the crate's MSRV is older): `cfg(finetune_avx512)` turns on `quant/x86/decode512.rs` and the 12×32 micro-kernel of
/// `ops/matmul.rs`.
fn rustc_has_avx512() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("--version").output() else { return false };
    let v = String::from_utf8_lossy(&out.stdout);
    // "rustc 1.95.0 (…)"
    let mut nums = v.split_whitespace().nth(1).unwrap_or("").split(['.', '-']).map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    (major, minor) >= (1, 89)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-check-cfg=cfg(finetune_avx512)");
    if rustc_has_avx512() {
        println!("cargo:rustc-cfg=finetune_avx512");
    }
    println!("cargo:rerun-if-changed=ggml");
    println!("cargo:rerun-if-env-changed=FINETUNE_NVCC");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let Some((nvcc, include)) = nvcc() else {
        panic!(
            "--features cuda needs nvcc to compile ggml/*.cu to PTX: run `bash tests/cuda_ptx.sh --install` \
             (PyPI's CUDA wheels into ~/.cache/finetune, no GPU needed) or set FINETUNE_NVCC"
        );
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir("ggml")
        .expect("ggml/ (the CUDA kernel sources)")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    files.sort();
    let mut list = String::from("/// Every kernel file's PTX: (file stem, PTX text).\npub const PTX: &[(&str, &str)] = &[\n");
    for cu in &files {
        println!("cargo:rerun-if-changed={}", cu.display());
        let stem = cu.file_stem().and_then(|s| s.to_str()).expect("kernel file name");
        let ptx = out.join(format!("{stem}.ptx"));
        let mut cmd = Command::new(&nvcc);
        cmd.args(["-ptx", "-arch=compute_80", "-std=c++17", "-Iggml", "--Werror", "all-warnings", "-o"]).arg(&ptx).arg(cu);
        if let Some(inc) = &include {
            cmd.arg(format!("-I{}", inc.display()));
        }
        let o = cmd.output().unwrap_or_else(|e| panic!("running {}: {e}", nvcc.display()));
        if !o.status.success() {
            panic!("nvcc failed on {}:\n{}", cu.display(), String::from_utf8_lossy(&o.stderr));
        }
        list.push_str(&format!("    ({stem:?}, include_str!({:?})),\n", ptx.display().to_string()));
    }
    list.push_str("];\n");
    std::fs::write(out.join("ptx.rs"), list).expect("writing ptx.rs");
}
