//! AArch64: every NEON kernel (with and without `dotprod`) must agree bit for bit with its scalar
//! reference, on random blocks with extreme scales — decoders, activation quantizers, one-row,
//! multi-row, tiled-order and repacked-Q4_K dots. Run under `qemu-aarch64` by `tests/arm.sh`,
//! once with `QEMU_CPU=max` (dotprod, i8mm) and once with a CPU without dotprod (cortex-a53), so
//! both dispatch paths run; `FINETUNE_EXPECT_ISA` (set there) names the level the dispatch must
//! pick.
#![cfg(target_arch = "aarch64")]
mod common;

use common::Rng;
use finetune::quant::kernels::{DotKernelN, Repacked};
use finetune::quant::q8::{self, BlockQ8K, Q8Rows};
use finetune::quant::vecdot::DotKernel;
use finetune::quant::{self, GgmlType, Isa, TypeKernels};

/// The NEON levels this CPU runs (plain NEON always; with dotprod where the CPU has it).
fn levels() -> Vec<Isa> {
    let l: Vec<Isa> = [Isa::Neon, Isa::NeonDot].into_iter().filter(|i| i.supported()).collect();
    assert!(l.contains(&Isa::Neon), "NEON is baseline on AArch64");
    l
}

fn table(isa: Isa, ty: GgmlType) -> &'static TypeKernels {
    quant::kernels_for(isa, ty).expect("supported level")
}

#[test]
fn dispatch_picks_the_best_neon_level() {
    let dot = std::arch::is_aarch64_feature_detected!("dotprod");
    assert_eq!(Isa::NeonDot.supported(), dot);
    let want = if dot { Isa::NeonDot } else { Isa::Neon };
    if std::env::var("FINETUNE_SIMD").as_deref() != Ok("scalar") {
        assert_eq!(quant::isa(), want, "dispatch chose {}", quant::isa().name());
        assert_eq!(quant::kernels(GgmlType::Q4_K).path, "neon");
    }
    // tests/arm.sh names the level the emulated CPU must give (so a detection that silently
    // fell back to plain NEON, or to scalar, fails there).
    if let Ok(expect) = std::env::var("FINETUNE_EXPECT_ISA") {
        assert_eq!(quant::isa().name(), expect, "QEMU_CPU={:?}", std::env::var("QEMU_CPU").ok());
    }
    eprintln!("dispatch: {} (dotprod {dot}, i8mm {})", quant::isa().name(), std::arch::is_aarch64_feature_detected!("i8mm"));
}

#[test]
fn neon_decoders_match_scalar_bit_for_bit() {
    for isa in levels() {
        let mut rng = Rng(0x5EED);
        let mut checked = 0;
        for ty in common::random_blocks::decodable_types() {
            let Some(simd) = Some(table(isa, ty)).filter(|k| k.path == "neon").and_then(|k| k.decode) else { continue };
            for n_blocks in [1usize, 3, 257] {
                let bytes = common::random_blocks::random_blocks(ty, n_blocks, &mut rng);
                let n = n_blocks * ty.block_size();
                let (mut a, mut b) = (vec![0f32; n], vec![f32::NAN; n]);
                quant::decode_scalar(ty, &bytes, &mut a).unwrap();
                simd(&bytes, &mut b);
                for i in 0..n {
                    assert_eq!(a[i].to_bits(), b[i].to_bits(), "{ty}: element {i} scalar {} vs {} {}", a[i], isa.name(), b[i]);
                }
            }
            checked += 1;
        }
        assert!(checked >= 16, "only {checked} types have NEON decoders");
    }
}

/// Activation rows with a spread of magnitudes, exact ties (x·127/amax landing on .5), zeros,
/// and a block holding both +amax and −amax.
fn activations(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut x: Vec<f32> = (0..n).map(|i| rng.normal() * [1e-3f32, 1.0, 40.0][i / 256 % 3]).collect();
    x[..32].fill(0.0);
    for (j, v) in x[32..64].iter_mut().enumerate() {
        *v = (j as f32 - 16.0) * 0.5;
    }
    if n >= 512 {
        x[300] = 99.0;
        x[301] = -99.0;
    }
    x
}

