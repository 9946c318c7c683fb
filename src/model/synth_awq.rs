//! Synthetic AWQ-GEMM model directories: a [`SynthSpec`]'s shapes written as a Hugging Face
//! directory the way AutoAWQ / GPTQModel save one (4-bit, group `group`, zero points, the
//! interleaved nibble order; embeddings, `lm_head`, norms and biases in f16), random but sane
//! values, streamed tensor by tensor (at most 1 MiB of data in memory), for memory and speed
//! work at 7B shapes. Layout facts: `crate::weights::awq`.

use std::path::{Path, PathBuf};

use half::f16;
use serde_json::json;

use super::synth::{sym, SynthSpec};
use crate::error::{Error, Result};
use crate::safetensors::{Dtype, SafetensorsPlan, SafetensorsStream};
use crate::util::rng::SplitMix64;

/// How the values of one tensor are drawn.
#[derive(Clone, Copy, Debug)]
enum Fill {
    /// f16 `offset + scale·U(−1, 1)`.
    Float { scale: f32, offset: f32 },
    /// Random 32-bit words: eight uniform 4-bit codes each.
    Codes,
    /// Zero points: each nibble 6..=9 (weights stay centred).
    Zeros,
    /// f16 group scales: `base·U(0.75, 1.25)`.
    Scales { base: f32 },
}

/// Write an AWQ-GEMM directory of `spec`'s shapes (its `weight_type` is ignored) with a
/// vocabulary of `n_vocab` into the new folder `dir`: `config.json` (with the
/// `quantization_config` AutoAWQ writes), `model.safetensors` and, from `tokenizer_from` (a
/// Hugging Face directory), `tokenizer.json` and `tokenizer_config.json`. Everything is written
/// in a temporary folder beside `dir` that is renamed into place at the end; an existing `dir`
/// is an error. Returns the size of `model.safetensors`.
pub fn write_awq_like(spec: &SynthSpec, n_vocab: usize, group: usize, tokenizer_from: Option<&Path>, dir: &Path) -> Result<u64> {
    if dir.exists() {
        return Err(Error::usage(format!("{}: already exists; not overwritten", dir.display())));
    }
    let tmp = crate::util::outpath::tmp_path(dir);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let res = write_into(spec, n_vocab, group, tokenizer_from, &tmp);
    let res = res.and_then(|n| crate::util::outpath::commit(&tmp, dir).map(|_| n).map_err(|e| Error::io(dir, e)));
    if res.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    res
}

fn write_into(spec: &SynthSpec, n_vocab: usize, group: usize, tokenizer_from: Option<&Path>, dir: &Path) -> Result<u64> {
    let plan = layout(spec, n_vocab, group)?;
    let mut st = SafetensorsPlan::new();
    st.set_metadata("format", "pt");
    for (name, dtype, shape, _) in &plan {
        st.add(name, *dtype, shape)?;
    }
    let path = dir.join("model.safetensors");
    let mut s = st.create(&path)?;
    let mut rng = SplitMix64(spec.seed);
    let mut buf = Vec::with_capacity(1 << 20);
    for (_, dtype, shape, fill) in &plan {
        let n: usize = shape.iter().product::<usize>() * dtype.size();
        stream(&mut s, &mut buf, n, *fill, &mut rng)?;
    }
    s.finish()?;
    let config = config_json(spec, n_vocab, group);
    let text = serde_json::to_string_pretty(&config).map_err(|e| Error::format(dir, e.to_string()))?;
    std::fs::write(dir.join("config.json"), text).map_err(|e| Error::io(dir.join("config.json"), e))?;
    if let Some(src) = tokenizer_from {
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            let from = src.join(f);
            std::fs::copy(&from, dir.join(f)).map_err(|e| Error::io(&from, e))?;
        }
    }
    std::fs::metadata(&path).map(|m| m.len()).map_err(|e| Error::io(&path, e))
}

/// `n` bytes of `fill` into the stream, 1 MiB at a time.
fn stream(s: &mut SafetensorsStream, buf: &mut Vec<u8>, mut n: usize, fill: Fill, rng: &mut SplitMix64) -> Result<()> {
    while n > 0 {
        let m = n.min(1 << 20);
        buf.clear();
        match fill {
            Fill::Float { scale, offset } => {
                buf.extend((0..m / 2).flat_map(|_| f16::from_f32(offset + scale * sym(rng)).to_le_bytes()));
            }
            Fill::Codes => buf.extend((0..m / 4).flat_map(|_| (rng.next_u64() as u32).to_le_bytes())),
            Fill::Zeros => buf.extend((0..m / 4).flat_map(|_| {
                let r = rng.next_u64();
                (0..8).fold(0u32, |w, i| w | (6 + ((r >> (2 * i)) & 3) as u32) << (4 * i)).to_le_bytes()
            })),
            Fill::Scales { base } => buf.extend((0..m / 2).flat_map(|_| f16::from_f32(base * (1.0 + 0.25 * sym(rng))).to_le_bytes())),
        }
        s.write(buf)?;
        n -= m;
    }
    Ok(())
}

