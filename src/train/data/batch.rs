//! Arranging samples into sequences, optionally packed several to a sequence with per-token
//! segment ids and positions.

use super::tokenize::Sample;

/// A model input: one sample, or several packed together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sequence {
    /// Token ids (at most `seq_len`; not padded).
    pub tokens: Vec<u32>,
    /// Shifted labels as in [`Sample::labels`]; −1 is not trained (each sample's last position
    /// is −1, so no position predicts the next sample's first token).
    pub labels: Vec<i32>,
    /// Position of each token within its own sample (restarts at 0 for each sample).
    pub positions: Vec<u32>,
    /// Which sample of the sequence each token belongs to (0, 1, …); attention must not cross
    /// segments.
    pub segments: Vec<u32>,
}

impl Sequence {
    fn append(&mut self, s: &Sample) {
        let seg = self.segments.last().map_or(0, |&g| g + 1);
        self.tokens.extend_from_slice(&s.tokens);
        self.labels.extend_from_slice(&s.labels);
        self.positions.extend(0..s.tokens.len() as u32);
        self.segments.extend(std::iter::repeat_n(seg, s.tokens.len()));
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Number of samples packed in.
    pub fn n_segments(&self) -> usize {
        self.segments.last().map_or(0, |&g| g as usize + 1)
    }
}

/// Arrange `samples` in the given `order` into sequences: one per sample, or with `pack` greedily
/// filled (a sample goes into the current sequence while the total stays ≤ `seq_len`, else it
/// starts a new one). Every sample appears exactly once, in `order`. A sample longer than
/// `seq_len` gets a sequence of its own.
pub fn arrange(samples: &[Sample], order: &[usize], seq_len: usize, pack: bool) -> Vec<Sequence> {
    let mut out: Vec<Sequence> = Vec::new();
    let mut cur = Sequence::default();
    for &i in order {
        let s = &samples[i];
        if !cur.is_empty() && (!pack || cur.len() + s.tokens.len() > seq_len) {
            out.push(std::mem::take(&mut cur));
        }
        cur.append(s);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
