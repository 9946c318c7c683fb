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

/// The LoRA handed to the PEFT oracle (tests/oracle/peft_oracle.py and its kin): our init on
/// every target (seed 7), then B uniform ±0.02 (seed 99) so that A gets gradients too; written
/// to `dir/lora.f32` with one descriptor per pair (layer, target, shapes, offsets).
pub fn peft_case_lora(m: &Model, rank: usize, alpha: f32, dir: &std::path::Path) -> (LoraSet, Vec<serde_json::Value>) {
    let mut lora = finetune::train::trainer::init_lora(m, &Target::ALL, rank, alpha, 7);
    let mut rng = SplitMix64(99);
    for (_, p) in lora.layers.iter_mut().flatten() {
        p.b.iter_mut().for_each(|v| *v = ((rng.next_f64() * 2.0 - 1.0) * 0.02) as f32);
    }
    let (mut flat, mut tensors) = (Vec::new(), Vec::new());
    for (il, layer) in lora.layers.iter().enumerate() {
        for (t, p) in layer {
            let offset_a = flat.len();
            flat.extend_from_slice(&p.a);
            let offset_b = flat.len();
            flat.extend_from_slice(&p.b);
            tensors.push(serde_json::json!({"layer": il, "target": t.short(), "n_in": p.n_in, "n_out": p.n_out,
                "r": p.r, "offset_a": offset_a, "offset_b": offset_b}));
        }
    }
    std::fs::write(dir.join("lora.f32"), super::f32_bytes(&flat)).unwrap();
    (lora, tensors)
}
