//! Every data error names the file and line (and the array element), says what is wrong, and
//! can be skipped and counted with `skip_bad_lines` where it concerns one record.

use std::path::Path;

use super::{common, jsonl, smol, write, Model};
use finetune::chat::ChatTemplate;
use finetune::train::data::{DataError, DataOptions, Dataset, Format, Problem};
use serde_json::json;

const GOOD: &str = r#"{"prompt": "Good?", "response": "Yes."}"#;

/// Write `text` to `name`, load it with `load`, and check the error names `name:line:` and
/// contains every needle.
fn expect_err(
    dir: &Path,
    name: &str,
    text: &[u8],
    line: usize,
    needles: &[&str],
    load: impl Fn(&Path) -> Result<Dataset, DataError>,
) -> DataError {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let e = load(&path).err().unwrap_or_else(|| panic!("{name}: loaded without an error"));
    let msg = e.to_string();
    assert!(msg.contains(&format!("{name}:{line}: ")), "{name}: expected '{name}:{line}:' in {msg:?}");
    for n in needles {
        assert!(msg.contains(n), "{name}: {msg:?} does not mention {n:?}");
    }
    e
}

fn plain(m: &'static Model) -> impl Fn(&Path) -> Result<Dataset, DataError> {
    move |p| m.load(p, &DataOptions::default())
}

