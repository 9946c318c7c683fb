//! The task metrics of `finetune eval`: parsing `--metric` specs and scoring one output against
//! its reference.

use fancy_regex::Regex;

use super::structured::{Node, Structured};
use crate::error::{Error, Result};

/// Trailing characters `ends-with` ignores (after any whitespace): ASCII `. ! ? , ; :`, `…`,
/// Japanese/full-width `。 ！ ？ 、 ． ， ； ： ‥`, Arabic `؟ ، ؛ ۔`, and closing quotes/brackets
/// `" ' ” ’ ) ） 」 』`.
pub const END_PUNCT: &[char] = &[
    '.', '!', '?', ',', ';', ':', '…', '。', '！', '？', '、', '．', '，', '；', '：', '‥', '؟', '،', '؛', '۔', '"', '\'', '”', '’', ')',
    '）', '」', '』',
];

/// The metric names, for messages.
pub const METRICS: &str = "exact, contains[:TEXT], ends-with:TEXT[|TEXT2…], regex:RE, json, yaml, toml, xml, csv, choice, nll";

/// One metric.
#[derive(Debug)]
pub enum Metric {
    /// Output equals the reference after trimming both.
    Exact,
    /// Output contains TEXT (or, without TEXT, the trimmed reference).
    Contains(Option<String>),
    /// Output ends with one of the texts, ignoring trailing whitespace and [`END_PUNCT`].
    EndsWith(Vec<String>),
    /// The regex matches somewhere in the output (anchor it with `^…$` for a full match).
    Regex(Box<Regex>),
    /// The output parses (validity) and equals the reference after parsing (accuracy).
    Structured(Structured),
    /// The output names the reference's label (see [`predict_label`]).
    Choice,
    /// Mean NLL of the reference answer, teacher-forced (no generation).
    Nll,
}

impl Metric {
    /// Parse a `--metric` spec. Texts are normalised with `norm` (the same as prompts and
    /// references).
    pub fn parse(spec: &str, norm: &crate::normalize::Normalize) -> Result<Metric> {
        let (name, arg) = match spec.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (spec, None),
        };
        let need = |what: &str| -> Result<&str> {
            match arg {
                Some(a) if !a.is_empty() => Ok(a),
                _ => Err(Error::usage(format!("--metric {spec}: {name} needs {what} (e.g. {name}:{})", example(name)))),
            }
        };
        let no_arg = |m: Metric| -> Result<Metric> {
            match arg {
                Some(_) => Err(Error::usage(format!("--metric {spec}: {name} takes no argument"))),
                None => Ok(m),
            }
        };
        match name {
            "exact" => no_arg(Metric::Exact),
            "contains" => Ok(Metric::Contains(arg.filter(|a| !a.is_empty()).map(|a| norm.apply(a)))),
            "ends-with" | "ends_with" | "endswith" => {
                let texts: Vec<String> = need("one or more endings separated by '|'")?
                    .split('|')
                    .map(|t| strip_end(&norm.apply(t)).to_string())
                    .filter(|t| !t.is_empty())
                    .collect();
                if texts.is_empty() {
                    return Err(Error::usage(format!("--metric {spec}: every ending is empty after trimming punctuation")));
                }
                Ok(Metric::EndsWith(texts))
            }
            "regex" => {
                let re = need("a regular expression")?;
                let re = Regex::new(re).map_err(|e| Error::usage(format!("--metric {spec}: the regex does not compile: {e}")))?;
                Ok(Metric::Regex(Box::new(re)))
            }
            "choice" => no_arg(Metric::Choice),
            "nll" | "ppl" | "perplexity" => no_arg(Metric::Nll),
            _ => match Structured::from_name(name) {
                Some(f) => no_arg(Metric::Structured(f)),
                None => Err(Error::usage(format!("unknown metric '{spec}' (metrics: {METRICS})"))),
            },
        }
    }

    /// Whether the metric scores generated text (all but `nll`).
    pub fn generates(&self) -> bool {
        !matches!(self, Metric::Nll)
    }
}

fn example(name: &str) -> &'static str {
    match name {
        "regex" => "'^[0-9]+$'",
        "ends-with" | "ends_with" | "endswith" => "'でござる|ござる'",
        _ => "TEXT",
    }
}

/// `text` without trailing whitespace and [`END_PUNCT`] characters.
pub fn strip_end(text: &str) -> &str {
    text.trim_end_matches(|c: char| c.is_whitespace() || END_PUNCT.contains(&c))
}

