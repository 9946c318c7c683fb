//! The training data pipeline (`finetune::train::data`) on both real models: SmolLM2 (ChatML
//! template from the GGUF, byte-level BPE, no BOS) and Gemma 3 (built-in gemma template,
//! SentencePiece, BOS added).
//!
//! Every record format is detected and rendered; the loss mask is checked by decoding the trained
//! tokens (exactly each assistant response plus the template's end-of-turn token) and by
//! re-tokenizing the prompt on its own; train_on_prompt, truncation, packing (segments,
//! positions, lengths, every sample exactly once), shuffle determinism, validation splits, JSON
//! array input and the bundled example datasets. The error cases are in `train_data/errors.rs`.
mod common;
#[path = "train_data/errors.rs"]
mod errors;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use finetune::chat::{ChatTemplate, Message};
use finetune::gguf::GgufFile;
use finetune::tokenizer::Tokenizer;
use finetune::train::data::{val_count, DataError, DataOptions, Dataset, Format, Sample, Sequence};
use serde_json::{json, Value};

pub struct Model {
    pub name: &'static str,
    pub tok: Tokenizer,
    pub tmpl: ChatTemplate,
    /// Text of the token the template closes an assistant turn with.
    pub eot: &'static str,
}

fn open_model(path: PathBuf, name: &'static str, eot: &'static str) -> Model {
    let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let tok = Tokenizer::from_gguf(&f).unwrap_or_else(|e| panic!("{name} tokenizer: {e}"));
    let tmpl = ChatTemplate::from_gguf(&f).unwrap_or_else(|e| panic!("{name} template: {e}"));
    Model { name, tok, tmpl, eot }
}

pub fn smol() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| open_model(common::smollm(), "smollm2", "<|im_end|>"))
}

pub fn gemma() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| open_model(common::gemma(), "gemma3", "<end_of_turn>"))
}

pub fn models() -> [&'static Model; 2] {
    [smol(), gemma()]
}

impl Model {
    pub fn load(&self, path: &Path, opts: &DataOptions) -> Result<Dataset, DataError> {
        Dataset::load(path, None, &self.tok, Some(&self.tmpl), opts)
    }

    /// Token ids back to text, special tokens included.
    pub fn text(&self, ids: &[u32]) -> String {
        String::from_utf8(self.tok.detokenize(ids, false, true)).expect("UTF-8")
    }

    /// The text of BOS when the tokenizer adds it, else "".
    fn bos_text(&self) -> String {
        if self.tok.add_bos() {
            self.text(&[self.tok.bos().unwrap()])
        } else {
            String::new()
        }
    }