#[test]
fn neon_activation_quantizers_match_scalar_bit_for_bit() {
    let mut rng = Rng(0xA11CE);
    let x = activations(&mut rng, 256 * 12);
    for ty in [GgmlType::Q8_0, GgmlType::Q8_1] {
        let Some(quant::kernels::Quantizer::Q8(f)) = table(Isa::Neon, ty).from_float else { panic!("{ty}: no quantizer") };
        let (mut a, mut b) = (vec![q8::BlockQ8::default(); x.len() / 32], vec![q8::BlockQ8::default(); x.len() / 32]);
        if ty == GgmlType::Q8_1 {
            q8::quantize_q8_scalar::<true>(&x, &mut a);
        } else {
            q8::quantize_q8_scalar::<false>(&x, &mut a);
        }
        f(&x, &mut b);
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!(p.d.to_bits() == q.d.to_bits() && p.s.to_bits() == q.s.to_bits() && p.qs == q.qs, "{ty} block {i}: {p:?} vs {q:?}");
        }
    }
    let Some(quant::kernels::Quantizer::Q8K(f)) = table(Isa::Neon, GgmlType::Q8_K).from_float else { panic!("Q8_K: no quantizer") };
    let (mut a, mut b) = (vec![BlockQ8K::default(); x.len() / 256], vec![BlockQ8K::default(); x.len() / 256]);
    q8::quantize_q8k_scalar(&x, &mut a);
    f(&x, &mut b);
    for (i, (p, q)) in a.iter().zip(&b).enumerate() {
        assert!(p.d.to_bits() == q.d.to_bits() && p.qs == q.qs && p.bsums == q.bsums, "Q8_K block {i} differs");
    }
}

const DOT_TYPES: [GgmlType; 7] =
    [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K];

#[test]
fn neon_dot_kernels_match_scalar_bit_for_bit() {
    for isa in levels() {
        let mut rng = Rng(0xD07);
        for ty in DOT_TYPES {
            let (Some(simd), Some(scalar)) = (table(isa, ty).vec_dot, quant::scalar_kernels(ty).vec_dot_scalar) else {
                panic!("{ty}: missing kernel")
            };
            let act = quant::scalar_kernels(ty).vec_dot_type.unwrap();
            for n in [256usize, 256 * 11] {
                let w = common::random_blocks::random_blocks(ty, n / ty.block_size(), &mut rng);
                let x = activations(&mut rng, n);
                let (r1, r2) = match (simd, scalar, quant::quantize_rows(act, &x, n)) {
                    (DotKernel::Q8(f), DotKernel::Q8(g), Q8Rows::Q8(a)) => (f(&w, &a), g(&w, &a)),
                    (DotKernel::Q8K(f), DotKernel::Q8K(g), Q8Rows::Q8K(a)) => (f(&w, &a), g(&w, &a)),
                    _ => panic!("{ty}: kernel and activation format disagree"),
                };
                assert_eq!(r1.to_bits(), r2.to_bits(), "{ty} n={n}: {} {r1} vs scalar {r2}", isa.name());
            }
        }
    }
}

