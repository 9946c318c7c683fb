//! Encode quality against the reference quantizers: `gguf.quants.quantize` for the types the
//! package encodes, ggml's C `quantize_row_*_ref` for the others. Our blocks must decode in the
//! oracle exactly as in our decoder (round trip), and our RMSE on Gaussian data must be within
//! 1% of the reference's.
mod common;

use common::{f32_bytes, oracle, read_f32, tmpdir, Rng};
use finetune::quant::{self, GgmlType};

#[test]
fn our_encoders_match_reference_quality() {
    let dir = tmpdir("encode");
    let mut rng = Rng(7);
    let types: Vec<GgmlType> = GgmlType::ALL.iter().copied().filter(|t| t.can_encode() && *t != GgmlType::F32).collect();
    let n = 256 * 1024; // 1024 super-blocks / 8192 small blocks per type
    let mut ours_all = Vec::new();
    for &ty in &types {
        // Gaussian rows with per-row scale and a few outliers, like real weights.
        let mut x = Vec::with_capacity(n);
        for r in 0..n / 1024 {
            let s = 0.02 * (1.0 + (r % 7) as f32);
            for _ in 0..1024 {
                let mut v = rng.normal() * s;
                if rng.below(500) == 0 {
                    v *= 8.0;
                }
                x.push(v);
            }
        }
        let mut blocks = vec![0u8; n / ty.block_size() * ty.type_size()];
        quant::encode_par(ty, &x, &mut blocks).unwrap();
        std::fs::write(dir.join(format!("src.{}.f32", ty.name())), f32_bytes(&x)).unwrap();
        std::fs::write(dir.join(format!("ours.{}.bin", ty.name())), &blocks).unwrap();
        ours_all.push((ty, blocks));
    }
    let res = oracle(&["encode-compare", dir.to_str().unwrap()]);
    for (ty, blocks) in &ours_all {
        let r = &res[ty.name()];
        // Round trip: the oracle decodes our blocks exactly as we do.
        let theirs = read_f32(&dir.join(format!("deq.{}.f32", ty.name())));
        let mut mine = vec![0f32; theirs.len()];
        quant::decode_scalar(*ty, blocks, &mut mine).unwrap();
        assert!(mine.iter().zip(&theirs).all(|(a, b)| a.to_bits() == b.to_bits()), "{ty}: oracle decodes our blocks differently");
        let (ro, rr) = (r["rmse_ours"].as_f64().unwrap(), r["rmse_ref"].as_f64().unwrap());
        eprintln!(
            "{:<7} rmse ours {:.6e} ref({}) {:.6e} ratio {:.5}  identical blocks: {}/{} (ggml C: {})",
            ty.name(),
            ro,
            r["reference"].as_str().unwrap(),
            rr,
            ro / rr.max(1e-30),
            r["identical_blocks"],
            r["blocks"],
            r["identical_blocks_ggml_c"]
        );
        assert!(ro <= rr * 1.01 + 1e-12, "{ty}: our RMSE {ro} exceeds 1.01 × reference {rr}");
    }
}
