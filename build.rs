//! Build script. `ggml/` holds the project's own CUDA kernel sources; they are compiled only
//! when a CUDA toolchain (`nvcc`) is found. Without one the build is CPU-only and needs no
//! C/C++ toolchain at all.
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=ggml");
    println!("cargo:rustc-check-cfg=cfg(finetune_cuda)");
    let has_kernels = Path::new("ggml")
        .read_dir()
        .map(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "cu")))
        .unwrap_or(false);
    let nvcc = Command::new("nvcc").arg("--version").output().is_ok_and(|o| o.status.success());
    if has_kernels && nvcc {
        // CUDA kernels arrive with the GPU issue; the cfg is what code will gate on.
        println!("cargo:rustc-cfg=finetune_cuda");
    }
}
