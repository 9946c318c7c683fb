//! Golden hashes: the engine's observable numbers, recorded on main before the backend-seam
//! refactor (issue 11) and required to stay the same bits afterwards. Regenerate only on
//! purpose, when a change is meant to alter numerics: run with `FINETUNE_GOLDEN_PRINT=1` and
//! paste the printed values (and say why in the commit). Regenerated 2026-12-07: SmolLM2's f32
//! logits, perplexity and adapter, when SwiGLU's exp became the vector one (`ops::vexp`).
//!
//! What is hashed (sha256 over little-endian bytes):
//! - logits of both real models, in both inference numerics (`ggml`, `f32`), with and without
//!   an applied adapter: every row of a 20+-token prompt through the full forward, then six
//!   greedy one-token decoding steps through the KV cache (the batched and one-token kernels);
//! - perplexity (f64 bits) on both models in both numerics, two chunks of 128;
//! - the adapter bytes of short fixed-seed training runs through the CLI (SmolLM2 with dropout
//!   and gradient accumulation, Gemma 3 with its post-norms, q/k norms and sliding window).
mod common;

use common::{bin, gemma, root, smollm, tmpdir};
use finetune::gguf::GgufModel;
use finetune::lora::Target;
use finetune::model::{Model, Numerics};
use finetune::tokenizer::Tokenizer;
use sha2::{Digest, Sha256};

const PROMPT: &str = "The old lighthouse at the end of the harbour had not been lit for thirty years, but the people";

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn check(name: &str, got: &str, want: &str) -> bool {
    if std::env::var_os("FINETUNE_GOLDEN_PRINT").is_some() {
        println!("GOLDEN {name} = \"{got}\"");
    }
    if got != want {
        eprintln!("golden mismatch: {name}: got {got}, want {want}");
        return false;
    }
    true
}

fn argmax(row: &[f32]) -> u32 {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) }).0 as u32
}

/// sha256 of the prompt's logit rows followed by six greedy decoding steps' rows.
fn logits_digest(m: &Model, tok: &Tokenizer) -> String {
    let ids = tok.encode(PROMPT, true, false);
    assert!(ids.len() >= 16, "prompt too short: {}", ids.len());
    let nv = m.cfg.n_vocab;
    let mut h = Sha256::new();
    let mut cache = m.new_cache(ids.len() + 8);
    let hidden = m.forward(&ids, &mut cache).unwrap();
    let logits = m.logits(&hidden);
    logits.iter().for_each(|v| h.update(v.to_le_bytes()));
    let mut next = argmax(&logits[logits.len() - nv..]);
    for _ in 0..6 {
        let hidden = m.forward(&[next], &mut cache).unwrap();
        let row = m.logits(&hidden);
        row.iter().for_each(|v| h.update(v.to_le_bytes()));
        next = argmax(&row);
    }
    hex(h.finalize())
}

fn ppl_bits(m: &Model, tok: &Tokenizer) -> String {
    let text = std::fs::read_to_string(root().join("tests/data/ppl_text.txt")).unwrap();
    let ids = tok.encode(&text, true, false);
    let bos = if tok.add_bos() { tok.bos() } else { None };
    let r = finetune::perplexity::perplexity(m, &ids[..256], 128, bos, |_, _, _| {}).unwrap();
    format!("{:016x} ({:.6})", r.ppl.to_bits(), r.ppl)
}

