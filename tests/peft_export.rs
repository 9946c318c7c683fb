//! `finetune export --peft` and `finetune import --peft` against transformers + PEFT on the real
//! SmolLM2-135M (llama: q/k rows permuted between GGUF and HF) and Gemma-3-270m (NEOX rope, no
//! permutation), both dequantized to float32 by transformers (tests/oracle/peft_export_oracle.py):
//!
//! 1. a random adapter (all 7 targets, r 8, alpha 16, A and B non-zero) written by our
//!    `write_adapter` → `finetune export --peft` → `PeftModel.from_pretrained`: PEFT's log-probs
//!    match our engine's with the GGUF adapter applied;
//!    likewise one with mixed ranks and alpha 0 (`rank_pattern`/`alpha_pattern` in the config);
//! 2. export → import gives back the F32 (and F16/BF16) GGUF adapter byte for byte;
//! 3. adapters made by PEFT (`get_peft_model`, random A and B, `save_pretrained`; plain, with
//!    `use_rslora`, and with rank/alpha patterns) → `finetune import` → our log-probs match
//!    PEFT's, and re-exporting gives PEFT's own tensors back;
//! 4. broken directories fail with an error naming the file and the problem, never a panic.
//!
//! Each comparison also checks that the adapter moves PEFT's log-probs far more than our
//! mismatch, so a dropped permutation, a wrong scale or orientation fails.
mod common;

use common::lora::random_lora;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{bin, gemma, python, read_f32, root, smollm, tmpdir};
use finetune::adapter::peft::{read_safetensors, safetensors_bytes, SafeTensors, StDtype, StTensor};
use finetune::adapter::{read_adapter, write_adapter, BaseInfo};
use finetune::gguf::GgufModel;
use finetune::lora::{init_pair, SplitMix64, Target};
use finetune::model::Model;
use finetune::quant::GgmlType;
use finetune::tokenizer::Tokenizer;
use serde_json::{json, Value};

const TEXT: &str = "The quick brown fox jumps over the lazy dog. Then it ran into the forest, where an old owl \
                    asked it three questions about the moon, the river and the stars. The fox thought for a long \
                    time before it answered, because foxes do not like to be wrong.";

/// Largest per-position relative difference of log-prob vectors we accept.
const REL_BOUND: f64 = 1e-3;
/// Largest absolute difference of the log-prob of the actual next token we accept.
const NEXT_BOUND: f64 = 1e-3;

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
    row.iter().map(|&v| v as f64 - lse).collect()
}

/// Per position `‖lp_a − lp_b‖₂ / ‖lp_b‖₂` of the log-prob vectors: (max, mean), and the largest
/// absolute difference of the log-prob given to the next token of `ids`.
fn compare(a: &[f32], b: &[f32], nv: usize, ids: &[u32]) -> (f64, f64, f64) {
    assert_eq!(a.len(), b.len(), "logit counts differ");
    let n = a.len() / nv;
    let (mut max_rel, mut sum_rel, mut max_next) = (0f64, 0f64, 0f64);
    for p in 0..n {
        let (la, lb) = (log_softmax(&a[p * nv..(p + 1) * nv]), log_softmax(&b[p * nv..(p + 1) * nv]));
        let d: f64 = la.iter().zip(&lb).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
        let rel = d / lb.iter().map(|y| y * y).sum::<f64>().sqrt();
        max_rel = max_rel.max(rel);
        sum_rel += rel;
        if p + 1 < ids.len() {
            let t = ids[p + 1] as usize;
            max_next = max_next.max((la[t] - lb[t]).abs());
        }
    }
    (max_rel, sum_rel / n as f64, max_next)
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run finetune")
}

fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "finetune {args:?} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ours(g: &GgufModel, adapter: Option<&Path>, ids: &[u32]) -> Vec<f32> {
    let mut m = Model::load(g).unwrap();
    if let Some(a) = adapter {
        let set = read_adapter(a, &m).unwrap();
        m.adapters.push((set, 1.0));
    }
    let mut cache = m.new_cache(ids.len() + 4);
    let h = m.forward(ids, &mut cache).unwrap();
    m.logits(&h)
}

/// A PEFT-made adapter: LoraConfig fields and the scale of the random B.
struct Made {
    name: &'static str,
    rslora: bool,
    rank_pattern: Value,
    alpha_pattern: Value,
    b_scale: f32,
}

