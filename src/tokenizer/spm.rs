//! SentencePiece BPE (`tokenizer.ggml.model = "llama"`: Llama 2, Gemma, Mistral 7B …), as
//! llama.cpp's SPM tokenizer does it.
//!
//! The fragment (spaces already replaced by `▁`) is split into characters; every adjacent pair
//! whose concatenation is a token is queued with that token's score; the highest score (ties:
//! leftmost) is merged first, and the merged symbol's new neighbours are queued. Symbols that are
//! not tokens at the end (single unknown characters) become `<0xNN>` byte tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::vocab::Vocab;

/// `▁` (U+2581), SentencePiece's space marker.
pub(crate) const SPACE_MARK: &str = "\u{2581}";

#[derive(Clone, Copy)]
struct Sym {
    start: u32,
    len: u32,
    prev: i32,
    next: i32,
}

struct Pair {
    score: f32,
    left: i32,
    right: i32,
    size: u32,
}

impl PartialEq for Pair {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Pair {}
impl PartialOrd for Pair {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pair {
    /// Max-heap order: higher score first, then the smaller left index.
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .partial_cmp(&o.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| o.left.cmp(&self.left))
            .then_with(|| o.right.cmp(&self.right))
            .then_with(|| o.size.cmp(&self.size))
    }
}

/// The byte-fallback token of every byte: `<0xNN>`, else the one-byte token itself.
pub(crate) fn byte_tokens(vocab: &Vocab) -> [Option<u32>; 256] {
    let mut t = [None; 256];
    for (b, slot) in t.iter_mut().enumerate() {
        *slot = vocab.id(&format!("<0x{b:02X}>")).or_else(|| {
            let b = b as u8;
            if b.is_ascii() {
                vocab.id(std::str::from_utf8(&[b]).expect("ascii"))
            } else {
                None
            }
        });
    }
    t
}

/// Encode one escaped fragment, appending ids to `out`.
pub(crate) fn encode(vocab: &Vocab, byte_tok: &[Option<u32>; 256], text: &str, out: &mut Vec<u32>) {
    if text.is_empty() {
        return;
    }
    let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
    for (i, (start, c)) in text.char_indices().enumerate() {
        let end = start + c.len_utf8();
        syms.push(Sym {
            start: start as u32,
            len: c.len_utf8() as u32,
            prev: i as i32 - 1,
            next: if end == text.len() { -1 } else { i as i32 + 1 },
        });
    }
    let mut heap = BinaryHeap::with_capacity(syms.len());
    let try_pair = |syms: &[Sym], heap: &mut BinaryHeap<Pair>, left: i32, right: i32| {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (syms[left as usize], syms[right as usize]);
        let size = l.len + r.len;
        let piece = &text[l.start as usize..(l.start + size) as usize];
        if let Some(id) = vocab.id(piece) {
            heap.push(Pair { score: vocab.scores[id as usize], left, right, size });
        }
    };
    for i in 1..syms.len() {
        try_pair(&syms, &mut heap, i as i32 - 1, i as i32);
    }
    while let Some(p) = heap.pop() {
        let (l, r) = (syms[p.left as usize], syms[p.right as usize]);
        if l.len == 0 || r.len == 0 || l.len + r.len != p.size {
            continue;
        }
        syms[p.left as usize].len += r.len;
        syms[p.left as usize].next = r.next;
        syms[p.right as usize].len = 0;
        if r.next >= 0 {
            syms[r.next as usize].prev = p.left;
        }
        try_pair(&syms, &mut heap, l.prev, p.left);
        try_pair(&syms, &mut heap, p.left, r.next);
    }
    let mut i = 0i32;
    while i != -1 {
        let s = syms[i as usize];
        let piece = &text[s.start as usize..(s.start + s.len) as usize];
        match vocab.id(piece) {
            Some(id) => out.push(id),
            None => out.extend(piece.bytes().filter_map(|b| byte_tok[b as usize])),
        }
        i = s.next;
    }
}