/// One tensor: HF name, dtype, shape, values.
type Planned = (String, Dtype, Vec<usize>, Fill);

/// Every tensor in file order.
fn layout(spec: &SynthSpec, n_vocab: usize, group: usize) -> Result<Vec<Planned>> {
    let a = spec.arch.as_str();
    if !["llama", "qwen2", "qwen3"].contains(&a) {
        return Err(Error::usage(format!("synthetic AWQ directories are written for llama, qwen2 and qwen3, not {a}")));
    }
    let (e, ff) = (spec.n_embd, spec.n_ff);
    let (qd, kd) = (spec.n_head * spec.head_dim, spec.n_head_kv * spec.head_dim);
    for (what, n) in [("hidden size", e), ("FFN width", ff), ("attention width", qd)] {
        if group == 0 || n % group != 0 || n % 8 != 0 {
            return Err(Error::usage(format!("{what} {n} is not a multiple of 8 and of the group size {group}")));
        }
    }
    let f = |scale: f32, offset: f32| Fill::Float { scale, offset };
    let norm = f(0.2, 1.0);
    let mut v = vec![("model.embed_tokens.weight".to_string(), Dtype::F16, vec![n_vocab, e], f(1.0, 0.0))];
    for i in 0..spec.n_layer {
        let p = |x: &str| format!("model.layers.{i}.{x}");
        v.push((p("input_layernorm.weight"), Dtype::F16, vec![e], norm));
        let mut linear = |m: &str, n_in: usize, n_out: usize, bias: bool| {
            // (q − z) with q uniform in 0..16 and z ≈ 7.5 has std ≈ 4.6: weights of std 1/√n_in.
            let base = 1.0 / (4.6 * (n_in as f32).sqrt());
            v.push((p(&format!("{m}.qweight")), Dtype::I32, vec![n_in, n_out / 8], Fill::Codes));
            v.push((p(&format!("{m}.qzeros")), Dtype::I32, vec![n_in / group, n_out / 8], Fill::Zeros));
            v.push((p(&format!("{m}.scales")), Dtype::F16, vec![n_in / group, n_out], Fill::Scales { base }));
            if bias {
                v.push((p(&format!("{m}.bias")), Dtype::F16, vec![n_out], f(0.5, 0.0)));
            }
        };
        let qb = a == "qwen2";
        linear("self_attn.q_proj", e, qd, qb);
        linear("self_attn.k_proj", e, kd, qb);
        linear("self_attn.v_proj", e, kd, qb);
        linear("self_attn.o_proj", qd, e, false);
        linear("mlp.gate_proj", e, ff, false);
        linear("mlp.up_proj", e, ff, false);
        linear("mlp.down_proj", ff, e, false);
        if a == "qwen3" {
            v.push((p("self_attn.q_norm.weight"), Dtype::F16, vec![spec.head_dim], norm));
            v.push((p("self_attn.k_norm.weight"), Dtype::F16, vec![spec.head_dim], norm));
        }
        v.push((p("post_attention_layernorm.weight"), Dtype::F16, vec![e], norm));
    }
    v.push(("model.norm.weight".into(), Dtype::F16, vec![e], norm));
    if spec.untied_output {
        v.push(("lm_head.weight".into(), Dtype::F16, vec![n_vocab, e], f(4.0 * (3.0 / e as f32).sqrt(), 0.0)));
    }
    Ok(v)
}

/// `config.json` as transformers writes it for such a model, with AutoAWQ's
/// `quantization_config`.
fn config_json(spec: &SynthSpec, n_vocab: usize, group: usize) -> serde_json::Value {
    let (archs, ty) = match spec.arch.as_str() {
        "qwen2" => ("Qwen2ForCausalLM", "qwen2"),
        "qwen3" => ("Qwen3ForCausalLM", "qwen3"),
        _ => ("LlamaForCausalLM", "llama"),
    };
    let mut c = json!({
        "architectures": [archs],
        "model_type": ty,
        "hidden_size": spec.n_embd,
        "intermediate_size": spec.n_ff,
        "num_hidden_layers": spec.n_layer,
        "num_attention_heads": spec.n_head,
        "num_key_value_heads": spec.n_head_kv,
        "head_dim": spec.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": spec.rope_base,
        "tie_word_embeddings": !spec.untied_output,
        "torch_dtype": "float16",
        "use_sliding_window": false,
        "vocab_size": n_vocab,
        "quantization_config": {
            "bits": 4,
            "group_size": group,
            "modules_to_not_convert": null,
            "quant_method": "awq",
            "version": "gemm",
            "zero_point": true
        }
    });
    if let Some(f) = spec.rope_linear {
        c["rope_scaling"] = json!({"type": "linear", "factor": f});
    }
    c
}

