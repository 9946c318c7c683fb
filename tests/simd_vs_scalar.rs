//! Every SIMD decoder must agree bit for bit with its scalar reference, on random blocks with
//! extreme scales. (x86-64: the AVX2 and AVX-512 kernels against the scalar references.)
#![cfg(target_arch = "x86_64")]
mod common;

use common::Rng;
use finetune::quant::{self, Isa, TypeKernels};

/// The AVX2 table's entry for `ty` (whatever `FINETUNE_SIMD` says).
fn avx2(ty: finetune::quant::GgmlType) -> &'static TypeKernels {
    quant::kernels_for(Isa::Avx2, ty).expect("AVX2 table")
}

/// The best x86 table's entry for `ty`: AVX-512 VNNI multi-row kernels where the CPU has them.
fn best(ty: finetune::quant::GgmlType) -> &'static TypeKernels {
    quant::kernels_for(Isa::Avx2Vnni, ty).unwrap_or_else(|| avx2(ty))
}

#[test]
fn avx2_decoders_match_scalar_bit_for_bit() {
    assert!(Isa::Avx2.supported(), "this machine is expected to have AVX2+FMA+F16C (CI does)");
    let mut rng = Rng(0x5EED);
    let mut checked = 0;
    for ty in common::random_blocks::decodable_types() {
        let Some(simd) = Some(avx2(ty)).filter(|k| k.path == "avx2").and_then(|k| k.decode) else { continue };
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

#[test]
fn avx512_decoders_match_scalar_bit_for_bit() {
    if !finetune::quant::x86::avx512_available() {
        eprintln!("SKIPPED avx512_decoders_match_scalar_bit_for_bit: this CPU has no AVX-512F/BW/VL");
        return;
    }
    let mut rng = Rng(0x512);
    let mut checked = Vec::new();
    for ty in common::random_blocks::decodable_types() {
        let Some(simd) = quant::kernels_for(Isa::Avx2Vnni, ty).filter(|k| k.path == "avx512").and_then(|k| k.decode) else {
            continue;
        };
        for n_blocks in [1usize, 3, 4096] {
            let bytes = common::random_blocks::random_blocks(ty, n_blocks, &mut rng);
            let n = n_blocks * ty.block_size();
            let (mut a, mut b) = (vec![0f32; n], vec![f32::NAN; n]);
            quant::decode_scalar(ty, &bytes, &mut a).unwrap();
            simd(&bytes, &mut b);
            for i in 0..n {
                assert_eq!(a[i].to_bits(), b[i].to_bits(), "{ty}: element {i} scalar {} vs avx512 {}", a[i], b[i]);
            }
        }
        checked.push(ty.name());
    }
    eprintln!("AVX-512 decoders checked: {checked:?}");
    // Every AVX-512 CPU seen so far has VNNI too; the table gives these four the wide decoder
    // (built with rustc ≥ 1.89: `cfg(finetune_avx512)` from build.rs).
    if cfg!(finetune_avx512) && quant::Isa::Avx2Vnni.supported() {
        assert_eq!(checked, ["Q5_0", "Q8_0", "Q4_K", "Q6_K"], "AVX-512 decoders checked");
    }
}

/// Activation rows with a spread of magnitudes, exact ties (x·127/amax landing on .5), zeros.
fn activations(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut x: Vec<f32> = (0..n).map(|i| rng.normal() * [1e-3f32, 1.0, 40.0][i / 256 % 3]).collect();
    x[..32].fill(0.0); // an all-zero block
    for (j, v) in x[32..64].iter_mut().enumerate() {
        *v = (j as f32 - 16.0) * 0.5; // halves: ties under x·127/amax for some blocks
    }
    x
}

#[test]
fn avx2_activation_quantizers_match_scalar_bit_for_bit() {
    use finetune::quant::{q8, x86::vecdot as vecdot_avx2};
    assert!(Isa::Avx2.supported());
    let mut rng = Rng(0xA11CE);
    let x = activations(&mut rng, 256 * 12);
    for sum in [false, true] {
        let (mut a, mut b) = (vec![q8::BlockQ8::default(); x.len() / 32], vec![q8::BlockQ8::default(); x.len() / 32]);
        if sum {
            q8::quantize_q8_scalar::<true>(&x, &mut a);
            vecdot_avx2::quantize_q8::<true>(&x, &mut b);
        } else {
            q8::quantize_q8_scalar::<false>(&x, &mut a);
            vecdot_avx2::quantize_q8::<false>(&x, &mut b);
        }
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!(
                p.d.to_bits() == q.d.to_bits() && p.s.to_bits() == q.s.to_bits() && p.qs == q.qs,
                "Q8 (sum {sum}) block {i}: {p:?} vs {q:?}"
            );
        }
    }
    let (mut a, mut b) = (vec![q8::BlockQ8K::default(); x.len() / 256], vec![q8::BlockQ8K::default(); x.len() / 256]);
    q8::quantize_q8k_scalar(&x, &mut a);
    vecdot_avx2::quantize_q8k(&x, &mut b);
    for (i, (p, q)) in a.iter().zip(&b).enumerate() {
        assert!(p.d.to_bits() == q.d.to_bits() && p.qs == q.qs && p.bsums == q.bsums, "Q8_K block {i} differs");
    }
}

#[test]
fn avx2_dot_kernels_match_scalar_bit_for_bit() {
    use finetune::quant::q8::Q8Rows;
    use finetune::quant::vecdot::DotKernel;
    use finetune::quant::GgmlType;
    assert!(Isa::Avx2.supported());
    let mut rng = Rng(0xD07);
    let mut checked = 0;
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K] {
        let (Some(simd), Some(scalar)) = (avx2(ty).vec_dot, quant::scalar_kernels(ty).vec_dot_scalar) else {
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
            assert_eq!(r1.to_bits(), r2.to_bits(), "{ty} n={n}: avx2 {r1} vs scalar {r2}");
            checked += 1;
        }
    }
    assert_eq!(checked, 14);
}

