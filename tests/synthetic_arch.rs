//! Every supported architecture against llama.cpp on synthetic models (real metadata layout,
//! random weights written by our writer and encoders): qwen2 (biases), qwen3 (q/k norms),
//! gemma3 with a sliding window of 8 over 40 tokens (local and global layers), llama with
//! linear rope scaling and an untied output. Logits at every position are compared.
mod common;

use common::{oracle, read_f32, tmpdir};
use finetune::gguf::{GgufFile, GgufModel};
use finetune::model::synth::{write_synthetic, SynthSpec};
use finetune::model::Model;
use finetune::quant::GgmlType;

fn spec(arch: &str) -> SynthSpec {
    SynthSpec {
        arch: arch.into(),
        n_embd: 256,
        n_layer: 6,
        n_head: 4,
        n_head_kv: 2,
        head_dim: 64,
        n_ff: 512,
        weight_type: GgmlType::Q8_0,
        rope_base: 10_000.0,
        rope_linear: None,
        sliding_window: None,
        untied_output: false,
        seed: 7,
    }
}

fn check(s: SynthSpec) {
    let dir = tmpdir(&format!("synth-{}", s.arch));
    let path = dir.join("model.gguf");
    let tok = GgufFile::open(common::smollm()).unwrap();
    write_synthetic(&s, &tok, &path).unwrap();
    let ids: Vec<u32> = (0..40u32).map(|i| (i * 7919 + 101) % 49152).collect();
    let idj = dir.join("ids.json");
    std::fs::write(&idj, serde_json::to_string(&ids).unwrap()).unwrap();
    let out = dir.join("logits.f32");
    oracle(&["llama-logits-ids", path.to_str().unwrap(), idj.to_str().unwrap(), out.to_str().unwrap()]);
    let theirs = read_f32(&out);
    let g = GgufModel::open(&path).unwrap();
    let m = Model::load(&g).unwrap();
    let mut c = m.new_cache(64);
    let ours = m.logits(&m.forward(&ids, &mut c).unwrap());
    assert_eq!(ours.len(), theirs.len());
    let nv = m.cfg.n_vocab;
    let (mut max_d, mut scale, mut same) = (0f32, 0f32, 0);
    for p in 0..ids.len() {
        let (a, b) = (&ours[p * nv..(p + 1) * nv], &theirs[p * nv..(p + 1) * nv]);
        let am = |r: &[f32]| r.iter().enumerate().fold((0, f32::MIN), |x, (i, &v)| if v > x.1 { (i, v) } else { x }).0;
        same += (am(a) == am(b)) as usize;
        for j in 0..nv {
            max_d = max_d.max((a[j] - b[j]).abs());
            scale = scale.max(b[j].abs());
        }
    }
    eprintln!("{}: max |Δ logit| {max_d:.4} (max |logit| {scale:.2}), argmax same {same}/{}", s.arch, ids.len());
    assert!(max_d < 0.05 * scale, "{}: logits differ from llama.cpp by {max_d} (scale {scale})", s.arch);
    assert!(same * 10 >= ids.len() * 9, "{}: argmax agreement {same}/{}", s.arch, ids.len());
}

#[test]
fn qwen2_matches_llama_cpp() {
    check(spec("qwen2"));
}

#[test]
fn qwen3_matches_llama_cpp() {
    check(spec("qwen3"));
}

#[test]
fn gemma3_sliding_window_matches_llama_cpp() {
    check(SynthSpec { sliding_window: Some(8), head_dim: 128, ..spec("gemma3") });
}

#[test]
fn llama_linear_rope_untied_matches_llama_cpp() {
    check(SynthSpec { rope_linear: Some(4.0), untied_output: true, weight_type: GgmlType::Q4_K, ..spec("llama") });
}
