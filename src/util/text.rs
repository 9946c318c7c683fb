//! Showing text that came from a file (GGUF keys, strings and tensor names, data-file keys,
//! template messages) inside an error message: control characters are escaped and the length is
//! capped, so a crafted file cannot put NUL bytes or terminal escape sequences on the user's
//! terminal, nor a message of megabytes.

use std::fmt::Write;

/// Most bytes of file-supplied text shown in one message.
pub const SHOWN_MAX: usize = 200;

/// `s` as it may appear in an error message: control characters (C0, DEL, C1) as `\xNN` /
/// `\u{NN}` escapes (`\n`, `\r`, `\t` as themselves escaped: `\n`, `\r`, `\t`), a backslash as
/// itself, and at most [`SHOWN_MAX`] bytes of the text followed by `… (N bytes more)`.
pub fn shown(s: &str) -> String {
    shown_max(s, SHOWN_MAX)
}

/// [`shown`] with a cap of `max` bytes of the original text.
pub fn shown_max(s: &str, max: usize) -> String {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 16);
    for c in s[..end].chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (0x80..0xa0).contains(&(c as u32)) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    if end < s.len() {
        let _ = write!(out, "… ({} bytes more)", s.len() - end);
    }
    out
}

/// Bytes that should be text (possibly not UTF-8) shown as [`shown`] does, invalid UTF-8
/// replaced by U+FFFD.
pub fn shown_bytes(b: &[u8]) -> String {
    shown(&String::from_utf8_lossy(&b[..b.len().min(4 * SHOWN_MAX)]))
        + &if b.len() > 4 * SHOWN_MAX { format!(" ({} bytes in all)", b.len()) } else { String::new() }
}

/// A whole message about to be printed: control characters other than newline escaped as in
/// [`shown`] (the last guard before the terminal; the parts from files are capped where they
/// enter the message).
pub fn printable_message(s: &str) -> String {
    if !s.chars().any(|c| c != '\n' && (c.is_control())) {
        return s.to_string();
    }
    s.split('\n').map(|line| shown_max(line, usize::MAX)).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_caps() {
        assert_eq!(shown("plain name"), "plain name");
        assert_eq!(shown("a\0b\x1b[2Jc\u{85}d\n"), "a\\x00b\\x1b[2Jc\\u{85}d\\n");
        let long = "x".repeat(SHOWN_MAX + 50);
        assert_eq!(shown(&long), format!("{}… (50 bytes more)", "x".repeat(SHOWN_MAX)));
        // The cap never splits a character.
        let s = format!("{}é", "y".repeat(SHOWN_MAX - 1));
        assert_eq!(shown(&s), format!("{}… (2 bytes more)", "y".repeat(SHOWN_MAX - 1)));
        assert_eq!(printable_message("error: a\x1b[2J\nnext\0"), "error: a\\x1b[2J\nnext\\x00");
        assert_eq!(printable_message("ok\nline"), "ok\nline");
        assert_eq!(shown_bytes(b"ab\xff\x00"), "ab\u{fffd}\\x00");
    }
}
