//! From a record to a training sample: render the conversation with the chat template, tokenize
//! it piece by piece so that each token is known to be prompt or response, and shift the labels.

use super::error::Problem;
use super::record::Content;
use crate::chat::{ChatTemplate, Message};
use crate::tokenizer::Tokenizer;

/// One tokenized training example.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sample {
    /// Token ids, at most `seq_len`.
    pub tokens: Vec<u32>,
    /// `labels[t]` is `tokens[t + 1]` when that token is trained on, else −1 (already shifted:
    /// position `t` predicts `t + 1`; the last label is always −1).
    pub labels: Vec<i32>,
}

impl Sample {
    /// Number of trained positions (labels ≠ −1).
    pub fn n_trained(&self) -> usize {
        self.labels.iter().filter(|&&l| l >= 0).count()
    }
}

/// Tokens with a per-token "trained on" flag, before truncation and label shifting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Masked {
    /// Token ids.
    pub tokens: Vec<u32>,
    /// Whether the model is trained to produce each token.
    pub trained: Vec<bool>,
}

impl Masked {
    fn push(&mut self, ids: &[u32], trained: bool) {
        self.tokens.extend_from_slice(ids);
        self.trained.extend(std::iter::repeat_n(trained, ids.len()));
    }

    /// Prepend BOS when the tokenizer adds one and the tokens do not already start with it.
    fn add_bos(&mut self, tok: &Tokenizer) {
        if let (true, Some(bos)) = (tok.add_bos(), tok.bos()) {
            if self.tokens.first() != Some(&bos) {
                self.tokens.insert(0, bos);
                self.trained.insert(0, false);
            }
        }
    }
}

/// Replace the conversation's leading system messages by `system` (if given).
fn with_system(msgs: &[Message], system: Option<&str>) -> Vec<Message> {
    match system {
        None => msgs.to_vec(),
        Some(s) => {
            let rest = msgs.iter().skip_while(|m| m.role == "system").cloned();
            std::iter::once(Message::new("system", s)).chain(rest).collect()
        }
    }
}

/// Tokenize a conversation with a per-token mask.
///
/// The template renders successive prefixes: before each assistant message (with the generation
/// prompt) and after it, then the whole conversation. Each rendering must extend the previous one
/// (else [`Problem::NotPrefixStable`]); the added text is tokenized on its own (special tokens
/// parsed, no BOS/EOS). Text added by an assistant message is trained on up to and including
/// its last end-of-generation token (`<|im_end|>`, `<end_of_turn>`, …); what the template puts
/// after that (a newline) and everything else is prompt. BOS is prepended when the tokenizer
/// adds one, unless the template already starts with it. With `train_on_prompt` every token is
/// trained on.
pub fn mask_chat(msgs: &[Message], tok: &Tokenizer, tmpl: &ChatTemplate, train_on_prompt: bool) -> Result<Masked, Problem> {
    let render = |n: usize, gen: bool| {
        tmpl.render(&msgs[..n], gen).map_err(|e| {
            if e.is_fatal() {
                Problem::TemplateFatal(e.to_string())
            } else {
                Problem::Template(e.to_string())
            }
        })
    };
    // (rendering, what it covers, is the added text an assistant message?)
    let mut cuts: Vec<(String, String, bool)> = Vec::with_capacity(2 * msgs.len() + 1);
    for (i, m) in msgs.iter().enumerate() {
        if m.role == "assistant" {
            cuts.push((render(i, true)?, format!("messages[..{i}] with the generation prompt"), false));
            cuts.push((render(i + 1, false)?, format!("messages[..={i}]"), true));
        }
    }
    cuts.push((render(msgs.len(), false)?, "the whole conversation".into(), false));
    let mut out = Masked::default();
    let (mut prev, mut prev_what) = (String::new(), String::from("nothing"));
    for (text, what, assistant) in cuts {
        let Some(delta) = text.strip_prefix(prev.as_str()) else {
            let at = prev.bytes().zip(text.bytes()).take_while(|(a, b)| a == b).count();
            let show = |s: &str| {
                let mut end = (at + 24).min(s.len());
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                let mut start = at.min(end);
                while !s.is_char_boundary(start) {
                    start -= 1;
                }
                format!("{:?}", &s[start..end])
            };
            return Err(Problem::NotPrefixStable {
                detail: format!(
                    "rendering {what} does not start with the rendering of {prev_what}: at byte {at} one has {} and the other {}",
                    show(&prev),
                    show(&text)
                ),
            });
        };
        let ids = tok.encode(delta, false, true);
        if assistant && !train_on_prompt {
            let end = ids.iter().rposition(|&t| tok.is_eog(t)).map_or(ids.len(), |p| p + 1);
            out.push(&ids[..end], true);
            out.push(&ids[end..], false);
        } else {
            out.push(&ids, train_on_prompt);
        }
        prev = text;
        prev_what = what;
    }
    out.add_bos(tok);
    Ok(out)
}

