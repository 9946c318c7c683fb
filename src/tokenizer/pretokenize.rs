//! Byte-level BPE pre-tokenization: the regex list selected by `tokenizer.ggml.pre`.
//!
//! llama.cpp applies a *list* of regexes: each one splits every piece produced by the previous
//! one into its matches and the unmatched text between them (both kept, in order). Lookarounds
//! see only the piece being split, so `\s+(?!\S)` succeeds at a piece's end.

use fancy_regex::Regex;

use super::TokenizerError;

/// GPT-2's split regex.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's split regex, with `(?i:'s|…)` spelled out as llama.cpp does.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: as Llama 3's, but digits one at a time.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A pre-tokenizer family: its regexes and the vocabulary defaults llama.cpp ties to it.
#[derive(Debug, Clone)]
pub(crate) struct PreInfo {
    /// The regexes, applied in order.
    pub regexes: &'static [&'static str],
    /// Default for `add_bos_token` (the GGUF key overrides it).
    pub add_bos: bool,
    /// Clean " ?", " 's"… on detokenize.
    pub clean_spaces: bool,
    /// Skip merging when a whole pre-token is a token.
    pub ignore_merges: bool,
}

const fn info(regexes: &'static [&'static str], add_bos: bool, clean_spaces: bool, ignore_merges: bool) -> PreInfo {
    PreInfo { regexes, add_bos, clean_spaces, ignore_merges }
}

const DEFAULT_RE: &[&str] = &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"];
const GPT2_RE: &[&str] = &[GPT2];
const LLAMA3_RE: &[&str] = &[LLAMA3];
const QWEN2_RE: &[&str] = &[QWEN2];
const SMOLLM_RE: &[&str] = &[r"\p{N}", GPT2];
const FALCON_RE: &[&str] = &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"];

/// Every supported `tokenizer.ggml.pre` name with its family (as llama.cpp maps them).
pub(crate) const SUPPORTED: &[(&str, PreInfo)] = &[
    ("default", info(DEFAULT_RE, false, true, false)),
    ("gpt-2", info(GPT2_RE, false, true, false)),
    ("phi-2", info(GPT2_RE, false, true, false)),
    ("mpt", info(GPT2_RE, false, true, false)),
    ("olmo", info(GPT2_RE, false, true, false)),
    ("jais", info(GPT2_RE, false, true, false)),
    ("jina-es", info(GPT2_RE, false, true, false)),
    ("jina-de", info(GPT2_RE, false, true, false)),
    ("jina-v2-es", info(GPT2_RE, false, true, false)),
    ("jina-v2-de", info(GPT2_RE, false, true, false)),
    ("gigachat", info(GPT2_RE, false, true, false)),
    ("a.x-4.0", info(GPT2_RE, false, true, false)),
    ("mellum", info(GPT2_RE, false, true, false)),
    ("exaone4", info(GPT2_RE, false, true, false)),
    ("trillion", info(GPT2_RE, false, false, false)),
    ("granite-docling", info(GPT2_RE, false, false, false)),
    ("llama3", info(LLAMA3_RE, true, true, true)),
    ("llama-v3", info(LLAMA3_RE, true, true, true)),
    ("llama-bpe", info(LLAMA3_RE, true, true, true)),
    ("falcon3", info(LLAMA3_RE, true, true, true)),
    ("falcon-h1", info(LLAMA3_RE, true, true, true)),
    ("pixtral", info(LLAMA3_RE, true, true, true)),
    ("midm-2.0", info(LLAMA3_RE, true, true, true)),
    ("lfm2", info(LLAMA3_RE, true, true, true)),
    ("dbrx", info(LLAMA3_RE, false, true, false)),
    ("smaug-bpe", info(LLAMA3_RE, false, true, false)),
    ("qwen2", info(QWEN2_RE, false, false, false)),
    ("deepseek-r1-qwen", info(QWEN2_RE, false, false, false)),
    ("megrez", info(QWEN2_RE, false, true, false)),
    ("stablelm2", info(QWEN2_RE, false, true, false)),
    ("hunyuan", info(QWEN2_RE, false, false, false)),
    ("smollm", info(SMOLLM_RE, false, false, false)),
    ("starcoder", info(SMOLLM_RE, false, true, false)),
    ("refact", info(SMOLLM_RE, false, true, false)),
    ("command-r", info(SMOLLM_RE, false, false, false)),
    ("codeshell", info(SMOLLM_RE, false, true, false)),
    ("exaone", info(SMOLLM_RE, false, true, false)),
    ("minerva-7b", info(SMOLLM_RE, false, true, false)),
    ("falcon", info(FALCON_RE, false, true, false)),
];

