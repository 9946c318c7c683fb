//! Splitting a data file into JSON values with their positions: JSON Lines (one value per line,
//! blank lines ignored) or one JSON array (detected by a first non-blank `[`), whose elements
//! are located by a small scanner so each one keeps its own line and can be skipped alone.

use std::path::Path;

use serde_json::Value;

use super::error::{DataError, Problem};

/// One value of the file, or why it could not be parsed.
pub(crate) struct RawValue {
    /// 1-based line where the value starts.
    pub line: usize,
    /// 0-based index in a JSON array file.
    pub element: Option<usize>,
    pub value: Result<Value, Problem>,
}

/// Read `path` into values. Only whole-file problems (unreadable, malformed array, no values)
/// are errors here; a bad value is returned as such so that it can be skipped.
/// The file must be a regular file of at most `max_bytes` (checked before reading; see
/// [`crate::util::input`]).
pub(crate) fn read_values(path: &Path, max_bytes: u64) -> Result<Vec<RawValue>, DataError> {
    let bytes = crate::util::input::read_input(path, max_bytes).map_err(|source| DataError::Io { file: path.to_path_buf(), source })?;
    values_from_bytes(path, &bytes)
}

/// [`read_values`] of bytes already read (`path` names them in errors).
pub(crate) fn values_from_bytes(path: &Path, bytes: &[u8]) -> Result<Vec<RawValue>, DataError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(bytes);
    let first = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let values = match first {
        Some(i) if bytes[i] == b'[' => {
            let text = std::str::from_utf8(bytes).map_err(|e| {
                let line = line_of(bytes, e.valid_up_to());
                DataError::at(path, line, None, Problem::InvalidUtf8)
            })?;
            split_array(text, i).map_err(|(line, m)| DataError::at(path, line, None, Problem::BadArray(m)))?
        }
        _ => split_lines(bytes),
    };
    if values.is_empty() {
        let line = first.map_or(1, |i| line_of(bytes, i));
        return Err(DataError::at(path, line, None, Problem::EmptyFile));
    }
    Ok(values)
}

/// 1-based line of byte `offset`.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    1 + bytes[..offset.min(bytes.len())].iter().filter(|&&b| b == b'\n').count()
}

/// serde_json's message without its " at line L column C" suffix, plus the column.
fn json_problem(e: &serde_json::Error) -> Problem {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let msg = full.strip_suffix(&suffix).unwrap_or(&full);
    let hint =
        if e.is_eof() { " (a JSON Lines file needs one complete object per line; a multi-line file must be one JSON array)" } else { "" };
    Problem::InvalidJson(format!("{msg} (column {}){hint}", e.column()))
}

fn split_lines(bytes: &[u8]) -> Vec<RawValue> {
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let value = match std::str::from_utf8(raw) {
            Err(_) => Err(Problem::InvalidUtf8),
            Ok(s) => serde_json::from_str::<Value>(s).map_err(|e| json_problem(&e)),
        };
        out.push(RawValue { line: i + 1, element: None, value });
    }
    out
}

/// Split the array starting at byte `open` (a `[`) into its elements; each element is parsed on
/// its own. A structural problem is `Err((line, message))`.
fn split_array(text: &str, open: usize) -> Result<Vec<RawValue>, (usize, String)> {
    let b = text.as_bytes();
    // Line starts, for offset → line.
    let mut newlines = vec![];
    newlines.extend(b.iter().enumerate().filter(|(_, &c)| c == b'\n').map(|(i, _)| i));
    let line = |off: usize| 1 + newlines.partition_point(|&n| n < off);
    let skip_ws = |mut p: usize| {
        while p < b.len() && b[p].is_ascii_whitespace() {
            p += 1;
        }
        p
    };
    let mut out = Vec::new();
    let mut p = skip_ws(open + 1);
    if p < b.len() && b[p] == b']' {
        p += 1;
    } else {
        loop {
            let start = p;
            let (mut depth, mut in_str, mut esc) = (0usize, false, false);
            let mut end = None; // (end offset, closes the array?)
            while p < b.len() {
                let c = b[p];
                if in_str {
                    if esc {
                        esc = false;
                    } else if c == b'\\' {
                        esc = true;
                    } else if c == b'"' {
                        in_str = false;
                    }
                } else {
                    match c {
                        b'"' => in_str = true,
                        b'[' | b'{' => depth += 1,
                        b']' | b'}' if depth > 0 => depth -= 1,
                        b']' => {
                            end = Some((p, true));
                            break;
                        }
                        b',' if depth == 0 => {
                            end = Some((p, false));
                            break;
                        }
                        _ => {}
                    }
                }
                p += 1;
            }
            let Some((stop, closes)) = end else {
                let what = if in_str { "an unterminated string" } else { "a missing ']'" };
                return Err((line(start), format!("the array opened at line {} ends with {what}", line(open))));
            };
            let slice = text[start..stop].trim_end();
            let first_line = line(start);
            let value = if slice.is_empty() {
                Err(Problem::InvalidJson("empty array element (a stray or trailing comma?)".into()))
            } else {
                serde_json::from_str::<Value>(slice).map_err(|e| match json_problem(&e) {
                    Problem::InvalidJson(m) if e.line() > 1 => Problem::InvalidJson(format!("{m} (at line {})", first_line + e.line() - 1)),
                    other => other,
                })
            };
            out.push(RawValue { line: first_line, element: Some(out.len()), value });
            p = stop + 1;
            if closes {
                break;
            }
            p = skip_ws(p);
        }
    }
    let rest = skip_ws(p);
    if rest < b.len() {
        return Err((line(rest), "unexpected text after the array's closing ']'".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_and_values(text: &str) -> Vec<(usize, Option<usize>, Result<Value, Problem>)> {
        let open = text.find('[').unwrap();
        split_array(text, open).unwrap().into_iter().map(|r| (r.line, r.element, r.value)).collect()
    }

    #[test]
    fn array_elements_keep_lines() {
        let v = lines_and_values("[\n {\"a\": \"x,]}\"},\n\n {\"b\": [1, {\"c\": 2}]}\n]\n");
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].0, v[0].1), (2, Some(0)));
        assert_eq!(v[0].2.as_ref().unwrap()["a"], "x,]}");
        assert_eq!((v[1].0, v[1].1), (4, Some(1)));
        assert_eq!(v[1].2.as_ref().unwrap()["b"][1]["c"], 2);
    }

    #[test]
    fn array_structure_errors() {
        assert!(lines_and_values("[]").is_empty());
        let e = split_array("[{\"a\": 1},\n{\"b\": 2}", 0).err().unwrap();
        assert_eq!(e.0, 2);
        assert!(e.1.contains("missing ']'"), "{}", e.1);
        let e = split_array("[1]\nx", 0).err().unwrap();
        assert_eq!(e.0, 2);
        let v = lines_and_values("[1,,2]");
        assert!(matches!(&v[1].2, Err(Problem::InvalidJson(m)) if m.contains("stray")));
    }
}
