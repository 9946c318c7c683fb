//! The same logits bits on AArch64 (NEON kernels, under qemu) as on x86-64 (AVX2 kernels): both
//! real models, both numerics, a 12-token batch forward and one cached decode step (see below for
//! the one exception). The x86-64
//! run writes a fingerprint of every logit row (`FINETUNE_BITS_OUT`), the AArch64 run compares
//! with it (`FINETUNE_BITS_IN`); `tests/arm.sh` runs both, which is why the test is ignored in
//! the ordinary suite (alone it has nothing to compare with).
//!
//! The exception, outside our kernels: Gemma's f32 numerics use GELU-tanh through the C
//! library's `tanhf`, and glibc's differs between x86-64 and AArch64 (measured: `tanh` of 2·10⁶
//! inputs hashes differently on the two, `exp`, `sin`/`cos` and `powf` identically), so those 13
//! rows are compared to 1e-5 relative on their first logit instead (measured 2.3e-6).
mod common;

use finetune::gguf::GgufModel;
use finetune::model::{Model, Numerics};

/// Per logit row: a 64-bit FNV-1a hash of its bits and its first logit (for the message).
fn rows(logits: &[f32], nv: usize) -> Vec<(u64, f32)> {
    logits
        .chunks_exact(nv)
        .map(|r| {
            let h = r.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, v| (h ^ v.to_bits() as u64).wrapping_mul(0x100_0000_01b3));
            (h, r[0])
        })
        .collect()
}

fn fingerprint() -> String {
    let mut out = String::new();
    for path in [common::smollm(), common::gemma()] {
        for numerics in [Numerics::Ggml, Numerics::F32] {
            let g = GgufModel::open(&path).unwrap();
            let mut m = Model::load(&g).unwrap();
            m.numerics = numerics;
            let nv = m.cfg.n_vocab;
            let toks: Vec<u32> = (0..13u32).map(|i| (i * 7919 + 13) % 20000 + 100).collect();
            let mut c = m.new_cache(32);
            let mut logits = m.logits(&m.forward(&toks[..12], &mut c).unwrap());
            logits.extend(m.logits(&m.forward(&toks[12..], &mut c).unwrap()));
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            for (p, (h, first)) in rows(&logits, nv).into_iter().enumerate() {
                out.push_str(&format!("{name} {numerics:?} pos {p}: {h:016x} first {first:e}\n"));
            }
        }
    }
    out
}

#[test]
#[ignore = "tests/arm.sh runs it: on x86-64 with FINETUNE_BITS_OUT, then under qemu-aarch64 with FINETUNE_BITS_IN"]
fn logits_have_the_same_bits_on_x86_64_and_aarch64() {
    let ours = fingerprint();
    match (std::env::var_os("FINETUNE_BITS_OUT"), std::env::var_os("FINETUNE_BITS_IN")) {
        (Some(out), None) => {
            let out = std::path::PathBuf::from(out);
            let tmp = out.with_extension("tmp");
            std::fs::write(&tmp, &ours).unwrap();
            std::fs::rename(&tmp, &out).unwrap();
            eprintln!(
                "{} ({}): wrote {} rows to {}",
                std::env::consts::ARCH,
                finetune::quant::isa().name(),
                ours.lines().count(),
                out.display()
            );
        }
        (None, Some(inp)) => {
            let theirs = std::fs::read_to_string(&inp).unwrap();
            assert_eq!(theirs.lines().count(), ours.lines().count(), "row counts differ");
            let libm_tanh = |l: &str| l.starts_with("gemma") && l.contains(" F32 ");
            let first = |l: &str| l.rsplit(' ').next().unwrap().parse::<f32>().unwrap();
            for (a, b) in theirs.lines().zip(ours.lines()).filter(|(a, _)| libm_tanh(a)) {
                let (x, y) = (first(a), first(b));
                assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{a} vs {b}");
            }
            let differ: Vec<(&str, &str)> = theirs.lines().zip(ours.lines()).filter(|(a, b)| !libm_tanh(a) && a != b).collect();
            assert_eq!(theirs.lines().filter(|l| !libm_tanh(l)).count(), 39, "exact rows");
            assert!(theirs.lines().count() >= 52, "too few rows");
            assert!(differ.is_empty(), "{} of {} rows differ, first: {:?}", differ.len(), ours.lines().count(), differ.first());
            eprintln!(
                "{} ({}): 39 logit rows with the bits of the file, 13 (Gemma f32, libm tanhf) within 1e-5",
                std::env::consts::ARCH,
                finetune::quant::isa().name()
            );
        }
        _ => panic!("set exactly one of FINETUNE_BITS_OUT (write) and FINETUNE_BITS_IN (compare)"),
    }
}