/// The family for a `tokenizer.ggml.pre` value (`None`: llama.cpp's fallback, "default").
pub(crate) fn lookup(pre: Option<&str>) -> Result<PreInfo, TokenizerError> {
    let name = pre.filter(|p| !p.is_empty()).unwrap_or("default");
    SUPPORTED.iter().find(|(n, _)| *n == name).map(|(_, i)| i.clone()).ok_or_else(|| TokenizerError::UnknownPre {
        name: name.to_string(),
        supported: SUPPORTED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
    })
}

/// A compiled regex list.
#[derive(Debug)]
pub(crate) struct PreTokenizer {
    regexes: Vec<Regex>,
}

impl PreTokenizer {
    /// Compile the family's regexes (once, at load).
    pub fn new(info: &PreInfo) -> Result<Self, TokenizerError> {
        let regexes =
            info.regexes.iter().map(|r| Regex::new(r).map_err(|e| TokenizerError::Regex(format!("{r}: {e}")))).collect::<Result<_, _>>()?;
        Ok(PreTokenizer { regexes })
    }

    /// Split `text` into pre-tokens (appended to `out`; they concatenate back to `text`).
    pub fn split<'t>(&self, text: &'t str, out: &mut Vec<&'t str>) {
        let mut pieces = vec![text];
        let mut next = Vec::new();
        for re in &self.regexes {
            next.clear();
            for &piece in &pieces {
                split_one(re, piece, &mut next);
            }
            std::mem::swap(&mut pieces, &mut next);
        }
        out.extend(pieces);
    }
}

/// Split one piece by one regex into matches and the gaps between them.
fn split_one<'t>(re: &Regex, piece: &'t str, out: &mut Vec<&'t str>) {
    let mut pos = 0;
    for m in re.find_iter(piece) {
        // A regex runtime error (backtracking limit) leaves the rest of the piece whole.
        let Ok(m) = m else { break };
        if m.start() > pos {
            out.push(&piece[pos..m.start()]);
        }
        if m.end() > m.start() {
            out.push(m.as_str());
        }
        pos = m.end();
    }
    if pos < piece.len() {
        out.push(&piece[pos..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pre: &str, text: &str) -> Vec<String> {
        let p = PreTokenizer::new(&lookup(Some(pre)).unwrap()).unwrap();
        let mut out = Vec::new();
        p.split(text, &mut out);
        assert_eq!(out.concat(), text);
        out.into_iter().map(String::from).collect()
    }

    #[test]
    fn gpt2_split() {
        assert_eq!(split("gpt-2", "Hello world's  x\n"), ["Hello", " world", "'s", " ", " x", "\n"]);
        assert_eq!(split("gpt-2", "a  \nb"), ["a", "  ", "\n", "b"]);
    }

    #[test]
    fn smollm_splits_digits_first() {
        assert_eq!(split("smollm", "abc 1234"), ["abc", " ", "1", "2", "3", "4"]);
    }

    #[test]
    fn llama3_split() {
        assert_eq!(split("llama3", "I'LL 12345\r\n\r\n  x"), ["I", "'LL", " ", "123", "45", "\r\n\r\n", " ", " x"]);
    }

    #[test]
    fn unknown_pre_lists_names() {
        let e = lookup(Some("nope")).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("smollm") && e.contains("llama-bpe"), "{e}");
    }
}