#[test]
fn neon_multi_row_dot_kernels_match_scalar_bit_for_bit() {
    for isa in levels() {
        let mut rng = Rng(0xF0_0D);
        for ty in DOT_TYPES {
            let one = quant::scalar_kernels(ty).vec_dot_scalar.unwrap();
            let act = quant::scalar_kernels(ty).vec_dot_type.unwrap();
            let k = table(isa, ty);
            let n = 256 * 5;
            let w = common::random_blocks::random_blocks(ty, n / ty.block_size(), &mut rng);
            let mags = [1.0f32, 3e-2, 7.0, 0.5, 2.0, 1e-3, 0.25, 40.0];
            let x: Vec<f32> = (0..8).flat_map(|r| activations(&mut rng, n).into_iter().map(move |v| v * mags[r])).collect();
            let bpr = n / act.block_size();
            let (multi, reference): (Vec<f32>, Vec<f32>) = match (one, quant::quantize_rows(act, &x, n), k.vec_dot4, k.vec_dot8) {
                (DotKernel::Q8(f), Q8Rows::Q8(a), Some(DotKernelN::Q8(f4)), Some(DotKernelN::Q8(f8))) => {
                    let r = |t: usize| &a[t * bpr..(t + 1) * bpr];
                    let mut m = f4(&w, [r(0), r(1), r(2), r(3)]).to_vec();
                    m.extend(f8(&w, std::array::from_fn(r)));
                    (m, (0..4).chain(0..8).map(|t| f(&w, r(t))).collect())
                }
                (DotKernel::Q8K(f), Q8Rows::Q8K(a), Some(DotKernelN::Q8K(f4)), Some(DotKernelN::Q8K(f8))) => {
                    let r = |t: usize| &a[t * bpr..(t + 1) * bpr];
                    let mut m = f4(&w, [r(0), r(1), r(2), r(3)]).to_vec();
                    m.extend(f8(&w, std::array::from_fn(r)));
                    (m, (0..4).chain(0..8).map(|t| f(&w, r(t))).collect())
                }
                _ => panic!("{ty}: missing multi-row kernels at {}", isa.name()),
            };
            for (t, (p, q)) in multi.iter().zip(&reference).enumerate() {
                assert_eq!(p.to_bits(), q.to_bits(), "{ty} result {t}: {} multi-row {p} vs scalar {q}", isa.name());
            }
            assert!(reference.windows(2).any(|p| p[0] != p[1]), "{ty}: test rows gave equal dots");
        }
    }
}

#[test]
fn neon_tiled_and_repacked_kernels_match_scalar_bit_for_bit() {
    for isa in levels() {
        let mut rng = Rng(0x7113D);
        let n = 256 * 5;
        let mags = [1.0f32, 3e-2, 7.0, 0.5, 2.0, 1e-3, 0.25, 40.0];
        let x: Vec<f32> = (0..8).flat_map(|r| activations(&mut rng, n).into_iter().map(move |v| v * mags[r])).collect();
        let bpr = n / 256;
        // Q6_K, llama.cpp's tiled order.
        let w = common::random_blocks::random_blocks(GgmlType::Q6_K, bpr, &mut rng);
        let Q8Rows::Q8K(a) = quant::quantize_rows(GgmlType::Q8_K, &x, n) else { panic!("Q8_K rows") };
        let r = |t: usize| &a[t * bpr..(t + 1) * bpr];
        let k = table(isa, GgmlType::Q6_K);
        let scalar = quant::scalar_kernels(GgmlType::Q6_K).tiled_scalar.unwrap();
        let eight = k.tiled8.expect("eight-row tiled kernel")(&w, std::array::from_fn(r));
        for (t, e8) in eight.iter().enumerate() {
            let s = scalar(&w, r(t));
            assert_eq!(k.tiled.expect("one-row tiled kernel")(&w, [r(t)])[0].to_bits(), s.to_bits(), "Q6_K tiled row {t}");
            assert_eq!(e8.to_bits(), s.to_bits(), "Q6_K tiled eight-row, row {t}");
        }
        // Q4_K, llama.cpp's repacked gemv / gemm.
        let w = common::random_blocks::random_blocks(GgmlType::Q4_K, bpr, &mut rng);
        let a = quant::quantize_rows_4x8(&x, n);
        let r4: [&[BlockQ8K]; 4] = std::array::from_fn(|t| &a[t * bpr..(t + 1) * bpr]);
        let Repacked { gemv, gemm4 } = table(isa, GgmlType::Q4_K).repacked.expect("Q4_K repacked kernels");
        let g = gemm4(&w, r4);
        assert_eq!(g.map(f32::to_bits), quant::q4k_ggml::gemm4_scalar(&w, r4).map(f32::to_bits), "{} gemm4", isa.name());
        for row in r4 {
            assert_eq!(gemv(&w, row).to_bits(), quant::q4k_ggml::gemv_scalar(&w, row).to_bits(), "{} gemv", isa.name());
        }
        assert!(g.windows(2).any(|p| p[0] != p[1]), "gemm4 rows gave equal dots");
    }
}
