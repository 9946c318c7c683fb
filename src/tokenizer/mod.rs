//! Tokenizers read from GGUF metadata, identical to llama.cpp id for id: byte-level BPE
//! (`tokenizer.ggml.model = "gpt2"`: Llama 3, Qwen2, SmolLM …) and SentencePiece BPE
//! (`"llama"`: Llama 2, Gemma …).
//!
//! [`Tokenizer::encode`] is `llama_tokenize(text, add_special, parse_special)`: the text is first
//! split at special tokens (`special.rs`), each raw fragment then goes through the model's
//! algorithm (`bpe.rs` after the `pretokenize.rs` regexes, or `spm.rs`), and BOS/EOS are added
//! per the vocabulary's flags. [`Tokenizer::decode`] is `llama_detokenize(ids, remove_special = true,
//! unparse_special = false)`.
//!
//! ```no_run
//! use finetune::gguf::GgufFile;
//! use finetune::tokenizer::Tokenizer;
//! let f = GgufFile::open("models/SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let tok = Tokenizer::from_gguf(&f)?;
//! let ids = tok.encode("<|im_start|>user\nHi<|im_end|>", true, true);
//! assert_eq!(tok.decode(&ids), "user\nHi");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bpe;
mod decode;
mod hash;
mod hf;
mod pretokenize;
mod special;
mod spm;
mod vocab;

use crate::gguf::GgufHeader;
use special::{Frag, Specials};
use vocab::{Kind, Vocab};

pub(crate) const MODEL_BPE: &str = "gpt2";
pub(crate) const MODEL_SPM: &str = "llama";

/// Why a tokenizer could not be built from a GGUF header.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required metadata key is absent.
    #[error("missing GGUF metadata key `{0}` (the file has no usable tokenizer)")]
    MissingKey(String),
    /// A metadata key has the wrong value type.
    #[error("GGUF metadata key `{key}` must be {expected}, found {}", crate::util::text::shown(found))]
    BadType {
        /// The key.
        key: String,
        /// What was expected.
        expected: &'static str,
        /// The value type found.
        found: String,
    },
    /// `tokenizer.ggml.model` names an algorithm we do not implement.
    #[error("unsupported tokenizer model `{}` in `tokenizer.ggml.model` (supported: \"gpt2\" byte-level BPE, \"llama\" SentencePiece)", crate::util::text::shown(.0))]
    UnknownModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer we do not know.
    #[error("unknown pre-tokenizer `{}` in `tokenizer.ggml.pre`; supported: {supported}", crate::util::text::shown(name))]
    UnknownPre {
        /// The name found.
        name: String,
        /// Comma-separated supported names.
        supported: String,
    },
    /// `tokenizer.ggml.tokens` is an empty array.
    #[error("`tokenizer.ggml.tokens` is empty")]
    EmptyVocab,
    /// A per-token array is shorter than the vocabulary.
    #[error("`{key}` has {got} entries but `tokenizer.ggml.tokens` has {n_vocab}")]
    ShortArray {
        /// The key.
        key: &'static str,
        /// Its length.
        got: usize,
        /// The vocabulary size.
        n_vocab: usize,
    },
    /// A flag asks for a special token whose id is not set (or out of range).
    #[error("`tokenizer.ggml.{flag}` is true but `{id_key}` is not set to a valid token id")]
    MissingSpecial {
        /// The flag.
        flag: &'static str,
        /// The id key.
        id_key: &'static str,
    },
    /// A built-in pre-tokenizer regex failed to compile (a bug).
    #[error("pre-tokenizer regex failed to compile: {0}")]
    Regex(String),
}

#[derive(Debug)]
enum Engine {
    Bpe(Box<bpe::Bpe>),
    Spm { byte_tokens: Box<[Option<u32>; 256]> },
}

/// A tokenizer: built from GGUF metadata (llama.cpp's, id for id), or a Hugging Face
/// `tokenizer.json` (the `tokenizers` crate, transformers' own). Cheap to share (`&self`
/// everywhere, `Send + Sync`).
#[derive(Debug)]
pub struct Tokenizer {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Gguf(Box<GgufTokenizer>),
    Hf(Box<hf::HfTokenizer>),
}

