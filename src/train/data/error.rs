//! Errors of the data pipeline: every problem with a record names the file, the 1-based line
//! and (for JSON array files) the 0-based array element.

use std::fmt;
use std::path::{Path, PathBuf};

use super::Format;
use crate::util::text::{shown, shown_max};

/// What is wrong with one record (or with the file at one place).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The text is not valid JSON (serde_json's message, with the column).
    InvalidJson(String),
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// The JSON value is not an object.
    NotObject {
        /// JSON type found (`array`, `string`, …).
        found: &'static str,
    },
    /// A required field is absent (or `null`).
    MissingField {
        /// The field, e.g. `"response"` or `messages[2].content`.
        field: String,
        /// The format being read.
        format: Format,
    },
    /// A field that must be a string is not.
    NotString {
        /// The field.
        field: String,
        /// JSON type found.
        found: &'static str,
    },
    /// The record matches none of the accepted shapes (only possible while auto-detecting).
    UnknownFormat {
        /// The record's keys, in file order.
        keys: Vec<String>,
    },
    /// The record has another format than the file's.
    FormatMismatch {
        /// The shape this record has.
        found: Format,
        /// The file's format.
        expected: Format,
        /// Line of the record the format was detected from; `None` when it was given explicitly.
        detected_at: Option<usize>,
    },
    /// `messages` is not a non-empty array of `{"role","content"}` objects with known roles.
    BadMessages(String),
    /// A chat record without any `assistant` message (nothing to learn from).
    NoAssistant,
    /// The record needs a chat template but none was given.
    NoTemplate,
    /// The chat template failed on this conversation.
    Template(String),
    /// The chat template itself is unusable (a resource limit hit while rendering): the run
    /// stops at once, even when bad records are skipped.
    TemplateFatal(String),
    /// Rendering a longer prefix of the conversation does not extend the shorter one, so the
    /// assistant tokens cannot be located.
    NotPrefixStable {
        /// Which renderings disagree, and where.
        detail: String,
    },
    /// The prompt alone fills `seq_len`: after truncation no trained token is left.
    PromptFillsSeqLen {
        /// Tokens before the first trained token.
        prompt_tokens: usize,
        /// The sequence length.
        seq_len: usize,
    },
    /// The record yields no token to train on (e.g. an empty `text`).
    NothingToTrain,
    /// The file has no records at all.
    EmptyFile,
    /// The JSON array is malformed (unterminated, text after `]`); not skippable.
    BadArray(String),
    /// The record cannot be evaluated (`finetune eval`: no reference answer, a reference the
    /// metric cannot read, …).
    Eval(String),
}

impl Problem {
    /// Whether this problem stops loading at once, even with `skip_bad_lines`: it is not the
    /// record's fault (no template, a template that hits its resource limits) and would repeat
    /// on every record.
    pub fn stops_run(&self) -> bool {
        matches!(self, Problem::NoTemplate | Problem::TemplateFatal(_))
    }
}

/// The accepted record shapes, for error messages.
pub(crate) const ACCEPTED_SHAPES: &str = "{\"prompt\",\"response\"} or {\"prompt\",\"completion\"} (prompt/response); \
{\"instruction\",\"input\"?,\"output\"} (alpaca); {\"instruction\",\"context\"?,\"response\"} (dolly); \
{\"messages\":[{\"role\",\"content\"},…]} (chat); {\"text\"} (raw text); pair formats may add \"system\"";

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::InvalidJson(m) => write!(f, "invalid JSON: {m}"),
            Problem::InvalidUtf8 => write!(f, "the line is not valid UTF-8"),
            Problem::NotObject { found } => write!(f, "expected a JSON object, found {found}"),
            Problem::MissingField { field, format } => {
                write!(f, "missing field {field} (required by the {format} format)")
            }
            Problem::NotString { field, found } => write!(f, "field {field} must be a string, found {found}"),
            Problem::UnknownFormat { keys } => {
                let keys: Vec<String> = keys.iter().take(20).map(|k| format!("\"{}\"", shown(k))).collect();
                write!(
                    f,
                    "unknown record format (keys: {}); accepted shapes: {ACCEPTED_SHAPES}",
                    if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
                )
            }
            Problem::FormatMismatch { found, expected, detected_at } => {
                write!(f, "record has the {found} format but the file's format is {expected}")?;
                match detected_at {
                    Some(l) => write!(f, " (detected from the record at line {l}); every record must have the same format"),
                    None => write!(f, " (given explicitly)"),
                }
            }
            Problem::BadMessages(m) => write!(f, "bad \"messages\": {}", shown_max(m, 1000)),
            Problem::NoAssistant => write!(f, "chat has no \"assistant\" message, so there is nothing to train on"),
            Problem::NoTemplate => write!(
                f,
                "this record must be rendered with a chat template but the model has none (give one, or use {{\"text\"}} records)"
            ),
            Problem::Template(m) => write!(f, "{}", shown_max(m, 2000)),
            Problem::TemplateFatal(m) => {
                write!(f, "{} (the template is at fault, not the record: training stops here)", shown_max(m, 2000))
            }
            Problem::NotPrefixStable { detail } => write!(
                f,
                "the chat template is not prefix-stable ({detail}), so the assistant tokens cannot be masked; \
                 use another template or train on {{\"text\"}} records"
            ),
            Problem::PromptFillsSeqLen { prompt_tokens, seq_len } => write!(
                f,
                "the prompt alone is {prompt_tokens} tokens and fills seq_len = {seq_len}, so no response token is left to train on; \
                 raise seq_len or shorten the prompt"
            ),
            Problem::NothingToTrain => write!(f, "the record has no token to train on (empty text?)"),
            Problem::EmptyFile => write!(f, "no records: the file is empty or has only blank lines"),
            Problem::BadArray(m) => write!(f, "malformed JSON array: {m}"),
            Problem::Eval(m) => write!(f, "{m}"),
        }
    }
}

/// An error reading or preparing training data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file cannot be read.
    #[error("{}: cannot read: {source}", .file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A problem at one place in the file (`file:line: problem`).
    #[error("{}:{line}: {}{problem}", .file.display(), element_prefix(.element))]
    Record {
        /// The file.
        file: PathBuf,
        /// 1-based line (for an array element: the line where it starts).
        line: usize,
        /// 0-based element index in a JSON array file.
        element: Option<usize>,
        /// What is wrong.
        problem: Problem,
    },
    /// Every record was bad and skipped (`skip_bad_lines`).
    #[error("{}: no usable records: all {skipped} were bad and skipped; the first: {first}", .file.display())]
    NoUsableRecords {
        /// The file.
        file: PathBuf,
        /// How many were skipped.
        skipped: usize,
        /// The first skipped record's error.
        first: String,
    },
    /// Inconsistent [`DataOptions`](super::DataOptions).
    #[error("invalid data options: {0}")]
    Options(String),
}

fn element_prefix(e: &Option<usize>) -> String {
    e.map(|i| format!("array element [{i}]: ")).unwrap_or_default()
}

impl DataError {
    pub(crate) fn at(file: &Path, line: usize, element: Option<usize>, problem: Problem) -> Self {
        DataError::Record { file: file.to_path_buf(), line, element, problem }
    }

    /// The record's problem, for [`DataError::Record`].
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            DataError::Record { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// The 1-based line, for [`DataError::Record`].
    pub fn line(&self) -> Option<usize> {
        match self {
            DataError::Record { line, .. } => Some(*line),
            _ => None,
        }
    }
}
