//! The GGUF reader on arbitrary bytes: a clear error or a header whose every tensor view is in
//! bounds; every error message printable (no control characters, capped).
#![no_main]

use std::path::Path;

use finetune::gguf::GgufHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match GgufHeader::parse(Path::new("fuzz.gguf"), data) {
        Ok(h) => {
            for (k, v) in &h.metadata {
                let _ = (k.len(), format!("{v:?}").len());
            }
            for t in &h.tensors {
                let _ = (t.n_elements(), t.n_bytes(), t.torch_shape());
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.chars().any(|c| c.is_control() && c != '\n'), "control character in {msg:?}");
            assert!(msg.len() < 4096, "{}-byte message", msg.len());
        }
    }
});
