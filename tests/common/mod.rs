//! Helpers shared by the integration tests: where the oracles and models are, running the
//! Python oracle, scratch directories and a deterministic RNG. A missing oracle or model is a
//! test failure with the command that fixes it, never a skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cache_dir() -> PathBuf {
    if let Ok(c) = std::env::var("FINETUNE_CACHE") {
        return PathBuf::from(c);
    }
    let base = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache"));
    base.join("finetune")
}

/// The oracle venv's python (FINETUNE_PYTHON overrides).
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("FINETUNE_PYTHON") {
        return PathBuf::from(p);
    }
    let p = cache_dir().join("venv/bin/python");
    assert!(
        p.exists() && cache_dir().join("venv/.oracle-v1").exists(),
        "ORACLE MISSING: {} not set up. Run `bash tests/oracle/setup.sh` (the README's test command does).",
        p.display()
    );
    p
}

/// Run `tests/oracle/oracle.py ARGS…` and parse its JSON stdout; any failure panics with stderr.
pub fn oracle(args: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(root().join("tests/oracle/oracle.py"))
        .args(args)
        .output()
        .expect("run python oracle");
    assert!(
        out.status.success(),
        "oracle {:?} failed ({}):\n{}",
        args,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("oracle {:?} printed non-JSON ({e}):\n{}", args, String::from_utf8_lossy(&out.stdout))
    })
}

pub fn model(name: &str) -> PathBuf {
    let p = root().join("models").join(name);
    assert!(p.exists(), "MODEL MISSING: {} — run `bash models/fetch.sh`", p.display());
    p
}

pub fn smollm() -> PathBuf {
    model("SmolLM2-135M-Instruct.Q4_1.gguf")
}

pub fn gemma() -> PathBuf {
    model("gemma-3-270m-q4_k_m.gguf")
}

/// A fresh scratch directory under target/.
pub fn tmpdir(tag: &str) -> PathBuf {
    let d = root().join("target/test-tmp").join(format!("{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_finetune"))
}

pub fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// SplitMix64: small, deterministic, good enough for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
    pub fn bytes(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.next_u64() as u8;
        }
    }
    /// A finite f16 bit pattern, often an extreme one (max, subnormal, zero, negative).
    pub fn f16_bits(&mut self) -> u16 {
        match self.below(10) {
            0 => 0x7BFF,          // 65504
            1 => 0xFBFF,          // -65504
            2 => 0x0001,          // smallest subnormal
            3 => 0x8000 | (self.below(0x3FF) as u16 + 1), // negative subnormal
            4 => 0x0000,
            _ => loop {
                let b = self.next_u64() as u16;
                if (b >> 10) & 0x1F != 0x1F {
                    break b;
                }
            },
        }
    }
    /// A finite f32 bit pattern across the whole exponent range.
    pub fn f32_bits(&mut self) -> u32 {
        loop {
            let b = self.next_u64() as u32;
            if (b >> 23) & 0xFF != 0xFF {
                break b;
            }
        }
    }
}
