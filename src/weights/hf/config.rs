//! `config.json` of a Hugging Face model → [`Config`], with the values llama.cpp's
//! `convert_hf_to_gguf.py` writes into GGUF metadata for the same model (so a directory and its
//! converted GGUF run the same computation).
//!
//! Accepted: `model_type` llama (`LlamaForCausalLM`: Llama 2/3/3.1/3.2 — llama3 rope scaling as
//! per-frequency factors, [`rope_factors`] —, SmolLM2, …), qwen2, qwen3, gemma3_text / gemma3 with `Gemma3ForCausalLM` (text only).
//! Refused with the key named: other architectures, multimodal wrappers
//! (`…ForConditionalGeneration`), rope scaling other than none/linear/llama3, partial rotary, another
//! activation than the architecture's.

use serde_json::Value as Json;

use crate::model::{Arch, Config, ModelError};
use crate::ops::activation::Act;
use crate::ops::rope::RopeStyle;

/// The architecture of a `config.json` (its `model_type`, checked against `architectures`).
pub fn arch_of(j: &Json, file: &str) -> Result<Arch, ModelError> {
    let mt = j.get("model_type").and_then(Json::as_str).unwrap_or("(missing)");
    let archs: Vec<&str> =
        j.get("architectures").and_then(Json::as_array).map(|a| a.iter().filter_map(Json::as_str).collect()).unwrap_or_default();
    let unsupported = |what: String| ModelError::UnsupportedArch { file: file.into(), arch: what };
    if let Some(a) = archs.iter().find(|a| !a.ends_with("ForCausalLM")) {
        return Err(unsupported(format!("{mt} ({a}; only the …ForCausalLM text models are supported)")));
    }
    match mt {
        "llama" => Ok(Arch::Llama),
        "qwen2" => Ok(Arch::Qwen2),
        "qwen3" => Ok(Arch::Qwen3),
        "gemma3" | "gemma3_text" => Ok(Arch::Gemma3),
        other => Err(unsupported(other.to_string())),
    }
}

