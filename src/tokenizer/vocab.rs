//! The vocabulary as llama.cpp loads it from GGUF metadata: token texts, scores, attributes,
//! special token ids, the add-BOS/EOS and whitespace flags, and the end-of-generation set.
//!
//! Facts followed (llama.cpp `llama_vocab::impl::load`): per-model defaults for the special ids
//! and flags, then the `tokenizer.ggml.*` keys override them; an empty token text becomes
//! `[EMPTY_<id>]`; tokens whose text looks like an end-of-turn/FIM marker become control tokens;
//! the EOG set is built from token texts plus eos/eot/eom.

use super::hash::{map_with_capacity, FastMap};
use super::{TokenizerError, MODEL_BPE, MODEL_SPM};
use crate::gguf::{GgufHeader, Value};

/// Token attribute bits, as `llama_token_attr`.
pub(crate) mod attr {
    pub const UNKNOWN: u32 = 1 << 0;
    pub const UNUSED: u32 = 1 << 1;
    pub const NORMAL: u32 = 1 << 2;
    pub const CONTROL: u32 = 1 << 3;
    pub const USER_DEFINED: u32 = 1 << 4;
    pub const BYTE: u32 = 1 << 5;
    pub const LSTRIP: u32 = 1 << 7;
    pub const RSTRIP: u32 = 1 << 8;
}

/// Which algorithm the vocabulary uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Byte-level BPE (`tokenizer.ggml.model = "gpt2"`).
    Bpe,
    /// SentencePiece BPE (`tokenizer.ggml.model = "llama"`).
    Spm,
}

/// Vocabulary data shared by the encoders and the decoder.
#[derive(Debug)]
pub(crate) struct Vocab {
    pub kind: Kind,
    pub texts: Vec<String>,
    pub scores: Vec<f32>,
    pub attrs: Vec<u32>,
    pub token_to_id: FastMap<String, u32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eog: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    /// BPE: byte-level tokens decoded and " ?"/" 's" style spaces cleaned on detokenize.
    pub clean_spaces: bool,
    /// BPE (llama3 family): a pre-token that is itself a token is not merged.
    pub ignore_merges: bool,
}

const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";

/// Token texts llama.cpp takes for the end-of-turn token when `eot_token_id` is absent.
pub(crate) const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] =
    &["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"];
const FIM_SUF_TEXTS: &[&str] =
    &["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"];
const FIM_MID_TEXTS: &[&str] =
    &["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// Token texts that end generation (besides eos/eot/eom and the FIM pad/repo/sep tokens).
pub(crate) const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<｜end▁of▁sentence｜>",
    "</s>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "[e~[",
];

fn bad_type(key: &str, expected: &'static str, v: &Value) -> TokenizerError {
    TokenizerError::BadType { key: key.to_string(), expected, found: format!("{:?}", v.value_type()) }
}

fn get_bool(h: &GgufHeader, key: &str) -> Result<Option<bool>, TokenizerError> {
    match h.get(key) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| bad_type(key, "bool", v)),
    }
}

fn get_id(h: &GgufHeader, key: &str) -> Result<Option<u64>, TokenizerError> {
    match h.get(key) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| bad_type(key, "unsigned integer", v)),
    }
}

/// The string array under `key`.
pub(crate) fn string_array<'a>(h: &'a GgufHeader, key: &str) -> Result<Vec<&'a str>, TokenizerError> {
    let v = h.get(key).ok_or_else(|| TokenizerError::MissingKey(key.to_string()))?;
    let items = v.as_array().ok_or_else(|| bad_type(key, "array of strings", v))?;
    items.iter().map(|it| it.as_str().ok_or_else(|| bad_type(key, "array of strings", v))).collect()
}

