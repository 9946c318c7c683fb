//! Record formats: detecting a record's shape and turning it into a conversation or raw text.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde_json::{Map, Value};

use super::error::{DataError, Problem};
use super::read::{read_values, values_from_bytes};
use crate::chat::Message;

/// The shape of the records in a data file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// Detect from the file's first record.
    #[default]
    Auto,
    /// `{"prompt","response"}` or `{"prompt","completion"}`, optional `"system"`.
    PromptResponse,
    /// `{"instruction","input"?,"output"}`, optional `"system"`; the prompt is the instruction,
    /// plus a blank line and the input when the input is not empty.
    Alpaca,
    /// `{"instruction","context"?,"response"}` (Databricks Dolly), optional `"system"`; the
    /// context is joined like Alpaca's input.
    Dolly,
    /// `{"messages":[{"role","content"},…]}` with roles `system`, `user`, `assistant`.
    Chat,
    /// `{"text"}`: raw text, trained on every token, no chat template.
    Text,
}

impl Format {
    /// Every explicit format (not [`Format::Auto`]).
    pub const ALL: [Format; 5] = [Format::PromptResponse, Format::Alpaca, Format::Dolly, Format::Chat, Format::Text];

    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::PromptResponse => "prompt-response",
            Format::Alpaca => "alpaca",
            Format::Dolly => "dolly",
            Format::Chat => "chat",
            Format::Text => "text",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, crate::Error> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        [Format::Auto].into_iter().chain(Format::ALL).find(|f| f.name() == norm).ok_or_else(|| {
            crate::Error::usage(format!("unknown data format '{s}' (expected auto, prompt-response, alpaca, dolly, chat or text)"))
        })
    }
}

/// What a record holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// A conversation, rendered with the chat template.
    Chat(Vec<Message>),
    /// Raw text.
    Text(String),
}

/// One record of a data file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// 1-based line where the record starts.
    pub line: usize,
    /// 0-based index in a JSON array file.
    pub element: Option<usize>,
    /// The record's conversation or text.
    pub content: Content,
}

/// The records of one file.
#[derive(Debug)]
pub struct RecordSet {
    /// The format of the records (detected, or as given).
    pub format: Format,
    /// The good records, in file order.
    pub records: Vec<Record>,
    /// Bad records skipped (only with `skip_bad_lines`), in file order.
    pub skipped: Vec<DataError>,
}

/// Read and parse every record of `path` (JSON Lines or a JSON array). With `Format::Auto` the
/// format is the first record's shape; every other record must have it too. With
/// `skip_bad_lines` bad records are collected in [`RecordSet::skipped`] instead of failing.
pub fn read_records(path: &Path, format: Format, skip_bad_lines: bool) -> Result<RecordSet, DataError> {
    read_records_max(path, format, skip_bad_lines, crate::util::input::DEFAULT_MAX_INPUT_BYTES)
}

/// [`read_records`] of a file of at most `max_bytes` (a larger file, a directory, a FIFO or a
/// device is refused before anything is read).
pub fn read_records_max(path: &Path, format: Format, skip_bad_lines: bool, max_bytes: u64) -> Result<RecordSet, DataError> {
    let values = read_values(path, max_bytes)?;
    records_of(path, values, format, skip_bad_lines)
}

/// The records of a data file's bytes already in memory (`path` names them in errors); as
/// [`read_records`] otherwise. The fuzz target `data` drives it.
pub fn records_from_bytes(path: &Path, bytes: &[u8], format: Format, skip_bad_lines: bool) -> Result<RecordSet, DataError> {
    records_of(path, values_from_bytes(path, bytes)?, format, skip_bad_lines)
}

fn records_of(path: &Path, values: Vec<super::read::RawValue>, format: Format, skip_bad_lines: bool) -> Result<RecordSet, DataError> {
    let mut set = RecordSet { format, records: Vec::new(), skipped: Vec::new() };
    let mut detected_at = None;
    for raw in values {
        let parsed = raw.value.and_then(|v| {
            if set.format == Format::Auto {
                set.format = detect(&v)?;
                detected_at = Some(raw.line);
            }
            parse_record(&v, set.format, detected_at)
        });
        match parsed {
            Ok(content) => set.records.push(Record { line: raw.line, element: raw.element, content }),
            Err(problem) => {
                let e = DataError::at(path, raw.line, raw.element, problem);
                if !skip_bad_lines {
                    return Err(e);
                }
                set.skipped.push(e);
            }
        }
    }
    if set.records.is_empty() {
        let first = set.skipped.first().map(ToString::to_string).unwrap_or_default();
        return Err(DataError::NoUsableRecords { file: path.to_path_buf(), skipped: set.skipped.len(), first });
    }
    Ok(set)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn as_object(v: &Value) -> Result<&Map<String, Value>, Problem> {
    v.as_object().ok_or(Problem::NotObject { found: type_name(v) })
}

/// The format a record's keys match, if any. Checked in this order: chat, dolly, alpaca,
/// prompt/response, text.
pub fn shape_of(obj: &Map<String, Value>) -> Option<Format> {
    let has = |k: &str| obj.contains_key(k);
    if has("messages") {
        Some(Format::Chat)
    } else if has("instruction") && has("response") {
        Some(Format::Dolly)
    } else if has("instruction") && has("output") {
        Some(Format::Alpaca)
    } else if has("prompt") && (has("response") || has("completion")) {
        Some(Format::PromptResponse)
    } else if has("text") {
        Some(Format::Text)
    } else {
        None
    }
}

/// The format of a record: [`shape_of`] its object, or why it has none.
pub fn detect(v: &Value) -> Result<Format, Problem> {
    let obj = as_object(v)?;
    shape_of(obj).ok_or_else(|| Problem::UnknownFormat { keys: obj.keys().cloned().collect() })
}

/// A string field: `Ok(None)` when absent or `null`.
fn opt_str<'a>(obj: &'a Map<String, Value>, key: &str, shown: &str) -> Result<Option<&'a str>, Problem> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(Problem::NotString { field: shown.to_string(), found: type_name(v) }),
    }
}

