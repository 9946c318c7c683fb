//! Python-compatible text forms of template values, as transformers' Jinja environment produces
//! them: `str(x)` for `{{ x }}` output (`True`, `None`, `['a', 1]`, `{'k': 'v'}`, `1e+16`) and
//! `json.dumps(x, ensure_ascii=False, ...)` for the `tojson` filter.
//!
//! Dicts keep their insertion order where minijinja keeps it: the messages and keyword
//! arguments we pass in are [`PyDict`]s, which iterate in insertion order. Dict *literals* written
//! inside a template are minijinja maps, whose keys iterate in sorted order (minijinja's
//! `preserve_order` feature is not enabled).

use std::fmt::Write as _;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// A dict that iterates in insertion order, like a Python dict (messages, JSON kwargs).
#[derive(Debug, Default)]
pub(crate) struct PyDict(pub(crate) Vec<(Value, Value)>);

impl Object for PyDict {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.iter().map(|(k, _)| k.clone()).collect())
    }
    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

/// Convert JSON to a template value; objects become insertion-ordered [`PyDict`]s.
pub(crate) fn from_json(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (_, Some(u), _) => Value::from(u),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::from(()),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(a) => Value::from(a.iter().map(from_json).collect::<Vec<_>>()),
        J::Object(o) => Value::from_object(PyDict(o.iter().map(|(k, v)| (Value::from(k.as_str()), from_json(v))).collect())),
    }
}

/// `(key, value)` pairs of a map value, in its iteration order.
fn map_pairs(v: &Value) -> Result<Vec<(Value, Value)>, Error> {
    let mut out = Vec::new();
    for k in v.try_iter()? {
        let val = v.get_item(&k)?;
        out.push((k, val));
    }
    Ok(out)
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form outside `1e-4 <= |x| < 1e16`.
pub(crate) fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    let e = format!("{:e}", x.abs());
    let (mant, exp) = e.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let body = if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                format!("{digits}{}.0", "0".repeat(int_len - digits.len()))
            } else {
                format!("{}.{}", &digits[..int_len], &digits[int_len..])
            }
        } else {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let m = if digits.len() > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits };
        format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    };
    format!("{sign}{body}")
}

fn number_str(v: &Value) -> String {
    if v.is_integer() {
        v.to_string()
    } else {
        f64::try_from(v.clone()).map(float_repr).unwrap_or_else(|_| v.to_string())
    }
}

/// Characters Python's `str.isprintable()` rejects, approximated without a Unicode database:
/// controls, separators other than the ASCII space, and the common format characters.
fn py_unprintable(c: char) -> bool {
    matches!(c as u32,
        0..=0x1f | 0x7f..=0xa0 | 0xad | 0x1680 | 0x180e | 0x2000..=0x200f | 0x2028..=0x202f
        | 0x205f..=0x2064 | 0x3000 | 0xfeff | 0xd800..=0xdfff)
}

