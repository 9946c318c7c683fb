//! The training-data reader on arbitrary bytes (JSON Lines or a JSON array, any record format):
//! records or a clear error naming the file and line; messages printable.
#![no_main]

use std::path::Path;

use finetune::train::data::{records_from_bytes, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for skip in [false, true] {
        match records_from_bytes(Path::new("fuzz.jsonl"), data, Format::Auto, skip) {
            Ok(set) => {
                for e in &set.skipped {
                    let msg = e.to_string();
                    assert!(msg.starts_with("fuzz.jsonl:"), "{msg}");
                    assert!(!msg.chars().any(|c| c.is_control() && c != '\n'), "control character in {msg:?}");
                }
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.starts_with("fuzz.jsonl"), "{msg}");
                assert!(!msg.chars().any(|c| c.is_control() && c != '\n'), "control character in {msg:?}");
            }
        }
    }
});
