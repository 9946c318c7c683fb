//! `finetune export --merge-adapters`: the combined adapter (ranks concatenated, scales folded)
//! against the same adapters stacked — in our engine (equal to f32 rounding) and in real
//! llama.cpp (llama-cpp-python, `tests/oracle/oracle.py llama-logits-lora`) — for adapters that
//! adapt different weights with different ranks and alphas; storage types; and refused inputs.
mod common;

use common::lora::random_lora_in as random_set;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bin, gemma, oracle, read_f32, smollm, tmpdir};
use finetune::adapter::combine::{combine, read_file, Input};
use finetune::adapter::{read_adapter, write_adapter, BaseInfo};
use finetune::gguf::GgufModel;
use finetune::lora::{LoraPair, LoraSet, Target};
use finetune::model::Model;
use finetune::quant::GgmlType;
use finetune::tokenizer::Tokenizer;

const TEXT: &str = "A lighthouse keeper counted the ships that passed each night. Some nights there were none, \
                    and on others the bay filled with lanterns until the water itself seemed to glow.";

fn ours(m: &Model, ids: &[u32]) -> Vec<f32> {
    let mut cache = m.new_cache(ids.len() + 4);
    let h = m.forward(ids, &mut cache).unwrap();
    m.logits(&h)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn max_abs(a: &[f32]) -> f32 {
    a.iter().map(|x| x.abs()).fold(0.0, f32::max)
}

/// Run `finetune export --merge-adapters SPECS… --out OUT [EXTRA…]`.
fn run_combine(specs: &[String], out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(bin()).args(["export", "--merge-adapters"]).args(specs).arg("--out").arg(out).args(extra).output().unwrap()
}

fn spec(p: &Path, s: f32) -> String {
    format!("{}:{s}", p.display())
}

/// ΔW = Σ scale·(α/r)·B·A over `sets` for weight (il, t), dense `[n_out, n_in]` in f64.
fn dense_delta(sets: &[(&LoraSet, f32)], il: usize, t: Target) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for (set, s) in sets {
        let Some(p) = set.get(il, t) else { continue };
        if out.is_empty() {
            out = vec![0.0; p.n_out * p.n_in];
        }
        let c = *s as f64 * set.scale(p) as f64;
        for o in 0..p.n_out {
            for k in 0..p.r {
                let bk = c * p.b[o * p.r + k] as f64;
                for i in 0..p.n_in {
                    out[o * p.n_in + i] += bk * p.a[k * p.n_in + i] as f64;
                }
            }
        }
    }
    out
}

struct Setup {
    dir: PathBuf,
    g: GgufModel,
    ids: Vec<u32>,
}

fn setup(model: &Path, tag: &str) -> Setup {
    let dir = tmpdir(tag);
    let g = GgufModel::open(model).unwrap();
    let tok = Tokenizer::from_gguf(g.main()).unwrap();
    let ids = tok.encode(TEXT, true, false);
    Setup { dir, g, ids }
}

