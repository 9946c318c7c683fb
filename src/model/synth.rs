//! Synthetic models: real architecture metadata and tensor layout, random weights, quantized
//! with our encoders and written with our GGUF writer. Used to test architectures that have no
//! small real checkpoint (qwen2, qwen3) against llama.cpp, to exercise code paths short prompts
//! miss (sliding windows, rope scaling), and for memory/speed work at 7B shapes.

use std::path::Path;

use crate::gguf::{GgufHeader, GgufWriter, Value};
use crate::quant::{self, GgmlType};

/// Shape and options of a synthetic model.
#[derive(Clone, Debug)]
pub struct SynthSpec {
    /// `general.architecture` (llama, qwen2, qwen3, gemma3).
    pub arch: String,
    /// Hidden size.
    pub n_embd: usize,
    /// Blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// KV heads.
    pub n_head_kv: usize,
    /// Head width.
    pub head_dim: usize,
    /// FFN width.
    pub n_ff: usize,
    /// Type of the 2-D weights (norms and biases are F32).
    pub weight_type: GgmlType,
    /// Rope base.
    pub rope_base: f32,
    /// Linear rope scaling factor (None: no scaling keys).
    pub rope_linear: Option<f32>,
    /// Sliding window (gemma3).
    pub sliding_window: Option<usize>,
    /// Write a separate `output.weight` instead of tying to the embeddings.
    pub untied_output: bool,
    /// RNG seed.
    pub seed: u64,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [−1, 1).
    fn sym(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
}

/// Write a synthetic model to `path`, copying every `tokenizer.*` key from `tokenizer_from`
/// (so real tokenizers and chat templates come along; n_vocab follows the token list).
pub fn write_synthetic(spec: &SynthSpec, tokenizer_from: &GgufHeader, path: &Path) -> Result<(), String> {
    let a = spec.arch.as_str();
    let n_vocab = tokenizer_from
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .map(<[Value]>::len)
        .ok_or("tokenizer source has no tokenizer.ggml.tokens")?;
    let mut w = GgufWriter::new();
    let u = |x: usize| Value::U32(x as u32);
    w.set("general.architecture", Value::String(a.into()));
    w.set("general.name", Value::String(format!("synthetic {a}")));
    w.set("general.type", Value::String("model".into()));
    w.set(format!("{a}.context_length"), u(4096));
    w.set(format!("{a}.embedding_length"), u(spec.n_embd));
    w.set(format!("{a}.block_count"), u(spec.n_layer));
    w.set(format!("{a}.feed_forward_length"), u(spec.n_ff));
    w.set(format!("{a}.attention.head_count"), u(spec.n_head));
    w.set(format!("{a}.attention.head_count_kv"), u(spec.n_head_kv));
    w.set(format!("{a}.attention.key_length"), u(spec.head_dim));
    w.set(format!("{a}.attention.value_length"), u(spec.head_dim));
    w.set(format!("{a}.rope.dimension_count"), u(spec.head_dim));
    w.set(format!("{a}.rope.freq_base"), Value::F32(spec.rope_base));
    w.set(format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(1e-6));
    if let Some(f) = spec.rope_linear {
        w.set(format!("{a}.rope.scaling.type"), Value::String("linear".into()));
        w.set(format!("{a}.rope.scaling.factor"), Value::F32(f));
    }
    if let Some(win) = spec.sliding_window {
        w.set(format!("{a}.attention.sliding_window"), u(win));
    }
    for (k, v) in &tokenizer_from.metadata {
        if k.starts_with("tokenizer.") {
            w.set(k.clone(), v.clone());
        }
    }
    let mut rng = Rng(spec.seed);
    let mut tensors: Vec<(String, GgmlType, Vec<u64>, Vec<u8>)> = Vec::new();
    let mut add = |name: String, dims: Vec<u64>, ty: GgmlType, scale: f32, offset: f32, rng: &mut Rng| -> Result<(), String> {
        let n: usize = dims.iter().product::<u64>() as usize;
        let x: Vec<f32> = (0..n).map(|_| offset + scale * rng.sym()).collect();
        let mut b = vec![0u8; n / ty.block_size() * ty.type_size()];
        quant::encode_par(ty, &x, &mut b).map_err(|e| format!("{name}: {e}"))?;
        tensors.push((name, ty, dims, b));
        Ok(())
    };
    let (e, hd, ff) = (spec.n_embd as u64, spec.head_dim as u64, spec.n_ff as u64);
    let (qd, kd) = (spec.n_head as u64 * hd, spec.n_head_kv as u64 * hd);
    let wt = spec.weight_type;
    let f32t = GgmlType::F32;
    // Uniform(−s, s) has std s/√3; s = √3/√n_in keeps activations O(1).
    let s = |n_in: u64| (3.0 / n_in as f32).sqrt();
    add("token_embd.weight".into(), vec![e, n_vocab as u64], wt, 1.0, 0.0, &mut rng)?;
    for i in 0..spec.n_layer {
        let n = |x: &str| format!("blk.{i}.{x}");
        add(n("attn_norm.weight"), vec![e], f32t, 0.2, 1.0, &mut rng)?;
        add(n("attn_q.weight"), vec![e, qd], wt, s(e), 0.0, &mut rng)?;
        add(n("attn_k.weight"), vec![e, kd], wt, s(e), 0.0, &mut rng)?;
        add(n("attn_v.weight"), vec![e, kd], wt, s(e), 0.0, &mut rng)?;
        if a == "qwen2" {
            add(n("attn_q.bias"), vec![qd], f32t, 0.5, 0.0, &mut rng)?;
            add(n("attn_k.bias"), vec![kd], f32t, 0.5, 0.0, &mut rng)?;
            add(n("attn_v.bias"), vec![kd], f32t, 0.5, 0.0, &mut rng)?;
        }
        if a == "qwen3" || a == "gemma3" {
            add(n("attn_q_norm.weight"), vec![hd], f32t, 0.2, 1.0, &mut rng)?;
            add(n("attn_k_norm.weight"), vec![hd], f32t, 0.2, 1.0, &mut rng)?;
        }
        add(n("attn_output.weight"), vec![qd, e], wt, s(qd), 0.0, &mut rng)?;
        if a == "gemma3" {
            add(n("post_attention_norm.weight"), vec![e], f32t, 0.2, 1.0, &mut rng)?;
        }
        add(n("ffn_norm.weight"), vec![e], f32t, 0.2, 1.0, &mut rng)?;
        add(n("ffn_gate.weight"), vec![e, ff], wt, s(e), 0.0, &mut rng)?;
        add(n("ffn_up.weight"), vec![e, ff], wt, s(e), 0.0, &mut rng)?;
        add(n("ffn_down.weight"), vec![ff, e], wt, s(ff), 0.0, &mut rng)?;
        if a == "gemma3" {
            add(n("post_ffw_norm.weight"), vec![e], f32t, 0.2, 1.0, &mut rng)?;
        }
    }
    add("output_norm.weight".into(), vec![e], f32t, 0.2, 1.0, &mut rng)?;
    if spec.untied_output {
        add("output.weight".into(), vec![e, n_vocab as u64], wt, s(e) * 4.0, 0.0, &mut rng)?;
    }
    for (name, ty, dims, _) in &tensors {
        w.add_tensor(name, *ty, dims).map_err(|e| e.to_string())?;
    }
    let mut sink = w.create(path).map_err(|e| e.to_string())?;
    for (_, _, _, b) in &tensors {
        sink.write_tensor(b).map_err(|e| e.to_string())?;
    }
    sink.finish().map_err(|e| e.to_string())?;
    Ok(())
}