#[derive(Debug)]
struct GgufTokenizer {
    vocab: Vocab,
    engine: Engine,
    specials: Specials,
}

impl Tokenizer {
    /// The tokenizer of a Hugging Face model directory: `tokenizer.json` (required),
    /// BOS/EOS from `tokenizer_config.json` (else `generation_config.json`), end-of-generation
    /// ids from `generation_config.json`'s `eos_token_id` plus the known end-of-turn tokens.
    /// `encode(text, add_special, parse_special)` is transformers'
    /// `encode(text, add_special_tokens=add_special)` (with `parse_special = false`, special-token
    /// texts are split as ordinary text); `decode` is `decode(ids, skip_special_tokens=True)`.
    pub fn from_hf_dir(dir: &std::path::Path) -> crate::error::Result<Self> {
        Ok(Tokenizer { inner: Inner::Hf(Box::new(hf::HfTokenizer::open(dir)?)) })
    }

    /// Build the tokenizer described by `tokenizer.ggml.*` metadata.
    pub fn from_gguf(h: &GgufHeader) -> Result<Self, TokenizerError> {
        let model = h.get("tokenizer.ggml.model").ok_or_else(|| TokenizerError::MissingKey("tokenizer.ggml.model".into()))?;
        let model = model.as_str().ok_or_else(|| TokenizerError::BadType {
            key: "tokenizer.ggml.model".into(),
            expected: "a string",
            found: format!("{:?}", model.value_type()),
        })?;
        let kind = vocab::kind_of(model)?;
        let pre = match kind {
            Kind::Bpe => pretokenize::lookup(h.get_str("tokenizer.ggml.pre"))?,
            Kind::Spm => pretokenize::lookup(None)?,
        };
        let vocab = Vocab::load(h, kind, &pre)?;
        let engine = match kind {
            Kind::Bpe => Engine::Bpe(Box::new(bpe::Bpe::load(h, &pre)?)),
            Kind::Spm => Engine::Spm { byte_tokens: Box::new(spm::byte_tokens(&vocab)) },
        };
        let specials = Specials::new(&vocab);
        Ok(Tokenizer { inner: Inner::Gguf(Box::new(GgufTokenizer { vocab, engine, specials })) })
    }

