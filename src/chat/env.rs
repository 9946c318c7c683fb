//! The minijinja environment that reproduces transformers' chat-template environment:
//! jinja2's `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)` with loop
//! controls, the `{% generation %}` tag, `tojson` = `json.dumps(ensure_ascii=False)`, and the
//! globals `raise_exception` and `strftime_now`.
//!
//! Sandboxing: the environment has no loader (no file or network access; `include`/`import` can
//! only name the template itself), no `debug()` global, a recursion limit, a cap on the bytes a
//! render may output (template text and `{{ … }}` expressions, counted by the writer) and on the
//! bytes `{{ … }}` expressions may print (which also covers output captured by `{% set %}`
//! blocks and macros), and an instruction budget (minijinja's fuel) so that a template that loops
//! for ever without printing stops too.

use std::borrow::Cow;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{from_args, Rest, Value, ValueKind, ValueOrKwargs};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior};

use super::pyfmt::{py_str, to_json, JsonOpts};
use super::strftime::strftime_now;

/// Name under which the chat template is stored in its environment.
pub(crate) const TEMPLATE_NAME: &str = "chat_template";
/// Recursion limit (nested blocks, macro calls, self-includes).
const RECURSION_LIMIT: usize = 200;
/// Most bytes one render may output, and most bytes `{{ … }}` expressions may print (64 MiB).
pub(crate) const MAX_PRINTED_BYTES: usize = 64 << 20;
/// Work budget of one render, in minijinja fuel: one per instruction, and one per 64 bytes of
/// data produced or processed (strings and lists built by `~`, `+`, filters, output). 4 000 000
/// fuel is 4 M instructions or 244 MiB of data, whichever comes first: a template that doubles
/// a string in a loop stops before it holds ~250 MB, one looping without end after ~0.15 s.
/// Qwen3's template over a 2 000-message conversation uses about 150 000.
pub(crate) const FUEL: u64 = 4_000_000;

/// Marks an error raised by the template's own `raise_exception(msg)`.
#[derive(Debug)]
pub(crate) struct Raised(pub String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Raised {}

/// Marks an error raised because a render hit the output cap.
#[derive(Debug)]
pub(crate) struct LimitHit;

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("template output cap reached")
    }
}
impl std::error::Error for LimitHit {}

/// Bytes printed so far by one render (kept in the render's [`State`]).
struct Printed(usize);

fn raise_exception(msg: Option<Value>) -> Result<Value, Error> {
    let msg = msg.map(|m| py_str(&m)).transpose()?.unwrap_or_default();
    Err(Error::new(ErrorKind::InvalidOperation, msg.clone()).with_source(Raised(msg)))
}

fn strftime_global(fmt: &str) -> String {
    strftime_now(fmt)
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
/// Keyword arguments reach it as a trailing kwargs value (hence `ValueOrKwargs`: plain `Value`
/// arguments refuse keyword arguments).
fn tojson(value: &Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    const NAMES: [&str; 4] = ["ensure_ascii", "indent", "separators", "sort_keys"];
    let mut params: [Option<Value>; 4] = Default::default();
    let mut positional = args.into_values();
    if let Some(kw) = positional.last().filter(|v| v.is_kwargs()).cloned() {
        positional.pop();
        for key in kw.try_iter()? {
            let name = key.as_str().unwrap_or_default();
            let Some(i) = NAMES.iter().position(|n| *n == name) else {
                return Err(Error::new(ErrorKind::TooManyArguments, format!("tojson() got an unexpected keyword argument '{name}'")));
            };
            params[i] = Some(kw.get_item(&key)?);
        }
    }
    if positional.len() > NAMES.len() {
        return Err(Error::new(ErrorKind::TooManyArguments, "tojson() takes at most 5 arguments"));
    }
    for (i, v) in positional.into_iter().enumerate() {
        if params[i].is_some() {
            return Err(Error::new(ErrorKind::TooManyArguments, format!("tojson() got multiple values for argument '{}'", NAMES[i])));
        }
        params[i] = Some(v);
    }
    let given = |v: &Option<Value>| v.clone().filter(|v| !v.is_none() && !v.is_undefined());
    let mut o = JsonOpts::default();
    if let Some(v) = given(&params[0]) {
        o.ensure_ascii = v.is_true();
    }
    if let Some(v) = given(&params[1]) {
        o.indent = Some(match v.kind() {
            ValueKind::String => v.as_str().unwrap_or_default().to_string(),
            ValueKind::Bool => " ".repeat(usize::from(v.is_true())),
            _ => " ".repeat(v.as_i64().ok_or_else(|| bad_arg("indent", &v))?.clamp(0, 64) as usize),
        });
        o.item_sep = ",".into();
    }
    if let Some(v) = given(&params[2]) {
        let seps: Vec<Value> = v.try_iter().map_err(|_| bad_arg("separators", &v))?.collect();
        match seps.as_slice() {
            [a, b] if a.as_str().is_some() && b.as_str().is_some() => {
                o.item_sep = a.as_str().unwrap_or_default().into();
                o.key_sep = b.as_str().unwrap_or_default().into();
            }
            _ => return Err(bad_arg("separators", &v)),
        }
    }
    if let Some(v) = given(&params[3]) {
        o.sort_keys = v.is_true();
    }
    to_json(value, &o).map(Value::from)
}

fn bad_arg(name: &str, v: &Value) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("tojson(): invalid {name} {v}"))
}