/// Compare our logits with PEFT's for one adapter and check the adapter's effect.
fn check(tag: &str, our: &[f32], theirs: &[f32], base_theirs: &[f32], nv: usize, ids: &[u32]) -> f64 {
    let (max_rel, mean_rel, next) = compare(our, theirs, nv, ids);
    let (eff_max, eff_mean, eff_next) = compare(base_theirs, theirs, nv, ids);
    println!(
        "{tag}: ours vs PEFT log-probs rel L2 max {max_rel:.2e} mean {mean_rel:.2e}, next-token |Δ| max {next:.2e}; \
         adapter effect in PEFT rel L2 max {eff_max:.2e} mean {eff_mean:.2e}, next-token |Δ| max {eff_next:.2e}"
    );
    assert!(max_rel < REL_BOUND, "{tag}: log-probs differ from PEFT's by {max_rel:.3e} (rel L2) > {REL_BOUND}");
    assert!(next < NEXT_BOUND, "{tag}: a next-token log-prob differs from PEFT's by {next:.3e} > {NEXT_BOUND}");
    assert!(
        eff_mean > 20.0 * max_rel && eff_next > 20.0 * next,
        "{tag}: the adapter's effect ({eff_mean:.3e}, {eff_next:.3e}) is not well above our mismatch ({max_rel:.3e}, {next:.3e})"
    );
    max_rel
}

