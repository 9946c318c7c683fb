//! AArch64: every NEON kernel (plain, with `dotprod`, with `i8mm`) must agree bit for bit with
//! its scalar reference, on random blocks with extreme scales — decoders, activation quantizers,
//! one-row, multi-row, tiled-order and repacked-Q4_K dots, the two-weight-row `i8mm` kernels
//! (alone and inside `matmul_q8`), ggml's vector `exp` and SwiGLU, the AWQ/GPTQ lookups. Run
//! under `qemu-aarch64` by `tests/arm.sh`, once with `QEMU_CPU=max` (dotprod, i8mm) and once
//! with a CPU without dotprod (cortex-a53), so both dispatch paths run; `FINETUNE_EXPECT_ISA`
//! (set there) names the level the dispatch must pick.
#![cfg(target_arch = "aarch64")]
mod common;

use common::Rng;
use finetune::quant::kernels::{DotKernelN, Repacked};
use finetune::quant::q8::{self, BlockQ8K, Q8Rows};
use finetune::quant::vecdot::DotKernel;
use finetune::quant::{self, GgmlType, Isa, TypeKernels};

/// The NEON levels this CPU runs (plain NEON always; with dotprod where the CPU has it).
fn levels() -> Vec<Isa> {
    let l: Vec<Isa> = [Isa::Neon, Isa::NeonDot, Isa::NeonI8mm].into_iter().filter(|i| i.supported()).collect();
    assert!(l.contains(&Isa::Neon), "NEON is baseline on AArch64");
    l
}

fn table(isa: Isa, ty: GgmlType) -> &'static TypeKernels {
    quant::kernels_for(isa, ty).expect("supported level")
}

