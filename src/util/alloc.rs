//! The C allocator's settings for a training process.
//!
//! A training step allocates and frees the same block-sized buffers ([T, n_ff] floats and the
//! like, megabytes each) thousands of times. glibc's malloc serves blocks above its mmap
//! threshold (128 KiB, adapting up to 32 MiB) with fresh `mmap`s and unmaps them on `free`, so
//! every step page-faults them in again and the kernel zeroes each page: 6 % of a SmolLM2 step's
//! CPU time was system time. Raising the mmap and trim thresholds keeps freed buffers in the
//! heap for the next allocation of the same size (peak RSS unchanged: measured 429 MB before and
//! after on `cargo bench --bench train_step`).

/// Blocks below this size come from the heap (older glibc refuse more than 32 MiB on 64-bit,
/// which is then what they get).
const MMAP_THRESHOLD: [i32; 2] = [128 << 20, 32 << 20];
/// Free memory at the top of the heap kept instead of returned to the kernel.
const TRIM_THRESHOLD: i32 = 512 << 20;

/// Keep freed buffers for reuse (glibc only; a no-op elsewhere, and when the user set the
/// allocator's own tunables through `GLIBC_TUNABLES` or `MALLOC_*_` variables).
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = std::env::vars_os().any(|(k, v)| {
            let (k, v) = (k.to_string_lossy(), v.to_string_lossy());
            (k == "GLIBC_TUNABLES" && v.contains("glibc.malloc.")) || (k.starts_with("MALLOC_") && k.ends_with('_'))
        });
        if !user_set {
            // SAFETY: mallopt only changes the allocator's thresholds; called before threads
            // allocate heavily, and glibc serialises it with its own lock anyway.
            unsafe {
                if MMAP_THRESHOLD.iter().any(|&v| libc::mallopt(libc::M_MMAP_THRESHOLD, v) == 1) {
                    libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
                }
            }
        }
    }
}
