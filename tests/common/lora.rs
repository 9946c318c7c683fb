//! Random LoRA sets for the adapter tests.

use finetune::lora::{init_pair, LoraSet, SplitMix64, Target};
use finetune::model::Model;

/// Pairs for `targets` in the layers `layers` (A as the LoRA init, B uniform ±`b_scale`, so the
/// adapter changes the output), from one seeded stream; other layers are empty.
pub fn random_lora_in(
    m: &Model,
    layers: std::ops::Range<usize>,
    targets: &[Target],
    r: usize,
    alpha: f32,
    b_scale: f32,
    seed: u64,
) -> LoraSet {
    let mut rng = SplitMix64(seed);
    let layers = (0..m.cfg.n_layer)
        .map(|il| {
            if !layers.contains(&il) {
                return Vec::new();
            }
            targets
                .iter()
                .map(|&t| {
                    let w = m.weight(il, t);
                    let mut p = init_pair(w.n_in(), w.n_out(), r, &mut rng);
                    p.b.iter_mut().for_each(|v| *v = ((rng.next_f64() * 2.0 - 1.0) as f32) * b_scale);
                    (t, p)
                })
                .collect()
        })
        .collect();
    LoraSet { alpha, layers }
}

/// [`random_lora_in`] on every layer.
pub fn random_lora(m: &Model, targets: &[Target], r: usize, alpha: f32, b_scale: f32, seed: u64) -> LoraSet {
    random_lora_in(m, 0..m.cfg.n_layer, targets, r, alpha, b_scale, seed)
}
