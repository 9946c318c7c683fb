//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`): GPT-2's byte-to-unicode mapping, merge
//! ranks from `tokenizer.ggml.merges`, and llama.cpp's merge loop.
//!
//! Each pre-token's bytes are mapped to GPT-2 characters, split into characters, and the
//! adjacent pair with the lowest merge rank (ties: leftmost) is merged until no pair has a rank.
//! A finished symbol that is not a token falls back to its single-byte tokens (those missing are
//! dropped, as in llama.cpp).
//!
//! Long pieces: a pre-token longer than [`MAX_PIECE_BYTES`] (64 KiB; only a run of hostile or
//! unusual input, e.g. one 200 MB "word", produces one) is encoded as consecutive chunks of at
//! most that many bytes, cut at character boundaries, each merged on its own. Memory and time of
//! a piece stay bounded (the merge loop needs ~40 bytes per character); ids differ from
//! llama.cpp's only at the chunk boundaries of such pieces, and are identical for every piece
//! up to 64 KiB — all of normal text.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::hash::{map_with_capacity, FastMap};

use super::pretokenize::{PreInfo, PreTokenizer};
use super::vocab::{string_array, Vocab};
use super::TokenizerError;
use crate::gguf::GgufHeader;

const KEY_MERGES: &str = "tokenizer.ggml.merges";
const NONE: u32 = u32::MAX;
/// Longest pre-token merged as one word; longer ones are merged in chunks of this many bytes.
pub(crate) const MAX_PIECE_BYTES: usize = 1 << 16;