impl Vocab {
    /// Load the vocabulary part of the tokenizer metadata. `pre` defaults (add_bos,
    /// clean_spaces, ignore_merges) come from the caller, which knows the pre-tokenizer.
    pub fn load(h: &GgufHeader, kind: Kind, pre: &super::pretokenize::PreInfo) -> Result<Self, TokenizerError> {
        let words = string_array(h, KEY_TOKENS)?;
        if words.is_empty() {
            return Err(TokenizerError::EmptyVocab);
        }
        let n = words.len();
        let scores = read_scores(h, n)?;
        let types = read_types(h, n)?;

        let mut texts = Vec::with_capacity(n);
        let mut token_to_id = map_with_capacity(n);
        let mut attrs = Vec::with_capacity(n);
        for (i, w) in words.iter().enumerate() {
            let text = if w.is_empty() { format!("[EMPTY_{i}]") } else { (*w).to_string() };
            // llama.cpp rejects (newer) or overwrites (older) duplicate texts; keep the last id.
            token_to_id.insert(text.clone(), i as u32);
            texts.push(text);
            attrs.push(match types.as_ref().map(|t| t[i]) {
                None | Some(1) => attr::NORMAL,
                Some(2) => attr::UNKNOWN,
                Some(3) => attr::CONTROL,
                Some(4) => attr::USER_DEFINED,
                Some(5) => attr::UNUSED,
                Some(6) => attr::BYTE,
                Some(_) => 0,
            });
        }

        // Per-model defaults.
        let (mut bos, mut eos) = match kind {
            Kind::Spm => (Some(1u32), Some(2u32)),
            Kind::Bpe => (Some(11u32), Some(11u32)),
        };
        let (mut add_bos, mut add_eos, mut add_space_prefix, clean_spaces) = match kind {
            Kind::Spm => (true, false, true, false),
            Kind::Bpe => (pre.add_bos, false, false, pre.clean_spaces),
        };
        if let Some(v) = get_bool(h, "tokenizer.ggml.add_space_prefix")? {
            add_space_prefix = v;
        }
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        bos = in_range(bos);
        eos = in_range(eos);
        let mut ids: [Option<u32>; 8] = [bos, eos, None, None, None, None, None, None];
        const ID_KEYS: [&str; 8] = [
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
            "tokenizer.ggml.fim_pad_token_id",
            "tokenizer.ggml.fim_rep_token_id",
            "tokenizer.ggml.fim_sep_token_id",
            "tokenizer.ggml.fim_pre_token_id",
        ];
        for (slot, key) in ids.iter_mut().zip(ID_KEYS) {
            // An out-of-range id keeps the default, as llama.cpp does.
            if let Some(id) = get_id(h, key)? {
                if (id as usize) < n {
                    *slot = Some(id as u32);
                }
            }
        }
        let [b, e, mut eot, mut eom, mut fim_pad, mut fim_rep, mut fim_sep, mut fim_pre] = ids;
        bos = b;
        eos = e;
        if let Some(v) = get_bool(h, "tokenizer.ggml.add_bos_token")? {
            add_bos = v;
        }
        if let Some(v) = get_bool(h, "tokenizer.ggml.add_eos_token")? {
            add_eos = v;
        }
        if add_bos && bos.is_none() {
            return Err(TokenizerError::MissingSpecial { flag: "add_bos_token", id_key: ID_KEYS[0] });
        }
        if add_eos && eos.is_none() {
            return Err(TokenizerError::MissingSpecial { flag: "add_eos_token", id_key: ID_KEYS[1] });
        }

        // Auto-detect special tokens by text; such tokens become control tokens. llama.cpp walks
        // a hash map here, so with several candidates its pick is arbitrary: we take the lowest id.
        let mut fim_suf = get_id(h, "tokenizer.ggml.fim_suf_token_id")?.filter(|&i| (i as usize) < n).map(|i| i as u32);
        let mut fim_mid = get_id(h, "tokenizer.ggml.fim_mid_token_id")?.filter(|&i| (i as usize) < n).map(|i| i as u32);
        let slots: [(&mut Option<u32>, &[&str]); 8] = [
            (&mut eot, EOT_TEXTS),
            (&mut eom, EOM_TEXTS),
            (&mut fim_pre, FIM_PRE_TEXTS),
            (&mut fim_suf, FIM_SUF_TEXTS),
            (&mut fim_mid, FIM_MID_TEXTS),
            (&mut fim_pad, FIM_PAD_TEXTS),
            (&mut fim_rep, FIM_REP_TEXTS),
            (&mut fim_sep, FIM_SEP_TEXTS),
        ];
        for (slot, names) in slots {
            if slot.is_some() {
                continue;
            }
            let found: Vec<u32> = names.iter().filter_map(|t| token_to_id.get(*t).copied()).collect();
            for &id in &found {
                attrs[id as usize] |= attr::CONTROL;
            }
            *slot = found.into_iter().min();
        }
        // Control tokens named "unused" are marked unused (no effect on tokenization).
        for (a, t) in attrs.iter_mut().zip(&texts) {
            if *a & attr::CONTROL != 0 && t.contains("unused") {
                *a |= attr::UNUSED;
            }
        }

        let mut eog: Vec<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
        for t in EOG_TEXTS {
            if let Some(&id) = token_to_id.get(*t) {
                eog.push(id);
                attrs[id as usize] |= attr::CONTROL;
            }
        }
        // gpt-oss: these are always rendered.
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(&id) = token_to_id.get(t) {
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();
        let has = |eog: &[u32], t: &str| token_to_id.get(t).is_some_and(|id| eog.contains(id));
        if (has(&eog, "<|return|>") && has(&eog, "<|call|>") && has(&eog, "<|end|>"))
            || (has(&eog, "<|calls|>") && has(&eog, "<|flush|>") && has(&eog, "<|end|>"))
        {
            // o200k_harmony: "<|end|>" does not end generation when "<|return|>"/"<|call|>" exist.
            let end = token_to_id["<|end|>"];
            eog.retain(|&i| i != end);
            attrs[end as usize] = attr::USER_DEFINED;
        }
        if has(&eog, "<|tool_response>") && has(&eog, "</s>") {
            // Gemma 4: "</s>" is an ordinary token there.
            let s = token_to_id["</s>"];
            eog.retain(|&i| i != s);
            attrs[s as usize] = attr::NORMAL;
        }

        // Per-model attributes: Phi-3 strips whitespace to the right of its special tokens.
        let name = h.get_str("general.name").unwrap_or("").to_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            for a in attrs.iter_mut() {
                if *a & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0 {
                    *a |= attr::RSTRIP;
                }
            }
            if let Some(&id) = token_to_id.get("</s>") {
                attrs[id as usize] |= attr::RSTRIP;
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(&id) = token_to_id.get(t) {
                    attrs[id as usize] &= !attr::RSTRIP;
                }
            }
        }

        Ok(Vocab {
            kind,
            texts,
            scores,
            attrs,
            token_to_id,
            bos,
            eos,
            eot,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            ignore_merges: pre.ignore_merges,
        })
    }

