//! Debug tracing of the forward pass's intermediates. With `FINETUNE_TRACE_DIR` set, every
//! named intermediate is written as raw little-endian f32 to `DIR/<name>-<layer>.f32` (names
//! follow llama.cpp's graph: `attn_norm`, `Qcur`, `kqv_out`, `l_out`, …), so a forward pass can
//! be compared tensor by tensor with llama.cpp's eval callback. Each call appends its rows, so a
//! prompt's forward pass and the decoding steps after it line up position by position. Unset, a call costs one load.

use std::path::PathBuf;
use std::sync::OnceLock;

fn dir() -> Option<&'static PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| std::env::var_os("FINETUNE_TRACE_DIR").map(PathBuf::from)).as_ref()
}

/// Record buffer `x` of backend `b` as intermediate `name` of layer `il` (or of the whole
/// model); read back from the backend only when tracing is on.
pub fn trace<B: crate::backend::Backend>(b: &B, name: &str, il: Option<usize>, x: &B::Buf) {
    if dir().is_some() {
        trace_host(name, il, &b.download(x));
    }
}

/// Record host values `data` as intermediate `name` of layer `il` (or of the whole model).
fn trace_host(name: &str, il: Option<usize>, data: &[f32]) {
    let Some(d) = dir() else { return };
    let file = match il {
        Some(i) => d.join(format!("{name}-{i}.f32")),
        None => d.join(format!("{name}.f32")),
    };
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let append = |bytes: &[u8]| -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(d)?;
        std::fs::OpenOptions::new().create(true).append(true).open(&file)?.write_all(bytes)
    };
    if let Err(e) = append(&bytes) {
        eprintln!("warning: FINETUNE_TRACE_DIR: cannot write {}: {e}", file.display());
    }
}