#[test]
fn dispatch_picks_the_best_neon_level() {
    let dot = std::arch::is_aarch64_feature_detected!("dotprod");
    let mm = std::arch::is_aarch64_feature_detected!("i8mm");
    assert_eq!(Isa::NeonDot.supported(), dot);
    assert_eq!(Isa::NeonI8mm.supported(), dot && mm);
    let want = match (dot, mm) {
        (true, true) => Isa::NeonI8mm,
        (true, false) => Isa::NeonDot,
        _ => Isa::Neon,
    };
    if std::env::var("FINETUNE_SIMD").as_deref() != Ok("scalar") {
        assert_eq!(quant::isa(), want, "dispatch chose {}", quant::isa().name());
        assert_eq!(quant::kernels(GgmlType::Q4_K).path, "neon");
    }
    // tests/arm.sh names the level the emulated CPU must give (so a detection that silently
    // fell back to plain NEON, or to scalar, fails there).
    if let Ok(expect) = std::env::var("FINETUNE_EXPECT_ISA") {
        assert_eq!(quant::isa().name(), expect, "QEMU_CPU={:?}", std::env::var("QEMU_CPU").ok());
    }
    eprintln!("dispatch: {} (dotprod {dot}, i8mm {mm})", quant::isa().name());
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

/// Eight activation rows of `n` values at mixed magnitudes.
fn eight_rows(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mags = [1.0f32, 3e-2, 7.0, 0.5, 2.0, 1e-3, 0.25, 40.0];
    (0..8).flat_map(|r| activations(rng, n).into_iter().map(move |v| v * mags[r])).collect()
}

/// `n_blocks` random blocks, the last one at the integer extremes (every code byte 0xFF: the
/// largest codes and scales) so the integer sums reach their largest magnitudes.
fn blocks_with_extremes(ty: GgmlType, n_blocks: usize, rng: &mut Rng) -> Vec<u8> {
    let mut w = common::random_blocks::random_blocks(ty, n_blocks, rng);
    let ts = ty.type_size();
    let last = &mut w[(n_blocks - 1) * ts..];
    let d_at = if ty == GgmlType::Q6_K { 208 } else { 0 };
    for (i, b) in last.iter_mut().enumerate() {
        if !(d_at..d_at + 4).contains(&i) {
            *b = 0xFF;
        }
    }
    w
}

#[test]
fn i8mm_two_weight_row_kernels_match_scalar_bit_for_bit() {
    if !Isa::NeonI8mm.supported() {
        // tests/arm.sh's QEMU_CPU=max run requires this level (FINETUNE_EXPECT_ISA, above).
        eprintln!("no i8mm on this CPU: the two-weight-row kernels are not listed");
        assert!(quant::kernels(GgmlType::Q6_K).tiled2x8.is_none() && quant::kernels(GgmlType::Q4_K).repacked2x4.is_none());
        return;
    }
    for isa in [Isa::Scalar, Isa::Neon, Isa::NeonDot] {
        let k = table(isa, GgmlType::Q6_K);
        assert!(k.tiled2x8.is_none() && table(isa, GgmlType::Q4_K).repacked2x4.is_none(), "{} lists i8mm kernels", isa.name());
    }
    let mut rng = Rng(0x18_AA);
    let n = 256 * 5;
    let bpr = n / 256;
    let x = eight_rows(&mut rng, n);
    // Q6_K, tiled order: two weight rows × eight activation rows.
    let Q8Rows::Q8K(a) = quant::quantize_rows(GgmlType::Q8_K, &x, n) else { panic!("Q8_K rows") };
    let r = |t: usize| &a[t * bpr..(t + 1) * bpr];
    let tiled = quant::scalar_kernels(GgmlType::Q6_K).tiled_scalar.unwrap();
    let f2 = table(Isa::NeonI8mm, GgmlType::Q6_K).tiled2x8.expect("Q6_K two-row tiled kernel");
    let w: [Vec<u8>; 2] = std::array::from_fn(|_| blocks_with_extremes(GgmlType::Q6_K, bpr, &mut rng));
    let got = f2([&w[0], &w[1]], std::array::from_fn(r));
    for (i, (wr, gi)) in w.iter().zip(&got).enumerate() {
        for (t, g) in gi.iter().enumerate() {
            let want = tiled(wr, r(t));
            assert_eq!(g.to_bits(), want.to_bits(), "Q6_K tiled 2x8: weight row {i}, row {t}: {g} vs {want}");
        }
    }
    // Q4_K, repacked gemm: two weight rows × the four rows of a group.
    let a = quant::quantize_rows_4x8(&x[..4 * n], n);
    let r4: [&[BlockQ8K]; 4] = std::array::from_fn(|t| &a[t * bpr..(t + 1) * bpr]);
    let g2 = table(Isa::NeonI8mm, GgmlType::Q4_K).repacked2x4.expect("Q4_K two-row gemm");
    let w: [Vec<u8>; 2] = std::array::from_fn(|_| blocks_with_extremes(GgmlType::Q4_K, bpr, &mut rng));
    let got = g2([&w[0], &w[1]], r4);
    for (i, wr) in w.iter().enumerate() {
        let want = quant::q4k_ggml::gemm4_scalar(wr, r4);
        assert_eq!(got[i].map(f32::to_bits), want.map(f32::to_bits), "Q4_K gemm 2x4, weight row {i}: {:?} vs {want:?}", got[i]);
    }
    assert!(got[0] != got[1] && got[0].windows(2).any(|p| p[0] != p[1]), "test rows gave equal dots");
}

/// `matmul_q8` at the level in use (i8mm under QEMU_CPU=max: pairs of weight rows, an odd last
/// row, a remainder of token rows) against the scalar references, output by output.
#[test]
fn matmul_q8_equals_the_scalar_references_at_the_level_in_use() {
    use finetune::ops::matmul::QMatrix;
    use finetune::ops::matmul_q8::matmul_q8;
    let mut rng = Rng(0x3A7);
    let k = 512;
    for (ty, n_out, t) in [(GgmlType::Q6_K, 21usize, 11usize), (GgmlType::Q4_K, 24, 11), (GgmlType::Q4_K, 16, 4)] {
        let w = common::random_blocks::random_blocks(ty, n_out * k / 256, &mut rng);
        let qm = QMatrix { ty, n_in: k, n_out, data: &w };
        let x: Vec<f32> = eight_rows(&mut rng, k).into_iter().chain(activations(&mut rng, 3 * k)).take(t * k).collect();
        let mut y = vec![f32::NAN; t * n_out];
        matmul_q8(&qm, &x, &mut y);
        let rb = qm.row_bytes();
        let row = |o: usize| &w[o * rb..(o + 1) * rb];
        let want: Vec<f32> = if ty == GgmlType::Q6_K {
            let Q8Rows::Q8K(a) = quant::quantize_rows(GgmlType::Q8_K, &x, k) else { panic!("Q8_K rows") };
            let f = quant::scalar_kernels(ty).tiled_scalar.unwrap();
            (0..t).flat_map(|tt| (0..n_out).map(move |o| (tt, o))).map(|(tt, o)| f(row(o), &a[tt * 2..tt * 2 + 2])).collect()
        } else {
            let a = quant::quantize_rows_4x8(&x, k);
            let r = |tt: usize| &a[tt * 2..tt * 2 + 2];
            let t4 = t - t % 4;
            (0..t)
                .flat_map(|tt| (0..n_out).map(move |o| (tt, o)))
                .map(|(tt, o)| {
                    if tt < t4 {
                        let g = tt / 4 * 4;
                        quant::q4k_ggml::gemm4_scalar(row(o), [r(g), r(g + 1), r(g + 2), r(g + 3)])[tt - g]
                    } else {
                        quant::q4k_ggml::gemv_scalar(row(o), r(tt))
                    }
                })
                .collect()
        };
        for (i, (p, q)) in y.iter().zip(&want).enumerate() {
            assert_eq!(p.to_bits(), q.to_bits(), "{ty} {n_out}x{k}, t = {t}: output {i}: {p} vs scalar {q} ({})", quant::isa().name());
        }
    }
}

#[test]
fn neon_ggml_exp_and_swiglu_match_scalar_bit_for_bit() {
    use finetune::ops::activation::{glu_inplace_ggml, Act};
    use finetune::ops::attention::ggml_expf;
    let mut rng = Rng(0xE4F);
    // A dense sweep over the range that matters, the under/overflow edges (|n| near 192,
    // subnormal results), infinities, NaN, and random values; 4k + 3 long (a scalar tail).
    let mut x: Vec<f32> = (0..40_003).map(|i| -110.0 + i as f32 * 0.005).collect();
    x.extend((0..2000).map(|i| -150.0 + i as f32 * 0.137));
    x.extend([-87.5, -88.7, -103.0, -103.97, -104.0, -126.0, 88.0, 88.72, 88.73, 89.0, 132.0, 133.5, 200.0, -200.0]);
    x.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 0.0, -0.0, f32::MIN_POSITIVE, 1e-40]);
    x.extend((0..4001).map(|_| rng.normal() * 30.0));
    for max in [0.0f32, 3.5, -2.0] {
        let mut got = x.clone();
        finetune::ops::vexp::ggml_exp_row(&mut got, max);
        for (i, (&v, &g)) in x.iter().zip(&got).enumerate() {
            let want = ggml_expf(v - max);
            assert!(g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()), "exp({v} − {max}) [{i}]: {g} vs scalar {want}");
        }
    }
    let up: Vec<f32> = (0..x.len()).map(|_| rng.normal()).collect();
    let mut got = x.clone();
    glu_inplace_ggml(Act::SwiGlu, &mut got, &up);
    for (i, ((&g, &u), &v)) in x.iter().zip(&up).zip(&got).enumerate() {
        let want = g / (1.0 + ggml_expf(-g)) * u;
        assert!(v.to_bits() == want.to_bits() || (v.is_nan() && want.is_nan()), "swiglu({g}, {u}) [{i}]: {v} vs scalar {want}");
    }
}