/// Read the hyper-parameters of `config.json` (`j`, parsed from `file`).
pub fn from_json(j: &Json, file: &str) -> Result<Config, ModelError> {
    let arch = arch_of(j, file)?;
    let err = |k: &str, p: String| ModelError::Key { file: file.into(), key: k.into(), problem: p };
    let get_u = |k: &str| -> Result<Option<usize>, ModelError> {
        match j.get(k) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => v.as_u64().map(|x| Some(x as usize)).ok_or_else(|| err(k, format!("{v}, not an unsigned integer"))),
        }
    };
    let req_u = |k: &str| get_u(k)?.ok_or_else(|| err(k, "missing".into()));
    let get_f = |k: &str| -> Result<Option<f32>, ModelError> {
        match j.get(k) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => v.as_f64().map(|x| Some(x as f32)).ok_or_else(|| err(k, format!("{v}, not a number"))),
        }
    };
    let n_embd = req_u("hidden_size")?;
    let n_layer = req_u("num_hidden_layers")?;
    let n_head = req_u("num_attention_heads")?;
    let n_head_kv = get_u("num_key_value_heads")?.unwrap_or(n_head);
    if n_embd == 0 || n_layer == 0 || n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
        return Err(err("num_key_value_heads", format!("{n_head_kv} with {n_head} heads, hidden size {n_embd}, {n_layer} layers")));
    }
    let head_dim = get_u("head_dim")?.unwrap_or(n_embd / n_head);
    if head_dim == 0 || head_dim % 2 != 0 {
        return Err(err("head_dim", format!("{head_dim}, not a positive even number")));
    }
    let n_ff = req_u("intermediate_size")?;
    let eps = get_f("rms_norm_eps")?.ok_or_else(|| err("rms_norm_eps", "missing".into()))?;
    let n_vocab = req_u("vocab_size")?;
    if let Some(p) = get_f("partial_rotary_factor")? {
        if p != 1.0 {
            return Err(err("partial_rotary_factor", format!("{p}; only full rotary embeddings are supported")));
        }
    }
    // transformers 5 moves rope_theta / rope_scaling into `rope_parameters`; Gemma 3 has one such
    // object per layer type there (`full_attention`: the global layers, `sliding_attention`).
    let rp_all = j.get("rope_parameters").filter(|v| v.is_object());
    let rp = rp_all.map(|p| p.get("full_attention").filter(|v| v.is_object()).unwrap_or(p));
    let rp_swa = rp_all.and_then(|p| p.get("sliding_attention")).filter(|v| v.is_object());
    let rope_base = match rp.and_then(|p| p.get("rope_theta")).and_then(Json::as_f64) {
        Some(t) => t as f32,
        None => get_f("rope_theta")?.unwrap_or(10_000.0),
    };
    let scaling = rope_scaling(j);
    let rope_freq_scale = match scaling {
        None => 1.0,
        Some(s) => {
            let ty = s.get("rope_type").or(s.get("type")).and_then(Json::as_str).unwrap_or("default");
            match ty {
                "default" => 1.0,
                "linear" => match s.get("factor").and_then(Json::as_f64) {
                    Some(f) if f > 0.0 => 1.0 / f as f32,
                    _ => return Err(err("rope_scaling.factor", "missing or not positive".into())),
                },
                // Frequency factors instead (`rope_factors`), as convert_hf_to_gguf.py writes them.
                "llama3" if arch == Arch::Llama => 1.0,
                other => return Err(err("rope_scaling", format!("type '{other}', which is not supported yet (default, linear, llama3)"))),
            }
        }
    };
    let act_name = j.get("hidden_activation").or(j.get("hidden_act")).and_then(Json::as_str).unwrap_or("silu");
    let mut c = Config {
        arch,
        n_embd,
        n_layer,
        n_head,
        n_head_kv,
        head_dim,
        v_dim: head_dim,
        n_ff,
        eps,
        n_vocab,
        n_ctx_train: get_u("max_position_embeddings")?.unwrap_or(4096),
        rope_style: RopeStyle::Norm,
        n_rot: head_dim,
        rope_base,
        rope_freq_scale,
        rope_base_swa: rope_base,
        act: Act::SwiGlu,
        embed_scale: None,
        attn_scale: 1.0 / (head_dim as f32).sqrt(),
        swa: None,
        final_softcap: get_f("final_logit_softcapping")?,
        attn_softcap: get_f("attn_logit_softcapping")?,
    };
    let want_act = |names: &[&str]| {
        if names.contains(&act_name) {
            Ok(())
        } else {
            Err(err("hidden_act", format!("'{act_name}'; this architecture needs {}", names.join(" or "))))
        }
    };
    for key in ["mlp_bias", "attention_bias"] {
        let allowed = key == "attention_bias" && arch == Arch::Qwen2;
        if j.get(key).and_then(Json::as_bool) == Some(true) && !allowed {
            return Err(err(key, "true: biases on these projections are not supported".into()));
        }
    }
    match arch {
        Arch::Llama => want_act(&["silu"])?,
        Arch::Qwen2 | Arch::Qwen3 => {
            want_act(&["silu"])?;
            c.rope_style = RopeStyle::Neox;
            if get_u("sliding_window")?.is_some() && j.get("use_sliding_window").and_then(Json::as_bool) == Some(true) {
                return Err(err("use_sliding_window", "true, which is not supported".into()));
            }
        }
        Arch::Gemma3 => {
            want_act(&["gelu_pytorch_tanh", "gelu_tanh"])?;
            c.rope_style = RopeStyle::Neox;
            c.act = Act::GeGlu;
            c.embed_scale = Some((n_embd as f32).sqrt());
            let qs = get_f("query_pre_attn_scalar")?.unwrap_or(head_dim as f32);
            c.attn_scale = 1.0 / qs.sqrt();
            c.rope_base_swa = match rp_swa {
                Some(p) => {
                    let ty = p.get("rope_type").and_then(Json::as_str).unwrap_or("default");
                    if ty != "default" {
                        return Err(err("rope_parameters.sliding_attention.rope_type", format!("'{ty}'; only 'default' is supported")));
                    }
                    match p.get("rope_theta").and_then(Json::as_f64) {
                        Some(t) if t > 0.0 => t as f32,
                        _ => return Err(err("rope_parameters.sliding_attention.rope_theta", "missing or not positive".into())),
                    }
                }
                None => get_f("rope_local_base_freq")?.unwrap_or(10_000.0),
            };
            let window = get_u("sliding_window")?.unwrap_or(4096);
            c.swa = Some((window, sliding_period(j, n_layer, file)?));
        }
    }
    Ok(c)
}

/// Gemma 3's local/global layer period P (layer `il` is global when `il % P == P − 1`): from
/// `sliding_window_pattern`, else from `layer_types` (which must follow such a period).
fn sliding_period(j: &Json, n_layer: usize, file: &str) -> Result<usize, ModelError> {
    let err = |p: String| ModelError::Key { file: file.into(), key: "layer_types".into(), problem: p };
    if let Some(types) = j.get("layer_types").and_then(Json::as_array) {
        let global: Vec<bool> = types.iter().map(|t| t.as_str() == Some("full_attention")).collect();
        if global.len() != n_layer {
            return Err(err(format!("{} entries for {n_layer} layers", global.len())));
        }
        let p = global.iter().position(|&g| g).map_or(n_layer + 1, |i| i + 1);
        if global.iter().enumerate().any(|(il, &g)| g != (il % p == p - 1)) {
            return Err(err("not a repeating pattern of local layers then one global layer".into()));
        }
        return Ok(p);
    }
    Ok(j.get("sliding_window_pattern").and_then(Json::as_u64).map_or(6, |p| p as usize))
}

/// The rope scaling object of `config.json`: `rope_scaling`, or transformers 5's
/// `rope_parameters` (Gemma 3: its `full_attention` entry) when it names a `rope_type`.
fn rope_scaling(j: &Json) -> Option<&Json> {
    let rp = j.get("rope_parameters").filter(|v| v.is_object());
    let rp = rp.map(|p| p.get("full_attention").filter(|v| v.is_object()).unwrap_or(p)).filter(|p| p.get("rope_type").is_some());
    j.get("rope_scaling").filter(|v| v.is_object()).or(rp)
}