/// (name, [logits ggml, f32, ggml + adapter, f32 + adapter], [ppl ggml, ppl f32])
type ModelGolden = (&'static str, [&'static str; 4], [&'static str; 2]);

const SMOL: ModelGolden = (
    "smollm2",
    [
        "d347588ffdc28c23353d17e578582db116d3ea8af3f2864be6b072be0394f641",
        "5bd4d606bc338e7f28aa6a6b110781adde47fe99bac8b717879f0fd9811ad76f",
        "5cd68e88f40d894bc806921d5c9a2b6aebaf82a1b609716f89ae85ad7e1648c1",
        "dc9f2c62fbe2b5d096a885dc57589346ffe1ef9977423650daed823b3f870509",
    ],
    ["40337f7e6476354e (19.498022)", "40336bd5dde2c95d (19.421232)"],
);
const GEMMA: ModelGolden = (
    "gemma3",
    [
        "42a7706368741726c0b35e7eb21943138b2ddd8faaecd9e0ae782b4399c33b89",
        "d94dea1eced38580a64b92e3d42350315a641a4c55ca2a81ac16baab3d962fe2",
        "332e63ac49411569f006d36e7687ea8c46e152514297a0b396ec55f0f43ffc9c",
        "4a86f2c9840bcdcbc0713366e9db06cbfd4f7a804ae995bb33d6303ab636aaf1",
    ],
    ["403207d413cd3e9c (18.030580)", "40320985a97d692c (18.037196)"],
);

fn model_goldens(path: &std::path::Path, golden: ModelGolden) -> bool {
    let (name, logits, ppl) = golden;
    let g = GgufModel::open(path).unwrap();
    let tok = Tokenizer::from_gguf(g.main()).unwrap();
    let mut m = Model::load(&g).unwrap();
    let mut ok = true;
    let lora = common::lora::random_lora(&m, &[Target::Q, Target::V, Target::O, Target::Down], 4, 8.0, 0.02, 11);
    for (i, (numerics, adapter)) in
        [(Numerics::Ggml, false), (Numerics::F32, false), (Numerics::Ggml, true), (Numerics::F32, true)].into_iter().enumerate()
    {
        m.numerics = numerics;
        m.adapters = if adapter { vec![(lora.clone(), 0.75)] } else { Vec::new() };
        let label = format!("{name} logits {numerics:?}{}", if adapter { " +adapter" } else { "" });
        ok &= check(&label, &logits_digest(&m, &tok), logits[i]);
    }
    m.adapters.clear();
    for (i, numerics) in [Numerics::Ggml, Numerics::F32].into_iter().enumerate() {
        m.numerics = numerics;
        ok &= check(&format!("{name} ppl {numerics:?}"), &ppl_bits(&m, &tok), ppl[i]);
    }
    ok
}

#[test]
fn inference_is_unchanged_bit_for_bit() {
    let a = model_goldens(&smollm(), SMOL);
    let b = model_goldens(&gemma(), GEMMA);
    assert!(a && b, "inference golden values changed (see stderr)");
}

fn train_digest(model: &std::path::Path, extra: &[&str]) -> String {
    let dir = tmpdir("golden-train");
    let out = dir.join("a.gguf");
    let st = std::process::Command::new(bin())
        .args(["--model", model.to_str().unwrap(), "--data"])
        .arg(root().join("examples/style_degozaru.jsonl"))
        .args(["--out", out.to_str().unwrap(), "--threads", "2", "--quiet", "--seed", "5", "--lr", "1e-3"])
        .args(extra)
        .status()
        .unwrap();
    assert!(st.success(), "training failed");
    hex(Sha256::digest(std::fs::read(&out).unwrap()))
}

#[test]
fn training_is_unchanged_bit_for_bit() {
    let a = check(
        "smollm2 adapter",
        &train_digest(&smollm(), &["--steps", "3", "--grad-accum", "2", "--seq-len", "128", "--dropout", "0.1"]),
        "f25bb233bfab3862ae08880394a294a027e6bdb8eac5320ae7837a7aa34af860",
    );
    let b = check(
        "gemma3 adapter",
        &train_digest(&gemma(), &["--steps", "2", "--grad-accum", "2", "--seq-len", "96", "--rank", "8", "--keep-activations", "0"]),
        "f949105fa93c93ec3780a8c5971cb1c57d9c6c9db4c6d917b8edabf0d0e76678",
    );
    assert!(a && b, "training golden values changed (see stderr)");
}

/// The inference path reaches its kernels only through the backend trait: the checked
/// backend (shapes and finiteness checked, calls counted) around each CPU numerics gives the
/// same logits bits as the model's own CPU path.
#[test]
fn inference_runs_through_the_backend_trait() {
    use finetune::backend::checked::Checked;
    use finetune::backend::cpu::{Cpu, CpuGgml};
    use finetune::backend::Backend;
    fn run<B: Backend<Buf = Vec<f32>>>(b: &B, m: &Model, ids: &[u32]) -> Vec<f32> {
        let mut cache = m.new_cache_on(b, ids.len() + 1);
        let h = m.forward_on(b, &ids[..ids.len() - 1], &mut cache).unwrap();
        let mut out = m.logits_on(b, &h);
        let h = m.forward_on(b, &ids[ids.len() - 1..], &mut cache).unwrap();
        out.extend(m.logits_on(b, &h));
        out
    }
    let g = GgufModel::open(gemma()).unwrap();
    let tok = Tokenizer::from_gguf(g.main()).unwrap();
    let mut m = Model::load(&g).unwrap();
    let lora = common::lora::random_lora(&m, &[Target::Q, Target::Down], 4, 8.0, 0.02, 3);
    m.adapters = vec![(lora, 0.5)];
    let ids = tok.encode(PROMPT, true, false);
    for numerics in [Numerics::Ggml, Numerics::F32] {
        m.numerics = numerics;
        let mut cache = m.new_cache(ids.len() + 1);
        let h = m.forward(&ids[..ids.len() - 1], &mut cache).unwrap();
        let mut want = m.logits(&h);
        let h = m.forward(&ids[ids.len() - 1..], &mut cache).unwrap();
        want.extend(m.logits(&h));
        let (got, calls) = match numerics {
            Numerics::Ggml => {
                let b = Checked::new(CpuGgml::default());
                (run(&b, &m, &ids), b.calls())
            }
            Numerics::F32 => {
                let b = Checked::new(Cpu::default());
                (run(&b, &m, &ids), b.calls())
            }
        };
        assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{numerics:?}: checked backend logits differ");
        for op in ["embed", "matmul", "rms_norm", "rope", "glu", "attention_kv", "lora_down", "lora_up_add", "add", "softcap"] {
            let n = calls.get(op).copied().unwrap_or(0);
            assert!(n > 0 || (op == "softcap" && m.cfg.final_softcap.is_none()), "{numerics:?}: backend op {op} never called: {calls:?}");
        }
    }
}