/// `piece` cut into consecutive chunks of at most `max` bytes at character boundaries.
pub(crate) fn piece_chunks(piece: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = piece;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = max.min(rest.len());
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        if end == 0 {
            // max is smaller than the first character: take that character whole.
            end = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

/// GPT-2's reversible byte ↔ printable-character table.
#[derive(Debug)]
pub(crate) struct ByteMap {
    to_char: [char; 256],
    to_byte: HashMap<char, u8>,
}

impl ByteMap {
    /// Bytes that are printable Latin-1 map to themselves; the rest to U+0100 onwards in order.
    pub fn new() -> Self {
        let mut to_char = ['\0'; 256];
        let mut next = 256u32;
        for b in 0..=255u8 {
            let keep = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
            to_char[b as usize] = if keep {
                b as char
            } else {
                let c = char::from_u32(next).expect("U+0100..U+0143 are chars");
                next += 1;
                c
            };
        }
        let to_byte = to_char.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        ByteMap { to_char, to_byte }
    }

    /// The GPT-2 character of byte `b`.
    #[inline]
    pub fn char_of(&self, b: u8) -> char {
        self.to_char[b as usize]
    }

    /// The byte a GPT-2 character stands for.
    #[inline]
    pub fn byte_of(&self, c: char) -> Option<u8> {
        self.to_byte.get(&c).copied()
    }
}

/// The BPE model: pre-tokenizer, byte map and merge ranks.
#[derive(Debug)]
pub(crate) struct Bpe {
    pre: PreTokenizer,
    pub bytes: ByteMap,
    /// Interned strings that occur on either side of a merge.
    parts: FastMap<Box<str>, u32>,
    /// (left part, right part) → rank; the first occurrence of a pair wins.
    ranks: FastMap<(u32, u32), u32>,
}

#[derive(Clone, Copy)]
struct Sym {
    start: u32,
    len: u32,
    prev: i32,
    next: i32,
    part: u32,
}

impl Bpe {
    /// Read the merges and compile the pre-tokenizer.
    pub fn load(h: &GgufHeader, pre: &PreInfo) -> Result<Self, TokenizerError> {
        let merges = string_array(h, KEY_MERGES)?;
        let mut parts: FastMap<Box<str>, u32> = map_with_capacity(merges.len());
        let mut ranks = map_with_capacity(merges.len());
        let mut intern = |s: &str| -> u32 {
            let n = parts.len() as u32;
            *parts.entry(s.into()).or_insert(n)
        };
        for (rank, m) in merges.iter().enumerate() {
            // Split at the first space after index 0 (a merge may start with a space byte's
            // character only in odd vocabularies; llama.cpp does the same).
            let (left, right) = match m.as_bytes().iter().skip(1).position(|&b| b == b' ') {
                Some(p) => (&m[..p + 1], &m[p + 2..]),
                None => ("", ""),
            };
            let key = (intern(left), intern(right));
            ranks.entry(key).or_insert(rank as u32);
        }
        Ok(Bpe { pre: PreTokenizer::new(pre)?, bytes: ByteMap::new(), parts, ranks })
    }

    /// Encode one raw-text fragment (no special tokens in it), appending ids to `out`.
    pub fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        let mut pieces = Vec::new();
        self.pre.split(text, &mut pieces);
        let mut word = String::new();
        let mut scratch = Scratch::default();
        for piece in pieces {
            for chunk in piece_chunks(piece, MAX_PIECE_BYTES) {
                word.clear();
                word.extend(chunk.bytes().map(|b| self.bytes.char_of(b)));
                self.encode_word(vocab, &word, &mut scratch, out);
            }
        }
    }

    fn part(&self, s: &str) -> u32 {
        self.parts.get(s).copied().unwrap_or(NONE)
    }

    fn encode_word(&self, vocab: &Vocab, word: &str, s: &mut Scratch, out: &mut Vec<u32>) {
        if vocab.ignore_merges {
            if let Some(id) = vocab.id(word) {
                out.push(id);
                return;
            }
        }
        s.syms.clear();
        s.heap.clear();
        for (i, (start, c)) in word.char_indices().enumerate() {
            let end = start + c.len_utf8();
            s.syms.push(Sym {
                start: start as u32,
                len: c.len_utf8() as u32,
                prev: i as i32 - 1,
                next: if end == word.len() { -1 } else { i as i32 + 1 },
                part: self.part(&word[start..end]),
            });
        }
        for i in 1..s.syms.len() {
            self.push_pair(s, i as i32 - 1, i as i32);
        }
        while let Some(Reverse((_rank, left, right, size))) = s.heap.pop() {
            let (l, r) = (s.syms[left as usize], s.syms[right as usize]);
            // Stale entry: one side was merged away or grew since the pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != size {
                continue;
            }
            let merged_len = l.len + r.len;
            let text = &word[l.start as usize..(l.start + merged_len) as usize];
            let part = self.part(text);
            {
                let lm = &mut s.syms[left as usize];
                lm.len = merged_len;
                lm.next = r.next;
                lm.part = part;
            }
            s.syms[right as usize].len = 0;
            if r.next >= 0 {
                s.syms[r.next as usize].prev = left as i32;
            }
            let (prev, next) = (s.syms[left as usize].prev, s.syms[left as usize].next);
            self.push_pair(s, prev, left as i32);
            self.push_pair(s, left as i32, next);
        }
        for sym in s.syms.iter().filter(|y| y.len > 0) {
            let text = &word[sym.start as usize..(sym.start + sym.len) as usize];
            match vocab.id(text) {
                Some(id) => out.push(id),
                None => {
                    // Per-byte fallback: only bytes that are themselves a (one-byte) token.
                    for b in text.bytes() {
                        if b.is_ascii() {
                            if let Some(id) = vocab.id(std::str::from_utf8(&[b]).expect("ascii")) {
                                out.push(id);
                            }
                        }
                    }
                }
            }
        }
    }

    fn push_pair(&self, s: &mut Scratch, left: i32, right: i32) {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (s.syms[left as usize], s.syms[right as usize]);
        if l.part == NONE || r.part == NONE {
            return;
        }
        if let Some(&rank) = self.ranks.get(&(l.part, r.part)) {
            // Min-heap on (rank, left): lowest rank first, then the leftmost pair.
            s.heap.push(Reverse((rank, left as u32, right as u32, l.len + r.len)));
        }
    }
}

/// Buffers reused across the words of one call.
#[derive(Default)]
struct Scratch {
    syms: Vec<Sym>,
    heap: BinaryHeap<Reverse<(u32, u32, u32, u32)>>,
}

#[cfg(test)]
mod tests {
    use super::{piece_chunks, ByteMap};

    #[test]
    fn chunks_cut_at_char_boundaries() {
        let s = "aé€😀b";
        let c: Vec<&str> = piece_chunks(s, 3).collect();
        assert_eq!(c, ["aé", "€", "😀", "b"]);
        assert_eq!(c.concat(), s);
        let c: Vec<&str> = piece_chunks("abcdefg", 3).collect();
        assert_eq!(c, ["abc", "def", "g"]);
        assert_eq!(piece_chunks("", 3).count(), 0);
        let c: Vec<&str> = piece_chunks("abc", 64).collect();
        assert_eq!(c, ["abc"]);
    }

    #[test]
    fn byte_map_is_gpt2s() {
        let m = ByteMap::new();
        assert_eq!(m.char_of(b' '), 'Ġ');
        assert_eq!(m.char_of(b'\n'), 'Ċ');
        assert_eq!(m.char_of(b'a'), 'a');
        assert_eq!(m.char_of(0xAD), '\u{143}');
        for b in 0..=255u8 {
            assert_eq!(m.byte_of(m.char_of(b)), Some(b));
        }
    }
}