/// Write `sets` as F32 adapters, combine them with the CLI at `scales`, and check in our engine:
/// the combined file's pairs reproduce ΔW, and its logits equal the stacked adapters' logits.
/// Returns the paths (inputs, combined).
fn combine_and_check_engine(s: &Setup, sets: &[LoraSet], scales: &[f32], want_alpha: f32) -> (Vec<PathBuf>, PathBuf, Vec<f32>) {
    let info = BaseInfo::from_gguf(s.g.main());
    let paths: Vec<PathBuf> = sets
        .iter()
        .enumerate()
        .map(|(i, set)| {
            let p = s.dir.join(format!("in{i}.gguf"));
            write_adapter(&p, &info, set, GgmlType::F32).unwrap();
            p
        })
        .collect();
    let out = s.dir.join("combined.gguf");
    // A scale of 1 is given as the bare path (the default).
    let specs: Vec<String> =
        paths.iter().zip(scales).map(|(p, &sc)| if sc == 1.0 { p.display().to_string() } else { spec(p, sc) }).collect();
    let r = run_combine(&specs, &out, &[]);
    assert!(r.status.success(), "combine failed:\n{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), out.display().to_string());

    let base = Model::load(&s.g).unwrap();
    let combined = read_adapter(&out, &base).unwrap();
    assert_eq!(combined.alpha, want_alpha, "alpha of the combined adapter");
    // Every weight adapted by any input is adapted, with the summed rank, and ΔW matches.
    let stacked: Vec<(&LoraSet, f32)> = sets.iter().zip(scales.iter().copied()).collect();
    let mut checked = 0;
    for il in 0..base.cfg.n_layer {
        for t in Target::ALL {
            let r_sum: usize = sets.iter().filter_map(|x| x.get(il, t)).map(|p| p.r).sum();
            match combined.get(il, t) {
                None => assert_eq!(r_sum, 0, "{} lost", t.tensor_name(il)),
                Some(p) => {
                    assert_eq!(p.r, r_sum, "{} rank", t.tensor_name(il));
                    if il % 7 == 0 {
                        let want = dense_delta(&stacked, il, t);
                        let got = dense_delta(&[(&combined, 1.0)], il, t);
                        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
                        let err = want.iter().zip(&got).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
                        assert!(err <= 1e-6 * scale, "{}: ΔW error {err} vs scale {scale}", t.tensor_name(il));
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 0);

    let base_logits = ours(&base, &s.ids);
    let mut m_stacked = Model::load(&s.g).unwrap();
    for (p, &sc) in paths.iter().zip(scales) {
        let set = read_adapter(p, &m_stacked).unwrap();
        m_stacked.adapters.push((set, sc));
    }
    let mut m_comb = Model::load(&s.g).unwrap();
    m_comb.adapters.push((combined, 1.0));
    let (ls, lc) = (ours(&m_stacked, &s.ids), ours(&m_comb, &s.ids));
    let (diff, effect, mag) = (max_abs_diff(&ls, &lc), max_abs_diff(&ls, &base_logits), max_abs(&ls));
    println!("engine: combined vs stacked max |Δlogit| {diff:.3e}; adapters' effect {effect:.3}; max |logit| {mag:.2}");
    assert!(effect > 1.0, "the adapters barely change the logits ({effect})");
    assert!(diff <= 2e-5 * mag, "combined ≠ stacked in our engine: {diff} (max |logit| {mag})");
    (paths, out, ls)
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
    row.iter().map(|&v| v as f64 - lse).collect()
}

/// (argmax agreement, max KL(p‖q), mean KL(p‖q)) over positions, p from `p`, q from `q`.
fn kl_stats(p: &[f32], q: &[f32], nv: usize) -> (f64, f64, f64) {
    let n = p.len() / nv;
    let argmax = |r: &[f32]| r.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0;
    let (mut same, mut max_kl, mut sum_kl) = (0usize, 0f64, 0f64);
    for t in 0..n {
        let (rp, rq) = (&p[t * nv..(t + 1) * nv], &q[t * nv..(t + 1) * nv]);
        same += usize::from(argmax(rp) == argmax(rq));
        let (lp, lq) = (log_softmax(rp), log_softmax(rq));
        let kl: f64 = (0..nv).map(|j| lp[j].exp() * (lp[j] - lq[j])).sum();
        max_kl = max_kl.max(kl);
        sum_kl += kl;
    }
    (same as f64 / n as f64, max_kl, sum_kl / n as f64)
}

fn llama_logits(s: &Setup, model: &Path, adapters: &[(&Path, f32)], tag: &str) -> Vec<f32> {
    let ids_path = s.dir.join(format!("{tag}.ids.json"));
    std::fs::write(&ids_path, serde_json::to_string(&s.ids).unwrap()).unwrap();
    let out = s.dir.join(format!("{tag}.f32"));
    let mut args: Vec<String> =
        vec!["llama-logits-lora".into(), model.display().to_string(), ids_path.display().to_string(), out.display().to_string()];
    args.extend(adapters.iter().map(|(p, sc)| spec(p, *sc)));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let res = oracle(&argv);
    assert_eq!(res["adapters"].as_u64().unwrap() as usize, adapters.len());
    read_f32(&out)
}

#[test]
fn smollm2_different_targets_and_ranks_engine_and_llama_cpp() {
    let s = setup(&smollm(), "combine-smollm");
    let base = Model::load(&s.g).unwrap();
    let n = base.cfg.n_layer;
    use Target::*;
    let a = random_set(&base, 0..n, &Target::ALL, 8, 16.0, 0.15, 1);
    let b = random_set(&base, 0..n / 2, &[Q, V, Up], 4, 4.0, 0.5, 2);
    let c = random_set(&base, n / 3..n, &[V, O, Down], 2, 0.0, 0.05, 3); // alpha 0: factor 1
    let scales = [0.7f32, 1.3, -0.8];
    // Total ranks differ between weights (8, 12, 14, …): alpha is the largest.
    let (paths, out, ours_stacked) = combine_and_check_engine(&s, &[a, b, c], &scales, 14.0);

    // llama.cpp quantizes activations to 8 bits before every matmul with a quantized weight and
    // keeps K/V in F16, so a last-bit difference in a LoRA output can flip roundings downstream
    // and grow through the layers. Its own noise floor is measured by loading the same adapters in
    // reverse order (mathematically identical, different f32 summation order); the combined file
    // must match the stacked adapters within twice that floor, and a combined file loaded with a
    // 10% wrong scale must not (so the bound can fail).
    let model = smollm();
    let base_ll = llama_logits(&s, &model, &[], "base");
    let stacked: Vec<(&Path, f32)> = paths.iter().map(PathBuf::as_path).zip(scales).collect();
    let ll_stacked = llama_logits(&s, &model, &stacked, "stacked");
    let reordered: Vec<(&Path, f32)> = stacked.iter().rev().copied().collect();
    let ll_reordered = llama_logits(&s, &model, &reordered, "reordered");
    let ll_comb = llama_logits(&s, &model, &[(&out, 1.0)], "combined");
    let ll_wrong = llama_logits(&s, &model, &[(&out, 1.1)], "combined-x1.1");
    let nv = base.cfg.n_vocab;
    let stats = |ll: &[f32]| (max_abs_diff(&ll_stacked, ll), kl_stats(&ll_stacked, ll, nv));
    let (floor_d, floor_kl) = stats(&ll_reordered);
    let within = |ll: &[f32]| {
        let (d, (agree, kl_max, kl_mean)) = stats(ll);
        // Argmax: at least 95% agreement, or at most twice the floor's disagreements (on llama.cpp's
        // AVX2 build the floor itself flipped 1 of 33 positions, and the combined file 2).
        let agree_ok = agree >= 0.95 || 1.0 - agree <= 2.0 * (1.0 - floor_kl.0) + 1e-9;
        d <= 2.0 * floor_d && kl_mean <= 2.0 * floor_kl.2 && kl_max <= 2.0 * floor_kl.1 && agree_ok
    };
    let effect = kl_stats(&ll_stacked, &base_ll, nv);
    println!(
        "llama.cpp vs stacked: combined {:?}; reversed order (noise floor) {:?}; combined ×1.1 {:?}; ours {:?}; base (adapters' effect) {:?}",
        stats(&ll_comb),
        (floor_d, floor_kl),
        stats(&ll_wrong),
        kl_stats(&ll_stacked, &ours_stacked, nv),
        (max_abs_diff(&ll_stacked, &base_ll), effect)
    );
    assert!(effect.2 > 0.1, "the adapters barely change llama.cpp's output");
    assert!(floor_kl.2 < 0.01 && floor_kl.0 >= 0.95, "llama.cpp's reorder noise is unexpectedly large: {floor_kl:?}");
    assert!(within(&ll_comb), "combined adapter ≠ stacked adapters in llama.cpp beyond its noise floor");
    assert!(!within(&ll_wrong), "the bound cannot tell a 10% scale error apart");
}

#[test]
fn gemma3_equal_total_ranks_default_scale() {
    let s = setup(&gemma(), "combine-gemma");
    let base = Model::load(&s.g).unwrap();
    let n = base.cfg.n_layer;
    let a = random_set(&base, 0..n, &[Target::Q, Target::K, Target::V, Target::O], 8, 16.0, 0.02, 11);
    let b = random_set(&base, 0..n, &[Target::Q, Target::K, Target::V, Target::O], 8, 32.0, 0.02, 12);
    // Every weight has rank 16 in the combination: alpha 16, so llama.cpp's α/r is exactly 1.
    combine_and_check_engine(&s, &[a, b], &[1.0, 1.0], 16.0);
}

#[test]
fn storage_types_and_library_api() {
    let s = setup(&smollm(), "combine-types");
    let base = Model::load(&s.g).unwrap();
    let a = random_set(&base, 0..4, &[Target::Q, Target::Gate], 16, 32.0, 0.2, 21);
    let b = random_set(&base, 0..4, &[Target::Q, Target::Gate], 16, 8.0, 0.2, 22);
    let info = BaseInfo::from_gguf(s.g.main());
    let (pa, pb) = (s.dir.join("a.gguf"), s.dir.join("b.gguf"));
    write_adapter(&pa, &info, &a, GgmlType::F32).unwrap();
    write_adapter(&pb, &info, &b, GgmlType::F32).unwrap();
    let want = combine(&[(&read_file(&pa).unwrap().set, 0.5), (&read_file(&pb).unwrap().set, 2.0)]).unwrap();
    assert_eq!(Input::parse(&spec(&pa, 0.5)), Input { path: pa.clone(), scale: 0.5 });
    assert_eq!(Input::parse("x.gguf"), Input { path: "x.gguf".into(), scale: 1.0 });
    for (ty, rel) in [("F32", 0.0), ("F16", 1e-3), ("BF16", 8e-3), ("Q8_0", 1e-2)] {
        let out = s.dir.join(format!("ab-{ty}.gguf"));
        let r = run_combine(&[spec(&pa, 0.5), spec(&pb, 2.0)], &out, &["--adapter-type", ty]);
        assert!(r.status.success(), "{ty}: {}", String::from_utf8_lossy(&r.stderr));
        let got = read_adapter(&out, &base).unwrap();
        assert_eq!(got.alpha, want.alpha);
        for (lw, lg) in want.layers.iter().zip(&got.layers) {
            for ((tw, pw), (tg, pg)) in lw.iter().zip(lg) {
                assert_eq!((tw, pw.r), (tg, pg.r));
                for (x, y) in [(&pw.a, &pg.a), (&pw.b, &pg.b)] {
                    let err = max_abs_diff(x, y);
                    assert!(err <= rel * max_abs(x) + 1e-12, "{ty}: stored values off by {err}");
                }
            }
        }
    }
    // Q8_0 needs the total rank to be a multiple of 32.
    let c = random_set(&base, 0..4, &[Target::Q], 8, 8.0, 0.2, 23);
    let pc = s.dir.join("c.gguf");
    write_adapter(&pc, &info, &c, GgmlType::F32).unwrap();
    let out = s.dir.join("ac-q8.gguf");
    let r = run_combine(&[spec(&pa, 1.0), spec(&pc, 1.0)], &out, &["--adapter-type", "Q8_0"]);
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && e.contains("Q8_0 stores blocks of 32 values, but a combined rank is 24"), "{e}");
    assert!(!out.exists());
}

#[test]
fn bad_inputs_are_clear_errors() {
    let s = setup(&smollm(), "combine-bad");
    let base = Model::load(&s.g).unwrap();
    let info = BaseInfo::from_gguf(s.g.main());
    let a = random_set(&base, 0..2, &[Target::Q], 4, 8.0, 0.1, 31);
    let pa = s.dir.join("a.gguf");
    write_adapter(&pa, &info, &a, GgmlType::F32).unwrap();
    let out = s.dir.join("out.gguf");
    let fails = |specs: &[String], extra: &[&str], needle: &str| {
        let r = run_combine(specs, &out, extra);
        let e = String::from_utf8_lossy(&r.stderr).to_string();
        assert!(!r.status.success() && e.contains(needle), "expected an error with {needle:?}, got:\n{e}");
        assert!(!out.exists(), "no output on error");
    };
    // Another architecture.
    let g2 = GgufModel::open(gemma()).unwrap();
    let gm = Model::load(&g2).unwrap();
    let pg = s.dir.join("gemma.gguf");
    write_adapter(&pg, &BaseInfo::from_gguf(g2.main()), &random_set(&gm, 0..1, &[Target::Q], 4, 8.0, 0.1, 32), GgmlType::F32).unwrap();
    fails(&[spec(&pa, 1.0), spec(&pg, 1.0)], &[], "is for architecture 'gemma3'");
    // A model file, not an adapter.
    fails(&[spec(&pa, 1.0), smollm().display().to_string()], &[], "is this a model file?");
    // One input only.
    fails(&[spec(&pa, 1.0)], &[], "at least two adapters");
    // Same architecture, another base (other widths), recorded under the same base name.
    let other = LoraSet { alpha: 8.0, layers: vec![vec![(Target::Q, LoraPair::zeros(64, 64, 4))]] };
    let po = s.dir.join("other.gguf");
    write_adapter(&po, &info, &other, GgmlType::F32).unwrap();
    fails(&[spec(&pa, 1.0), spec(&po, 1.0)], &[], "adapters of different base models?");
    // …and against the base given with --model.
    let m = smollm().display().to_string();
    fails(&[spec(&pa, 1.0), spec(&po, 1.0)], &["--model", &m], "the base weight has ne");
    // Another recorded base name: refused without --model, accepted when the shapes fit it.
    let renamed = BaseInfo { name: Some("Some Other Model".into()), ..info.clone() };
    let pr = s.dir.join("renamed.gguf");
    write_adapter(&pr, &renamed, &a, GgmlType::F32).unwrap();
    fails(&[spec(&pa, 1.0), spec(&pr, 1.0)], &[], "pass --model BASE.gguf");
    let r = run_combine(&[spec(&pa, 1.0), spec(&pr, 1.0)], &out, &["--model", &m]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // A missing file.
    std::fs::remove_file(&out).unwrap();
    fails(&[spec(&pa, 1.0), s.dir.join("missing.gguf").display().to_string()], &[], "missing.gguf");
}
