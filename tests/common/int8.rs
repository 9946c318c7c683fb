//! Helpers of the 8-bit integer matmul tests (tests/matmul_q8_fwd.rs, tests/matmul_q8_bwd.rs).

use super::rng::Rng;
use finetune::quant::{encode_par, GgmlType};

/// `n_out × n_in` normal values times `scale`, encoded as `ty`.
pub fn gaussian_matrix(ty: GgmlType, n_out: usize, n_in: usize, scale: f32, rng: &mut Rng) -> Vec<u8> {
    let x: Vec<f32> = (0..n_out * n_in).map(|_| rng.normal() * scale).collect();
    let mut b = vec![0u8; n_out * n_in / ty.block_size() * ty.type_size()];
    encode_par(ty, &x, &mut b).unwrap();
    b
}

pub fn normals(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.normal()).collect()
}

pub fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// ‖a − b‖ / ‖b‖ in f64.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        num += (x as f64 - y as f64).powi(2);
        den += (y as f64).powi(2);
    }
    (num / den).sqrt()
}