    /// The decoded runs of consecutive trained tokens; checks every label is −1 or the next token.
    pub fn trained_spans(&self, s: &Sample) -> Vec<String> {
        assert_eq!(s.tokens.len(), s.labels.len());
        assert_eq!(*s.labels.last().unwrap(), -1, "{}: the last position has a label", self.name);
        let mut spans: Vec<Vec<u32>> = Vec::new();
        let mut prev_trained = false;
        for t in 0..s.tokens.len() {
            let l = s.labels[t];
            if l >= 0 {
                assert_eq!(l, s.tokens[t + 1] as i32, "{}: label {t} is not the next token", self.name);
                if !prev_trained {
                    spans.push(Vec::new());
                }
                spans.last_mut().unwrap().push(s.tokens[t + 1]);
            } else {
                assert_eq!(l, -1);
            }
            prev_trained = l >= 0;
        }
        spans.iter().map(|ids| self.text(ids)).collect()
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

pub fn jsonl(records: &[Value]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect()
}

fn msgs(list: &[(&str, &str)]) -> Vec<Message> {
    list.iter().map(|(r, c)| Message::new(*r, *c)).collect()
}

/// One case per format: (format, records, the conversations they must become).
fn format_cases() -> Vec<(Format, Vec<Value>, Vec<Vec<Message>>)> {
    vec![
        (
            Format::PromptResponse,
            vec![
                json!({"prompt": "What is 2+2?", "response": "4, says the samurai.", "system": "Be brief."}),
                json!({"prompt": "Say hi", "completion": "Hello there!"}),
            ],
            vec![
                msgs(&[("system", "Be brief."), ("user", "What is 2+2?"), ("assistant", "4, says the samurai.")]),
                msgs(&[("user", "Say hi"), ("assistant", "Hello there!")]),
            ],
        ),
        (
            Format::Alpaca,
            vec![
                json!({"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}),
                json!({"instruction": "Name a color.", "input": "", "output": "Blue."}),
                json!({"instruction": "Name a fruit.", "output": "Apple."}),
            ],
            vec![
                msgs(&[("user", "Add the numbers.\n\n2 and 3"), ("assistant", "5")]),
                msgs(&[("user", "Name a color."), ("assistant", "Blue.")]),
                msgs(&[("user", "Name a fruit."), ("assistant", "Apple.")]),
            ],
        ),
        (
            Format::Dolly,
            vec![
                json!({"instruction": "Where is Lyon?", "context": "Lyon is a city in France.", "response": "In France.", "category": "qa"}),
                json!({"instruction": "Write a word.", "context": "", "response": "Word."}),
            ],
            vec![
                msgs(&[("user", "Where is Lyon?\n\nLyon is a city in France."), ("assistant", "In France.")]),
                msgs(&[("user", "Write a word."), ("assistant", "Word.")]),
            ],
        ),
        (
            Format::Chat,
            vec![json!({"messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "First question?"},
                {"role": "assistant", "content": "First answer."},
                {"role": "user", "content": "Second question?"},
                {"role": "assistant", "content": "Second answer, longer: 日本語も。"}
            ]})],
            vec![msgs(&[
                ("system", "You are terse."),
                ("user", "First question?"),
                ("assistant", "First answer."),
                ("user", "Second question?"),
                ("assistant", "Second answer, longer: 日本語も。"),
            ])],
        ),
    ]
}

#[test]
fn formats_are_detected_and_only_responses_are_trained() {
    let dir = common::tmpdir("train-data-formats");
    for m in models() {
        for (format, records, convs) in format_cases() {
            let path = write(&dir, &format!("{format}.jsonl"), &jsonl(&records));
            let ds = m.load(&path, &DataOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", m.name));
            assert_eq!(ds.stats.format, format, "{}", m.name);
            assert_eq!((ds.stats.records, ds.train.len(), ds.val.len()), (convs.len(), convs.len(), 0));
            for (s, conv) in ds.train.iter().zip(&convs) {
                let ctx = format!("{} {format}", m.name);
                // The tokens are the whole rendered conversation (plus BOS where the model adds it).
                let rendered = m.tmpl.render(conv, false).unwrap();
                assert_eq!(m.text(&s.tokens), m.bos_text() + &rendered, "{ctx}");
                // Trained: exactly each assistant message followed by the end-of-turn token.
                let want: Vec<String> = conv.iter().filter(|x| x.role == "assistant").map(|x| format!("{}{}", x.content, m.eot)).collect();
                assert_eq!(m.trained_spans(s), want, "{ctx}");
                // The prompt is tokenized as it would be at inference time, and not trained.
                let first = conv.iter().position(|x| x.role == "assistant").unwrap();
                let prompt = m.tmpl.render(&conv[..first], true).unwrap();
                let ids = m.tok.encode(&prompt, true, true);
                assert_eq!(&s.tokens[..ids.len()], &ids[..], "{ctx}");
                assert!(s.labels[..ids.len() - 1].iter().all(|&l| l == -1), "{ctx}: a prompt token is trained");
                assert!(s.labels[ids.len() - 1] >= 0, "{ctx}: the first response token is not trained");
            }
            let trained: usize = ds.train.iter().map(Sample::n_trained).sum();
            assert_eq!(ds.stats.trained_tokens, trained);
            assert_eq!(ds.stats.tokens, ds.train.iter().map(|s| s.tokens.len()).sum::<usize>());
        }
    }
}

#[test]
fn raw_text_is_trained_entirely() {
    let dir = common::tmpdir("train-data-text");
    let text = "Plain text, trained on every token.\nSecond line.";
    let path = write(&dir, "text.jsonl", &jsonl(&[json!({"text": text})]));
    for m in models() {
        let ds = Dataset::load(&path, None, &m.tok, None, &DataOptions::default()).unwrap();
        assert_eq!(ds.stats.format, Format::Text);
        let s = &ds.train[0];
        assert_eq!(m.text(&s.tokens), m.bos_text() + text, "{}", m.name);
        let bos = usize::from(m.tok.add_bos());
        // Every token but the first (which nothing predicts) is a target.
        assert_eq!(s.n_trained(), s.tokens.len() - 1, "{}", m.name);
        assert_eq!(m.trained_spans(s), vec![m.text(&s.tokens[1..])], "{}", m.name);
        assert_eq!(s.tokens.len() - bos, m.tok.encode(text, false, true).len());
    }
}

#[test]
fn train_on_prompt_trains_every_token() {
    let dir = common::tmpdir("train-data-top");
    let (_, records, _) = format_cases().into_iter().find(|c| c.0 == Format::Chat).unwrap();
    let path = write(&dir, "chat.jsonl", &jsonl(&records));
    for m in models() {
        let masked = m.load(&path, &DataOptions::default()).unwrap();
        let all = m.load(&path, &DataOptions { train_on_prompt: true, ..DataOptions::default() }).unwrap();
        let (a, s) = (&masked.train[0], &all.train[0]);
        assert_eq!(a.tokens, s.tokens, "{}: the mask must not change the tokens", m.name);
        assert_eq!(s.n_trained(), s.tokens.len() - 1, "{}", m.name);
        assert_eq!(m.trained_spans(s), vec![m.text(&s.tokens[1..])]);
        assert!(a.n_trained() < s.n_trained());
    }
}

#[test]
fn system_prompt_override_replaces_the_records_system() {
    let dir = common::tmpdir("train-data-system");
    let recs = [json!({"prompt": "Q?", "response": "A.", "system": "Old system."}), json!({"prompt": "R?", "response": "B."})];
    let path = write(&dir, "sys.jsonl", &jsonl(&recs));
    let m = smol();
    let opts = DataOptions { system_prompt: Some("New system.".into()), ..DataOptions::default() };
    let ds = m.load(&path, &opts).unwrap();
    for (s, (q, a)) in ds.train.iter().zip([("Q?", "A."), ("R?", "B.")]) {
        let conv = msgs(&[("system", "New system."), ("user", q), ("assistant", a)]);
        assert_eq!(m.text(&s.tokens), m.tmpl.render(&conv, false).unwrap());
    }
}

#[test]
fn bos_is_not_doubled_when_the_template_writes_it() {
    let m = gemma();
    let src = "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m.role }}\n{{ m.content }}<end_of_turn>\n{% endfor %}\
               {% if add_generation_prompt %}<start_of_turn>assistant\n{% endif %}";
    let tmpl = ChatTemplate::from_source(src, "<bos>", "<eos>").unwrap();
    let dir = common::tmpdir("train-data-bos");
    let path = write(&dir, "p.jsonl", &jsonl(&[json!({"prompt": "Hi", "response": "Yo."})]));
    let ds = Dataset::load(&path, None, &m.tok, Some(&tmpl), &DataOptions::default()).unwrap();
    let bos = m.tok.bos().unwrap();
    assert_eq!(ds.train[0].tokens[0], bos);
    assert_ne!(ds.train[0].tokens[1], bos, "BOS doubled");
    assert_eq!(m.trained_spans(&ds.train[0]), vec!["Yo.<end_of_turn>"]);
}

#[test]
fn long_samples_are_truncated_and_counted() {
    let dir = common::tmpdir("train-data-trunc");
    let long = "word ".repeat(200);
    let recs = [json!({"prompt": "Short?", "response": long.trim()}), json!({"prompt": "Tiny?", "response": "Ok."})];
    let path = write(&dir, "long.jsonl", &jsonl(&recs));
    for m in models() {
        let seq_len = 64;
        let ds = m.load(&path, &DataOptions { seq_len, ..DataOptions::default() }).unwrap();
        assert_eq!(ds.stats.truncated, 1, "{}", m.name);
        let s = &ds.train[0];
        assert_eq!((s.tokens.len(), s.labels.len()), (seq_len, seq_len));
        assert_eq!(*s.labels.last().unwrap(), -1);
        let spans = m.trained_spans(s);
        assert_eq!(spans.len(), 1);
        assert!(long.starts_with(&spans[0]) && spans[0].len() > 20, "{}: {:?}", m.name, spans[0]);
        assert!(!spans[0].contains(m.eot), "{}: end-of-turn survived truncation", m.name);
        assert!(ds.train[1].tokens.len() < seq_len);
        assert_eq!(m.trained_spans(&ds.train[1]), vec![format!("Ok.{}", m.eot)]);
    }
}

/// Check one epoch's sequences against the samples; returns how many sequences there are.
fn check_sequences(seqs: &[Sequence], train: &[Sample], seq_len: usize, pack: bool) -> usize {
    let mut want: HashMap<&Sample, usize> = HashMap::new();
    for s in train {
        *want.entry(s).or_default() += 1;
    }
    for q in seqs {
        let n = q.tokens.len();
        assert!(n > 0 && n <= seq_len, "sequence of {n} tokens (seq_len {seq_len})");
        assert_eq!((q.labels.len(), q.positions.len(), q.segments.len()), (n, n, n));
        assert_eq!((q.segments[0], q.positions[0]), (0, 0));
        let mut start = 0;
        for t in 1..=n {
            if t < n && q.segments[t] == q.segments[t - 1] {
                assert_eq!(q.positions[t], q.positions[t - 1] + 1, "positions must count up within a sample");
                continue;
            }
            if t < n {
                assert_eq!(q.segments[t], q.segments[t - 1] + 1, "segments must count up by one");
                assert_eq!(q.positions[t], 0, "positions restart at each sample");
            }
            let s = Sample { tokens: q.tokens[start..t].to_vec(), labels: q.labels[start..t].to_vec() };
            assert_eq!(*s.labels.last().unwrap(), -1, "a label crosses into the next sample");
            let left = want.get_mut(&s).expect("a segment is not one of the training samples");
            assert!(*left > 0, "a sample appears twice in one epoch");
            *left -= 1;
            start = t;
        }
        if !pack {
            assert_eq!(q.n_segments(), 1);
        }
    }
    assert!(want.values().all(|&c| c == 0), "a sample is missing from the epoch");
    seqs.len()
}

#[test]
fn packing_keeps_samples_apart_and_complete() {
    let style = common::root().join("examples/style_degozaru.jsonl");
    let m = smol();
    for seq_len in [128, 256] {
        let packed = m.load(&style, &DataOptions { seq_len, pack: true, ..DataOptions::default() }).unwrap();
        let single = m.load(&style, &DataOptions { seq_len, pack: false, ..DataOptions::default() }).unwrap();
        assert_eq!(packed.train, single.train);
        for epoch in 0..3 {
            let n_packed = check_sequences(&packed.epoch_sequences(epoch), &packed.train, seq_len, true);
            let n_single = check_sequences(&single.epoch_sequences(epoch), &single.train, seq_len, false);
            assert_eq!(n_single, single.train.len());
            assert!(n_packed * 2 <= n_single, "seq_len {seq_len}: {n_packed} packed sequences for {n_single} samples");
        }
        // Greedy: a sequence is only closed when the next sample does not fit.
        let seqs = packed.epoch_sequences(0);
        let order = packed.epoch_order(0);
        let lens: Vec<usize> = order.iter().map(|&i| packed.train[i].tokens.len()).collect();
        let mut k = 0;
        for q in &seqs[..seqs.len() - 1] {
            k += q.n_segments();
            assert!(q.len() + lens[k] > seq_len, "sample {k} would have fit");
        }
    }
}

#[test]
fn shuffles_are_reproducible_per_seed_and_epoch() {
    let style = common::root().join("examples/style_degozaru.jsonl");
    let m = smol();
    let opts = |seed| DataOptions { seed, pack: true, seq_len: 128, ..DataOptions::default() };
    let a = m.load(&style, &opts(7)).unwrap();
    let b = m.load(&style, &opts(7)).unwrap();
    let c = m.load(&style, &opts(8)).unwrap();
    assert_eq!(a.epoch_sequences(0), b.epoch_sequences(0));
    assert_eq!(a.epoch_sequences(5), b.epoch_sequences(5));
    assert_ne!(a.epoch_order(0), a.epoch_order(1), "epochs must differ");
    assert_ne!(a.epoch_sequences(0), a.epoch_sequences(1));
    // Epoch e uses seed + e.
    assert_eq!(a.epoch_order(1), c.epoch_order(0));
    assert_ne!(a.epoch_order(0), c.epoch_order(0), "seeds must differ");
    let mut sorted = a.epoch_order(3);
    assert_ne!(sorted, (0..a.train.len()).collect::<Vec<_>>(), "not shuffled");
    sorted.sort_unstable();
    assert_eq!(sorted, (0..a.train.len()).collect::<Vec<_>>());
}

#[test]
fn validation_split_sizes_and_files() {
    assert_eq!(val_count(324, 0.05), 16);
    assert_eq!(val_count(20, 0.01), 1, "at least one");
    assert_eq!(val_count(2, 0.9), 1, "at most all but one");
    assert_eq!(val_count(1, 0.5), 0);
    assert_eq!(val_count(100, 0.0), 0);
    let dir = common::tmpdir("train-data-val");
    let m = smol();
    let recs: Vec<Value> = (0..40).map(|i| json!({"prompt": format!("Question {i}?"), "response": format!("Answer {i}.")})).collect();
    let path = write(&dir, "forty.jsonl", &jsonl(&recs));
    let all = m.load(&path, &DataOptions::default()).unwrap();
    let split = |seed, val_split| m.load(&path, &DataOptions { seed, val_split, ..DataOptions::default() }).unwrap();
    let a = split(1, 0.1);
    assert_eq!((a.train.len(), a.val.len()), (36, 4));
    assert_eq!((a.stats.train_samples, a.stats.val_samples, a.stats.samples), (36, 4, 40));
    let mut union: Vec<Sample> = a.train.iter().chain(&a.val).cloned().collect();
    let mut everything = all.train.clone();
    union.sort_by(|x, y| x.tokens.cmp(&y.tokens));
    everything.sort_by(|x, y| x.tokens.cmp(&y.tokens));
    assert_eq!(union, everything, "train + val must be exactly the samples");
    assert_eq!(split(1, 0.1).val, a.val, "same seed, same split");
    assert_ne!(split(2, 0.1).val, a.val, "another seed, another split");
    assert_eq!(split(1, 0.001).val.len(), 1);
    assert_eq!(a.val_sequences().len(), 4);
    // A separate validation file.
    let vpath = write(&dir, "val.jsonl", &jsonl(&recs[..3]));
    let ds = Dataset::load(&path, Some(&vpath), &m.tok, Some(&m.tmpl), &DataOptions::default()).unwrap();
    assert_eq!((ds.train.len(), ds.val.len(), ds.stats.records), (40, 3, 43));
    assert_eq!(ds.val[..], all.train[..3]);
}

#[test]
fn json_array_files_match_json_lines() {
    let dir = common::tmpdir("train-data-array");
    let (_, records, _) = format_cases().into_iter().find(|c| c.0 == Format::Alpaca).unwrap();
    let lines = write(&dir, "a.jsonl", &jsonl(&records));
    let pretty = write(&dir, "a.json", &format!("\u{feff}  \n{}\n", serde_json::to_string_pretty(&records).unwrap()));
    for m in models() {
        let a = m.load(&lines, &DataOptions::default()).unwrap();
        let b = m.load(&pretty, &DataOptions::default()).unwrap();
        assert_eq!(b.stats.format, Format::Alpaca);
        assert_eq!(a.train, b.train, "{}", m.name);
    }
}

#[test]
fn bundled_examples_load() {
    let ex = common::root().join("examples");
    for m in models() {
        for (file, n) in [("style_degozaru.jsonl", 324), ("style_degozaru_eval.jsonl", 40), ("json_to_yaml.jsonl", 300)] {
            let ds = m.load(&ex.join(file), &DataOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", m.name));
            let st = &ds.stats;
            assert_eq!((st.format, st.records, st.samples, st.skipped, st.truncated), (Format::PromptResponse, n, n, 0, 0), "{file}");
            for s in &ds.train {
                let spans = m.trained_spans(s);
                assert_eq!(spans.len(), 1);
                if file.starts_with("style") {
                    assert!(spans[0].ends_with(&format!(", says the samurai.{}", m.eot)), "{}: {:?}", m.name, spans[0]);
                }
            }
        }
    }
    // Held-out prompts really are held out.
    let read = |f: &str| -> Vec<String> {
        let text = std::fs::read_to_string(ex.join(f)).unwrap();
        text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["prompt"].as_str().unwrap().to_string()).collect()
    };
    let train = read("style_degozaru.jsonl");
    assert!(read("style_degozaru_eval.jsonl").iter().all(|p| !train.contains(p)));
}
