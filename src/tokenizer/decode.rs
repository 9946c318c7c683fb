//! Ids back to bytes, as llama.cpp's `llama_token_to_piece` and `llama_detokenize`.

use super::bpe::ByteMap;
use super::spm::SPACE_MARK;
use super::vocab::{attr, Kind, Vocab};

/// The bytes of one token. `special`: render control/unknown tokens as their text (else they are
/// empty). `lstrip`: drop up to this many leading spaces.
pub(crate) fn piece(vocab: &Vocab, bytes: Option<&ByteMap>, id: u32, lstrip: usize, special: bool) -> Vec<u8> {
    let Some(text) = vocab.texts.get(id as usize) else { return Vec::new() };
    let a = vocab.attr(id);
    let special_attr = attr::UNKNOWN | attr::CONTROL;
    if !special && a & special_attr != 0 {
        return Vec::new();
    }
    let mut out: Vec<u8> = if a & (special_attr | attr::USER_DEFINED) != 0 {
        text.as_bytes().to_vec()
    } else if a & attr::NORMAL != 0 {
        match (vocab.kind, bytes) {
            (Kind::Bpe, Some(map)) => decode_bytelevel(map, text),
            _ => text.replace(SPACE_MARK, " ").into_bytes(),
        }
    } else if a & attr::BYTE != 0 {
        // "<0xNN>"
        text.get(3..5).and_then(|h| u8::from_str_radix(h, 16).ok()).map(|b| vec![b]).unwrap_or_default()
    } else {
        Vec::new()
    };
    let n = out.iter().take(lstrip).take_while(|&&b| b == b' ').count();
    out.drain(..n);
    out
}

/// GPT-2 characters back to bytes; an unmapped character becomes llama.cpp's
/// `[UNK_BYTE_0x<hex><token text>]`.
fn decode_bytelevel(map: &ByteMap, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match map.byte_of(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// `llama_detokenize(ids, remove_special, unparse_special)`.
pub(crate) fn detokenize(vocab: &Vocab, bytes: Option<&ByteMap>, ids: &[u32], remove_special: bool, unparse_special: bool) -> Vec<u8> {
    let mut ids = ids;
    let mut remove_space = vocab.add_space_prefix;
    if remove_special && vocab.add_bos && !ids.is_empty() && Some(ids[0]) == vocab.bos {
        remove_space = false;
        ids = &ids[1..];
    }
    if remove_special && vocab.add_eos && !ids.is_empty() && Some(ids[ids.len() - 1]) == vocab.eos {
        ids = &ids[..ids.len() - 1];
    }
    let mut out = Vec::new();
    for &id in ids {
        out.extend(piece(vocab, bytes, id, remove_space as usize, unparse_special));
        remove_space = false;
    }
    if vocab.clean_spaces {
        clean_spaces(&mut out);
    }
    out
}

/// llama.cpp's three clean-up passes: drop the space before `?!.,`; turn ` ' ` into `'`; drop
/// the space before `'s`, `'m`, `'re`, `'ve`.
fn clean_spaces(t: &mut Vec<u8>) {
    // Pass 1.
    let mut out: Vec<u8> = Vec::with_capacity(t.len());
    for i in 0..t.len() {
        let x = t[i];
        if i > 0 && t[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(x);
    }
    // Pass 2: a removed second space is seen as NUL by the next character.
    let src = std::mem::take(&mut out);
    let mut i = 0;
    let mut prev_blanked = false;
    while i < src.len() {
        let x = src[i];
        let prev = if i == 0 {
            None
        } else if prev_blanked {
            Some(0u8)
        } else {
            Some(src[i - 1])
        };
        prev_blanked = false;
        if i > 0 && x == b'\'' && i + 1 < src.len() && prev == Some(b' ') && src[i + 1] == b' ' {
            out.pop();
            out.push(x);
            i += 2;
            prev_blanked = true;
            continue;
        }
        out.push(x);
        i += 1;
    }
    // Pass 3.
    let src = std::mem::take(&mut out);
    for i in 0..src.len() {
        let x = src[i];
        if i > 0 && src[i - 1] == b' ' && x == b'\'' && i + 1 < src.len() {
            let x1 = src[i + 1];
            let drop = match x1 {
                b's' | b'm' => true,
                _ => i + 2 < src.len() && matches!((x1, src[i + 2]), (b'r', b'e') | (b'v', b'e')),
            };
            if drop {
                out.pop();
            }
        }
        out.push(x);
    }
    *t = out;
}

#[cfg(test)]
mod tests {
    use super::clean_spaces;

    fn clean(s: &str) -> String {
        let mut v = s.as_bytes().to_vec();
        clean_spaces(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn clean_spaces_passes() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("rock ' n ' roll"), "rock'n'roll");
        assert_eq!(clean("it 's I 'm we 've they 're I 'll don 't"), "it's I'm we've they're I 'll don 't");
        assert_eq!(clean(" ."), ".");
        assert_eq!(clean(""), "");
    }
}
