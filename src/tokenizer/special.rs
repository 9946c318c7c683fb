//! Splitting raw text at special-token occurrences, with the result of llama.cpp's
//! `tokenizer_st_partition`.
//!
//! llama.cpp takes the special tokens (control, user-defined, unknown) longest text first and,
//! for each, splits every remaining raw-text fragment at its leftmost non-overlapping
//! occurrences. With `parse_special = false` only user-defined tokens take part. We find every
//! occurrence of every candidate in one pass with a byte trie, then accept them in the same
//! priority order (token rank, then position) when they lie entirely in still-unclaimed text —
//! the same outcome without a scan of the text per special token.

use super::vocab::{attr, Vocab};

const NONE: u32 = u32::MAX;

/// One piece of partitioned input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frag<'t> {
    /// Raw text to run through the model's tokenizer.
    Text(&'t str),
    /// A special token found in the text.
    Token(u32),
}

#[derive(Debug, Default)]
struct Trie {
    /// Node → sorted (byte, child) edges.
    edges: Vec<Vec<(u8, u32)>>,
    /// Node → rank of the special ending here, or NONE.
    rank: Vec<u32>,
}

impl Trie {
    fn new() -> Self {
        Trie { edges: vec![Vec::new()], rank: vec![NONE] }
    }

    fn child(&self, node: u32, b: u8) -> Option<u32> {
        let e = &self.edges[node as usize];
        e.binary_search_by_key(&b, |&(k, _)| k).ok().map(|i| e[i].1)
    }

    fn insert(&mut self, key: &[u8], rank: u32) {
        let mut node = 0u32;
        for &b in key {
            node = match self.child(node, b) {
                Some(c) => c,
                None => {
                    let c = self.edges.len() as u32;
                    self.edges.push(Vec::new());
                    self.rank.push(NONE);
                    let e = &mut self.edges[node as usize];
                    let at = e.partition_point(|&(k, _)| k < b);
                    e.insert(at, (b, c));
                    c
                }
            };
        }
        // Two tokens with one text: the first in priority order wins.
        if self.rank[node as usize] == NONE {
            self.rank[node as usize] = rank;
        }
    }
}

/// Special-token matcher for both `parse_special` modes.
#[derive(Debug)]
pub(crate) struct Specials {
    /// Priority order: (id, text length, attributes).
    order: Vec<(u32, u32, u32)>,
    all: Trie,
    user: Trie,
}

impl Specials {
    /// Collect the special tokens of `vocab` (attributes control, user-defined or unknown).
    pub fn new(vocab: &Vocab) -> Self {
        let mut order: Vec<(u32, u32, u32)> = (0..vocab.texts.len() as u32)
            .filter(|&id| vocab.attr(id) & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0)
            .map(|id| (id, vocab.texts[id as usize].len() as u32, vocab.attr(id)))
            .collect();
        // Longest first (llama.cpp's sort is unstable; ties keep id order here).
        order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let (mut all, mut user) = (Trie::new(), Trie::new());
        for (rank, &(id, len, a)) in order.iter().enumerate() {
            if len == 0 {
                continue;
            }
            let text = vocab.texts[id as usize].as_bytes();
            all.insert(text, rank as u32);
            if a & (attr::CONTROL | attr::UNKNOWN) == 0 {
                user.insert(text, rank as u32);
            }
        }
        Specials { order, all, user }
    }

    /// Split `text` into raw-text fragments and special tokens.
    pub fn partition<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Frag<'t>> {
        if text.is_empty() {
            return Vec::new();
        }
        let trie = if parse_special { &self.all } else { &self.user };
        let bytes = text.as_bytes();
        let mut occ: Vec<(u32, u32)> = Vec::new(); // (rank, position)
        if trie.edges[0].is_empty() {
            return vec![Frag::Text(text)];
        }
        for pos in 0..bytes.len() {
            let mut node = 0u32;
            for &b in &bytes[pos..] {
                match trie.child(node, b) {
                    Some(c) => node = c,
                    None => break,
                }
                let r = trie.rank[node as usize];
                if r != NONE {
                    occ.push((r, pos as u32));
                }
            }
        }
        if occ.is_empty() {
            return vec![Frag::Text(text)];
        }
        occ.sort_unstable();

        // 0: free text, 1: special token, 2: whitespace removed by lstrip/rstrip.
        let mut state = vec![0u8; bytes.len()];
        let mut found: Vec<(u32, u32, u32)> = Vec::new(); // (position, length, id)
        for (rank, pos) in occ {
            let (id, len, a) = self.order[rank as usize];
            let (s, e) = (pos as usize, (pos + len) as usize);
            if state[s..e].iter().any(|&x| x != 0) {
                continue;
            }
            state[s..e].fill(1);
            if a & attr::LSTRIP != 0 {
                let mut j = s;
                while j > 0 && state[j - 1] == 0 && is_c_space(bytes[j - 1]) {
                    state[j - 1] = 2;
                    j -= 1;
                }
            }
            if a & attr::RSTRIP != 0 {
                let mut j = e;
                while j < bytes.len() && state[j] == 0 && is_c_space(bytes[j]) {
                    state[j] = 2;
                    j += 1;
                }
            }
            found.push((pos, len, id));
        }
        found.sort_unstable();

        let mut out = Vec::with_capacity(2 * found.len() + 1);
        let push_free = |from: usize, to: usize, out: &mut Vec<Frag<'t>>| {
            let mut i = from;
            while i < to {
                if state[i] != 0 {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < to && state[i] == 0 {
                    i += 1;
                }
                out.push(Frag::Text(&text[start..i]));
            }
        };
        let mut cursor = 0usize;
        for (pos, len, id) in found {
            push_free(cursor, pos as usize, &mut out);
            out.push(Frag::Token(id));
            cursor = (pos + len) as usize;
        }
        push_free(cursor, bytes.len(), &mut out);
        out
    }
}

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}
