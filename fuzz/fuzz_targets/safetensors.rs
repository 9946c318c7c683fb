//! The safetensors reader on arbitrary bytes: a clear error, or tensors whose data can be read
//! and widened to f32.
#![no_main]

use finetune::safetensors::SafetensorsFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match SafetensorsFile::from_bytes("fuzz.safetensors", data.to_vec()) {
        Ok(f) => {
            for v in f.views() {
                if v.dtype.is_float() && v.numel() <= 1 << 20 {
                    let _ = v.to_f32();
                }
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.chars().any(|c| c.is_control() && c != '\n'), "control character in {msg:?}");
        }
    }
});