/// Parse one JSON value as a record of `format` (`Auto`: its own shape, see [`detect`]). A missing
/// field in a record that has another format's shape is a [`Problem::FormatMismatch`];
/// `detected_at` is the line the file's format was detected from, for that message.
pub fn parse_record(v: &Value, format: Format, detected_at: Option<usize>) -> Result<Content, Problem> {
    let format = if format == Format::Auto { detect(v)? } else { format };
    let obj = as_object(v)?;
    parse_object(obj, format).map_err(|p| match (&p, shape_of(obj)) {
        (Problem::MissingField { .. }, Some(found)) if found != format => Problem::FormatMismatch { found, expected: format, detected_at },
        _ => p,
    })
}

fn parse_object(obj: &Map<String, Value>, format: Format) -> Result<Content, Problem> {
    let req = |key: &str, shown: &str| {
        opt_str(obj, key, &format!("\"{key}\""))?.ok_or_else(|| Problem::MissingField { field: shown.to_string(), format })
    };
    let join = |first: &str, second: Option<&str>| match second {
        Some(s) if !s.trim().is_empty() => format!("{first}\n\n{s}"),
        _ => first.to_string(),
    };
    let (prompt, response) = match format {
        Format::Auto => return Err(Problem::UnknownFormat { keys: obj.keys().cloned().collect() }),
        Format::Text => return Ok(Content::Text(req("text", "\"text\"")?.to_string())),
        Format::Chat => return parse_chat(obj),
        Format::PromptResponse => {
            let prompt = req("prompt", "\"prompt\"")?;
            let response = match opt_str(obj, "response", "\"response\"")? {
                Some(r) => r,
                None => req("completion", "\"response\" (or \"completion\")")?,
            };
            (prompt.to_string(), response)
        }
        Format::Alpaca => {
            let instruction = req("instruction", "\"instruction\"")?;
            let input = opt_str(obj, "input", "\"input\"")?;
            (join(instruction, input), req("output", "\"output\"")?)
        }
        Format::Dolly => {
            let instruction = req("instruction", "\"instruction\"")?;
            let context = opt_str(obj, "context", "\"context\"")?;
            (join(instruction, context), req("response", "\"response\"")?)
        }
    };
    let mut msgs = Vec::with_capacity(3);
    if let Some(sys) = opt_str(obj, "system", "\"system\"")? {
        msgs.push(Message::new("system", sys));
    }
    msgs.push(Message::new("user", prompt));
    msgs.push(Message::new("assistant", response));
    Ok(Content::Chat(msgs))
}

const ROLES: [&str; 3] = ["system", "user", "assistant"];

fn parse_chat(obj: &Map<String, Value>) -> Result<Content, Problem> {
    let msgs = match obj.get("messages") {
        None | Some(Value::Null) => return Err(Problem::MissingField { field: "\"messages\"".into(), format: Format::Chat }),
        Some(Value::Array(a)) => a,
        Some(v) => return Err(Problem::BadMessages(format!("expected an array, found {}", type_name(v)))),
    };
    if msgs.is_empty() {
        return Err(Problem::BadMessages("the array is empty".into()));
    }
    let mut out = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let m = m.as_object().ok_or_else(|| {
            Problem::BadMessages(format!("messages[{i}] must be an object with \"role\" and \"content\", found {}", type_name(m)))
        })?;
        let field = |k: &str| {
            opt_str(m, k, &format!("messages[{i}].{k}"))?
                .ok_or_else(|| Problem::MissingField { field: format!("messages[{i}].{k}"), format: Format::Chat })
        };
        let role = field("role")?;
        if !ROLES.contains(&role) {
            return Err(Problem::BadMessages(format!(
                "messages[{i}] has role \"{}\" (accepted roles: system, user, assistant)",
                crate::util::text::shown(role)
            )));
        }
        out.push(Message::new(role, field("content")?));
    }
    if !out.iter().any(|m| m.role == "assistant") {
        return Err(Problem::NoAssistant);
    }
    Ok(Content::Chat(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes_and_joining() {
        let v = json!({"instruction": "Sum", "input": "1 2", "output": "3"});
        assert_eq!(shape_of(v.as_object().unwrap()), Some(Format::Alpaca));
        let Content::Chat(m) = parse_record(&v, Format::Alpaca, None).unwrap() else { panic!() };
        assert_eq!(m[0].content, "Sum\n\n1 2");
        let v = json!({"instruction": "Hi", "context": " ", "response": "x", "system": "S"});
        let Content::Chat(m) = parse_record(&v, Format::Dolly, None).unwrap() else { panic!() };
        assert_eq!(m, vec![Message::new("system", "S"), Message::new("user", "Hi"), Message::new("assistant", "x")]);
        assert_eq!("Prompt_Response".parse::<Format>().ok(), Some(Format::PromptResponse));
        assert!("jsonl".parse::<Format>().is_err());
    }

    #[test]
    fn mismatch_versus_missing() {
        let v = json!({"text": "x"});
        assert!(matches!(parse_record(&v, Format::Alpaca, Some(1)), Err(Problem::FormatMismatch { .. })));
        let v = json!({"prompt": "x"});
        assert!(matches!(parse_record(&v, Format::PromptResponse, Some(1)), Err(Problem::MissingField { .. })));
    }
}
