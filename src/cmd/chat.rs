//! `finetune chat`: a conversation on stdin/stdout.
//!
//! Each user line is appended to the conversation, the whole conversation is rendered with the
//! chat template (with the generation prompt) and tokenized, and the [`Session`] evaluates only
//! the tokens after the longest prefix its KV cache already holds (the previous turns, as long as
//! they tokenize the same), then streams the answer until an end-of-generation token.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use finetune::chat::{ChatTemplate, Message};
use finetune::generate::{Sampler, SamplerConfig, Session, Utf8Stream};
use finetune::tokenizer::Tokenizer;
use finetune::{Error, Result};

/// Options of `chat`.
pub struct ChatArgs {
    pub model: PathBuf,
    pub system: Option<String>,
    pub chat_template: Option<PathBuf>,
    /// Most tokens per answer.
    pub n: usize,
    pub sampler: SamplerConfig,
    pub ctx: usize,
    /// Adapters `PATH[:SCALE]`.
    pub lora: Vec<String>,
}

/// What a line of input asks for.
enum Line<'a> {
    Skip,
    Exit,
    Reset,
    Say(&'a str),
}

fn classify(line: &str) -> Line<'_> {
    match line.trim() {
        "" => Line::Skip,
        "/exit" => Line::Exit,
        "/reset" => Line::Reset,
        _ => Line::Say(line),
    }
}

/// Everything one turn needs.
struct Chat<'s, 'm, 'a> {
    tok: &'s Tokenizer,
    template: &'s ChatTemplate,
    session: Session<'m, 'a>,
    sampler: Sampler,
    n: usize,
}

impl Chat<'_, '_, '_> {
    /// Answer the conversation (whose last message is the user's): stream the answer to `out`,
    /// report the token counts on stderr, and return the answer's text.
    fn answer(&mut self, messages: &[Message], out: &mut impl Write) -> Result<String> {
        let text = self.template.render(messages, true)?;
        let ids = finetune::chat::encode_prompt(self.tok, &text);
        let n_ctx = self.session.cache.n_ctx;
        if ids.len() >= n_ctx {
            return Err(Error::usage(format!(
                "the conversation is {} tokens, the context holds {n_ctx} (--ctx); /reset to start over",
                ids.len()
            )));
        }
        let budget = self.n.min(n_ctx - ids.len());
        let mut answer = Vec::new();
        let mut stream = Utf8Stream::default();
        let tok = self.tok;
        let stats = self.session.generate(tok, &ids, budget, &mut self.sampler, |id| {
            let piece = tok.token_to_piece(id);
            answer.extend_from_slice(&piece);
            let shown = stream.push(&piece);
            out.write_all(shown.as_bytes()).and_then(|_| out.flush()).is_ok()
        })?;
        let rest = stream.finish();
        out.write_all(rest.as_bytes())
            .and_then(|_| writeln!(out))
            .and_then(|_| out.flush())
            .map_err(|e| Error::Msg(format!("writing the answer: {e}")))?;
        let cut = if stats.stopped_at_eog {
            ""
        } else if budget < self.n {
            ", stopped: context full"
        } else {
            ", stopped at -n"
        };
        eprintln!(
            "[prompt: {} tokens, {} reused from the cache, {} evaluated; answer: {} tokens, {:.1} t/s{cut}]",
            ids.len(),
            ids.len() - stats.prompt_evaluated,
            stats.prompt_evaluated,
            stats.generated,
            stats.generated as f64 / stats.gen_secs.max(1e-9),
        );
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }
}

/// Run the conversation until `/exit` or the end of input. On a terminal a failed turn is
/// reported and the conversation goes on; otherwise (input from a file or pipe) it ends the run
/// with the error.
pub fn run(a: ChatArgs) -> Result<()> {
    if a.ctx < 2 {
        return Err(Error::usage("--ctx must be at least 2"));
    }
    let g = super::open(&a.model)?;
    let tok = super::tokenizer(&g)?;
    let template = super::chat_template(&g, &tok, a.chat_template.as_deref())?;
    let m = super::load_model(&g, &a.lora)?;
    let base: Vec<Message> = a.system.into_iter().map(|s| Message::new("system", s)).collect();
    let mut messages = base.clone();
    let mut chat = Chat { tok: &tok, template: &template, session: Session::new(&m, a.ctx), sampler: Sampler::new(a.sampler), n: a.n };

    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if interactive {
        eprintln!(
            "Chatting with {} (template: {}). /reset forgets the conversation; /exit or Ctrl-D quits.",
            a.model.display(),
            template.name()
        );
    }
    let mut raw = Vec::new();
    loop {
        if interactive {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        raw.clear();
        if input.read_until(b'\n', &mut raw).map_err(|e| Error::Msg(format!("reading stdin: {e}")))? == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.strip_suffix('\n').unwrap_or(&line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        match classify(line) {
            Line::Skip => continue,
            Line::Exit => break,
            Line::Reset => {
                messages.clone_from(&base);
                eprintln!("[conversation cleared]");
                continue;
            }
            Line::Say(text) => messages.push(Message::new("user", text)),
        }
        match chat.answer(&messages, &mut out) {
            Ok(answer) => messages.push(Message::new("assistant", answer)),
            Err(e) if interactive => {
                messages.pop();
                eprintln!("error: {e}");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