/// Python's `str(x)` for `|string`.
fn string_filter(value: &Value) -> Result<Value, Error> {
    if value.kind() == ValueKind::String {
        return Ok(value.clone());
    }
    py_str(value).map(Value::from)
}

/// Python's `str.isspace()` for one character (`str.strip()`/`split()` whitespace). Unlike Rust's
/// `char::is_whitespace` it includes the ASCII separators U+001C..U+001F.
fn py_space(c: char) -> bool {
    matches!(c,
        '\t'..='\r' | '\u{1c}'..='\u{1f}' | ' ' | '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200a}'
        | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}')
}

#[derive(Clone, Copy)]
enum Strip {
    Both,
    Left,
    Right,
}

/// Python's `str.strip(chars)` / `lstrip` / `rstrip`; `chars = None` strips whitespace.
fn py_strip<'s>(s: &'s str, chars: Option<&str>, side: Strip) -> &'s str {
    let set: Vec<char> = chars.map(|c| c.chars().collect()).unwrap_or_default();
    let strip = |c: char| if chars.is_some() { set.contains(&c) } else { py_space(c) };
    match side {
        Strip::Both => s.trim_matches(strip),
        Strip::Left => s.trim_start_matches(strip),
        Strip::Right => s.trim_end_matches(strip),
    }
}

/// Python's `str.split(sep, maxsplit)` (`right`: `str.rsplit`); `sep = None` splits on runs of
/// whitespace and drops empty parts at the ends.
fn py_split(s: &str, sep: Option<&str>, maxsplit: i64, right: bool) -> Result<Vec<String>, Error> {
    let limit = usize::try_from(maxsplit).ok();
    let mut out: Vec<String> = match sep {
        Some("") => return Err(Error::new(ErrorKind::InvalidOperation, "ValueError: empty separator")),
        Some(sep) => match (limit, right) {
            (None, false) => s.split(sep).map(String::from).collect(),
            (None, true) => s.rsplit(sep).map(String::from).collect(),
            (Some(n), false) => s.splitn(n.saturating_add(1), sep).map(String::from).collect(),
            (Some(n), true) => s.rsplitn(n.saturating_add(1), sep).map(String::from).collect(),
        },
        None => {
            let mut parts = Vec::new();
            let mut left = limit;
            let mut rest = if right { s.trim_end_matches(py_space) } else { s.trim_start_matches(py_space) };
            while !rest.is_empty() {
                if left == Some(0) {
                    parts.push(rest.to_string());
                    break;
                }
                let cut = if right {
                    rest.char_indices().rev().find(|&(_, c)| py_space(c)).map(|(i, c)| (i, i + c.len_utf8()))
                } else {
                    rest.char_indices().find(|&(_, c)| py_space(c)).map(|(i, c)| (i, i + c.len_utf8()))
                };
                let Some((a, b)) = cut else {
                    parts.push(rest.to_string());
                    break;
                };
                if right {
                    parts.push(rest[b..].to_string());
                    rest = rest[..a].trim_end_matches(py_space);
                } else {
                    parts.push(rest[..a].to_string());
                    rest = rest[b..].trim_start_matches(py_space);
                }
                left = left.map(|n| n - 1);
            }
            parts
        }
    };
    if right {
        out.reverse();
    }
    Ok(out)
}