fn check_model(model_path: &Path, b_scale: f32, made: &[Made]) {
    let stem = model_path.file_stem().unwrap().to_string_lossy().into_owned();
    let dir = tmpdir(&format!("peft-export-{stem}"));
    let g = GgufModel::open(model_path).unwrap();
    let model = Model::load(&g).unwrap();
    let nv = model.cfg.n_vocab;
    let tok = Tokenizer::from_gguf(g.main()).unwrap();
    let ids = tok.encode(TEXT, true, false);

    // 1–2. Our adapter → PEFT directory → back, byte for byte.
    let lora = random_lora(&model, &Target::ALL, 8, 16.0, b_scale, 5);
    let adapter = dir.join("ours.gguf");
    write_adapter(&adapter, &BaseInfo::from_gguf(g.main()), &lora, GgmlType::F32).unwrap();
    let exported = dir.join("ours-peft");
    println!("{}", run_ok(&["export", "--peft", s(&exported), "--model", s(model_path), "--lora", s(&adapter)]).trim());
    let cfg: Value = serde_json::from_slice(&std::fs::read(exported.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!((cfg["r"].clone(), cfg["lora_alpha"].clone()), (json!(8), json!(16)));
    assert_eq!((cfg["peft_type"].as_str(), cfg["task_type"].as_str()), (Some("LORA"), Some("CAUSAL_LM")));
    let mut tm: Vec<&str> = cfg["target_modules"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    tm.sort_unstable();
    assert_eq!(tm, ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]);
    let back = dir.join("back.gguf");
    println!("{}", run_ok(&["import", "--peft", s(&exported), "--model", s(model_path), "--out", s(&back)]).trim());
    assert!(std::fs::read(&back).unwrap() == std::fs::read(&adapter).unwrap(), "export → import is not byte-identical");

    // Mixed ranks and alpha 0 (llama.cpp: scale 1): rank_pattern/alpha_pattern in the config.
    let mut mixed = random_lora(&model, &Target::ALL, 8, 0.0, b_scale, 6);
    let mut rng = SplitMix64(7);
    for (il, t, r) in [(0, Target::Q, 4), (1, Target::K, 16), (2, Target::Down, 4)] {
        let w = model.weight(il, t);
        let mut p = init_pair(w.n_in(), w.n_out(), r, &mut rng);
        p.b.iter_mut().for_each(|v| *v = ((rng.next_f64() * 2.0 - 1.0) as f32) * b_scale * 2.0);
        *mixed.get_mut(il, t).unwrap() = p;
    }
    let mixed_path = dir.join("mixed.gguf");
    write_adapter(&mixed_path, &BaseInfo::from_gguf(g.main()), &mixed, GgmlType::F32).unwrap();
    let mixed_dir = dir.join("mixed-peft");
    run_ok(&["export", "--peft", s(&mixed_dir), "--model", s(model_path), "--lora", s(&mixed_path)]);
    let mcfg: Value = serde_json::from_slice(&std::fs::read(mixed_dir.join("adapter_config.json")).unwrap()).unwrap();
    println!(
        "mixed: r {} lora_alpha {} rank_pattern {} alpha_pattern {}",
        mcfg["r"], mcfg["lora_alpha"], mcfg["rank_pattern"], mcfg["alpha_pattern"]
    );
    assert_eq!(mcfg["rank_pattern"].as_object().map(|o| o.len()), Some(3));
    let mixed_back = dir.join("mixed-back.gguf");
    run_ok(&["import", "--peft", s(&mixed_dir), "--model", s(model_path), "--out", s(&mixed_back)]);
    assert!(std::fs::read(&mixed_back).unwrap() == std::fs::read(&mixed_path).unwrap(), "mixed: export → import is not byte-identical");

    // PEFT: load our export; make its own adapters.
    let made_dirs: Vec<PathBuf> = made.iter().map(|m| dir.join(format!("{}-peft", m.name))).collect();
    let case = json!({
        "model_dir": model_path.parent().unwrap(),
        "gguf_file": model_path.file_name().unwrap().to_str().unwrap(),
        "ids": ids,
        "load": [{"name": "exported", "peft_dir": exported}, {"name": "mixed", "peft_dir": mixed_dir}],
        "make": made.iter().zip(&made_dirs).enumerate().map(|(i, (m, d))| json!({
            "name": m.name, "peft_dir": d, "r": 8, "lora_alpha": 16, "use_rslora": m.rslora,
            "rank_pattern": m.rank_pattern, "alpha_pattern": m.alpha_pattern, "seed": 11 + i, "b_scale": m.b_scale,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join("case.json"), serde_json::to_vec(&case).unwrap()).unwrap();
    let out = Command::new(python()).arg(root().join("tests/oracle/peft_export_oracle.py")).arg(&dir).output().unwrap();
    assert!(out.status.success(), "peft_export_oracle.py failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let theirs: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("peft_export_oracle.py printed non-JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)));
    println!("transformers: {} {}, {}", theirs["model_class"], theirs["dtype"], theirs["cases"]);
    assert_eq!(theirs["dtype"], json!(["torch.float32"]), "transformers must run in float32");
    assert_eq!(theirs["n_vocab"].as_u64(), Some(nv as u64));
    let n_mod = 7 * model.cfg.n_layer;
    assert_eq!(theirs["cases"]["exported"]["modules"].as_u64(), Some(n_mod as u64), "PEFT did not adapt every module");
    assert_eq!(theirs["cases"]["exported"]["scaling"], json!([2.0]));
    assert_eq!(theirs["cases"]["mixed"]["modules"].as_u64(), Some(n_mod as u64));
    assert_eq!(theirs["cases"]["mixed"]["scaling"], json!([1.0]));

    let base_theirs = read_f32(&dir.join("base.f32"));
    let (bmax, bmean, bnext) = compare(&ours(&g, None, &ids), &base_theirs, nv, &ids);
    println!("{stem} base: ours vs transformers rel L2 max {bmax:.2e} mean {bmean:.2e}, next-token |Δ| max {bnext:.2e}");
    let mut worst =
        check(&format!("{stem} exported"), &ours(&g, Some(&adapter), &ids), &read_f32(&dir.join("exported.f32")), &base_theirs, nv, &ids);
    worst = worst.max(check(
        &format!("{stem} mixed ranks, alpha 0"),
        &ours(&g, Some(&mixed_path), &ids),
        &read_f32(&dir.join("mixed.f32")),
        &base_theirs,
        nv,
        &ids,
    ));

    // 3. PEFT's adapters → import → our engine.
    for (m, pdir) in made.iter().zip(&made_dirs) {
        let gguf = dir.join(format!("{}.gguf", m.name));
        println!("{}", run_ok(&["import", "--peft", s(pdir), "--model", s(model_path), "--out", s(&gguf)]).trim());
        let e = check(
            &format!("{stem} {}", m.name),
            &ours(&g, Some(&gguf), &ids),
            &read_f32(&dir.join(format!("{}.f32", m.name))),
            &base_theirs,
            nv,
            &ids,
        );
        worst = worst.max(e);
        if m.rank_pattern.is_null() && m.alpha_pattern.is_null() {
            // Re-export: PEFT's own tensors come back bit for bit (names, shapes, q/k order).
            let again = dir.join(format!("{}-again", m.name));
            run_ok(&["export", "--peft", s(&again), "--model", s(model_path), "--lora", s(&gguf)]);
            let sorted = |st: SafeTensors| {
                let mut t = st.tensors;
                t.sort_by(|a, b| a.name.cmp(&b.name));
                t
            };
            let (orig, re) = (
                sorted(read_safetensors(&pdir.join("adapter_model.safetensors")).unwrap()),
                sorted(read_safetensors(&again.join("adapter_model.safetensors")).unwrap()),
            );
            assert_eq!(orig.len(), 2 * n_mod);
            assert!(orig == re, "{}: re-exported tensors differ from PEFT's", m.name);
        }
    }
    println!("{stem}: worst rel L2 of log-probs vs PEFT {worst:.2e} (bound {REL_BOUND})");
    let _ = std::fs::remove_dir_all(&dir);
}

fn made_cases(b_scale: f32) -> Vec<Made> {
    vec![
        Made { name: "made", rslora: false, rank_pattern: Value::Null, alpha_pattern: Value::Null, b_scale },
        // α/√8 is √8 times α/8: smaller B for a comparable effect.
        Made { name: "made-rslora", rslora: true, rank_pattern: Value::Null, alpha_pattern: Value::Null, b_scale: b_scale / 2.8 },
        Made {
            name: "made-patterns",
            rslora: false,
            rank_pattern: json!({"model.layers.0.self_attn.q_proj": 4, "k_proj": 16}),
            alpha_pattern: json!({"model.layers.1.mlp.down_proj": 4}),
            b_scale,
        },
    ]
}

#[test]
fn smollm2_peft_export_import_match_transformers() {
    check_model(&smollm(), 0.15, &made_cases(0.15));
}

#[test]
fn gemma3_peft_export_import_match_transformers() {
    check_model(&gemma(), 0.02, &made_cases(0.02));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Import `pdir`; it must fail cleanly (exit 1, no panic) with all of `want` in the message.
fn import_fails(pdir: &Path, model: &Path, out: &Path, want: &[&str]) {
    let o = run(&["import", "--peft", s(pdir), "--model", s(model), "--out", s(out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    println!("{}: {}", pdir.file_name().unwrap().to_string_lossy(), err.trim());
    assert_eq!(o.status.code(), Some(1), "expected a clean failure for {}, got {}:\n{err}", pdir.display(), o.status);
    assert!(!err.contains("panicked"), "{err}");
    for w in want {
        assert!(err.contains(w), "error for {} lacks '{w}':\n{err}", pdir.display());
    }
    assert!(!out.exists(), "a failed import left {}", out.display());
}

#[test]
fn peft_round_trip_other_types_and_bad_directories() {
    let dir = tmpdir("peft-export-bad");
    let model_path = smollm();
    let g = GgufModel::open(&model_path).unwrap();
    let model = Model::load(&g).unwrap();
    let mp = s(&model_path);

    // F16 and BF16 adapters export as F16/BF16 safetensors and come back byte for byte.
    for (ty, name) in [(GgmlType::F16, "F16"), (GgmlType::BF16, "BF16")] {
        let lora = random_lora(&model, &[Target::Q, Target::V, Target::Down], 4, 8.0, 0.1, 21);
        let a = dir.join(format!("{name}.gguf"));
        write_adapter(&a, &BaseInfo::from_gguf(g.main()), &lora, ty).unwrap();
        let p = dir.join(format!("{name}-peft"));
        run_ok(&["export", "--peft", s(&p), "--model", mp, "--lora", s(&a)]);
        let st = read_safetensors(&p.join("adapter_model.safetensors")).unwrap();
        assert!(st.tensors.iter().all(|t| t.dtype.name() == name), "{name} adapter not exported as {name}");
        assert_eq!(st.metadata.get("format").map(String::as_str), Some("pt"));
        let b = dir.join(format!("{name}-back.gguf"));
        run_ok(&["import", "--peft", s(&p), "--model", mp, "--out", s(&b), "--adapter-type", name]);
        assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "{name}: export → import not byte-identical");
    }

    // A valid directory to break in different ways.
    let lora = random_lora(&model, &[Target::Q, Target::K], 8, 16.0, 0.1, 22);
    let a = dir.join("qk.gguf");
    write_adapter(&a, &BaseInfo::from_gguf(g.main()), &lora, GgmlType::F32).unwrap();
    let good = dir.join("good");
    run_ok(&["export", "--peft", s(&good), "--model", mp, "--lora", s(&a)]);
    let out = dir.join("out.gguf");
    let variant = |name: &str| {
        let d = dir.join(name);
        copy_dir(&good, &d);
        d
    };
    let st_path = |d: &Path| d.join("adapter_model.safetensors");
    let cfg_path = |d: &Path| d.join("adapter_config.json");
    let config = || -> Value { serde_json::from_slice(&std::fs::read(cfg_path(&good)).unwrap()).unwrap() };
    let tensors = || read_safetensors(&st_path(&good)).unwrap();

    let d = variant("no-config");
    std::fs::remove_file(cfg_path(&d)).unwrap();
    import_fails(&d, &model_path, &out, &["adapter_config.json", "missing"]);

    let d = variant("no-weights");
    std::fs::remove_file(st_path(&d)).unwrap();
    import_fails(&d, &model_path, &out, &["adapter_model.safetensors", "missing"]);

    let d = variant("bad-json");
    std::fs::write(cfg_path(&d), "{\"r\": 8, \"lora_alpha\": ").unwrap();
    import_fails(&d, &model_path, &out, &["adapter_config.json", "not valid JSON"]);

    let d = variant("garbage-header");
    let mut junk = 1u64.wrapping_shl(40).to_le_bytes().to_vec();
    junk.extend_from_slice(b"{\"not\": \"safetensors\"}");
    std::fs::write(st_path(&d), &junk).unwrap();
    import_fails(&d, &model_path, &out, &["adapter_model.safetensors", "header length"]);

    let d = variant("bad-header-json");
    let mut junk = 16u64.to_le_bytes().to_vec();
    junk.extend_from_slice(b"{{{{{{{{{{{{{{{{0000");
    std::fs::write(st_path(&d), &junk).unwrap();
    import_fails(&d, &model_path, &out, &["adapter_model.safetensors", "not valid JSON"]);

    let d = variant("wrong-shape");
    let mut st = tensors();
    let t = st.tensors.iter_mut().find(|t| t.name.ends_with("layers.3.self_attn.k_proj.lora_B.weight")).unwrap();
    t.shape = vec![t.shape[0] * 2, t.shape[1]];
    t.data = [t.data.clone(), t.data.clone()].concat();
    std::fs::write(st_path(&d), safetensors_bytes(&st).unwrap()).unwrap();
    import_fails(&d, &model_path, &out, &["adapter_model.safetensors", "layers.3.self_attn.k_proj", "do not fit"]);

    let d = variant("wrong-rank");
    let mut c = config();
    c["r"] = json!(16);
    std::fs::write(cfg_path(&d), c.to_string()).unwrap();
    import_fails(&d, &model_path, &out, &["adapter_model.safetensors", "rank 16"]);

    let d = variant("lm-head");
    let mut st = tensors();
    let e = model.cfg.n_embd;
    st.tensors.push(StTensor {
        name: "base_model.model.lm_head.lora_A.weight".into(),
        dtype: StDtype::F32,
        shape: vec![8, e],
        data: vec![0.5; 8 * e],
    });
    std::fs::write(st_path(&d), safetensors_bytes(&st).unwrap()).unwrap();
    import_fails(&d, &model_path, &out, &["adapter_model.safetensors", "lm_head", "not a decoder layer projection"]);

    let d = variant("embedding");
    let mut st = tensors();
    st.tensors.push(StTensor {
        name: "base_model.model.model.embed_tokens.lora_embedding_A".into(),
        dtype: StDtype::F32,
        shape: vec![8, 4],
        data: vec![0.5; 32],
    });
    std::fs::write(st_path(&d), safetensors_bytes(&st).unwrap()).unwrap();
    import_fails(&d, &model_path, &out, &["embed_tokens", "LoRA on an embedding"]);

    let d = variant("not-targeted");
    let mut c = config();
    c["target_modules"] = json!(["q_proj"]);
    std::fs::write(cfg_path(&d), c.to_string()).unwrap();
    import_fails(&d, &model_path, &out, &["k_proj", "target_modules"]);

    for (name, key, val, want) in [
        ("dora", "use_dora", json!(true), "DoRA"),
        ("bias", "bias", json!("all"), "bias"),
        ("rank-regex", "rank_pattern", json!({"layers\\.[0-9]+\\.self_attn\\.q_proj": 4}), "regular expression"),
        ("prefix", "peft_type", json!("PREFIX_TUNING"), "only LORA"),
        ("no-alpha", "lora_alpha", Value::Null, "lora_alpha"),
    ] {
        let d = variant(name);
        let mut c = config();
        c[key] = val;
        std::fs::write(cfg_path(&d), c.to_string()).unwrap();
        import_fails(&d, &model_path, &out, &["adapter_config.json", want]);
    }

    // Export errors name the file too.
    let o = run(&["export", "--peft", s(&dir.join("x")), "--model", mp, "--lora", s(&dir.join("nope.gguf"))]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("nope.gguf") && !err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