/// Where the benchmark caches the Qwen2-7B-shaped AWQ directory under `cache`.
pub fn qwen2_7b_awq_dir(cache: &Path) -> PathBuf {
    cache.join("qwen2-7b-shape-awq")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::quant::GgmlType;
    use crate::weights::hf::HfModel;
    use crate::weights::WeightFormat;

    fn tiny() -> SynthSpec {
        SynthSpec {
            arch: "qwen2".into(),
            n_embd: 64,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 16,
            n_ff: 128,
            weight_type: GgmlType::Q4_K,
            rope_base: 1e6,
            rope_linear: None,
            sliding_window: None,
            untied_output: true,
            seed: 3,
        }
    }

    /// The AWQ formula read straight from the written words (independent of `awq.rs`).
    fn awq_weight(qw: &[u8], qz: &[u8], sc: &[u8], n_out: usize, group: usize, n: usize, k: usize) -> f32 {
        let word = |d: &[u8], i: usize| u32::from_le_bytes(d[4 * i..4 * i + 4].try_into().unwrap());
        // Nibble i of a word holds column 8j + [0, 2, 4, 6, 1, 3, 5, 7][i].
        let nib = [0usize, 2, 4, 6, 1, 3, 5, 7].iter().position(|&c| c == n % 8).unwrap();
        let q = (word(qw, k * n_out / 8 + n / 8) >> (4 * nib)) & 15;
        let z = (word(qz, k / group * n_out / 8 + n / 8) >> (4 * nib)) & 15;
        let i = k / group * n_out + n;
        let s = f16::from_le_bytes([sc[2 * i], sc[2 * i + 1]]);
        f16::from_f32((q as f32 - z as f32) * s.to_f32()).to_f32()
    }

    #[test]
    fn tiny_awq_directory_opens_and_decodes_what_was_written() {
        let root = std::env::temp_dir().join(format!("synth-awq-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let dir = root.join("m");
        let spec = tiny();
        let n = write_awq_like(&spec, 96, 32, None, &dir).unwrap();
        assert!(n > 0 && std::fs::read_dir(&root).unwrap().count() == 1, "only the finished folder remains");
        assert!(write_awq_like(&spec, 96, 32, None, &dir).is_err(), "an existing folder is not overwritten");

        let hf = HfModel::open(&dir).unwrap();
        assert_eq!(hf.quant().method.as_deref(), Some("awq"));
        let model = Model::from_source(&hf.source()).unwrap();
        assert_eq!((model.cfg.n_vocab, model.cfg.n_embd, model.cfg.n_ff, model.cfg.n_layer), (96, 64, 128, 2));
        let st = hf.tensors();
        for (il, target, prefix, n_in, n_out) in [
            (0, crate::lora::Target::Q, "model.layers.0.self_attn.q_proj", 64, 64),
            (1, crate::lora::Target::Down, "model.layers.1.mlp.down_proj", 128, 64),
            (1, crate::lora::Target::Up, "model.layers.1.mlp.up_proj", 64, 128),
        ] {
            let w = model.weight(il, target);
            assert_eq!(w.format(), WeightFormat::Awq { bits: 4, group: 32 });
            let (qw, qz, sc) = (
                st.get(&format!("{prefix}.qweight")).unwrap().data,
                st.get(&format!("{prefix}.qzeros")).unwrap().data,
                st.get(&format!("{prefix}.scales")).unwrap().data,
            );
            let mut rows = vec![0f32; n_out * n_in];
            w.decode_rows(0, n_out, &mut rows);
            let mut sum2 = 0f64;
            for r in 0..n_out {
                for k in 0..n_in {
                    let want = awq_weight(qw, qz, sc, n_out, 32, r, k);
                    assert_eq!(rows[r * n_in + k].to_bits(), want.to_bits(), "{prefix} [{r}, {k}]");
                    sum2 += (want as f64).powi(2);
                }
            }
            // Sane values: weights of std ≈ 1/√n_in.
            let std = (sum2 / (n_in * n_out) as f64).sqrt() * (n_in as f64).sqrt();
            assert!((0.7..1.4).contains(&std), "{prefix}: std·√n_in = {std}");
        }
        // Embeddings and biases are f16 values in range; the output is untied.
        assert!(st.get("lm_head.weight").is_some());
        let bias = st.get("model.layers.0.self_attn.k_proj.bias").unwrap().to_f32().unwrap();
        assert!(bias.len() == 32 && bias.iter().all(|b| b.abs() <= 0.5) && bias.iter().any(|&b| b != 0.0));
        let mut cache = model.new_cache(8);
        let logits = model.forward(&[1, 5, 7], &mut cache).unwrap();
        assert!(logits.iter().all(|x| x.is_finite()));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