/// Python string methods with Python's whitespace (`strip`, `lstrip`, `rstrip`, `split`,
/// `rsplit`); every other method goes to minijinja-contrib's `pycompat`.
fn string_methods(state: &mut State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if let (Some(s), ValueKind::String) = (value.as_str(), value.kind()) {
        let side = match method {
            "strip" => Some(Strip::Both),
            "lstrip" => Some(Strip::Left),
            "rstrip" => Some(Strip::Right),
            _ => None,
        };
        if let Some(side) = side {
            let (chars,): (Option<&str>,) = from_args(args)?;
            return Ok(Value::from(py_strip(s, chars, side)));
        }
        if method == "split" || method == "rsplit" {
            let (sep, maxsplit): (Option<&str>, Option<i64>) = from_args(args)?;
            let parts = py_split(s, sep, maxsplit.unwrap_or(-1), method == "rsplit")?;
            return Ok(Value::from(parts));
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// jinja2's `trim(value, chars=None)`: `str(value).strip(chars)`.
fn trim_filter(value: &Value, chars: Option<&str>) -> Result<Value, Error> {
    let s = match value.as_str() {
        Some(s) if value.kind() == ValueKind::String => s.to_string(),
        _ => py_str(value)?,
    };
    Ok(Value::from(py_strip(&s, chars, Strip::Both)))
}

/// Rewrite transformers' `{% generation %}…{% endgeneration %}` tags (which only mark assistant
/// text for masks) into the no-op block `{% if true %}…{% endif %}`: same output, same whitespace
/// handling (both are block tags), same line numbers.
pub(crate) fn rewrite_generation_tags(src: &str) -> Cow<'_, str> {
    if !src.contains("generation") {
        return Cow::Borrowed(src);
    }
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(i) = rest.find("{%") {
        out.push_str(&rest[..i]);
        let tag = &rest[i..];
        // The closing `%}` after the opening `{%` (in `{%}` the `%` is shared, which is no tag).
        let Some(end) = tag[2..].find("%}").map(|e| e + 2) else {
            out.push_str(tag);
            rest = "";
            break;
        };
        let inner = &tag[2..end];
        let (lead, body) = split_marker(inner, true);
        let (body, trail) = split_marker(body, false);
        let replacement = match body.trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => out.push_str(&format!("{{%{lead} {r} {trail}%}}")),
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Split a whitespace-control marker (`-` or `+`) off the start or end of a tag's inside.
fn split_marker(s: &str, front: bool) -> (&str, &str) {
    if front {
        match s.strip_prefix(['-', '+']) {
            Some(r) => (&s[..1], r),
            None => ("", s),
        }
    } else {
        match s.strip_suffix(['-', '+']) {
            Some(r) => (r, &s[s.len() - 1..]),
            None => (s, ""),
        }
    }
}

/// Build the environment holding `source` (already rewritten) as [`TEMPLATE_NAME`].
pub(crate) fn build(source: String) -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_syntax(SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build()?);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_fuel(Some(FUEL));
    env.set_unknown_method_callback(string_methods);
    env.remove_global("debug");
    // jinja2 built-ins that minijinja keeps in its contrib crate.
    env.add_filter("truncate", minijinja_contrib::filters::truncate);
    env.add_filter("striptags", minijinja_contrib::filters::striptags);
    env.add_filter("filesizeformat", minijinja_contrib::filters::filesizeformat);
    env.add_function("cycler", minijinja_contrib::globals::cycler);
    env.add_function("joiner", minijinja_contrib::globals::joiner);
    // transformers' additions.
    env.add_filter("tojson", tojson);
    env.add_filter("string", string_filter);
    env.add_filter("trim", trim_filter);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_global);
    env.set_formatter(|out: &mut Output, state: &mut State, value: &Value| {
        let s: Cow<'_, str> = match value.as_str() {
            Some(s) if value.kind() == ValueKind::String => Cow::Borrowed(s),
            _ => Cow::Owned(py_str(value)?),
        };
        let printed = state.get_or_insert_extension(Printed(0));
        printed.0 += s.len();
        if printed.0 > MAX_PRINTED_BYTES {
            return Err(Error::new(ErrorKind::InvalidOperation, format!("template output exceeds {} MiB", MAX_PRINTED_BYTES >> 20))
                .with_source(LimitHit));
        }
        out.write_str(&s).map_err(|_| Error::from(ErrorKind::WriteFailure))
    });
    env.add_template_owned(TEMPLATE_NAME, source)?;
    Ok(env)
}

/// The render's output, refusing to grow past [`MAX_PRINTED_BYTES`].
#[derive(Default)]
pub(crate) struct CappedOutput {
    pub(crate) bytes: Vec<u8>,
    /// Set when a write was refused.
    pub(crate) overflowed: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_PRINTED_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("template output cap reached"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite_generation_tags;

    #[test]
    fn generation_rewrite_survives_odd_tags() {
        // Found by the `template` fuzz target: `{%}` made the tag's inside a reversed range.
        assert_eq!(rewrite_generation_tags("{{%}{% if add_generation_prompt %}x"), "{{%}{% if add_generation_prompt %}x");
        // An unclosed tag is kept once (it used to be copied twice), for the parser to report.
        assert_eq!(rewrite_generation_tags("a{% generation"), "a{% generation");
        assert_eq!(rewrite_generation_tags("{%- generation -%}x{% endgeneration %}"), "{%- if true -%}x{% endif %}");
    }
}
