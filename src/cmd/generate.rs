//! `finetune generate`.

use std::io::Write;
use std::path::PathBuf;

use finetune::chat::Message;
use finetune::generate::{Sampler, SamplerConfig, Session, Utf8Stream};
use finetune::{Error, Result};

/// Options of `generate`.
pub struct GenerateArgs {
    pub model: PathBuf,
    pub prompt: Option<String>,
    pub file: Option<PathBuf>,
    pub n: usize,
    pub sampler: SamplerConfig,
    pub ctx: usize,
    /// Wrap the prompt as a user message in the chat template.
    pub chat: bool,
    /// System message (with `chat`).
    pub system: Option<String>,
    /// Jinja template file replacing the model's (with `chat`).
    pub chat_template: Option<PathBuf>,
    /// Adapters `PATH[:SCALE]`.
    pub lora: Vec<String>,
}

/// Stream a continuation of the prompt (with `chat`: the answer to it as a user message) and end
/// with a tokens/s line (on stderr). Generation stops at an end-of-generation token.
pub fn run(a: GenerateArgs) -> Result<()> {
    let g = super::open(&a.model)?;
    let tok = super::tokenizer(&g)?;
    let prompt = super::text_arg(a.prompt, a.file.as_deref())?;
    let ids = if a.chat {
        let template = super::chat_template(&g, &tok, a.chat_template.as_deref())?;
        let mut messages = Vec::new();
        if let Some(s) = a.system {
            messages.push(Message::new("system", s));
        }
        messages.push(Message::new("user", prompt));
        let text = template.render(&messages, true)?;
        finetune::chat::encode_prompt(&tok, &text)
    } else {
        tok.encode(&prompt, true, true)
    };
    let m = super::load_model(&g, &a.lora)?;
    if ids.is_empty() {
        return Err(Error::usage("the prompt tokenizes to nothing"));
    }
    if ids.len() + 1 > a.ctx {
        return Err(Error::usage(format!("the prompt has {} tokens, more than --ctx {}", ids.len(), a.ctx)));
    }
    let mut session = Session::new(&m, a.ctx);
    let mut sampler = Sampler::new(a.sampler);
    let mut stream = Utf8Stream::default();
    let out = std::io::stdout();
    let mut out = out.lock();
    let stats = session.generate(&tok, &ids, a.n, &mut sampler, |id| {
        let text = stream.push(&tok.token_to_piece(id));
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        true
    })?;
    let _ = writeln!(out, "{}", stream.finish());
    eprintln!(
        "\nprompt: {} tokens in {:.2} s ({:.1} t/s); generated: {} tokens in {:.2} s ({:.1} t/s){}",
        stats.prompt_evaluated,
        stats.prompt_secs,
        stats.prompt_evaluated as f64 / stats.prompt_secs.max(1e-9),
        stats.generated,
        stats.gen_secs,
        stats.generated as f64 / stats.gen_secs.max(1e-9),
        if stats.stopped_at_eog { ", stopped at end of generation" } else { "" }
    );
    Ok(())
}
