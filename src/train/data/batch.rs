//! Shuffling (a self-contained SplitMix64 generator) and arranging samples into sequences,
//! optionally packed several to a sequence with per-token segment ids and positions.

use super::tokenize::Sample;

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, fast, fully deterministic 64-bit generator;
/// the same seed gives the same stream on every platform.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (`n > 0`; 0 for `n == 0`), without modulo bias (Lemire's
    /// multiply-and-reject).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Shuffle `v` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs for seed 1234567, from the reference C implementation.
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn below_is_in_range_and_covers() {
        let mut r = SplitMix64::new(7);
        let mut seen = [0u32; 5];
        for _ in 0..1000 {
            seen[r.below(5) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 150), "{seen:?}");
        assert_eq!(r.below(1), 0);
    }
}
