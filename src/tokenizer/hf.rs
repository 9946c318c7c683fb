//! Hugging Face tokenizers (`tokenizer.json`) through the `tokenizers` crate, Hugging Face's own
//! Rust implementation (what transformers' fast tokenizers run), with the special tokens of
//! `tokenizer_config.json` and `generation_config.json`.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use tokenizers::DecoderWrapper;

use super::bpe::ByteMap;
use crate::error::{Error, Result};

/// The tokenizer of a Hugging Face model directory.
pub(crate) struct HfTokenizer {
    /// Encodes control-token texts as their ids (`parse_special`).
    special: tokenizers::Tokenizer,
    /// Encodes them as plain text.
    plain: tokenizers::Tokenizer,
    pub texts: Vec<String>,
    /// Ids of added tokens marked `special` (sorted).
    control: Vec<u32>,
    /// Ids of every added token (sorted); their text is their content, not byte-mapped.
    added: Vec<u32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eog: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    /// GPT-2 byte map when the decoder is byte-level.
    bytes: Option<ByteMap>,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer").field("n_vocab", &self.texts.len()).field("bos", &self.bos).field("eos", &self.eos).finish()
    }
}

/// A JSON file of the directory, if present (size-capped, UTF-8 checked).
fn read_json(path: &Path) -> Result<Option<Json>> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = crate::util::input::read_input(path, crate::util::input::DEFAULT_MAX_INPUT_BYTES).map_err(|e| Error::io(path, e))?;
    let text =
        std::str::from_utf8(&bytes).map_err(|e| Error::format(path, format!("not UTF-8 (invalid byte at offset {})", e.valid_up_to())))?;
    serde_json::from_str(text).map(Some).map_err(|e| Error::format(path, format!("not valid JSON: {e}")))
}

/// The text of a special-token entry: `"<s>"` or `{"content": "<s>", …}`.
fn token_str(v: Option<&Json>) -> Option<&str> {
    match v? {
        Json::String(s) => Some(s),
        Json::Object(o) => o.get("content").and_then(Json::as_str),
        _ => None,
    }
}

/// Token ids of a `generation_config.json` entry: a number or a list of numbers.
fn ids(v: Option<&Json>) -> Vec<u32> {
    match v {
        Some(Json::Number(n)) => n.as_u64().map(|i| vec![i as u32]).unwrap_or_default(),
        Some(Json::Array(a)) => a.iter().filter_map(Json::as_u64).map(|i| i as u32).collect(),
        _ => Vec::new(),
    }
}

impl HfTokenizer {
    /// Open `dir/tokenizer.json` (required) with `tokenizer_config.json` and
    /// `generation_config.json` (optional).
    pub fn open(dir: &Path) -> Result<Self> {
        let file: PathBuf = dir.join("tokenizer.json");
        if !file.exists() {
            return Err(Error::format(dir, "no tokenizer.json in this model directory"));
        }
        let bytes = crate::util::input::read_input(&file, 1 << 30).map_err(|e| Error::io(&file, e))?;
        std::str::from_utf8(&bytes).map_err(|e| Error::format(&file, format!("not UTF-8 (invalid byte at offset {})", e.valid_up_to())))?;
        let special = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| Error::format(&file, format!("not a tokenizer: {e}")))?;
        let mut plain = special.clone();
        plain.set_encode_special_tokens(true);
        let tcfg = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Json::Null);
        let gcfg = read_json(&dir.join("generation_config.json"))?.unwrap_or(Json::Null);

        let n = special.get_vocab_size(true);
        let texts: Vec<String> = (0..n as u32).map(|i| special.id_to_token(i).unwrap_or_default()).collect();
        let decoder = special.get_added_tokens_decoder();
        let mut added: Vec<u32> = decoder.keys().copied().collect();
        added.sort_unstable();
        let mut control: Vec<u32> = decoder.iter().filter(|(_, t)| t.special).map(|(&i, _)| i).collect();
        control.sort_unstable();
        let id_of = |key: &str| token_str(tcfg.get(key)).and_then(|s| special.token_to_id(s));
        let gen_eos = ids(gcfg.get("eos_token_id"));
        let bos = id_of("bos_token").or_else(|| ids(gcfg.get("bos_token_id")).first().copied());
        let eos = id_of("eos_token").or_else(|| gen_eos.first().copied());
        let find = |list: &[&str]| list.iter().find_map(|t| special.token_to_id(t));
        let eot = find(super::vocab::EOT_TEXTS);
        let mut eog: Vec<u32> = gen_eos.iter().copied().chain(eos).chain(eot).collect();
        eog.extend(super::vocab::EOG_TEXTS.iter().filter_map(|t| special.token_to_id(t)));
        eog.retain(|&i| (i as usize) < n);
        eog.sort_unstable();
        eog.dedup();
        // Whether encoding with special tokens adds BOS / EOS: ask the post-processor.
        let probe = |add: bool| special.encode("a", add).map(|e| e.get_ids().to_vec()).unwrap_or_default();
        let (with, without) = (probe(true), probe(false));
        let add_bos = bos.is_some() && with.first() == bos.as_ref() && without.first() != bos.as_ref();
        let add_eos = eos.is_some() && with.last() == eos.as_ref() && without.last() != eos.as_ref();
        let bytes = matches!(special.get_decoder(), Some(DecoderWrapper::ByteLevel(_))).then(ByteMap::new);
        Ok(HfTokenizer { special, plain, texts, control, added, bos, eos, eot, eog, add_bos, add_eos, bytes })
    }

    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let t = if parse_special { &self.special } else { &self.plain };
        // The tokenizers crate fails only on a broken model (validated at load) or an id it
        // cannot map; an empty result is the only sane fallback for a `Vec` API.
        t.encode(text, add_special).map(|e| e.get_ids().to_vec()).unwrap_or_default()
    }

    pub fn is_control(&self, id: u32) -> bool {
        self.control.binary_search(&id).is_ok()
    }

    /// The bytes of one token (special tokens as their text): byte-level BPE pieces mapped back
    /// from GPT-2 characters, SentencePiece-style `▁` as a space and `<0xNN>` as the byte.
    pub fn piece(&self, id: u32) -> Vec<u8> {
        let Some(text) = self.texts.get(id as usize) else { return Vec::new() };
        if self.added.binary_search(&id).is_ok() {
            return text.as_bytes().to_vec();
        }
        if let Some(map) = &self.bytes {
            if let Some(b) = text.chars().map(|c| map.byte_of(c)).collect::<Option<Vec<u8>>>() {
                return b;
            }
        }
        if self.bytes.is_none() && text.len() == 6 && text.starts_with("<0x") && text.ends_with('>') {
            if let Ok(b) = u8::from_str_radix(&text[3..5], 16) {
                return vec![b];
            }
        }
        if self.bytes.is_none() {
            return text.replace('\u{2581}', " ").into_bytes();
        }
        self.special.decode(&[id], false).unwrap_or_default().into_bytes()
    }

    /// transformers' `decode(ids, skip_special_tokens)`: special tokens dropped unless they are
    /// to be shown (`unparse_special`) and not removed.
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> Vec<u8> {
        let skip = remove_special || !unparse_special;
        let ids: Vec<u32> = ids.iter().copied().filter(|&i| (i as usize) < self.texts.len()).collect();
        self.special.decode(&ids, skip).unwrap_or_default().into_bytes()
    }
}