#[test]
fn file_and_record_errors_name_file_and_line() {
    let dir = common::tmpdir("train-data-errors");
    let m = smol();
    let lines = |ls: &[&str]| ls.join("\n").into_bytes();
    let cases: Vec<(&str, Vec<u8>, usize, Vec<&str>)> = vec![
        ("invalid_json.jsonl", lines(&[GOOD, "", r#"{"prompt": "a", "response": }"#]), 3, vec!["invalid JSON", "column"]),
        ("multi_line_object.jsonl", lines(&["{", r#""prompt": "a", "response": "b"}"#]), 1, vec!["invalid JSON", "one JSON array"]),
        ("not_object.jsonl", lines(&[GOOD, r#""just a string""#]), 2, vec!["expected a JSON object, found a string"]),
        ("missing_field.jsonl", lines(&[GOOD, r#"{"prompt": "x"}"#]), 2, vec![r#"missing field "response" (or "completion")"#]),
        (
            "not_string.jsonl",
            lines(&[GOOD, r#"{"prompt": 5, "response": "x"}"#]),
            2,
            vec![r#"field "prompt" must be a string, found a number"#],
        ),
        (
            "unknown_format.jsonl",
            lines(&[r#"{"question": "a", "answer": "b"}"#, GOOD]),
            1,
            vec![
                "unknown record format",
                r#""question", "answer""#,
                r#"{"prompt","response"}"#,
                r#"{"messages""#,
                r#"{"text"}"#,
                "alpaca",
                "dolly",
            ],
        ),
        ("empty.jsonl", vec![], 1, vec!["no records"]),
        ("blank.jsonl", b"\n   \n\r\n".to_vec(), 1, vec!["no records", "blank"]),
        ("no_assistant.jsonl", lines(&[r#"{"messages": [{"role": "user", "content": "hi"}]}"#]), 1, vec![r#"no "assistant" message"#]),
        (
            "mismatch.jsonl",
            lines(&[GOOD, GOOD, "", r#"{"text": "raw"}"#]),
            4,
            vec!["text format", "prompt-response", "detected from the record at line 1"],
        ),
        (
            "bad_role.jsonl",
            lines(&[r#"{"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]}"#]),
            1,
            vec![r#"role "tool""#, "system, user, assistant"],
        ),
        ("messages_not_array.jsonl", lines(&[r#"{"messages": "hi"}"#]), 1, vec!["messages", "expected an array, found a string"]),
        ("messages_empty.jsonl", lines(&[r#"{"messages": []}"#]), 1, vec!["messages", "empty"]),
        (
            "content_not_string.jsonl",
            lines(&[r#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": 3}]}"#]),
            1,
            vec!["messages[1].content must be a string, found a number"],
        ),
        ("missing_content.jsonl", lines(&[r#"{"messages": [{"role": "assistant"}]}"#]), 1, vec!["missing field messages[0].content"]),
        ("bad_utf8.jsonl", [GOOD.as_bytes(), b"\n{\"prompt\": \"\xff\", \"response\": \"x\"}\n"].concat(), 2, vec!["UTF-8"]),
        ("empty_text.jsonl", lines(&[r#"{"text": ""}"#]), 1, vec!["no token to train on"]),
        // JSON array files: the element's own line and index.
        (
            "array_element.json",
            lines(&["[", &format!("  {GOOD},"), r#"  {"prompt": 1, "response": "c"}"#, "]"]),
            3,
            vec!["array element [1]", r#"field "prompt" must be a string"#],
        ),
        (
            "array_invalid_element.json",
            lines(&["[", &format!("  {GOOD},"), "  {\"prompt\": \"a\",", "   \"response\": nope}", "]"]),
            3,
            vec!["array element [1]", "invalid JSON", "at line 4"],
        ),
        ("array_trailing_comma.json", lines(&["[", &format!("  {GOOD},"), "]"]), 3, vec!["array element [1]", "trailing comma"]),
        ("array_unterminated.json", lines(&["[", &format!("  {GOOD},"), &format!("  {GOOD}")]), 3, vec!["missing ']'", "opened at line 1"]),
        ("array_unterminated_string.json", lines(&["[", r#"  {"prompt": "a"#]), 2, vec!["unterminated string"]),
        ("array_trailing_text.json", lines(&[&format!("[{GOOD}]"), "", "more"]), 3, vec!["after the array's closing ']'"]),
        ("array_empty.json", b"\n [ ]\n".to_vec(), 2, vec!["no records"]),
        ("array_not_object.json", lines(&[&format!("[{GOOD},"), " 7]"]), 2, vec!["array element [1]", "found a number"]),
    ];
    for (name, text, line, needles) in cases {
        expect_err(&dir, name, &text, line, &needles, plain(m));
    }
}

#[test]
fn format_given_explicitly_must_match() {
    let dir = common::tmpdir("train-data-errors-forced");
    let m = smol();
    let opts = DataOptions { format: Format::Alpaca, ..DataOptions::default() };
    let e = expect_err(&dir, "forced.jsonl", GOOD.as_bytes(), 1, &["prompt-response format", "alpaca", "given explicitly"], |p| {
        m.load(p, &opts)
    });
    assert!(matches!(e.problem(), Some(Problem::FormatMismatch { .. })));
    let opts = DataOptions { format: Format::Text, ..DataOptions::default() };
    let text = br#"{"text": "some raw text", "prompt": "b"}"#;
    expect_err(&dir, "forced_missing.jsonl", br#"{"prompt": "b"}"#, 1, &[r#"missing field "text""#], |p| m.load(p, &opts));
    // A record with several shapes' keys is read as the format asked for.
    std::fs::write(dir.join("both.jsonl"), text).unwrap();
    assert_eq!(m.load(&dir.join("both.jsonl"), &opts).unwrap().stats.format, Format::Text);
}

#[test]
fn rendering_errors_name_file_and_line() {
    let dir = common::tmpdir("train-data-errors-render");
    let m = smol();
    let two = format!("{GOOD}\n{}\n", json!({"prompt": "p", "response": "r", "system": "s"}));
    // A template whose output depends on the number of messages is not prefix-stable.
    let unstable = ChatTemplate::from_source(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
         {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}{{ messages|length }}",
        "",
        "",
    )
    .unwrap();
    let e = expect_err(&dir, "unstable.jsonl", GOOD.as_bytes(), 1, &["not prefix-stable", "messages[..=1]"], |p| {
        Dataset::load(p, None, &m.tok, Some(&unstable), &DataOptions::default())
    });
    assert!(matches!(e.problem(), Some(Problem::NotPrefixStable { .. })));
    // A template that raises on system messages: the record with one fails, at its line.
    let raising = ChatTemplate::from_source(
        "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system messages here') }}{% endif %}\
         <|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        "",
        "",
    )
    .unwrap();
    expect_err(&dir, "raises.jsonl", two.as_bytes(), 2, &["no system messages here"], |p| {
        Dataset::load(p, None, &m.tok, Some(&raising), &DataOptions::default())
    });
    // Conversations without a template.
    expect_err(&dir, "no_template.jsonl", GOOD.as_bytes(), 1, &["chat template"], |p| {
        Dataset::load(p, None, &m.tok, None, &DataOptions::default())
    });
    // The prompt alone fills seq_len.
    let long = format!("{}\n", json!({"prompt": "many words ".repeat(40), "response": "x"}));
    let opts = DataOptions { seq_len: 48, ..DataOptions::default() };
    let e = expect_err(&dir, "long_prompt.jsonl", format!("{GOOD}\n{long}").as_bytes(), 2, &["fills seq_len = 48"], |p| m.load(p, &opts));
    assert!(matches!(e.problem(), Some(Problem::PromptFillsSeqLen { seq_len: 48, .. })));
}

#[test]
fn io_and_option_errors() {
    let dir = common::tmpdir("train-data-errors-io");
    let m = smol();
    let missing = dir.join("does_not_exist.jsonl");
    let msg = m.load(&missing, &DataOptions::default()).unwrap_err().to_string();
    assert!(msg.contains("does_not_exist.jsonl") && msg.contains("cannot read"), "{msg}");
    let good = write(&dir, "good.jsonl", GOOD);
    let bad_opts = [
        (DataOptions { seq_len: 1, ..DataOptions::default() }, "seq_len"),
        (DataOptions { val_split: 1.0, ..DataOptions::default() }, "val_split"),
        (DataOptions { val_split: f32::NAN, ..DataOptions::default() }, "val_split"),
        (DataOptions { val_split: -0.1, ..DataOptions::default() }, "val_split"),
    ];
    for (opts, needle) in bad_opts {
        let e = m.load(&good, &opts).unwrap_err();
        assert!(matches!(e, DataError::Options(_)) && e.to_string().contains(needle), "{e}");
    }
    let opts = DataOptions { val_split: 0.1, ..DataOptions::default() };
    let e = Dataset::load(&good, Some(&good), &m.tok, Some(&m.tmpl), &opts).unwrap_err();
    assert!(e.to_string().contains("not both"), "{e}");
    // Errors in the validation file name it.
    let bad_val = write(&dir, "bad_val.jsonl", &format!("{GOOD}\n{{\n"));
    let e = Dataset::load(&good, Some(&bad_val), &m.tok, Some(&m.tmpl), &DataOptions::default()).unwrap_err();
    assert!(e.to_string().contains("bad_val.jsonl:2: invalid JSON"), "{e}");
}

#[test]
fn skip_bad_lines_skips_and_counts() {
    let dir = common::tmpdir("train-data-skip");
    let m = smol();
    let long = json!({"prompt": "many words ".repeat(40), "response": "x"}).to_string();
    let text = [
        r#"{"question": "unknown shape first"}"#, // 1: unknown format, detection moves on
        GOOD,                                     // 2
        "{not json",                              // 3
        r#"{"prompt": "p", "response": "r"}"#,    // 4
        r#"{"prompt": "only prompt"}"#,           // 5: missing field
        "",                                       // 6: blank, ignored
        r#"{"text": "other format"}"#,            // 7: mismatch
        &long,                                    // 8: prompt fills seq_len
        "[1, 2]",                                 // 9: not an object
        GOOD,                                     // 10
    ]
    .join("\n");
    let path = write(&dir, "mixed.jsonl", &text);
    let opts = DataOptions { seq_len: 48, skip_bad_lines: true, ..DataOptions::default() };
    let ds = m.load(&path, &opts).unwrap();
    let st = &ds.stats;
    assert_eq!(st.format, Format::PromptResponse);
    assert_eq!((st.records, st.samples, st.skipped), (4, 3, 6), "{st}");
    let lines: Vec<usize> = st.skipped_errors.iter().map(|e| e.line().unwrap()).collect();
    assert_eq!(lines, vec![1, 3, 5, 7, 8, 9]);
    for e in &st.skipped_errors {
        assert!(e.to_string().contains("mixed.jsonl:"), "{e}");
    }
    assert!(st.to_string().contains("6 skipped"), "{st}");
    // Without skipping, the first bad line fails.
    let e = m.load(&path, &DataOptions { skip_bad_lines: false, ..opts.clone() }).unwrap_err();
    assert!(e.to_string().contains("mixed.jsonl:1: unknown record format"), "{e}");
    // Skipping inside a JSON array.
    let arr = write(&dir, "mixed.json", &format!("[{GOOD},\n {{\"prompt\": 2, \"response\": \"x\"}},\n {GOOD}]"));
    let ds = m.load(&arr, &opts).unwrap();
    assert_eq!((ds.stats.samples, ds.stats.skipped), (2, 1));
    assert!(ds.stats.skipped_errors[0].to_string().contains("mixed.json:2: array element [1]:"));
    // Nothing usable left.
    let all_bad = write(&dir, "all_bad.jsonl", &jsonl(&[json!({"prompt": 1, "response": "x"}), json!([])]));
    let e = m.load(&all_bad, &opts).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("all_bad.jsonl: no usable records: all 2") && msg.contains("all_bad.jsonl:1:"), "{msg}");
}