#[test]
fn four_weight_row_dot_kernels_match_scalar_bit_for_bit() {
    use finetune::quant::q8::Q8Rows;
    use finetune::quant::vecdot::DotKernel;
    use finetune::quant::GgmlType;
    assert!(Isa::Avx2.supported());
    let mut rng = Rng(0x4B0);
    let mut checked = 0;
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0] {
        let Some(DotKernel::Q8(scalar)) = quant::scalar_kernels(ty).vec_dot_scalar else { panic!("{ty}: no scalar kernel") };
        let act = quant::scalar_kernels(ty).vec_dot_type.unwrap();
        // The AVX2 kernel and, where the CPU has VNNI, the VNNI one.
        let kernels: Vec<_> = [avx2(ty), best(ty)].iter().map(|k| k.rows4.unwrap_or_else(|| panic!("{ty}: no four-row kernel"))).collect();
        for n in [64usize, 576, 256 * 7] {
            let rb = n / ty.block_size() * ty.type_size();
            let w = common::random_blocks::random_blocks(ty, 4 * n / ty.block_size(), &mut rng);
            let x = activations(&mut rng, n);
            let Q8Rows::Q8(a) = quant::quantize_rows(act, &x, n) else { panic!("{ty}: activation format") };
            let want: Vec<f32> = (0..4).map(|r| scalar(&w[r * rb..(r + 1) * rb], &a)).collect();
            assert!(want.windows(2).any(|p| p[0] != p[1]), "{ty}: test rows gave equal dots");
            for f in &kernels {
                let got = f(&w, &a);
                for r in 0..4 {
                    assert_eq!(got[r].to_bits(), want[r].to_bits(), "{ty} n={n} row {r}: four-row {} vs scalar {}", got[r], want[r]);
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 15);
}

#[test]
fn avx2_multi_row_dot_kernels_match_one_row_bit_for_bit() {
    use finetune::quant::kernels::DotKernelN;
    use finetune::quant::q8::Q8Rows;
    use finetune::quant::vecdot::DotKernel;
    use finetune::quant::GgmlType;
    assert!(Isa::Avx2.supported());
    let mut rng = Rng(0xF0_0D);
    let mut checked = 0;
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K] {
        let one = avx2(ty).vec_dot.unwrap_or_else(|| panic!("{ty}: no one-row kernel"));
        let act = quant::scalar_kernels(ty).vec_dot_type.unwrap();
        for n in [256usize, 256 * 7] {
            let w = common::random_blocks::random_blocks(ty, n / ty.block_size(), &mut rng);
            // Eight different activation rows (each with its own magnitudes, zeros and ties).
            let mags = [1.0f32, 3e-2, 7.0, 0.5, 2.0, 1e-3, 0.25, 40.0];
            let x: Vec<f32> = (0..8).flat_map(|r| activations(&mut rng, n).into_iter().map(move |v| v * mags[r])).collect();
            let bpr = n / act.block_size();
            // (rows from the multi-row kernels, the same rows one at a time)
            let (multi, one_by_one): (Vec<f32>, Vec<f32>) = match (one, quant::quantize_rows(act, &x, n)) {
                (DotKernel::Q8(f), Q8Rows::Q8(a)) => {
                    let Some(DotKernelN::Q8(f4)) = best(ty).vec_dot4 else { panic!("{ty}: no four-row kernel") };
                    let Some(DotKernelN::Q8(f8)) = best(ty).vec_dot8 else { panic!("{ty}: no eight-row kernel") };
                    // (AVX-512 VNNI where the CPU has it: the plain AVX2 one must agree too)
                    let Some(DotKernelN::Q8(f8a)) = avx2(ty).vec_dot8 else { panic!("{ty}: no eight-row AVX2 kernel") };
                    let r = |t: usize| &a[t * bpr..(t + 1) * bpr];
                    let mut m = f4(&w, [r(0), r(1), r(2), r(3)]).to_vec();
                    m.extend(f8(&w, std::array::from_fn(r)));
                    m.extend(f8a(&w, std::array::from_fn(r)));
                    (m, (0..4).chain(0..8).chain(0..8).map(|t| f(&w, r(t))).collect())
                }
                (DotKernel::Q8K(f), Q8Rows::Q8K(a)) => {
                    let Some(DotKernelN::Q8K(f4)) = avx2(ty).vec_dot4 else { panic!("{ty}: no four-row kernel") };
                    let Some(DotKernelN::Q8K(f8)) = avx2(ty).vec_dot8 else { panic!("{ty}: no eight-row kernel") };
                    let r = |t: usize| &a[t * bpr..(t + 1) * bpr];
                    let mut m = f4(&w, [r(0), r(1), r(2), r(3)]).to_vec();
                    m.extend(f8(&w, std::array::from_fn(r)));
                    (m, (0..4).chain(0..8).map(|t| f(&w, r(t))).collect())
                }
                _ => panic!("{ty}: kernel and activation format disagree"),
            };
            assert_eq!(multi.len(), one_by_one.len());
            for (t, (p, q)) in multi.iter().zip(&one_by_one).enumerate() {
                assert_eq!(p.to_bits(), q.to_bits(), "{ty} n={n} result {t}: multi-row {p} vs one-row {q}");
            }
            // The rows differ, so a kernel that repeated one row's result would fail above.
            assert!(one_by_one.windows(2).any(|p| p[0] != p[1]), "{ty}: test rows gave equal dots");
            checked += 1;
        }
    }
    assert_eq!(checked, 14);
}

#[test]
fn avx2_tiled_order_kernels_match_scalar_bit_for_bit() {
    use finetune::quant::q8::Q8Rows;
    use finetune::quant::{vecdot, GgmlType};
    assert!(Isa::Avx2.supported());
    let mut rng = Rng(0x7113D);
    let ty = GgmlType::Q6_K;
    let scalar = quant::scalar_kernels(ty).tiled_scalar.expect("Q6_K has a tiled-order reference");
    let f1 = avx2(ty).tiled.expect("one-row tiled kernel");
    let f8 = avx2(ty).tiled8.expect("eight-row tiled kernel");
    for n in [256usize, 256 * 7] {
        let w = common::random_blocks::random_blocks(ty, n / ty.block_size(), &mut rng);
        let mags = [1.0f32, 3e-2, 7.0, 0.5, 2.0, 1e-3, 0.25, 40.0];
        let x: Vec<f32> = (0..8).flat_map(|r| activations(&mut rng, n).into_iter().map(move |v| v * mags[r])).collect();
        let Q8Rows::Q8K(a) = quant::quantize_rows(quant::scalar_kernels(ty).vec_dot_type.unwrap(), &x, n) else {
            panic!("Q6_K takes Q8_K")
        };
        let bpr = n / 256;
        let r = |t: usize| &a[t * bpr..(t + 1) * bpr];
        let eight = f8(&w, std::array::from_fn(r));
        for (t, e8) in eight.iter().enumerate() {
            let s = scalar(&w, r(t));
            assert_eq!(f1(&w, [r(t)])[0].to_bits(), s.to_bits(), "n={n} row {t}: one-row AVX2 vs scalar");
            assert_eq!(e8.to_bits(), s.to_bits(), "n={n} row {t}: eight-row AVX2 vs scalar");
        }
        // The tiled order is a different f32 summation from vec_dot's: the two must not be
        // confused (they agree to rounding, and differ in the last bits somewhere).
        let vd = quant::scalar_kernels(ty).vec_dot_scalar.unwrap();
        let vd = match vd {
            vecdot::DotKernel::Q8K(f) => f,
            _ => unreachable!(),
        };
        let diffs = (0..8).filter(|&t| vd(&w, r(t)).to_bits() != scalar(&w, r(t)).to_bits()).count();
        let close = (0..8).all(|t| (vd(&w, r(t)) - scalar(&w, r(t))).abs() <= 1e-5 * vd(&w, r(t)).abs().max(1e-3));
        assert!(close, "n={n}: tiled and vec_dot orders disagree beyond rounding");
        if n > 256 {
            assert!(diffs > 0, "n={n}: tiled order gave vec_dot's bits for every row");
        }
    }
}

/// `n_blocks` random blocks, the last one of two or more at the integer extremes (every code and
/// scale byte 0xFF) so the integer sums reach their largest magnitudes.
fn blocks_with_extremes(ty: finetune::quant::GgmlType, n_blocks: usize, rng: &mut Rng) -> Vec<u8> {
    let mut w = common::random_blocks::random_blocks(ty, n_blocks, rng);
    let ts = ty.type_size();
    let d_at = if ty == finetune::quant::GgmlType::Q6_K { 208 } else { 0 };
    for (i, b) in w[(n_blocks - 1) * ts..].iter_mut().enumerate() {
        if n_blocks > 1 && !(d_at..d_at + 4).contains(&i) {
            *b = 0xFF;
        }
    }
    w
}

#[test]
fn avx512_two_weight_row_kernels_match_scalar_bit_for_bit() {
    use finetune::quant::q8::{BlockQ8K, Q8Rows};
    use finetune::quant::GgmlType;
    let (Some(q6), Some(q4)) = (best(GgmlType::Q6_K).tiled2x8, best(GgmlType::Q4_K).repacked2x4) else {
        assert!(!(cfg!(finetune_avx512) && finetune::quant::x86::avx512_available() && Isa::Avx2Vnni.supported()), "no two-row kernels");
        eprintln!("SKIPPED avx512_two_weight_row_kernels_match_scalar_bit_for_bit: no AVX-512 two-row kernels here");
        return;
    };
    let mut rng = Rng(0x2512);
    // Whether some call gave distinct dots per weight row and per activation row (a weight
    // block's random scale can be 0).
    let mut varied = [false; 2];
    let mags = [1.0f32, 3e-2, 7.0, 0.5, 2.0, 1e-3, 0.25, 40.0];
    for n in [256usize, 256 * 5] {
        let bpr = n / 256;
        let x: Vec<f32> = (0..8).flat_map(|r| activations(&mut rng, n).into_iter().map(move |v| v * mags[r])).collect();
        // Q6_K, tiled order: two weight rows × eight activation rows.
        let Q8Rows::Q8K(a) = quant::quantize_rows(GgmlType::Q8_K, &x, n) else { panic!("Q8_K rows") };
        let r = |t: usize| &a[t * bpr..(t + 1) * bpr];
        let tiled = quant::scalar_kernels(GgmlType::Q6_K).tiled_scalar.unwrap();
        for _ in 0..4 {
            let w: [Vec<u8>; 2] = std::array::from_fn(|_| blocks_with_extremes(GgmlType::Q6_K, bpr, &mut rng));
            let got = q6([&w[0], &w[1]], std::array::from_fn(r));
            for (i, (wr, gi)) in w.iter().zip(&got).enumerate() {
                for (t, g) in gi.iter().enumerate() {
                    let want = tiled(wr, r(t));
                    assert_eq!(g.to_bits(), want.to_bits(), "n={n}: Q6_K tiled 2x8, weight row {i}, row {t}: {g} vs {want}");
                }
            }
            varied[0] |= got[0] != got[1] && got.iter().all(|g| g.windows(2).any(|p| p[0] != p[1]));
        }
        // Q4_K, repacked gemm: two weight rows × the four rows of a group.
        for g in 0..2 {
            let a = quant::quantize_rows_4x8(&x[4 * g * n..4 * (g + 1) * n], n);
            let r4: [&[BlockQ8K]; 4] = std::array::from_fn(|t| &a[t * bpr..(t + 1) * bpr]);
            for _ in 0..4 {
                let w: [Vec<u8>; 2] = std::array::from_fn(|_| blocks_with_extremes(GgmlType::Q4_K, bpr, &mut rng));
                let got = q4([&w[0], &w[1]], r4);
                for (i, wr) in w.iter().enumerate() {
                    let want = quant::q4k_ggml::gemm4_scalar(wr, r4);
                    assert_eq!(
                        got[i].map(f32::to_bits),
                        want.map(f32::to_bits),
                        "n={n}: Q4_K gemm 2x4, weight row {i}: {:?} vs {want:?}",
                        got[i]
                    );
                }
                varied[1] |= got[0] != got[1] && got.iter().all(|g| g.windows(2).any(|p| p[0] != p[1]));
            }
        }
    }
    assert_eq!(varied, [true; 2], "the test rows gave equal dots (Q6_K, Q4_K)");
}

#[test]
fn geglu_ggml_matches_its_scalar_reference_bit_for_bit() {
    use finetune::ops::activation::{geglu_ggml_scalar, glu_inplace_ggml, Act};
    let mut rng = Rng(0x6E61);
    // Every f16 value (NaNs, infinities, subnormals, both cut-offs ±10), then random values
    // around the cut-offs and the f16 rounding points; an odd length for the tail.
    let mut x: Vec<f32> = (0..=u16::MAX).map(|b| half::f16::from_bits(b).to_f32()).collect();
    x.extend((0..40_001).map(|i| rng.normal() * [1.0f32, 6.0, 11.0, 1e-3][i % 4]));
    x.extend([-10.0f32, 10.0, -9.999999, 9.999999, -10.000001, 10.000001, f32::MIN_POSITIVE, -0.0]);
    let up: Vec<f32> = (0..x.len()).map(|i| if i % 7 == 0 { -rng.normal() } else { rng.normal() * 3.0 }).collect();
    let (mut a, mut b) = (x.clone(), x.clone());
    geglu_ggml_scalar(&mut a, &up);
    glu_inplace_ggml(Act::GeGlu, &mut b, &up);
    for i in 0..x.len() {
        assert_eq!(a[i].to_bits(), b[i].to_bits(), "x = {} (element {i}): scalar {} vs simd {}", x[i], a[i], b[i]);
    }
}