/// Python's `repr(str)`.
pub(crate) fn str_repr(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if py_unprintable(c) => {
                let n = c as u32;
                if n < 0x100 {
                    let _ = write!(out, "\\x{n:02x}");
                } else {
                    let _ = write!(out, "\\u{n:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

/// Python's `repr(x)` of a template value (used inside containers).
pub(crate) fn py_repr(v: &Value) -> Result<String, Error> {
    match v.kind() {
        ValueKind::String => Ok(str_repr(v.as_str().unwrap_or_default())),
        _ => py_str(v),
    }
}

/// Python's `str(x)` of a template value: what `{{ x }}` prints in transformers.
pub(crate) fn py_str(v: &Value) -> Result<String, Error> {
    Ok(match v.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::None => "None".into(),
        ValueKind::Bool => if v.is_true() { "True" } else { "False" }.into(),
        ValueKind::Number => number_str(v),
        ValueKind::String => v.as_str().unwrap_or_default().to_string(),
        ValueKind::Seq | ValueKind::Iterable => {
            let items = v.try_iter()?.map(|x| py_repr(&x)).collect::<Result<Vec<_>, _>>()?;
            if v.is_tuple() {
                if items.len() == 1 {
                    format!("({},)", items[0])
                } else {
                    format!("({})", items.join(", "))
                }
            } else {
                format!("[{}]", items.join(", "))
            }
        }
        ValueKind::Map if v.as_object().is_some_and(|o| o.repr() == ObjectRepr::Map) => {
            let mut parts = Vec::new();
            for (k, val) in map_pairs(v)? {
                parts.push(format!("{}: {}", py_repr(&k)?, py_repr(&val)?));
            }
            format!("{{{}}}", parts.join(", "))
        }
        _ => v.to_string(),
    })
}

/// Options of Python's `json.dumps` that transformers' `tojson` exposes.
#[derive(Clone, Debug)]
pub(crate) struct JsonOpts {
    /// Escape every non-ASCII character as `\uXXXX` (transformers' default: false).
    pub ensure_ascii: bool,
    /// Indentation string; `None` writes everything on one line.
    pub indent: Option<String>,
    /// Separator between items (default `", "`, or `","` when indenting).
    pub item_sep: String,
    /// Separator between a key and its value (default `": "`).
    pub key_sep: String,
    /// Sort dict keys.
    pub sort_keys: bool,
}

impl Default for JsonOpts {
    fn default() -> Self {
        JsonOpts { ensure_ascii: false, indent: None, item_sep: ", ".into(), key_sep: ": ".into(), sort_keys: false }
    }
}

fn json_str(s: &str, ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ascii && !(' '..='~').contains(&c)) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        float_repr(x)
    }
}

fn not_serializable(v: &Value) -> Error {
    let ty = match v.kind() {
        ValueKind::Undefined => "Undefined".to_string(),
        k => k.to_string(),
    };
    Error::new(ErrorKind::InvalidOperation, format!("Object of type {ty} is not JSON serializable"))
}

fn json_key(k: &Value) -> Result<String, Error> {
    Ok(match k.kind() {
        ValueKind::String => k.as_str().unwrap_or_default().to_string(),
        ValueKind::Number => {
            if k.is_integer() {
                k.to_string()
            } else {
                json_float(f64::try_from(k.clone())?)
            }
        }
        ValueKind::Bool => if k.is_true() { "true" } else { "false" }.into(),
        ValueKind::None => "null".into(),
        _ => return Err(Error::new(ErrorKind::InvalidOperation, format!("keys must be str, int, float, bool or None, not {}", k.kind()))),
    })
}

/// `json.dumps(v, ...)` with Python's exact layout.
pub(crate) fn to_json(v: &Value, o: &JsonOpts) -> Result<String, Error> {
    let mut out = String::new();
    write_json(v, o, 0, &mut out)?;
    Ok(out)
}

fn write_json(v: &Value, o: &JsonOpts, level: usize, out: &mut String) -> Result<(), Error> {
    if level > 200 {
        return Err(Error::new(ErrorKind::InvalidOperation, "tojson: nesting too deep"));
    }
    match v.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if v.is_integer() {
                out.push_str(&v.to_string())
            } else {
                out.push_str(&json_float(f64::try_from(v.clone())?))
            }
        }
        ValueKind::String => json_str(v.as_str().unwrap_or_default(), o.ensure_ascii, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            write_container(o, level, out, '[', ']', &items, |item, lvl, out| write_json(item, o, lvl, out))?;
        }
        ValueKind::Map if v.as_object().is_some_and(|x| x.repr() == ObjectRepr::Map) => {
            let mut pairs = map_pairs(v)?;
            if o.sort_keys {
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
            }
            write_container(o, level, out, '{', '}', &pairs, |(k, val), lvl, out| {
                json_str(&json_key(k)?, o.ensure_ascii, out);
                out.push_str(&o.key_sep);
                write_json(val, o, lvl, out)
            })?;
        }
        _ => return Err(not_serializable(v)),
    }
    Ok(())
}

fn write_container<T>(
    o: &JsonOpts,
    level: usize,
    out: &mut String,
    open: char,
    close: char,
    items: &[T],
    mut each: impl FnMut(&T, usize, &mut String) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    let inner = level + 1;
    let newline = o.indent.as_ref().map(|ind| format!("\n{}", ind.repeat(inner)));
    if let Some(nl) = &newline {
        out.push_str(nl);
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&o.item_sep);
            if let Some(nl) = &newline {
                out.push_str(nl);
            }
        }
        each(item, inner, out)?;
    }
    if let Some(ind) = &o.indent {
        out.push('\n');
        out.push_str(&ind.repeat(level));
    }
    out.push(close);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        for (x, want) in [
            (1.0, "1.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.6, "123456789012345.6"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-0.0, "-0.0"),
            (1e100, "1e+100"),
            (2.5e-7, "2.5e-07"),
        ] {
            assert_eq!(float_repr(x), want, "{x}");
        }
    }

    #[test]
    fn str_repr_matches_python() {
        assert_eq!(str_repr("a'b"), "\"a'b\"");
        assert_eq!(str_repr("a'b\""), "'a\\'b\"'");
        assert_eq!(str_repr("x\n\u{1}é"), "'x\\n\\x01é'");
    }
}