/// Tokenize raw text, every token trained on: BOS if the tokenizer adds one, the text (special
/// tokens parsed), EOS if the tokenizer adds one.
pub fn mask_text(text: &str, tok: &Tokenizer) -> Masked {
    let mut out = Masked::default();
    out.push(&tok.encode(text, false, true), true);
    out.add_bos(tok);
    if let (true, Some(eos)) = (tok.add_eos(), tok.eos()) {
        if out.tokens.last() != Some(&eos) {
            out.push(&[eos], true);
        }
    }
    out
}

/// Truncate to `seq_len` tokens and shift the mask into labels; the flag says whether the
/// tokens were truncated. No trained token left is an error.
pub fn to_sample(m: Masked, seq_len: usize) -> Result<(Sample, bool), Problem> {
    let Masked { mut tokens, mut trained } = m;
    let first_trained = trained.iter().skip(1).position(|&t| t).map(|p| p + 1);
    let truncated = tokens.len() > seq_len;
    if truncated {
        tokens.truncate(seq_len);
        trained.truncate(seq_len);
    }
    let labels: Vec<i32> = (0..tokens.len())
        .map(|t| match tokens.get(t + 1) {
            Some(&next) if trained[t + 1] => next as i32,
            _ => -1,
        })
        .collect();
    if labels.iter().all(|&l| l < 0) {
        return Err(match first_trained {
            Some(p) if truncated => Problem::PromptFillsSeqLen { prompt_tokens: p, seq_len },
            _ => Problem::NothingToTrain,
        });
    }
    Ok((Sample { tokens, labels }, truncated))
}

/// How to turn a record into a sample.
#[derive(Clone, Copy, Debug)]
pub struct SampleOptions<'a> {
    /// Maximum tokens per sample.
    pub seq_len: usize,
    /// Train on every token, not only the responses.
    pub train_on_prompt: bool,
    /// Replace each conversation's leading system messages by this one.
    pub system_prompt: Option<&'a str>,
}

/// The sample of one record (see [`mask_chat`], [`mask_text`], [`to_sample`]) and whether it
/// was truncated. Conversations need a template (`None` → [`Problem::NoTemplate`]).
pub fn build_sample(
    content: &Content,
    tok: &Tokenizer,
    tmpl: Option<&ChatTemplate>,
    opts: SampleOptions<'_>,
) -> Result<(Sample, bool), Problem> {
    let masked = match content {
        Content::Text(t) => mask_text(t, tok),
        Content::Chat(msgs) => {
            let tmpl = tmpl.ok_or(Problem::NoTemplate)?;
            mask_chat(&with_system(msgs, opts.system_prompt), tok, tmpl, opts.train_on_prompt)?
        }
    };
    to_sample(masked, opts.seq_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_shifted_and_truncated() {
        let m = Masked { tokens: vec![1, 2, 3, 4, 5], trained: vec![false, false, true, true, false] };
        let (s, tr) = to_sample(m.clone(), 8).unwrap();
        assert!(!tr);
        assert_eq!(s.labels, vec![-1, 3, 4, -1, -1]);
        let (s, tr) = to_sample(m.clone(), 3).unwrap();
        assert!(tr);
        assert_eq!((s.tokens, s.labels), (vec![1, 2, 3], vec![-1, 3, -1]));
        assert_eq!(to_sample(m, 2), Err(Problem::PromptFillsSeqLen { prompt_tokens: 2, seq_len: 2 }));
        let only_first = Masked { tokens: vec![7], trained: vec![true] };
        assert_eq!(to_sample(only_first, 4), Err(Problem::NothingToTrain));
    }

    #[test]
    fn system_override() {
        let msgs = vec![Message::new("system", "a"), Message::new("user", "u"), Message::new("assistant", "x")];
        let got = with_system(&msgs, Some("b"));
        assert_eq!(got[0], Message::new("system", "b"));
        assert_eq!(got.len(), 3);
        assert_eq!(with_system(&msgs[1..], Some("b")).len(), 3);
    }
}
