//! Every SIMD decoder must agree bit for bit with its scalar reference, on random blocks with
//! extreme scales.
mod common;

use common::Rng;
use finetune::quant::{self, avx2};

#[test]
fn avx2_decoders_match_scalar_bit_for_bit() {
    assert!(avx2::available(), "this machine is expected to have AVX2+FMA+F16C (CI does)");
    let mut rng = Rng(0x5EED);
    let mut checked = 0;
    for ty in common::random_blocks::decodable_types() {
        let Some(simd) = avx2::decoder(ty) else { continue };
        for n_blocks in [1usize, 3, 4096] {
            let bytes = common::random_blocks::random_blocks(ty, n_blocks, &mut rng);
            let n = n_blocks * ty.block_size();
            let mut a = vec![0f32; n];
            let mut b = vec![0f32; n];
            quant::decode_scalar(ty, &bytes, &mut a).unwrap();
            simd(&bytes, &mut b);
            for i in 0..n {
                assert_eq!(a[i].to_bits(), b[i].to_bits(), "{ty}: element {i} scalar {} vs avx2 {}", a[i], b[i]);
            }
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} types have AVX2 decoders");
}