/// Llama 3.1's rope scaling (`rope_type: llama3`) as the per-frequency divisors llama.cpp reads
/// from `rope_freqs.weight` (what convert_hf_to_gguf.py writes for such a model): for each of the
/// `head_dim / 2` frequencies f = base^(−2i/d), with wavelength λ = 2π/f and the original context
/// L: 1 when λ < L/high_freq_factor, `factor` when λ > L/low_freq_factor, else
/// 1 / ((1 − s)/factor + s) with s = (L/λ − low)/(high − low). `None` without llama3 scaling.
pub fn rope_factors(j: &Json, file: &str, cfg: &Config) -> Result<Option<Vec<f32>>, ModelError> {
    let Some(s) = rope_scaling(j) else { return Ok(None) };
    if s.get("rope_type").or(s.get("type")).and_then(Json::as_str) != Some("llama3") {
        return Ok(None);
    }
    let err = |k: &str, p: &str| ModelError::Key { file: file.into(), key: format!("rope_scaling.{k}"), problem: p.into() };
    let num = |k: &str, d: f64| -> Result<f64, ModelError> {
        match s.get(k) {
            None | Some(Json::Null) => Ok(d),
            Some(v) => v.as_f64().filter(|x| x.is_finite() && *x > 0.0).ok_or_else(|| err(k, "not a positive number")),
        }
    };
    let factor = num("factor", 8.0)?;
    let (low, high) = (num("low_freq_factor", 1.0)?, num("high_freq_factor", 4.0)?);
    let old_ctx = num("original_max_position_embeddings", 8192.0)?;
    if high <= low {
        return Err(err("high_freq_factor", "not larger than low_freq_factor"));
    }
    let (d, base) = (cfg.n_rot, cfg.rope_base as f64);
    let (low_wl, high_wl) = (old_ctx / low, old_ctx / high);
    let out = (0..d / 2)
        .map(|i| {
            let freq = 1.0 / base.powf((2 * i) as f64 / d as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let f = if wavelen < high_wl {
                1.0
            } else if wavelen > low_wl {
                factor
            } else {
                let smooth = (old_ctx / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            f as f32
        })
        .collect();
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama(scaling: Json) -> Json {
        serde_json::json!({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 128, "rms_norm_eps": 1e-5,
            "vocab_size": 100, "rope_theta": 500000.0, "rope_scaling": scaling})
    }

    #[test]
    fn llama3_rope_factors_follow_the_three_regimes() {
        let j = llama(serde_json::json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}));
        let cfg = from_json(&j, "config.json").unwrap();
        let f = rope_factors(&j, "config.json", &cfg).unwrap().unwrap();
        assert_eq!(f.len(), 8);
        assert_eq!(f[0], 1.0, "short wavelengths unchanged");
        assert_eq!(f[7], 8.0, "long wavelengths divided by the factor");
        assert!(f.iter().any(|&x| x > 1.0 && x < 8.0), "a smoothed frequency between: {f:?}");
        assert!(rope_factors(&llama(Json::Null), "config.json", &cfg).unwrap().is_none());
    }

    #[test]
    fn garbage_rope_scaling_is_a_named_error() {
        for (bad, key) in [
            (serde_json::json!({"rope_type": "llama3", "factor": "eight"}), "rope_scaling.factor"),
            (serde_json::json!({"rope_type": "llama3", "factor": -2.0}), "rope_scaling.factor"),
            (serde_json::json!({"rope_type": "llama3", "low_freq_factor": 4.0, "high_freq_factor": 1.0}), "rope_scaling.high_freq_factor"),
        ] {
            let j = llama(bad);
            let cfg = from_json(&j, "config.json").unwrap();
            let e = rope_factors(&j, "config.json", &cfg).unwrap_err().to_string();
            assert!(e.contains("config.json") && e.contains(key), "{e}");
        }
        let e = from_json(&llama(serde_json::json!({"rope_type": "yarn", "factor": 4.0})), "config.json").unwrap_err().to_string();
        assert!(e.contains("rope_scaling") && e.contains("yarn"), "{e}");
        let mut g = serde_json::json!({"model_type": "gemma3_text", "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 128, "rms_norm_eps": 1e-6, "vocab_size": 100,
            "hidden_activation": "gelu_pytorch_tanh", "layer_types": ["sliding_attention", "full_attention"],
            "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                "sliding_attention": {"rope_type": "default", "rope_theta": -1.0}}});
        let e = from_json(&g, "config.json").unwrap_err().to_string();
        assert!(e.contains("rope_parameters.sliding_attention.rope_theta"), "{e}");
        g["rope_parameters"]["sliding_attention"]["rope_theta"] = serde_json::json!(10000.0);
        let c = from_json(&g, "config.json").unwrap();
        assert_eq!((c.rope_base, c.rope_base_swa), (1e6, 10000.0));
    }
}
