//! Chat templates: turn a conversation into the prompt text a model was trained on.
//!
//! A GGUF's `tokenizer.chat_template` (Jinja) is rendered with minijinja in an environment that
//! reproduces Hugging Face transformers' (`apply_chat_template`): `trim_blocks`, `lstrip_blocks`,
//! `{% break %}`/`{% continue %}`, Python string methods (`.strip()`/`.split()`/`.rsplit()` and
//! `| trim` with Python's whitespace, `.startswith()`, …), `namespace()`,
//! `tojson` as `json.dumps(ensure_ascii=False)`, `raise_exception(msg)`, `strftime_now(fmt)`, and
//! Python's printing of values (`True`, `None`, `['a']`). The variables are `messages`,
//! `add_generation_prompt`, `bos_token`, `eos_token` (plus `unk_token`/`pad_token` from a GGUF),
//! `tools = None`, `documents = None`, and any extra keyword arguments.
//!
//! Models whose GGUF has no template get a built-in one ([`builtin`]) chosen by architecture.
//!
//! Known differences from transformers (jinja2): dict *literals* written inside a template iterate
//! (and `tojson`) in sorted key order, not insertion order; printf-style `'%s' % x` formatting,
//! the `wordcount` filter and a few rare string methods (`swapcase`, …) are missing (a render
//! error, never wrong text); `strftime_now` reads the clock as UTC.
//!
//! A render is bounded: at most 64 MiB of output and an instruction budget (see `env`), so a
//! runaway template ends in [`ChatError::Render`] instead of hanging or exhausting memory.
//!
//! `tests/chat_template.rs` compares renderings byte for byte with jinja2 set up as transformers
//! does and with llama.cpp's `llama_chat_apply_template`.

pub mod builtin;
mod env;
mod pyfmt;
mod strftime;

use std::path::PathBuf;

use minijinja::value::Value;
use minijinja::{Environment, ErrorKind};

