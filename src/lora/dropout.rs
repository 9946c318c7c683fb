//! LoRA dropout, as PEFT applies it: the adapter branch of a projection sees `dropout(x)`
//! (`y = W·x + s · B·A·dropout(x)`), with inverted scaling (kept values are multiplied by
//! `1/(1−p)`), in training only.
//!
//! No mask is ever stored: whether element `i` of the input of target `t` in layer `il` is kept
//! is a hash of `(seed, step, micro-batch, il, t, i)`. The forward, the checkpointed recompute
//! and the backward therefore see the same mask, a run is reproducible from its seed, and a
//! resumed run draws exactly the masks an uninterrupted one would.

use super::Target;
use crate::util::rng::{mix, GOLDEN_GAMMA};

/// The dropout of one micro-batch: probability and the key its masks are drawn from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// Probability of zeroing an element, in `[0, 1)`.
    pub p: f32,
    /// Key of this micro-batch's masks (from seed, step and micro-batch index).
    pub key: u64,
}

impl Dropout {
    /// The dropout of micro-batch `micro` of optimizer step `step` (0-based) of a run seeded
    /// with `seed`. `None` when `p` is 0 (the adapter sees `x` itself).
    pub fn for_micro_batch(p: f32, seed: u64, step: u64, micro: u64) -> Option<Dropout> {
        (p > 0.0).then(|| Dropout { p, key: mix(mix(mix(seed ^ 0xD50F_0A7C_11E5_u64).wrapping_add(step)).wrapping_add(micro)) })
    }

    /// The multiplier of kept elements, `1/(1−p)`.
    pub fn scale(&self) -> f32 {
        1.0 / (1.0 - self.p)
    }

    fn stream(&self, il: usize, t: Target) -> u64 {
        mix(self.key ^ mix(((il as u64) << 8) | (t as u64 + 1)))
    }

    /// Keep-multipliers of the `n` input elements of target `t` in layer `il`: `1/(1−p)` where
    /// kept, 0 where dropped.
    pub fn mask(&self, il: usize, t: Target, n: usize) -> Vec<f32> {
        let s = self.stream(il, t);
        // Drop when the top 32 bits of the hash fall below p·2³².
        let threshold = (self.p as f64 * 4_294_967_296.0) as u64;
        let keep = self.scale();
        (0..n as u64).map(|i| if mix(s.wrapping_add(i.wrapping_mul(GOLDEN_GAMMA))) >> 32 < threshold { 0.0 } else { keep }).collect()
    }

    /// `x ⊙ mask` for the input `x` of target `t` in layer `il`.
    pub fn apply(&self, il: usize, t: Target, x: &[f32]) -> Vec<f32> {
        let m = self.mask(il, t, x.len());
        x.iter().zip(&m).map(|(&a, &k)| a * k).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_the_right_fraction_and_differ_by_key() {
        let d = Dropout::for_micro_batch(0.25, 42, 3, 1).unwrap();
        let n = 200_000;
        let m = d.mask(2, Target::Q, n);
        let kept = m.iter().filter(|&&k| k != 0.0).count() as f64 / n as f64;
        assert!((kept - 0.75).abs() < 0.005, "kept fraction {kept}");
        assert!(m.iter().all(|&k| k == 0.0 || k == d.scale()));
        assert_eq!(m, d.mask(2, Target::Q, n), "the same key gave a different mask");
        let others = [
            d.mask(2, Target::K, n),
            d.mask(3, Target::Q, n),
            Dropout::for_micro_batch(0.25, 42, 4, 1).unwrap().mask(2, Target::Q, n),
            Dropout::for_micro_batch(0.25, 42, 3, 0).unwrap().mask(2, Target::Q, n),
            Dropout::for_micro_batch(0.25, 43, 3, 1).unwrap().mask(2, Target::Q, n),
        ];
        for o in &others {
            let same = o.iter().zip(&m).filter(|(a, b)| a == b).count() as f64 / n as f64;
            // Independent masks agree on 0.75² + 0.25² = 62.5% of elements.
            assert!((same - 0.625).abs() < 0.01, "masks of different keys agree on {same}");
        }
        assert!(Dropout::for_micro_batch(0.0, 42, 3, 1).is_none());
    }
}
