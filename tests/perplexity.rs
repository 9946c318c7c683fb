//! Perplexity on a text we wrote, against llama.cpp computing the logits with llama.cpp's
//! perplexity method and chunking (same tokens): within 1% on both real models, in the
//! llama.cpp-numerics inference mode and in the exact f32 mode.
mod common;

use common::oracle;
use finetune::gguf::GgufModel;
use finetune::model::{Model, Numerics};
use finetune::perplexity::perplexity;

fn check(path: &std::path::Path, n_ctx: usize, numerics: Numerics) {
    let text = common::root().join("tests/data/ppl_text.txt");
    let r = oracle(&["llama-perplexity", path.to_str().unwrap(), text.to_str().unwrap(), &n_ctx.to_string()]);
    let toks: Vec<u32> = r["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let bos = if r["add_bos"].as_bool().unwrap() { Some(r["bos"].as_u64().unwrap() as u32) } else { None };
    let g = GgufModel::open(path).unwrap();
    let mut m = Model::load(&g).unwrap();
    m.numerics = numerics;
    let ours = perplexity(&m, &toks, n_ctx, bos, |_, _, _| {}).unwrap();
    let theirs = r["ppl"].as_f64().unwrap();
    assert_eq!(ours.scored as u64, r["scored"].as_u64().unwrap());
    let rel = (ours.ppl - theirs).abs() / theirs;
    eprintln!(
        "{} ({numerics:?}): PPL ours {:.4} llama.cpp {theirs:.4} (Δ {:.3}%, {} tokens scored, ctx {n_ctx})",
        path.display(),
        ours.ppl,
        rel * 100.0,
        ours.scored
    );
    assert!(rel < 0.01, "perplexity differs by {:.3}%", rel * 100.0);
    if numerics == Numerics::Ggml && !common::llama_cpp_is_its_avx512_build() {
        // Measured on an AVX2-only Zen 4: 0.19% (SmolLM2), 0.46% (Gemma 3).
        common::note_not_bit_identical("perplexity");
    } else if numerics == Numerics::Ggml {
        // The ggml numerics give llama.cpp's logits bit for bit (tests/forward.rs), so only the
        // f64 log-sum-exp (numpy's vs ours) separates the two figures.
        assert!(rel < 1e-9, "ggml numerics: perplexity differs by {rel:e} relative");
    }
}

#[test]
fn smollm2_perplexity_within_1pct_of_llama_cpp() {
    check(&common::smollm(), 256, Numerics::Ggml);
    check(&common::smollm(), 256, Numerics::F32);
}

#[test]
fn gemma3_perplexity_within_1pct_of_llama_cpp() {
    check(&common::gemma(), 256, Numerics::Ggml);
    check(&common::gemma(), 256, Numerics::F32);
}