use crate::gguf::{GgufFile, GgufHeader, Value as GgufValue};
use crate::tokenizer::Tokenizer;
use crate::util::text::shown_max;
use pyfmt::{from_json, PyDict};

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user`, `assistant`, `tool`, … (passed to the template as is).
    pub role: String,
    /// The message text.
    pub content: String,
}

impl Message {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message { role: role.into(), content: content.into() }
    }
}

/// An error loading or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The template does not parse.
    #[error("chat template syntax error{}: {}", at_line(.line), shown_max(message, 2000))]
    Syntax {
        /// What the parser reported.
        message: String,
        /// 1-based line in the template source, when known.
        line: Option<usize>,
    },
    /// Rendering failed (undefined attribute, bad operand, output cap, …).
    #[error("chat template render error{}: {}", at_line(.line), shown_max(message, 2000))]
    Render {
        /// What went wrong.
        message: String,
        /// 1-based line in the template source, when known.
        line: Option<usize>,
        /// The render hit a resource limit (output cap, instruction budget): the template, not
        /// the conversation, is at fault, and training stops at once on it.
        limit: bool,
    },
    /// The template called `raise_exception(message)` (e.g. roles that do not alternate).
    #[error("chat template raised an exception{}: {}", at_line(.line), shown_max(message, 2000))]
    Raised {
        /// The template's message.
        message: String,
        /// 1-based line of the `raise_exception` call, when known.
        line: Option<usize>,
    },
    /// [`ChatTemplate::builtin`] was given a name it does not know.
    #[error("unknown built-in chat template '{name}' (built-ins: {})", builtin::BUILTIN_NAMES.join(", "))]
    UnknownBuiltin {
        /// The name asked for.
        name: String,
    },
    /// The GGUF has no `tokenizer.chat_template` and no built-in fits its architecture.
    #[error(
        "no chat template in {} (no tokenizer.chat_template, and no built-in template for architecture '{}'); pass --chat-template FILE",
        .file.as_ref().map_or_else(|| "the GGUF file".to_string(), |f| f.display().to_string()),
        .architecture.as_deref().unwrap_or("?")
    )]
    NoTemplate {
        /// The model file, when known.
        file: Option<PathBuf>,
        /// `general.architecture`, when present.
        architecture: Option<String>,
    },
}

impl ChatError {
    /// Whether the template itself is at fault whatever the conversation: a syntax error, no
    /// template, or a resource limit (output cap, instruction budget) hit while rendering.
    /// Training stops on such an error at once, even with `--skip-bad-lines`.
    pub fn is_fatal(&self) -> bool {
        match self {
            ChatError::Render { limit, .. } => *limit,
            ChatError::Raised { .. } => false,
            _ => true,
        }
    }
}

fn at_line(line: &Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}

fn convert_error(e: minijinja::Error, compiling: bool) -> ChatError {
    let line = e.line().filter(|&l| l > 0);
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = src {
        if let Some(r) = s.downcast_ref::<env::Raised>() {
            return ChatError::Raised { message: r.0.clone(), line };
        }
        if s.downcast_ref::<env::LimitHit>().is_some() {
            return ChatError::Render { message: e.detail().unwrap_or("template output too large").to_string(), line, limit: true };
        }
        src = s.source();
    }
    if e.kind() == ErrorKind::OutOfFuel {
        return ChatError::Render {
            message: format!(
                "template ran too long or built too much data (budget of {} instructions / {} MiB of values exhausted)",
                env::FUEL,
                (env::FUEL * 64) >> 20
            ),
            line,
            limit: true,
        };
    }
    let message = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if compiling || e.kind() == ErrorKind::SyntaxError {
        ChatError::Syntax { message, line }
    } else {
        ChatError::Render { message, line, limit: false }
    }
}

/// A compiled chat template with its special tokens.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    name: String,
    /// Template variables besides `messages` and `add_generation_prompt`, in HF's order.
    globals: Vec<(String, Value)>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("name", &self.name).field("source", &self.source).finish()
    }
}

/// Text of token `key` (an id into `tokenizer.ggml.tokens`), if both exist.
fn token_text<'a>(h: &'a GgufHeader, key: &str) -> Option<&'a str> {
    let id = h.get_u64(key)? as usize;
    h.get("tokenizer.ggml.tokens")?.as_array()?.get(id)?.as_str()
}

impl ChatTemplate {
    fn compile(name: &str, source: &str, specials: &[(&str, &str)]) -> Result<Self, ChatError> {
        let rewritten = env::rewrite_generation_tags(source).into_owned();
        let env = env::build(rewritten).map_err(|e| convert_error(e, true))?;
        let mut globals: Vec<(String, Value)> = specials.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect();
        globals.push(("tools".into(), Value::from(())));
        globals.push(("documents".into(), Value::from(())));
        Ok(ChatTemplate { env, source: source.to_string(), name: name.to_string(), globals })
    }

    /// The model's own template (`tokenizer.chat_template`), or else the built-in template for
    /// its architecture (see [`builtin::for_model`]); `bos_token`/`eos_token` (and
    /// `unk_token`/`pad_token` when set) are the vocabulary's texts for the GGUF's token ids.
    pub fn from_gguf(h: &GgufHeader) -> Result<Self, ChatError> {
        let mut specials = Vec::new();
        for (var, key) in [
            ("bos_token", "tokenizer.ggml.bos_token_id"),
            ("eos_token", "tokenizer.ggml.eos_token_id"),
            ("unk_token", "tokenizer.ggml.unknown_token_id"),
            ("pad_token", "tokenizer.ggml.padding_token_id"),
        ] {
            match token_text(h, key) {
                Some(t) => specials.push((var, t)),
                None if var.ends_with("os_token") => specials.push((var, "")),
                None => {}
            }
        }
        if let Some(src) = h.get_str("tokenizer.chat_template") {
            return Self::compile("gguf", src, &specials);
        }
        let has_token = |t: &str| {
            h.get("tokenizer.ggml.tokens").and_then(GgufValue::as_array).is_some_and(|toks| toks.iter().any(|v| v.as_str() == Some(t)))
        };
        match builtin::for_model(h.architecture(), has_token) {
            Some(name) => Self::compile(name, builtin::source(name).expect("known built-in"), &specials),
            None => Err(ChatError::NoTemplate { file: None, architecture: h.architecture().map(str::to_string) }),
        }
    }

    /// [`from_gguf`](Self::from_gguf) for an opened file; a missing template names the file.
    pub fn from_gguf_file(f: &GgufFile) -> Result<Self, ChatError> {
        Self::from_gguf(f).map_err(|e| match e {
            ChatError::NoTemplate { architecture, .. } => ChatError::NoTemplate { file: Some(f.path().to_path_buf()), architecture },
            e => e,
        })
    }

    /// The template of a Hugging Face model directory, as transformers finds it:
    /// `tokenizer_config.json`'s `chat_template` (a string, or a list of `{name, template}`
    /// whose `default` entry is taken), else `chat_template.jinja`, else the built-in one for
    /// `arch`. `bos_token`/`eos_token` (and `unk_token`/`pad_token` when set) are the token texts
    /// of `tokenizer_config.json`, else those of `tok`.
    pub fn from_hf_dir(dir: &std::path::Path, arch: &str, tok: &Tokenizer) -> crate::error::Result<Self> {
        use serde_json::Value as J;
        let tc_path = dir.join("tokenizer_config.json");
        let read = |p: &std::path::Path| -> crate::error::Result<String> {
            let b = crate::util::input::read_input(p, 64 << 20).map_err(|e| crate::Error::io(p, e))?;
            String::from_utf8(b).map_err(|_| crate::Error::format(p, "not UTF-8"))
        };
        let tc: J = if tc_path.exists() {
            serde_json::from_str(&read(&tc_path)?).map_err(|e| crate::Error::format(&tc_path, format!("not valid JSON: {e}")))?
        } else {
            J::Null
        };
        let text_of = |v: Option<&J>| match v {
            Some(J::String(s)) => Some(s.clone()),
            Some(J::Object(o)) => o.get("content").and_then(J::as_str).map(str::to_string),
            _ => None,
        };
        let tok_text = |id: Option<u32>| id.map(|i| tok.token_text(i).to_string());
        let mut specials: Vec<(&str, String)> = vec![
            ("bos_token", text_of(tc.get("bos_token")).or(tok_text(tok.bos())).unwrap_or_default()),
            ("eos_token", text_of(tc.get("eos_token")).or(tok_text(tok.eos())).unwrap_or_default()),
        ];
        for var in ["unk_token", "pad_token"] {
            if let Some(t) = text_of(tc.get(var)) {
                specials.push((var, t));
            }
        }
        let specials: Vec<(&str, &str)> = specials.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let from_config = match tc.get("chat_template") {
            Some(J::String(s)) => Some(s.clone()),
            Some(J::Array(list)) => list
                .iter()
                .find(|e| e.get("name").and_then(J::as_str) == Some("default"))
                .and_then(|e| e.get("template").and_then(J::as_str))
                .map(str::to_string),
            _ => None,
        };
        let jinja = dir.join("chat_template.jinja");
        let (name, src) = match from_config {
            Some(s) => ("tokenizer_config.json", s),
            None if jinja.exists() => ("chat_template.jinja", read(&jinja)?),
            None => {
                let has_token = |t: &str| (0..tok.n_vocab() as u32).any(|i| tok.token_text(i) == t);
                match builtin::for_model(Some(arch), has_token) {
                    Some(b) => (b, builtin::source(b).expect("known built-in").to_string()),
                    None => return Err(ChatError::NoTemplate { file: Some(dir.to_path_buf()), architecture: Some(arch.into()) }.into()),
                }
            }
        };
        Ok(Self::compile(name, &src, &specials)?)
    }

    /// A template from Jinja source (e.g. `--chat-template FILE`).
    pub fn from_source(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, ChatError> {
        Self::compile("custom", source, &[("bos_token", bos_token), ("eos_token", eos_token)])
    }

    /// A built-in template: `chatml`, `gemma` or `llama3` (see [`builtin`]).
    pub fn builtin(name: &str, bos_token: &str, eos_token: &str) -> Result<Self, ChatError> {
        let src = builtin::source(name).ok_or_else(|| ChatError::UnknownBuiltin { name: name.into() })?;
        Self::compile(name, src, &[("bos_token", bos_token), ("eos_token", eos_token)])
    }

    /// Render `messages`; with `add_generation_prompt` the text ends with the opening of an
    /// assistant turn.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, ChatError> {
        self.render_with(messages, add_generation_prompt, &serde_json::Map::new())
    }

    /// [`render`](Self::render) with extra template variables (`tools`, `enable_thinking`, …);
    /// they override `bos_token`/`eos_token`/`tools`/`documents` but not `messages` or
    /// `add_generation_prompt`. JSON objects keep their key order.
    pub fn render_with(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        kwargs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, ChatError> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_object(PyDict(vec![
                    (Value::from("role"), Value::from(m.role.as_str())),
                    (Value::from("content"), Value::from(m.content.as_str())),
                ]))
            })
            .collect();
        let mut vars: Vec<(String, Value)> = self.globals.clone();
        for (k, v) in kwargs {
            let v = from_json(v);
            match vars.iter_mut().find(|(name, _)| name == k) {
                Some(slot) => slot.1 = v,
                None => vars.push((k.clone(), v)),
            }
        }
        vars.retain(|(k, _)| k != "messages" && k != "add_generation_prompt");
        vars.push(("messages".into(), Value::from(msgs)));
        vars.push(("add_generation_prompt".into(), Value::from(add_generation_prompt)));
        let ctx = Value::from_object(PyDict(vars.into_iter().map(|(k, v)| (Value::from(k), v)).collect()));
        let tmpl = self.env.get_template(env::TEMPLATE_NAME).map_err(|e| convert_error(e, true))?;
        let mut out = env::CappedOutput::default();
        match tmpl.render_captured_to(ctx, &mut out) {
            Ok(_) => {}
            Err(e) if out.overflowed => {
                return Err(ChatError::Render {
                    message: format!("template output exceeds {} MiB", env::MAX_PRINTED_BYTES >> 20),
                    line: e.line().filter(|&l| l > 0),
                    limit: true,
                })
            }
            Err(e) => return Err(convert_error(e, false)),
        }
        // minijinja writes only `str`s, so the bytes are UTF-8; checked rather than assumed.
        String::from_utf8(out.bytes).map_err(|e| ChatError::Render {
            message: format!("template output is not UTF-8: {e}"),
            line: None,
            limit: false,
        })
    }

    /// The template's Jinja source, as given (before any internal rewriting).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `"gguf"` for the model's own template, `"custom"` for [`from_source`](Self::from_source),
    /// else the built-in's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Token ids of a rendered chat prompt, as llama.cpp's chat front ends make them: special-token
/// texts (`<|im_start|>`, `<start_of_turn>`…) are parsed; BOS is prepended when the model adds one
/// unless the text already starts with the BOS token's text (a template that writes
/// `{{ bos_token }}`; llama.cpp strips that text and lets the tokenizer add BOS), so there is
/// never a double BOS. No EOS is appended, even for a model that adds one.
pub fn encode_prompt(tok: &Tokenizer, text: &str) -> Vec<u32> {
    let mut ids = Vec::new();
    if let Some(bos) = tok.bos().filter(|_| tok.add_bos()) {
        let bos_text = tok.token_text(bos);
        if bos_text.is_empty() || !text.starts_with(bos_text) {
            ids.push(bos);
        }
    }
    ids.extend(tok.encode(text, false, true));
    ids
}