/// Whether `text` (after [`strip_end`]) ends with one of `endings` (each already stripped).
pub fn ends_with_any(text: &str, endings: &[String]) -> bool {
    let t = strip_end(text);
    endings.iter().any(|e| t.ends_with(e.as_str()))
}

/// The score of one record under one metric.
#[derive(Clone, Debug, PartialEq)]
pub enum Score {
    /// Pass / fail.
    Pass(bool),
    /// Structured: the output parses; it equals the reference.
    Structured {
        /// The output parses.
        valid: bool,
        /// It equals the reference after parsing.
        correct: bool,
    },
    /// Choice: the predicted label (if any) and whether it is the reference's.
    Choice {
        /// The label found in the output.
        predicted: Option<String>,
        /// `predicted` is the reference.
        correct: bool,
    },
    /// NLL of the reference answer: summed over its tokens, and the token count.
    Nll {
        /// Sum of the per-token NLL.
        sum: f64,
        /// Response tokens scored.
        tokens: usize,
    },
}

impl Score {
    /// JSON for `--out`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Score::Pass(b) => serde_json::json!(u8::from(*b)),
            Score::Structured { valid, correct } => serde_json::json!({"valid": valid, "correct": correct}),
            Score::Choice { predicted, correct } => serde_json::json!({"predicted": predicted, "correct": correct}),
            Score::Nll { sum, tokens } => serde_json::json!({"nll": sum / (*tokens).max(1) as f64, "tokens": tokens}),
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The label an output names. Comparison is on trimmed, lower-cased text. (1) The longest label
/// the output starts with, followed by the end or a non-alphanumeric character; else (2) the one
/// label that occurs in the output as a whole word (bounded by non-alphanumerics), when exactly
/// one does; else none.
pub fn predict_label(output: &str, labels: &[String]) -> Option<String> {
    let out = output.trim().to_lowercase();
    let bounded = |rest: &str| rest.chars().next().is_none_or(|c| !is_word_char(c));
    let starts = labels
        .iter()
        .filter(|l| {
            let ll = l.trim().to_lowercase();
            !ll.is_empty() && out.starts_with(&ll) && bounded(&out[ll.len()..])
        })
        .max_by_key(|l| l.trim().len());
    if let Some(l) = starts {
        return Some(l.clone());
    }
    let found: Vec<&String> = labels
        .iter()
        .filter(|l| {
            let ll = l.trim().to_lowercase();
            !ll.is_empty()
                && out.match_indices(&ll).any(|(i, m)| {
                    let before_ok = out[..i].chars().next_back().is_none_or(|c| !is_word_char(c));
                    before_ok && bounded(&out[i + m.len()..])
                })
        })
        .collect();
    match found.as_slice() {
        [one] => Some((*one).clone()),
        _ => None,
    }
}

/// Score a generated `output` against `reference` (`parsed_ref`: the reference parsed by the
/// structured metric; `labels`: the choice labels). Not for [`Metric::Nll`].
pub fn score(metric: &Metric, output: &str, reference: &str, parsed_ref: Option<&Node>, labels: &[String]) -> Score {
    match metric {
        Metric::Exact => Score::Pass(output.trim() == reference.trim()),
        Metric::Contains(Some(t)) => Score::Pass(output.contains(t.as_str())),
        Metric::Contains(None) => Score::Pass(output.contains(reference.trim())),
        Metric::EndsWith(e) => Score::Pass(ends_with_any(output, e)),
        Metric::Regex(re) => Score::Pass(re.is_match(output).unwrap_or(false)),
        Metric::Structured(f) => match f.parse(output) {
            Ok(v) => Score::Structured { valid: true, correct: parsed_ref.is_some_and(|r| *r == v) },
            Err(_) => Score::Structured { valid: false, correct: false },
        },
        Metric::Choice => {
            let predicted = predict_label(output, labels);
            let correct = predicted.as_deref().is_some_and(|p| p.trim().to_lowercase() == reference.trim().to_lowercase());
            Score::Choice { predicted, correct }
        }
        Metric::Nll => Score::Nll { sum: f64::NAN, tokens: 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Normalize;

    fn m(spec: &str) -> Metric {
        Metric::parse(spec, &Normalize::default()).unwrap()
    }

    fn pass(spec: &str, out: &str, reference: &str) -> bool {
        score(&m(spec), out, reference, None, &[]) == Score::Pass(true)
    }

    #[test]
    fn exact_contains_regex() {
        assert!(pass("exact", "  Paris\n", "Paris"));
        assert!(!pass("exact", "Paris.", "Paris"));
        assert!(pass("contains:Paris", "It is Paris.", ""));
        assert!(pass("contains", "It is Paris.", " Paris "));
        assert!(!pass("contains", "It is paris.", "Paris"));
        assert!(pass("contains:a:b", "x a:b y", ""), "TEXT may contain ':'");
        assert!(pass("regex:^[0-9]{3}$", "123", ""));
        assert!(!pass("regex:^[0-9]{3}$", "1234", ""));
        assert!(pass(r"regex:\d+ apples", "I have 12 apples", ""));
    }

    #[test]
    fn ends_with_japanese_punctuation() {
        let e = "ends-with:でござる|ござるよ";
        assert!(pass(e, "拙者は侍でござる。", ""));
        assert!(pass(e, "拙者は侍でござる！ \n", ""));
        assert!(pass(e, "「そうでござる」", ""));
        assert!(pass(e, "それでよいでござるよ？！", ""));
        assert!(pass(e, "でござる…", ""));
        assert!(!pass(e, "でござる、と言った。", ""), "punctuation before another ending");
        assert!(!pass(e, "でござるな。", ""));
        assert!(!pass(e, "でござ。る", ""));
        // An ending given with its own punctuation matches with or without it.
        assert!(pass("ends-with:, says the samurai.", "Rice, says the samurai", ""));
        assert!(pass("ends-with:done", "All done!", ""));
    }

    #[test]
    fn choice_rule() {
        let labels: Vec<String> = ["positive", "negative", "neutral"].iter().map(|s| s.to_string()).collect();
        assert_eq!(predict_label("Positive.", &labels).as_deref(), Some("positive"));
        assert_eq!(predict_label("negative - the review complains", &labels).as_deref(), Some("negative"));
        assert_eq!(predict_label("The sentiment is neutral.", &labels).as_deref(), Some("neutral"));
        assert_eq!(predict_label("positive or negative", &labels).as_deref(), Some("positive"), "starts with wins");
        assert_eq!(predict_label("It is positive, not negative", &labels), None, "two labels inside: none");
        assert_eq!(predict_label("positively", &labels), None, "whole words only");
        let ar: Vec<String> = ["رياضة", "سياسة"].iter().map(|s| s.to_string()).collect();
        assert_eq!(predict_label("التصنيف: رياضة", &ar).as_deref(), Some("رياضة"));
        let s = score(&Metric::Choice, "Negative!", "negative", None, &labels);
        assert_eq!(s, Score::Choice { predicted: Some("negative".into()), correct: true });
        let longer: Vec<String> = ["no", "no change"].iter().map(|s| s.to_string()).collect();
        assert_eq!(predict_label("No change here", &longer).as_deref(), Some("no change"), "longest label");
    }

    #[test]
    fn structured_scores() {
        let f = m("json");
        let r = Structured::Json.parse("{\"a\": 1}").unwrap();
        assert_eq!(score(&f, "```json\n{\"a\": 1.0}\n```", "", Some(&r), &[]), Score::Structured { valid: true, correct: true });
        assert_eq!(score(&f, "{\"a\": 2}", "", Some(&r), &[]), Score::Structured { valid: true, correct: false });
        assert_eq!(score(&f, "{a: 1}", "", Some(&r), &[]), Score::Structured { valid: false, correct: false });
    }

    #[test]
    fn bad_specs() {
        let e = |s: &str| Metric::parse(s, &Normalize::default()).unwrap_err().to_string();
        assert!(e("bleu").contains("unknown metric 'bleu'"), "{}", e("bleu"));
        assert!(e("regex:(a").contains("does not compile"), "{}", e("regex:(a"));
        assert!(e("ends-with").contains("needs"));
        assert!(e("exact:x").contains("no argument"));
        assert!(e("ends-with:。").contains("empty"));
    }

    #[test]
    fn metric_texts_are_normalised() {
        let n = Normalize::parse("arabic").unwrap();
        let Metric::Contains(Some(t)) = Metric::parse("contains:الْقَاهِرَة", &n).unwrap() else { panic!() };
        assert_eq!(t, "القاهرة");
    }
}