    /// Token ids of `text`, as `llama_tokenize(text, add_special, parse_special)`.
    ///
    /// `add_special` adds BOS/EOS where the model's flags ask for them; `parse_special` turns
    /// control-token texts such as `<|im_start|>` into their ids (user-defined tokens are always
    /// recognised, as in llama.cpp).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        match &self.inner {
            Inner::Gguf(g) => g.encode(text, add_special, parse_special),
            Inner::Hf(h) => h.encode(text, add_special, parse_special),
        }
    }

    /// The bytes of one token, special tokens rendered as their text
    /// (`llama_token_to_piece(id, lstrip = 0, special = true)`); empty for an unknown id.
    /// BPE pieces are mapped back from GPT-2 characters, SentencePiece `▁` becomes a space and
    /// `<0xNN>` the byte. A piece can be part of a UTF-8 character.
    pub fn token_to_piece(&self, id: u32) -> Vec<u8> {
        match &self.inner {
            Inner::Gguf(g) => decode::piece(&g.vocab, g.byte_map(), id, 0, true),
            Inner::Hf(h) => h.piece(id),
        }
    }

    /// Text of `ids`, as `llama_detokenize(ids, remove_special = true, unparse_special = false)`:
    /// a leading BOS (and trailing EOS when the model adds one) is dropped, control tokens render
    /// as nothing, invalid UTF-8 is replaced (lossy). `decode(encode(x, …, false)) == x` for
    /// ordinary text.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.detokenize(ids, true, false)).into_owned()
    }

    /// The raw bytes of `llama_detokenize(ids, remove_special, unparse_special)`.
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> Vec<u8> {
        match &self.inner {
            Inner::Gguf(g) => decode::detokenize(&g.vocab, g.byte_map(), ids, remove_special, unparse_special),
            Inner::Hf(h) => h.detokenize(ids, remove_special, unparse_special),
        }
    }

    /// Vocabulary size.
    pub fn n_vocab(&self) -> usize {
        self.texts().len()
    }

    fn texts(&self) -> &[String] {
        match &self.inner {
            Inner::Gguf(g) => &g.vocab.texts,
            Inner::Hf(h) => &h.texts,
        }
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.bos,
            Inner::Hf(h) => h.bos,
        }
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.eos,
            Inner::Hf(h) => h.eos,
        }
    }

    /// End-of-turn token: `tokenizer.ggml.eot_token_id`, else the lowest-id token whose text is
    /// a known end-of-turn marker (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`, `<|endoftext|>`…).
    /// (llama.cpp takes the first such token in hash-map order, so its pick among several
    /// candidates is arbitrary.)
    pub fn eot(&self) -> Option<u32> {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.eot,
            Inner::Hf(h) => h.eot,
        }
    }

    /// Whether `id` ends generation: eos, eot, eom and end-of-turn tokens such as `<|im_end|>`
    /// or `<end_of_turn>` (llama.cpp's EOG set).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog_ids().binary_search(&id).is_ok()
    }

    /// Every end-of-generation id, ascending.
    pub fn eog_ids(&self) -> &[u32] {
        match &self.inner {
            Inner::Gguf(g) => &g.vocab.eog,
            Inner::Hf(h) => &h.eog,
        }
    }

    /// Whether encoding with `add_special` prepends BOS / appends EOS.
    pub fn add_bos(&self) -> bool {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.add_bos,
            Inner::Hf(h) => h.add_bos,
        }
    }

    /// See [`Tokenizer::add_bos`].
    pub fn add_eos(&self) -> bool {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.add_eos,
            Inner::Hf(h) => h.add_eos,
        }
    }

    /// The raw vocabulary string of `id` (GPT-2 characters for BPE, `▁` for SentencePiece);
    /// empty for an unknown id.
    pub fn token_text(&self, id: u32) -> &str {
        self.texts().get(id as usize).map(String::as_str).unwrap_or("")
    }

    /// Whether `id` is a control token (`<|im_start|>`, `<bos>`…), rendered empty by `decode`.
    pub fn is_control(&self, id: u32) -> bool {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.attr(id) & vocab::attr::CONTROL != 0,
            Inner::Hf(h) => h.is_control(id),
        }
    }

    /// Whether this is a Hugging Face `tokenizer.json` tokenizer.
    pub fn is_hf(&self) -> bool {
        matches!(self.inner, Inner::Hf(_))
    }
}

impl GgufTokenizer {
    fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let v = &self.vocab;
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && v.add_bos {
            out.extend(v.bos);
        }
        let frags = self.specials.partition(text, parse_special);
        match &self.engine {
            Engine::Bpe(b) => {
                for f in frags {
                    match f {
                        Frag::Text(t) => b.encode(v, t, &mut out),
                        Frag::Token(id) => out.push(id),
                    }
                }
            }
            Engine::Spm { byte_tokens } => {
                let mut prev_special = true;
                let mut buf = String::new();
                for f in frags {
                    match f {
                        Frag::Text(t) => {
                            buf.clear();
                            if v.add_space_prefix && prev_special {
                                buf.push_str(spm::SPACE_MARK);
                            }
                            for c in t.chars() {
                                if c == ' ' {
                                    buf.push_str(spm::SPACE_MARK);
                                } else {
                                    buf.push(c);
                                }
                            }
                            spm::encode(v, byte_tokens, &buf, &mut out);
                            prev_special = false;
                        }
                        Frag::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
        }
        if add_special && v.add_eos {
            out.extend(v.eos);
        }
        out
    }

    fn byte_map(&self) -> Option<&bpe::ByteMap> {
        match &self.engine {
            Engine::Bpe(b) => Some(&b.bytes),
            Engine::Spm { .. } => None,
        }
    }
}
