//! The tokenizer against real llama.cpp (llama-cpp-python, run in a subprocess by
//! tests/oracle/tokenize_oracle.py) on both real models: SmolLM2 (byte-level BPE, `smollm`
//! pre-tokenizer) and Gemma 3 (SentencePiece, 262k vocabulary).
//!
//! For every corpus case (tests/data/tokenizer_corpus.txt, plus two long texts: all cases joined
//! with newlines, and all cases glued together twice) and both (add_special, parse_special) modes: our ids == llama.cpp's ids. Also
//! detokenization of llama.cpp's ids (both flag combinations), every token's piece, bos/eos/eot,
//! the end-of-generation set, the round trip decode(encode(x)) == x wherever llama.cpp round-trips,
//! and clear errors for broken tokenizer metadata.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{python, root, tmpdir};
use finetune::gguf::{GgufFile, GgufWriter, Value};
use finetune::tokenizer::{Tokenizer, TokenizerError};
use serde_json::Value as Json;

fn corpus_path() -> PathBuf {
    root().join("tests/data/tokenizer_corpus.txt")
}

/// The corpus cases (one JSON string per line, '#' comments) plus the long joined case, exactly
/// as the oracle builds them.
fn corpus() -> Vec<String> {
    let raw = std::fs::read(corpus_path()).expect("read tests/data/tokenizer_corpus.txt");
    let mut cases: Vec<String> = raw
        .split(|&b| b == b'\n')
        .map(|l| std::str::from_utf8(l).expect("corpus is UTF-8").trim_end_matches('\r'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| serde_json::from_str::<String>(l).unwrap_or_else(|e| panic!("corpus line {l:?}: {e}")))
        .collect();
    let joined = cases.join("\n");
    let glued = cases.concat().repeat(2);
    cases.push(joined);
    cases.push(glued);
    cases
}

fn run_oracle(model: &Path) -> Json {
    let script = root().join("tests/oracle/tokenize_oracle.py");
    let out = Command::new(python()).arg(&script).arg(model).arg(corpus_path()).output().expect("run tests/oracle/tokenize_oracle.py");
    assert!(
        out.status.success(),
        "tokenize_oracle.py {} failed ({}):\n{}\n(if llama_cpp is missing, run `bash tests/oracle/setup.sh`)",
        model.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("oracle printed non-JSON ({e})"))
}

fn ids_of(v: &Json) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn opt_id(v: &Json) -> Option<u32> {
    let i = v.as_i64().unwrap();
    (i >= 0).then_some(i as u32)
}

fn show(tok: &Tokenizer, ids: &[u32]) -> String {
    ids.iter().map(|&i| format!("{i}:{:?}", tok.token_text(i))).collect::<Vec<_>>().join(" ")
}

/// Everything checked for one model; returns (cases, modes) compared.
fn check_model(model: PathBuf) {
    let name = model.file_name().unwrap().to_string_lossy().into_owned();
    let f = GgufFile::open(&model).unwrap();
    let t0 = Instant::now();
    let tok = Tokenizer::from_gguf(&f).unwrap();
    let load = t0.elapsed();
    let oracle = run_oracle(&model);
    let cases = corpus();

    assert_eq!(tok.n_vocab() as u64, oracle["n_vocab"].as_u64().unwrap(), "{name}: n_vocab");
    assert_eq!(tok.bos(), opt_id(&oracle["bos"]), "{name}: bos");
    assert_eq!(tok.eos(), opt_id(&oracle["eos"]), "{name}: eos");
    assert_eq!(tok.eot(), opt_id(&oracle["eot"]), "{name}: eot");
    let eog = ids_of(&oracle["eog"]);
    assert_eq!(tok.eog_ids(), &eog[..], "{name}: end-of-generation ids");
    for id in 0..tok.n_vocab() as u32 {
        assert_eq!(tok.is_eog(id), eog.contains(&id), "{name}: is_eog({id})");
    }

    // Every token's piece (special tokens rendered).
    let pieces = oracle["pieces"].as_array().unwrap();
    assert_eq!(pieces.len(), tok.n_vocab());
    let bad: Vec<u32> =
        (0..tok.n_vocab() as u32).filter(|&id| tok.token_to_piece(id) != hex(pieces[id as usize].as_str().unwrap())).collect();
    assert!(
        bad.is_empty(),
        "{name}: {} token pieces differ, first id {} {:?}: ours {:?} llama.cpp {:?}",
        bad.len(),
        bad[0],
        tok.token_text(bad[0]),
        tok.token_to_piece(bad[0]),
        hex(pieces[bad[0] as usize].as_str().unwrap())
    );

    let ocases = oracle["cases"].as_array().unwrap();
    assert_eq!(ocases.len(), cases.len(), "{name}: oracle case count");
    let mut mismatches = Vec::new();
    let (mut n_cmp, mut n_detok, mut n_round) = (0, 0, 0);
    for (text, oc) in cases.iter().zip(ocases) {
        assert_eq!(oc["text"].as_str().unwrap(), text, "{name}: oracle read a different corpus");
        for m in oc["modes"].as_array().unwrap() {
            let (add, parse) = (m["add_special"].as_bool().unwrap(), m["parse_special"].as_bool().unwrap());
            let want = ids_of(&m["ids"]);
            let got = tok.encode(text, add, parse);
            n_cmp += 1;
            if got != want {
                mismatches.push(format!(
                    "text {text:?} (add_special={add}, parse_special={parse})\n  ours     {got:?}\n  llama.cpp {want:?}\n  ours:      {}\n  llama.cpp: {}",
                    show(&tok, &got),
                    show(&tok, &want)
                ));
            }
            // Detokenization of llama.cpp's ids, both flag combinations.
            let plain = hex(m["detok_plain"].as_str().unwrap());
            let special = hex(m["detok_special"].as_str().unwrap());
            assert_eq!(tok.detokenize(&want, true, false), plain, "{name}: detokenize(remove_special) of {text:?}");
            assert_eq!(tok.detokenize(&want, false, true), special, "{name}: detokenize(unparse_special) of {text:?}");
            n_detok += 2;
            // Round trip where llama.cpp round-trips (plain text, specials not parsed).
            if add && !parse && plain == text.as_bytes() {
                assert_eq!(&tok.decode(&got), text, "{name}: decode(encode(x)) != x");
                n_round += 1;
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{name}: {} of {n_cmp} tokenizations differ from llama.cpp; first:\n{}",
        mismatches.len(),
        mismatches[0]
    );

    // Throughput on ~1 MB of corpus text (reported, not asserted).
    let long = cases.last().unwrap();
    let big = long.repeat((1 << 20) / long.len().max(1) + 1);
    let t = Instant::now();
    let n = tok.encode(&big, true, false).len();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{name}: {} cases x 2 modes = {n_cmp} tokenizations identical to llama.cpp (longest {} bytes); \
         {n_detok} detokenizations identical; {n_round} round trips; {} pieces identical; \
         load {:.0} ms; encode {:.1} MB/s ({n} tokens)",
        cases.len(),
        long.len(),
        tok.n_vocab(),
        load.as_secs_f64() * 1e3,
        big.len() as f64 / secs / 1e6
    );
}

#[test]
fn smollm_matches_llama_cpp() {
    check_model(common::smollm());
}

#[test]
fn gemma_matches_llama_cpp() {
    check_model(common::gemma());
}

/// A copy of the SmolLM2 tokenizer metadata (no tensors) with `edit` applied, loaded back.
fn edited_header(tag: &str, edit: impl FnOnce(&mut GgufWriter)) -> Result<Tokenizer, TokenizerError> {
    let src = GgufFile::open(common::smollm()).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &src.metadata {
        if k.starts_with("tokenizer.ggml.") || k == "general.architecture" {
            w.set(k.clone(), v.clone());
        }
    }
    edit(&mut w);
    let path = tmpdir("tokenizer").join(format!("{tag}.gguf"));
    w.create(&path).unwrap().finish().unwrap();
    let f = GgufFile::open(&path).unwrap();
    Tokenizer::from_gguf(&f)
}

#[test]
fn broken_metadata_gives_clear_errors() {
    // The unedited copy loads and tokenizes like the original.
    let t = edited_header("ok", |_| {}).unwrap();
    assert_eq!(t.encode("Hello world", false, false), [19556, 905]);

    let e = edited_header("no-tokens", |w| w.remove("tokenizer.ggml.tokens")).unwrap_err();
    assert!(matches!(e, TokenizerError::MissingKey(ref k) if k == "tokenizer.ggml.tokens"), "{e:?}");
    assert!(e.to_string().contains("tokenizer.ggml.tokens"), "{e}");

    let e = edited_header("no-model", |w| w.remove("tokenizer.ggml.model")).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.model"), "{e}");

    let e = edited_header("no-merges", |w| w.remove("tokenizer.ggml.merges")).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.merges"), "{e}");

    let e = edited_header("bad-pre", |w| {
        w.set("tokenizer.ggml.pre", Value::String("no-such-pre".into()));
    })
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TokenizerError::UnknownPre { .. }), "{e:?}");
    for n in ["no-such-pre", "tokenizer.ggml.pre", "default", "gpt-2", "llama-bpe", "llama3", "qwen2", "smollm"] {
        assert!(msg.contains(n), "error should name {n:?}: {msg}");
    }

    let e = edited_header("bad-model", |w| {
        w.set("tokenizer.ggml.model", Value::String("t5".into()));
    })
    .unwrap_err();
    assert!(e.to_string().contains("t5") && e.to_string().contains("gpt2"), "{e}");

    let e = edited_header("bad-type", |w| {
        w.set("tokenizer.ggml.tokens", Value::U32(7));
    })
    .unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.tokens") && e.to_string().contains("array"), "{e}");

    let e = edited_header("short-types", |w| {
        w.set("tokenizer.ggml.token_type", Value::Array(finetune::gguf::ValueType::I32, vec![Value::I32(1); 3]));
    })
    .unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.token_type"), "{e}");

    let e = edited_header("bos-missing", |w| {
        w.set("tokenizer.ggml.add_bos_token", Value::Bool(true));
        w.set("tokenizer.ggml.bos_token_id", Value::U32(u32::MAX));
        // BPE's default BOS (11) is a valid id, so no error yet…
    });
    assert!(e.is_ok());
}
