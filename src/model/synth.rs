//! Synthetic models: real architecture metadata and tensor layout, random weights, quantized
//! with our encoders and written with our GGUF writer. Used to test architectures that have no
//! small real checkpoint (qwen2, qwen3) against llama.cpp, to exercise code paths short prompts
//! miss (sliding windows, rope scaling), and for memory/speed work at 7B shapes.

use std::path::Path;

use crate::error::Error;
use crate::gguf::{GgufHeader, GgufWriter, Value};
use crate::quant::{self, GgmlType};
use crate::util::rng::SplitMix64;

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

/// Uniform in [−1, 1), from the top 24 bits.
pub(crate) fn sym(rng: &mut SplitMix64) -> f32 {
    ((rng.next_u64() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
}

/// Write a synthetic model to `path`, copying every `tokenizer.*` key from `tokenizer_from`
/// (so real tokenizers and chat templates come along; n_vocab follows the token list).
pub fn write_synthetic(spec: &SynthSpec, tokenizer_from: &GgufHeader, path: &Path) -> Result<(), Error> {
    let (mut w, n_vocab) = header(spec, tokenizer_from, None)?;
    let mut rng = SplitMix64(spec.seed);
    let mut tensors: Vec<(String, GgmlType, Vec<u64>, Vec<u8>)> = Vec::new();
    let mut add = |name: String, dims: Vec<u64>, ty: GgmlType, scale: f32, offset: f32, rng: &mut SplitMix64| -> Result<(), Error> {
        let n: usize = dims.iter().product::<u64>() as usize;
        let x: Vec<f32> = (0..n).map(|_| offset + scale * sym(rng)).collect();
        let mut b = vec![0u8; n / ty.block_size() * ty.type_size()];
        quant::encode_par(ty, &x, &mut b).map_err(|e| Error::tensor(&name, e))?;
        tensors.push((name, ty, dims, b));
        Ok(())
    };
    for t in layout(spec, n_vocab) {
        let ty = if t.norm_like { GgmlType::F32 } else { spec.weight_type };
        add(t.name, t.dims, ty, t.scale, t.offset, &mut rng)?;
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

/// The metadata of a synthetic model: architecture keys from `spec`, every `tokenizer.*` key
/// of `tokenizer_from`. With `pad_vocab_to`, the token lists are padded with unused
/// `[PADn]` tokens up to that size (as real checkpoints pad their vocabularies). Returns the
/// writer and the vocabulary size.
fn header(spec: &SynthSpec, tokenizer_from: &GgufHeader, pad_vocab_to: Option<usize>) -> Result<(GgufWriter, usize), Error> {
    let a = spec.arch.as_str();
    let n_tok = tokenizer_from
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .map(<[Value]>::len)
        .ok_or_else(|| Error::Usage("tokenizer source has no tokenizer.ggml.tokens".into()))?;
    let n_vocab = pad_vocab_to.unwrap_or(n_tok);
    if n_vocab < n_tok {
        return Err(Error::Usage(format!("cannot pad a vocabulary of {n_tok} tokens to {n_vocab}")));
    }
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
        if !k.starts_with("tokenizer.") {
            continue;
        }
        let padded = match v {
            Value::Array(ty, items) if items.len() == n_tok && n_vocab > n_tok => {
                let extra = (n_tok..n_vocab).map(|i| match ty {
                    crate::gguf::ValueType::String => Value::String(format!("[PAD{i}]")),
                    // Token type 5: unused.
                    crate::gguf::ValueType::I32 => Value::I32(5),
                    crate::gguf::ValueType::F32 => Value::F32(0.0),
                    _ => items[0].clone(),
                });
                Value::Array(*ty, items.iter().cloned().chain(extra).collect())
            }
            other => other.clone(),
        };
        w.set(k.clone(), padded);
    }
    Ok((w, n_vocab))
}

/// One tensor of a synthetic model: values are `offset + scale·U(−1, 1)`.
struct Planned {
    name: String,
    dims: Vec<u64>,
    scale: f32,
    offset: f32,
    /// Norm weights and biases (stored F32).
    norm_like: bool,
    /// Block index, for per-layer type choices.
    layer: Option<usize>,
}

/// Every tensor of `spec`'s model, in file order.
fn layout(spec: &SynthSpec, n_vocab: usize) -> Vec<Planned> {
    let a = spec.arch.as_str();
    let (e, hd, ff) = (spec.n_embd as u64, spec.head_dim as u64, spec.n_ff as u64);
    let (qd, kd) = (spec.n_head as u64 * hd, spec.n_head_kv as u64 * hd);
    // Uniform(−s, s) has std s/√3; s = √3/√n_in keeps activations O(1).
    let s = |n_in: u64| (3.0 / n_in as f32).sqrt();
    let mut v = Vec::new();
    let mut add = |name: String, dims: Vec<u64>, scale: f32, offset: f32, norm_like: bool, layer: Option<usize>| {
        v.push(Planned { name, dims, scale, offset, norm_like, layer });
    };
    add("token_embd.weight".into(), vec![e, n_vocab as u64], 1.0, 0.0, false, None);
    for i in 0..spec.n_layer {
        let n = |x: &str| format!("blk.{i}.{x}");
        let l = Some(i);
        add(n("attn_norm.weight"), vec![e], 0.2, 1.0, true, l);
        add(n("attn_q.weight"), vec![e, qd], s(e), 0.0, false, l);
        add(n("attn_k.weight"), vec![e, kd], s(e), 0.0, false, l);
        add(n("attn_v.weight"), vec![e, kd], s(e), 0.0, false, l);
        if a == "qwen2" {
            add(n("attn_q.bias"), vec![qd], 0.5, 0.0, true, l);
            add(n("attn_k.bias"), vec![kd], 0.5, 0.0, true, l);
            add(n("attn_v.bias"), vec![kd], 0.5, 0.0, true, l);
        }
        if a == "qwen3" || a == "gemma3" {
            add(n("attn_q_norm.weight"), vec![hd], 0.2, 1.0, true, l);
            add(n("attn_k_norm.weight"), vec![hd], 0.2, 1.0, true, l);
        }
        add(n("attn_output.weight"), vec![qd, e], s(qd), 0.0, false, l);
        if a == "gemma3" {
            add(n("post_attention_norm.weight"), vec![e], 0.2, 1.0, true, l);
        }
        add(n("ffn_norm.weight"), vec![e], 0.2, 1.0, true, l);
        add(n("ffn_gate.weight"), vec![e, ff], s(e), 0.0, false, l);
        add(n("ffn_up.weight"), vec![e, ff], s(e), 0.0, false, l);
        add(n("ffn_down.weight"), vec![ff, e], s(ff), 0.0, false, l);
        if a == "gemma3" {
            add(n("post_ffw_norm.weight"), vec![e], 0.2, 1.0, true, l);
        }
    }
    add("output_norm.weight".into(), vec![e], 0.2, 1.0, true, None);
    if spec.untied_output {
        add("output.weight".into(), vec![e, n_vocab as u64], s(e) * 4.0, 0.0, false, None);
    }
    v
}

impl SynthSpec {
    /// Qwen2-7B's shapes: hidden 3584, 28 blocks, 28 query / 4 KV heads of 128, FFN 18944,
    /// q/k/v biases, rope base 1e6, untied output (vocabulary 152064 comes from padding).
    pub fn qwen2_7b() -> SynthSpec {
        SynthSpec {
            arch: "qwen2".into(),
            n_embd: 3584,
            n_layer: 28,
            n_head: 28,
            n_head_kv: 4,
            head_dim: 128,
            n_ff: 18944,
            weight_type: GgmlType::Q4_K,
            rope_base: 1e6,
            rope_linear: None,
            sliding_window: None,
            untied_output: true,
            seed: 7,
        }
    }
}

/// llama.cpp's Q4_K_M choice for a 2-D weight: Q6_K for `output.weight` and for `attn_v` /
/// `ffn_down` of the blocks its `use_more_bits` picks (the first and last eighth, and every
/// third in between), Q4_K for everything else.
pub fn q4_k_m_type(name: &str, layer: Option<usize>, n_layer: usize) -> GgmlType {
    // `i − n_layer/8` is evaluated only when the first test failed, i.e. i ≥ n_layer/8.
    let more_bits = |i: usize| i < n_layer / 8 || i >= 7 * n_layer / 8 || (i - n_layer / 8) % 3 == 2;
    if name == "output.weight" {
        return GgmlType::Q6_K;
    }
    match layer {
        Some(i) if (name.ends_with("attn_v.weight") || name.ends_with("ffn_down.weight")) && more_bits(i) => GgmlType::Q6_K,
        _ => GgmlType::Q4_K,
    }
}

/// Blocks per template pool of [`write_q4_k_m_like`].
const POOL: usize = 1024;

/// Write a Q4_K_M-like synthetic model of `spec`'s shapes (its `weight_type` is ignored; types
/// per [`q4_k_m_type`]) with the vocabulary padded to `n_vocab`, streaming tensor by tensor:
/// at most one tensor's bytes are in memory. Each tensor's blocks are drawn at random from a
/// pool of real encoded blocks of uniform values at that tensor's scale, so values are finite
/// and activations stay O(1) while generation is a memory copy. Returns the file size.
pub fn write_q4_k_m_like(spec: &SynthSpec, n_vocab: usize, tokenizer_from: &GgufHeader, path: &Path) -> Result<u64, Error> {
    let (mut w, n_vocab) = header(spec, tokenizer_from, Some(n_vocab))?;
    w.set("general.file_type", Value::U32(15)); // LLAMA_FTYPE_MOSTLY_Q4_K_M
    let plan = layout(spec, n_vocab);
    let types: Vec<GgmlType> =
        plan.iter().map(|t| if t.norm_like { GgmlType::F32 } else { q4_k_m_type(&t.name, t.layer, spec.n_layer) }).collect();
    for (t, ty) in plan.iter().zip(&types) {
        w.add_tensor(&t.name, *ty, &t.dims).map_err(|e| format!("{}: {e}", t.name))?;
    }
    let mut rng = SplitMix64(spec.seed);
    let mut pools: Vec<((GgmlType, u32), Vec<u8>)> = Vec::new();
    let mut sink = w.create(path).map_err(|e| e.to_string())?;
    for (t, &ty) in plan.iter().zip(&types) {
        let n: usize = t.dims.iter().product::<u64>() as usize;
        let bytes = if ty == GgmlType::F32 {
            (0..n).flat_map(|_| (t.offset + t.scale * sym(&mut rng)).to_le_bytes()).collect()
        } else {
            let key = (ty, t.scale.to_bits());
            if !pools.iter().any(|(k, _)| *k == key) {
                let x: Vec<f32> = (0..POOL * ty.block_size()).map(|_| t.offset + t.scale * sym(&mut rng)).collect();
                let mut b = vec![0u8; POOL * ty.type_size()];
                quant::encode_par(ty, &x, &mut b).map_err(|e| format!("{}: {e}", t.name))?;
                pools.push((key, b));
            }
            let pool = &pools.iter().find(|(k, _)| *k == key).unwrap_or_else(|| unreachable!()).1;
            let ts = ty.type_size();
            let mut out = vec![0u8; n / ty.block_size() * ts];
            for blk in out.chunks_exact_mut(ts) {
                let i = (rng.next_u64() % POOL as u64) as usize;
                blk.copy_from_slice(&pool[i * ts..(i + 1) * ts]);
            }
            out
        };
        sink.write_tensor(&bytes).map_err(|e| e.to_string())?;
    }
    let path = sink.finish().map_err(|e| e.to_string())?;
    std::fs::metadata(&path).map(|m| m.len()).map_err(|e| Error::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_m_types_follow_llama_cpp() {
        // 28 blocks: Q6_K in blocks 0–2, 24–27 and 5, 8, …, 23.
        let six: Vec<usize> = (0..28).filter(|&i| q4_k_m_type("blk.x.attn_v.weight", Some(i), 28) == GgmlType::Q6_K).collect();
        assert_eq!(six, vec![0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27]);
        assert_eq!(q4_k_m_type("blk.5.ffn_down.weight", Some(5), 28), GgmlType::Q6_K);
        assert_eq!(q4_k_m_type("blk.5.attn_q.weight", Some(5), 28), GgmlType::Q4_K);
        assert_eq!(q4_k_m_type("blk.4.ffn_down.weight", Some(4), 28), GgmlType::Q4_K);
        assert_eq!(q4_k_m_type("output.weight", None, 28), GgmlType::Q6_K);
        assert_eq!(q4_k_m_type("token_embd.weight", None, 28), GgmlType::Q4_K);
    }
}