    /// The id of a token text, if any.
    #[inline]
    pub fn id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    /// Attribute bits of `id` (0 when out of range).
    #[inline]
    pub fn attr(&self, id: u32) -> u32 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }
}

fn read_scores(h: &GgufHeader, n: usize) -> Result<Vec<f32>, TokenizerError> {
    let Some(v) = h.get(KEY_SCORES) else { return Ok(vec![0.0; n]) };
    let items = v.as_array().ok_or_else(|| bad_type(KEY_SCORES, "array of f32", v))?;
    if items.len() < n {
        return Err(TokenizerError::ShortArray { key: KEY_SCORES, got: items.len(), n_vocab: n });
    }
    items[..n]
        .iter()
        .map(|x| x.as_f32().or_else(|| x.as_i64().map(|i| i as f32)).ok_or_else(|| bad_type(KEY_SCORES, "array of f32", v)))
        .collect()
}

fn read_types(h: &GgufHeader, n: usize) -> Result<Option<Vec<i64>>, TokenizerError> {
    let Some(v) = h.get(KEY_TYPES) else { return Ok(None) };
    let items = v.as_array().ok_or_else(|| bad_type(KEY_TYPES, "array of i32", v))?;
    if items.len() < n {
        return Err(TokenizerError::ShortArray { key: KEY_TYPES, got: items.len(), n_vocab: n });
    }
    items[..n].iter().map(|x| x.as_i64().ok_or_else(|| bad_type(KEY_TYPES, "array of i32", v))).collect::<Result<Vec<_>, _>>().map(Some)
}

/// Which `Kind` a `tokenizer.ggml.model` value names.
pub(crate) fn kind_of(model: &str) -> Result<Kind, TokenizerError> {
    match model {
        MODEL_BPE => Ok(Kind::Bpe),
        MODEL_SPM => Ok(Kind::Spm),
        other => Err(TokenizerError::UnknownModel(other.to_string())),
    }
}