#[test]
fn neon_awq_and_gptq_lookups_match_scalar_bit_for_bit() {
    use finetune::safetensors::{Dtype, SafetensorsFile, SafetensorsWriter};
    use finetune::weights::{AwqMatrix, GptqMatrix, QuantWeight};
    assert!(finetune::weights::packed_arm::available() || std::env::var("FINETUNE_SIMD").as_deref() == Ok("scalar"));
    let mut rng = Rng(0xA30);
    let same = |what: &str, a: &[f32], b: &[f32]| {
        let bad = a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits());
        assert!(bad.is_none(), "{what}: value {} differs", bad.unwrap_or(0));
    };
    for (k, n, g, dtype) in [(256usize, 64usize, 32usize, Dtype::F16), (384, 48, 128, Dtype::BF16), (160, 40, 32, Dtype::F32)] {
        let mut words = |len: usize| (0..len).flat_map(|_| (rng.next_u64() as u32).to_le_bytes()).collect::<Vec<u8>>();
        let (gq, gz, aq, az) = (words(k / 8 * n), words(k.div_ceil(g) * n / 8), words(k * n / 8), words(k / g * n / 8));
        let scales: Vec<f32> =
            (0..k.div_ceil(g) * n).map(|i| 0.013 * (1.0 + (i % 7) as f32) * if i % 3 == 0 { -1.0 } else { 1.0 }).collect();
        let mut wr = SafetensorsWriter::new();
        wr.add("g.qweight", Dtype::I32, &[k / 8, n], gq).unwrap();
        wr.add("g.qzeros", Dtype::I32, &[k.div_ceil(g), n / 8], gz).unwrap();
        wr.add_f32("g.scales", dtype, &[k.div_ceil(g), n], &scales).unwrap();
        wr.add("a.qweight", Dtype::I32, &[k, n / 8], aq).unwrap();
        wr.add("a.qzeros", Dtype::I32, &[k / g, n / 8], az).unwrap();
        wr.add_f32("a.scales", dtype, &[k / g, n], &scales[..k / g * n]).unwrap();
        let st = SafetensorsFile::from_bytes("simd.safetensors", wr.to_bytes()).unwrap();
        let get = |name: &str| st.get(name);
        for (sym, ver) in [(false, "gptq"), (true, "gptq_v2")] {
            let q = serde_json::json!({"bits": 4, "group_size": g, "sym": sym, "checkpoint_format": ver, "version": "gemm"});
            type Pair<'a> = (&'static str, Box<dyn QuantWeight + 'a>, Box<dyn QuantWeight + 'a>);
            let pairs: [Pair; 2] = [
                (
                    "AWQ",
                    Box::new(AwqMatrix::open(&get, "a", &q, k, n).unwrap().with_simd(true)),
                    Box::new(AwqMatrix::open(&get, "a", &q, k, n).unwrap().with_simd(false)),
                ),
                (
                    "GPTQ",
                    Box::new(GptqMatrix::open(&get, "g", &q, k, n).unwrap().with_simd(true)),
                    Box::new(GptqMatrix::open(&get, "g", &q, k, n).unwrap().with_simd(false)),
                ),
            ];
            for (name, simd, scalar) in &pairs {
                let what = format!("{name} {ver} {k}x{n} g{g} {dtype}");
                for (r0, r1) in [(0, n), (3, 21), (5, 6), (n - 9, n)] {
                    let (mut a, mut b) = (vec![0f32; (r1 - r0) * k], vec![f32::NAN; (r1 - r0) * k]);
                    simd.decode_rows(r0, r1, &mut a);
                    scalar.decode_rows(r0, r1, &mut b);
                    same(&format!("{what} rows {r0}..{r1}"), &a, &b);
                }
                for (r0, r1, c0, c1) in [(0, 32, 0, 64), (3, 20, 35, 101), (8, 16, 32, k), (5, 6, 1, 9)] {
                    let (mut a, mut b) = (vec![0f32; (r1 - r0) * (c1 - c0)], vec![f32::NAN; (r1 - r0) * (c1 - c0)]);
                    simd.decode_block(r0, r1, c0, c1, &mut a);
                    scalar.decode_block(r0, r1, c0, c1, &mut b);
                    same(&format!("{what} rows {r0}..{r1} cols {c0}..{c1}"), &a, &b);
                }
                for r in [0, 1, 7, 13, n - 1] {
                    for (c0, c1) in [(0, k), (3, 45), (1, k - 1), (8, 8), (k - 13, k)] {
                        let (mut a, mut b) = (vec![0f32; c1 - c0], vec![f32::NAN; c1 - c0]);
                        simd.decode_cols(r, c0, c1, &mut a);
                        scalar.decode_cols(r, c0, c1, &mut b);
                        same(&format!("{what} row {r} cols {c0}..{c1}"), &a, &b);
                    }
                }
            }
        }
    }
}
