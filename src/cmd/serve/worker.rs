//! The one thread that owns the model. Requests wait in a bounded queue and run one at a time,
//! in arrival order, each with its own adapter stack moved onto the model for that request and
//! back into the library afterwards (the base weights are never reloaded, and two requests with
//! different adapters never share a forward pass). The numerics run on the rayon pool, as
//! `finetune generate` does, so a greedy answer equals `generate`'s for the same prompt.

use std::path::PathBuf;

use tokio::sync::mpsc;

use finetune::generate::{Sampler, SamplerConfig, Session, Utf8Stream};
use finetune::lora::LoraSet;
use finetune::tokenizer::Tokenizer;
use finetune::{Error, Result};

/// What the worker tells the request's handler.
#[derive(Debug)]
pub enum Event {
    /// Answer text (already cut at a stop string; never a partial UTF-8 character).
    Text(String),
    /// The answer is complete.
    Done(Finish),
    /// The model failed.
    Failed(String),
}

/// How an answer ended.
#[derive(Debug, Clone, Copy)]
pub struct Finish {
    /// `stop` (end-of-generation token or stop string) or `length` (max_tokens or context).
    pub reason: &'static str,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens (a stop string's tokens included, an end-of-generation token not).
    pub completion_tokens: usize,
}

/// One request for the worker.
pub struct Job {
    /// Prompt token ids (checked to fit the context).
    pub ids: Vec<u32>,
    /// Adapters `(index, scale)`, applied in this order.
    pub adapters: Vec<(usize, f32)>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Sampling.
    pub sampler: SamplerConfig,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Where the answer goes; when the client has gone, generation stops.
    pub reply: mpsc::UnboundedSender<Event>,
}

/// Holds back text that may be the start of a stop string and cuts at the first stop string.
pub struct StopScan {
    stops: Vec<String>,
    text: String,
    sent: usize,
}

impl StopScan {
    /// A scanner for `stops` (empty strings ignored).
    pub fn new(stops: &[String]) -> Self {
        StopScan { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), text: String::new(), sent: 0 }
    }

    /// Add text; return what can be sent now and whether a stop string was found (the text
    /// from it on is dropped).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        self.text.push_str(piece);
        let tail = &self.text[self.sent..];
        if let Some(pos) = self.stops.iter().filter_map(|s| tail.find(s.as_str())).min() {
            let out = tail[..pos].to_string();
            self.sent = self.text.len();
            return (out, true);
        }
        let hold = self
            .stops
            .iter()
            .map(|s| (1..s.len()).rev().find(|&k| s.is_char_boundary(k) && tail.ends_with(&s[..k])).unwrap_or(0))
            .max()
            .unwrap_or(0);
        let end = self.text.len() - hold;
        let out = self.text[self.sent..end].to_string();
        self.sent = end;
        (out, false)
    }

    /// What is still held back (no stop string followed).
    pub fn finish(&mut self) -> String {
        let out = self.text[self.sent..].to_string();
        self.sent = self.text.len();
        out
    }
}

/// What the worker needs to start.
pub struct Setup {
    /// The opened base model (moved into the worker thread).
    pub gguf: crate::cmd::ModelFile,
    /// Adapter files with their names, in `--lora` order.
    pub adapters: Vec<(String, PathBuf)>,
    /// Its tokenizer (a copy; the HTTP side has its own).
    pub tok: Tokenizer,
    /// Context size of every request.
    pub ctx: usize,
}

/// Start the worker thread: load the model and every adapter once, then serve `jobs` until the
/// queue is closed. Returns after loading (or with the loading error).
pub fn spawn(setup: Setup, mut jobs: mpsc::Receiver<Job>) -> Result<std::thread::JoinHandle<()>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
    let handle = std::thread::Builder::new()
        .name("finetune-serve-model".into())
        .spawn(move || {
            let Setup { gguf, adapters, tok, ctx } = setup;
            let mut model = match crate::cmd::load_model(&gguf, &[]) {
                Ok(m) => m,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut library: Vec<Option<LoraSet>> = Vec::new();
            for (name, path) in &adapters {
                match finetune::adapter::read_adapter(path, &model) {
                    Ok(set) => library.push(Some(set)),
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::Usage(format!("--lora {name}={}: {e}", path.display()))));
                        return;
                    }
                }
            }
            let _ = ready_tx.send(Ok(()));
            while let Some(job) = jobs.blocking_recv() {
                if job.reply.is_closed() {
                    continue; // the client left while queued
                }
                let mut taken = Vec::new();
                for &(i, scale) in &job.adapters {
                    if let Some(set) = library[i].take() {
                        model.adapters.push((set, scale));
                        taken.push(i);
                    }
                }
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(&model, &tok, ctx, &job)));
                for ((set, _), i) in model.adapters.drain(..).zip(taken) {
                    library[i] = Some(set);
                }
                let event = match r {
                    Ok(Ok(f)) => Event::Done(f),
                    Ok(Err(e)) => Event::Failed(e.to_string()),
                    Err(_) => Event::Failed("the model thread panicked on this request".into()),
                };
                let _ = job.reply.send(event);
            }
        })
        .map_err(|e| Error::Msg(format!("cannot start the model thread: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::Msg("the model thread stopped while loading".into())),
    }
}

/// Generate one answer, sending text as it comes.
fn answer(model: &finetune::model::Model, tok: &Tokenizer, ctx: usize, job: &Job) -> Result<Finish> {
    let mut session = Session::new(model, ctx);
    let mut sampler = Sampler::new(job.sampler.clone());
    let mut utf8 = Utf8Stream::default();
    let mut scan = StopScan::new(&job.stop);
    let mut stopped = false;
    let mut gone = false;
    let stats = session.generate(tok, &job.ids, job.max_tokens, &mut sampler, |id| {
        let (text, hit) = scan.push(&utf8.push(&tok.token_to_piece(id)));
        stopped = hit;
        if !text.is_empty() && job.reply.send(Event::Text(text)).is_err() {
            gone = true;
        }
        !(hit || gone)
    })?;
    if !stopped && !gone {
        let (text, hit) = scan.push(&utf8.finish());
        stopped = hit;
        let rest = if hit { text } else { text + &scan.finish() };
        if !rest.is_empty() {
            let _ = job.reply.send(Event::Text(rest));
        }
    }
    let reason = if stopped || stats.stopped_at_eog { "stop" } else { "length" };
    Ok(Finish { reason, prompt_tokens: job.ids.len(), completion_tokens: stats.generated })
}

#[cfg(test)]
mod tests {
    use super::StopScan;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool, String) {
        let mut s = StopScan::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let mut out = Vec::new();
        for p in pieces {
            let (t, hit) = s.push(p);
            out.push(t);
            if hit {
                return (out, true, String::new());
            }
        }
        let rest = s.finish();
        (out, false, rest)
    }

    #[test]
    fn stop_strings_cut_and_hold_back() {
        assert_eq!(run(&["END"], &["ab", "cE", "N", "Dxyz"]), (vec!["ab".into(), "c".into(), "".into(), "".into()], true, "".into()));
        assert_eq!(run(&["END"], &["ab", "cE", "Nx"]), (vec!["ab".into(), "c".into(), "ENx".into()], false, "".into()));
        assert_eq!(run(&["END"], &["abE"]), (vec!["ab".into()], false, "E".into()));
        assert_eq!(run(&[], &["a", "b"]), (vec!["a".into(), "b".into()], false, "".into()));
        let (out, hit, _) = run(&["né"], &["an", "é!"]);
        assert_eq!((out, hit), (vec!["a".to_string(), "".to_string()], true));
    }
}
