//! The streaming Q4_K_M-like generator behind the 7B training benchmark, at a small scale: the
//! tensor types follow llama.cpp's Q4_K_M rule, the vocabulary is padded with unused tokens,
//! llama.cpp loads the file and its logits equal ours, and a training step on it is finite.
mod common;

use common::{oracle, read_f32, tmpdir};
use finetune::gguf::{GgufFile, GgufModel, Value};
use finetune::lora::Target;
use finetune::model::synth::{q4_k_m_type, write_q4_k_m_like, SynthSpec};
use finetune::model::Model;
use finetune::quant::GgmlType;
use finetune::train::block::{SeqView, Trainable};
use finetune::train::trainer::init_lora;

#[test]
fn small_q4_k_m_like_file_loads_here_and_in_llama_cpp() {
    let dir = tmpdir("synth-q4km");
    let path = dir.join("model.gguf");
    let spec = SynthSpec { n_embd: 256, n_layer: 8, n_head: 4, n_head_kv: 2, head_dim: 64, n_ff: 512, ..SynthSpec::qwen2_7b() };
    let tok = GgufFile::open(common::smollm()).unwrap();
    let n_vocab = 50_000;
    let size = write_q4_k_m_like(&spec, n_vocab, &tok, &path).unwrap();
    assert_eq!(size, std::fs::metadata(&path).unwrap().len());

    let f = GgufFile::open(&path).unwrap();
    let toks = f.get("tokenizer.ggml.tokens").and_then(Value::as_array).unwrap();
    assert_eq!(toks.len(), n_vocab);
    assert_eq!(toks[n_vocab - 1], Value::String(format!("[PAD{}]", n_vocab - 1)));
    let (mut q4, mut q6) = (0, 0);
    for t in &f.tensors {
        let layer = t.name.strip_prefix("blk.").and_then(|r| r.split('.').next()).and_then(|i| i.parse().ok());
        let want = if t.dims.len() == 1 { GgmlType::F32 } else { q4_k_m_type(&t.name, layer, spec.n_layer) };
        assert_eq!(t.ty, want, "{}", t.name);
        q4 += usize::from(t.ty == GgmlType::Q4_K);
        q6 += usize::from(t.ty == GgmlType::Q6_K);
    }
    // 8 blocks: attn_v and ffn_down in Q6_K for blocks 0, 3, 6, 7, plus the output.
    assert_eq!(q6, 2 * 4 + 1);
    assert_eq!(q4, 1 + 8 * 5 + 2 * 4);

    let ids: Vec<u32> = (0..24u32).map(|i| (i * 7919 + 101) % 49152).collect();
    let idj = dir.join("ids.json");
    std::fs::write(&idj, serde_json::to_string(&ids).unwrap()).unwrap();
    let out = dir.join("logits.f32");
    oracle(&["llama-logits-ids", path.to_str().unwrap(), idj.to_str().unwrap(), out.to_str().unwrap()]);
    let theirs = read_f32(&out);
    let g = GgufModel::open(&path).unwrap();
    let m = Model::load(&g).unwrap();
    assert_eq!(m.cfg.n_vocab, n_vocab);
    let mut c = m.new_cache(32);
    let ours = m.logits(&m.forward(&ids, &mut c).unwrap());
    assert_eq!(ours.len(), theirs.len());
    let scale = theirs.iter().fold(0f32, |a, &b| a.max(b.abs()));
    let max_d = ours.iter().zip(&theirs).fold(0f32, |a, (x, y)| a.max((x - y).abs()));
    eprintln!("max |Δ logit| {max_d:.4} (max |logit| {scale:.2})");
    assert!(scale > 0.1 && max_d < 0.05 * scale, "logits differ from llama.cpp by {max_d} (scale {scale})");

    // A training step on it: finite loss and gradients.
    let lora = init_lora(&m, &Target::ALL, 4, 8.0, 1);
    let mut grads = lora.zeros_like();
    let labels: Vec<i32> = ids[1..].iter().map(|&i| i as i32).chain([-1]).collect();
    let positions: Vec<u32> = (0..ids.len() as u32).collect();
    let seq = SeqView { tokens: &ids, labels: &labels, positions: &positions, segments: None };
    let (loss, n) = Trainable::new(&m).forward_backward(&lora, Some(&mut grads), &seq, 1.0).unwrap();
    assert_eq!(n, ids.len() - 1);
    let gn = finetune::train::optim::global_norm(&finetune::backend::cpu::Cpu::default(), &grads);
    assert!(loss.is_finite() && gn.is_finite() && gn > 0.0, "loss {loss}, grad norm {gn}");
}
