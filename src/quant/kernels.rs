//! The kernel table: for every [`GgmlType`], the functions that decode, encode and multiply it,
//! chosen once after CPU feature detection (ggml's `type_traits_cpu` is the pattern).
//!
//! One table is built per instruction-set level ([`Isa`]): [`Isa::Scalar`] holds the scalar
//! references only; the x86 levels replace what [`super::x86`] has SIMD twins for and keep the
//! scalar references beside them (every SIMD kernel gives the same bits as its reference).
//! [`kernels`] reads the table of the level in use ([`isa`]: the best the CPU has, or scalar when
//! `FINETUNE_SIMD=scalar`); [`kernels_for`] reads any level the CPU has (tests compare them).
//!
//! On AArch64 the levels are [`Isa::Neon`], [`Isa::NeonDot`] (the integer dots with `sdot`) and
//! [`Isa::NeonI8mm`] (plus two-weight-row kernels with `smmla`), from [`super::arm`]. This is the only place that maps a type to its functions.

use std::sync::OnceLock;

use super::q8::{self, BlockQ8, BlockQ8K, Q8Rows};
use super::types::GgmlType;
use super::vecdot::{self, DotKernel, DotQ8K};
use super::{float, iq4, kquants, legacy, q4k_ggml, small};

/// Decodes whole blocks: `bytes.len()` is a multiple of the type size and `out` holds
/// the matching number of elements.
pub type DecodeFn = fn(&[u8], &mut [f32]);
/// Encodes one block of `block_size` values into `type_size` bytes.
pub type EncodeFn = fn(&[f32], &mut [u8]);

/// One weight row against `N` Q8_0/Q8_1 activation rows: each result bit-identical to the
/// one-row kernel's (the weight block is unpacked once, the per-row operations are unchanged).
pub type DotQ8xN<const N: usize> = fn(&[u8], [&[BlockQ8]; N]) -> [f32; N];
/// One weight row against `N` Q8_K activation rows (as [`DotQ8xN`]).
pub type DotQ8KxN<const N: usize> = fn(&[u8], [&[BlockQ8K]; N]) -> [f32; N];

/// Two weight rows against `N` Q8_K activation rows (`N` even): `[weight row][activation row]`,
/// each result bit-identical to the one-weight-row kernel's (the `i8mm` kernels' shape: one
/// `smmla` tile is two weight rows by two activation rows).
pub type DotQ8K2xN<const N: usize> = fn([&[u8]; 2], [&[BlockQ8K]; N]) -> [[f32; N]; 2];

/// Four consecutive weight rows (`w` holds them) against one Q8_0/Q8_1 activation row: each
/// result bit-identical to the one-row kernel's on its row (decoding's matmuls).
pub type DotQ8Rows4 = fn(&[u8], &[BlockQ8]) -> [f32; 4];

/// An `N`-activation-row dot kernel, by activation format.
#[derive(Clone, Copy, Debug)]
pub enum DotKernelN<const N: usize> {
    /// Against Q8_0 / Q8_1 activations.
    Q8(DotQ8xN<N>),
    /// Against Q8_K activations.
    Q8K(DotQ8KxN<N>),
}

/// An activation quantizer (`from_float` of an activation format), by block type.
#[derive(Clone, Copy, Debug)]
pub enum Quantizer {
    /// To Q8_0 or Q8_1 blocks (`x` a multiple of 32 values).
    Q8(fn(&[f32], &mut [BlockQ8])),
    /// To Q8_K blocks (`x` a multiple of 256 values).
    Q8K(fn(&[f32], &mut [BlockQ8K])),
}

/// llama.cpp's repacked Q4_K kernels ([`q4k_ggml`]): one activation row with gemv numerics,
/// four rows with gemm numerics.
#[derive(Clone, Copy, Debug)]
pub struct Repacked {
    /// One weight row against one activation row.
    pub gemv: q4k_ggml::GemvFn,
    /// One weight row against the four activation rows of a group.
    pub gemm4: q4k_ggml::Gemm4Fn,
}

/// Everything the engine runs for one type, at one instruction-set level. `None` where the
/// type has no such kernel (or the level has none and no scalar one exists).
#[derive(Clone, Copy, Debug)]
pub struct TypeKernels {
    /// The type.
    pub ty: GgmlType,
    /// Name of the path [`decode`](Self::decode) takes: `"avx512"`, `"avx2"`, `"neon"` or
    /// `"scalar"`.
    pub path: &'static str,
    /// The fastest decoder: whole blocks, `out` holding the matching number of elements.
    pub decode: Option<DecodeFn>,
    /// The scalar reference decoder (whole blocks, as `decode`).
    pub decode_scalar: Option<DecodeFn>,
    /// The block encoder (one block per call).
    pub encode: Option<EncodeFn>,
    /// The activation format llama.cpp's CPU backend converts to before a matmul with weights
    /// of this type (its `vec_dot_type`), for the types with integer dot kernels here.
    pub vec_dot_type: Option<GgmlType>,
    /// For the activation formats (Q8_0, Q8_1, Q8_K): the fastest quantizer to them.
    pub from_float: Option<Quantizer>,
    /// The fastest one-row integer dot kernel against `vec_dot_type` activations.
    pub vec_dot: Option<DotKernel>,
    /// The scalar reference of `vec_dot`.
    pub vec_dot_scalar: Option<DotKernel>,
    /// Four activation rows at once (same bits as `vec_dot` row by row).
    pub vec_dot4: Option<DotKernelN<4>>,
    /// Eight activation rows at once (same bits as `vec_dot` row by row).
    pub vec_dot8: Option<DotKernelN<8>>,
    /// Four weight rows against one Q8_0/Q8_1 activation row (same bits as `vec_dot` per row).
    pub rows4: Option<DotQ8Rows4>,
    /// llama.cpp's tiled-matmul order (its path for batches of 8 or more activation rows, Q6_K):
    /// one row, fastest.
    pub tiled: Option<DotQ8KxN<1>>,
    /// [`tiled`](Self::tiled) for eight rows at once (same bits row by row).
    pub tiled8: Option<DotQ8KxN<8>>,
    /// The scalar reference of the tiled order.
    pub tiled_scalar: Option<DotQ8K>,
    /// [`tiled8`](Self::tiled8) for two weight rows at once (same bits per weight row).
    pub tiled2x8: Option<DotQ8K2xN<8>>,
    /// llama.cpp's repacked kernels (Q4_K).
    pub repacked: Option<Repacked>,
    /// The repacked `gemm4` for two weight rows at once (same bits per weight row).
    pub repacked2x4: Option<DotQ8K2xN<4>>,
}

/// An instruction-set level with its own kernel table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// The scalar references.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C.
    Avx2,
    /// [`Isa::Avx2`] with AVX-512 VL + VNNI byte dot products in the 32-element-format
    /// multi-row kernels (the same bits).
    Avx2Vnni,
    /// AArch64 with NEON (baseline there).
    Neon,
    /// [`Isa::Neon`] with the `dotprod` extension: `sdot` in the integer dot kernels (the same
    /// bits).
    NeonDot,
    /// [`Isa::NeonDot`] with the `i8mm` extension: `smmla` in two-weight-row kernels (Q6_K's
    /// tiled order, the repacked Q4_K gemm; the same bits).
    NeonI8mm,
}

impl Isa {
    /// Every level, scalar first.
    pub const ALL: [Isa; 6] = [Isa::Scalar, Isa::Avx2, Isa::Avx2Vnni, Isa::Neon, Isa::NeonDot, Isa::NeonI8mm];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx2Vnni => "avx2+vnni",
            Isa::Neon => "neon",
            Isa::NeonDot => "neon+dotprod",
            Isa::NeonI8mm => "neon+i8mm",
        }
    }

    /// Whether this CPU can run the level's kernels.
    pub fn supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => super::x86::available(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Vnni => super::x86::available() && super::x86::vnni_available(),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx2Vnni => false,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => super::arm::available(),
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDot => super::arm::dotprod_available(),
            #[cfg(target_arch = "aarch64")]
            Isa::NeonI8mm => super::arm::dotprod_available() && super::arm::i8mm_available(),
            #[cfg(not(target_arch = "aarch64"))]
            Isa::Neon | Isa::NeonDot | Isa::NeonI8mm => false,
        }
    }
}

/// Whether SIMD paths are in use (runtime detection: AVX2/FMA/F16C on x86-64, NEON on AArch64;
/// `FINETUNE_SIMD=scalar` turns them off).
pub fn simd_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("FINETUNE_SIMD").map(|v| v != "scalar").unwrap_or(true) && (Isa::Avx2.supported() || Isa::Neon.supported())
    })
}

/// Whether the AVX-512 paths may run: SIMD is on and `FINETUNE_SIMD` is not `avx2`
/// (`finetune bench --train --isa avx2` sets it). Every AVX-512/VNNI path asks this: the VNNI
/// kernel table ([`Isa::Avx2Vnni`], with the AVX-512 decoders), the int8 dots
/// ([`super::dot_i8::level`]) and the f32 GEMMs ([`crate::ops::matmul::avx512_enabled`]).
pub fn avx512_allowed() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| simd_enabled() && allows_avx512(std::env::var("FINETUNE_SIMD").ok().as_deref()))
}

/// What a `FINETUNE_SIMD` value says of AVX-512: off for `avx2` and `scalar`, else on.
pub fn allows_avx512(simd: Option<&str>) -> bool {
    !matches!(simd.map(str::trim), Some("avx2" | "scalar"))
}

/// The level in use: the best the CPU supports, [`Isa::Scalar`] when SIMD is off, at most
/// [`Isa::Avx2`] when `FINETUNE_SIMD=avx2` ([`avx512_allowed`]).
pub fn isa() -> Isa {
    if !simd_enabled() {
        Isa::Scalar
    } else if Isa::Avx2Vnni.supported() && avx512_allowed() {
        Isa::Avx2Vnni
    } else if Isa::Avx2.supported() {
        Isa::Avx2
    } else if Isa::NeonI8mm.supported() {
        Isa::NeonI8mm
    } else if Isa::NeonDot.supported() {
        Isa::NeonDot
    } else {
        Isa::Neon
    }
}

/// The kernels of `ty` at the level in use ([`isa`]).
pub fn kernels(ty: GgmlType) -> &'static TypeKernels {
    static ACTIVE: OnceLock<&'static [TypeKernels]> = OnceLock::new();
    &ACTIVE.get_or_init(|| table(isa()).expect("the level in use is supported"))[ty as usize]
}

/// The scalar reference kernels of `ty`.
pub fn scalar_kernels(ty: GgmlType) -> &'static TypeKernels {
    &table(Isa::Scalar).expect("scalar is always supported")[ty as usize]
}

/// The kernels of `ty` at level `isa`, if this CPU supports it (whatever `FINETUNE_SIMD` says).
pub fn kernels_for(isa: Isa, ty: GgmlType) -> Option<&'static TypeKernels> {
    table(isa).map(|t| &t[ty as usize])
}

fn table(isa: Isa) -> Option<&'static [TypeKernels]> {
    static TABLES: [OnceLock<Vec<TypeKernels>>; Isa::ALL.len()] = [const { OnceLock::new() }; Isa::ALL.len()];
    if !isa.supported() {
        return None;
    }
    let slot = &TABLES[Isa::ALL.iter().position(|&i| i == isa).expect("listed")];
    Some(slot.get_or_init(|| GgmlType::ALL.iter().map(|&ty| entry(isa, ty)).collect()))
}

fn entry(isa: Isa, ty: GgmlType) -> TypeKernels {
    match isa {
        Isa::Scalar => scalar_entry(ty),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86_entry(ty, false),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Vnni => x86_entry(ty, true),
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 | Isa::Avx2Vnni => unreachable!("not supported here"),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => arm_entry::<false>(ty),
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDot => arm_entry::<true>(ty),
        #[cfg(target_arch = "aarch64")]
        Isa::NeonI8mm => arm_i8mm_entry(ty),
        #[cfg(not(target_arch = "aarch64"))]
        Isa::Neon | Isa::NeonDot | Isa::NeonI8mm => unreachable!("not supported here"),
    }
}

/// A whole-blocks decoder from a one-block scalar decoder.
macro_rules! blocks {
    ($f:path, $ty:expr) => {
        Some(|b: &[u8], y: &mut [f32]| {
            for (bb, yy) in b.chunks_exact($ty.type_size()).zip(y.chunks_exact_mut($ty.block_size())) {
                $f(bb, yy)
            }
        })
    };
}

fn scalar_entry(ty: GgmlType) -> TypeKernels {
    use GgmlType::*;
    let none = TypeKernels {
        ty,
        path: "scalar",
        decode: None,
        decode_scalar: None,
        encode: None,
        vec_dot_type: None,
        from_float: None,
        vec_dot: None,
        vec_dot_scalar: None,
        vec_dot4: None,
        vec_dot8: None,
        rows4: None,
        tiled: None,
        tiled8: None,
        tiled_scalar: None,
        tiled2x8: None,
        repacked: None,
        repacked2x4: None,
    };
    let (decode, encode): (Option<DecodeFn>, Option<EncodeFn>) = match ty {
        F32 => (blocks!(float::decode_f32, F32), Some(float::encode_f32)),
        F16 => (blocks!(float::decode_f16, F16), Some(float::encode_f16)),
        BF16 => (blocks!(float::decode_bf16, BF16), Some(float::encode_bf16)),
        Q4_0 => (blocks!(legacy::decode_q4_0, Q4_0), Some(legacy::encode_q4_0)),
        Q4_1 => (blocks!(legacy::decode_q4_1, Q4_1), Some(legacy::encode_q4_1)),
        Q5_0 => (blocks!(legacy::decode_q5_0, Q5_0), Some(legacy::encode_q5_0)),
        Q5_1 => (blocks!(legacy::decode_q5_1, Q5_1), Some(legacy::encode_q5_1)),
        Q8_0 => (blocks!(legacy::decode_q8_0, Q8_0), Some(legacy::encode_q8_0)),
        Q2_K => (blocks!(kquants::q2_k::decode, Q2_K), None),
        Q3_K => (blocks!(kquants::q3_k::decode, Q3_K), None),
        Q4_K => (blocks!(kquants::q4_k::decode, Q4_K), Some(kquants::q4_k::encode)),
        Q5_K => (blocks!(kquants::q5_k::decode, Q5_K), Some(kquants::q5_k::encode)),
        Q6_K => (blocks!(kquants::q6_k::decode, Q6_K), Some(kquants::q6_k::encode)),
        Q8_K => (blocks!(kquants::q8_k::decode, Q8_K), Some(kquants::q8_k::encode)),
        IQ4_NL => (blocks!(iq4::decode_nl, IQ4_NL), Some(iq4::encode_nl)),
        IQ4_XS => (blocks!(iq4::decode_xs, IQ4_XS), None),
        MXFP4 => (blocks!(small::decode_mxfp4, MXFP4), None),
        TQ1_0 => (blocks!(small::decode_tq1_0, TQ1_0), None),
        TQ2_0 => (blocks!(small::decode_tq2_0, TQ2_0), None),
        _ => (None, None),
    };
    let dot = |act: GgmlType, k: DotKernel| TypeKernels { vec_dot_type: Some(act), vec_dot: Some(k), vec_dot_scalar: Some(k), ..none };
    let base = match ty {
        Q4_0 => dot(Q8_0, DotKernel::Q8(vecdot::dot_q4_0)),
        Q4_1 => dot(Q8_1, DotKernel::Q8(vecdot::dot_q4_1)),
        Q5_0 => dot(Q8_0, DotKernel::Q8(vecdot::dot_q5_0)),
        Q5_1 => dot(Q8_1, DotKernel::Q8(vecdot::dot_q5_1)),
        Q8_0 => {
            TypeKernels { from_float: Some(Quantizer::Q8(q8::quantize_q8_scalar::<false>)), ..dot(Q8_0, DotKernel::Q8(vecdot::dot_q8_0)) }
        }
        Q8_1 => TypeKernels { from_float: Some(Quantizer::Q8(q8::quantize_q8_scalar::<true>)), ..none },
        Q8_K => TypeKernels { from_float: Some(Quantizer::Q8K(q8::quantize_q8k_scalar)), ..none },
        Q4_K => TypeKernels {
            repacked: Some(Repacked { gemv: q4k_ggml::gemv_scalar, gemm4: q4k_ggml::gemm4_scalar }),
            ..dot(Q8_K, DotKernel::Q8K(vecdot::dot_q4_k))
        },
        Q6_K => TypeKernels {
            tiled: Some(|w: &[u8], a: [&[BlockQ8K]; 1]| [vecdot::dot_q6_k_tiled(w, a[0])]),
            tiled_scalar: Some(vecdot::dot_q6_k_tiled),
            ..dot(Q8_K, DotKernel::Q8K(vecdot::dot_q6_k))
        },
        _ => none,
    };
    TypeKernels { decode, decode_scalar: decode, encode, ..base }
}

/// The scalar entry with what [`super::x86`] has for `ty` put in its place; `vnni` picks the
/// AVX-512 VNNI multi-row kernels of the 32-element formats.
#[cfg(target_arch = "x86_64")]
fn x86_entry(ty: GgmlType, vnni: bool) -> TypeKernels {
    use super::x86::{decode as d, vecdot as v, vecdot_k as vk};
    use GgmlType::*;
    let s = scalar_entry(ty);
    let decode: Option<DecodeFn> = match ty {
        F16 => Some(d::f16),
        BF16 => Some(d::bf16),
        Q4_0 => Some(d::q4_0),
        Q4_1 => Some(d::q4_1),
        Q5_0 => Some(d::q5_0),
        Q5_1 => Some(d::q5_1),
        Q8_0 => Some(d::q8_0),
        Q2_K => Some(d::q2_k),
        Q3_K => Some(d::q3_k),
        Q4_K => Some(d::q4_k),
        Q5_K => Some(d::q5_k),
        Q6_K => Some(d::q6_k),
        IQ4_NL => Some(d::iq4_nl),
        IQ4_XS => Some(d::iq4_xs),
        MXFP4 => Some(d::mxfp4),
        TQ2_0 => Some(d::tq2_0),
        _ => None,
    };
    // The AVX-512 level (VNNI CPUs, which all have AVX-512BW too) decodes the hot types 16
    // floats at a time; the AVX2 level keeps the AVX2 decoders (the bench and tests compare both).
    let wide = if vnni { super::x86::wide_decoder(ty) } else { None };
    let s = match (wide, decode) {
        (Some(f), _) => TypeKernels { path: "avx512", decode: Some(f), ..s },
        (None, Some(f)) => TypeKernels { path: "avx2", decode: Some(f), ..s },
        (None, None) => s,
    };
    // The 32-element formats: one-row kernel, and `N`-row ones (VNNI or plain AVX2).
    macro_rules! legacy {
        ($one:path, $plain:ident, $vnni:ident, $rows:ident, $rows_vnni:ident) => {
            TypeKernels {
                vec_dot: Some(DotKernel::Q8($one)),
                vec_dot4: Some(DotKernelN::Q8(if vnni { v::$vnni::<4> } else { v::$plain::<4> })),
                vec_dot8: Some(DotKernelN::Q8(if vnni { v::$vnni::<8> } else { v::$plain::<8> })),
                rows4: Some(if vnni { v::$rows_vnni } else { v::$rows }),
                ..s
            }
        };
    }
    match ty {
        Q4_0 => legacy!(v::q4_0, q4_0_n, q4_0_n_vnni, q4_0_rows, q4_0_rows_vnni),
        Q4_1 => legacy!(v::q4_1, q4_1_n, q4_1_n_vnni, q4_1_rows, q4_1_rows_vnni),
        Q5_0 => legacy!(v::q5_0, q5_0_n, q5_0_n_vnni, q5_0_rows, q5_0_rows_vnni),
        Q5_1 => legacy!(v::q5_1, q5_1_n, q5_1_n_vnni, q5_1_rows, q5_1_rows_vnni),
        Q8_0 => TypeKernels {
            from_float: Some(Quantizer::Q8(v::quantize_q8::<false>)),
            ..legacy!(v::q8_0, q8_0_n, q8_0_n_vnni, q8_0_rows, q8_0_rows_vnni)
        },
        Q8_1 => TypeKernels { from_float: Some(Quantizer::Q8(v::quantize_q8::<true>)), ..s },
        Q8_K => TypeKernels { from_float: Some(Quantizer::Q8K(v::quantize_q8k)), ..s },
        Q4_K => TypeKernels {
            vec_dot: Some(DotKernel::Q8K(v::q4_k)),
            vec_dot4: Some(DotKernelN::Q8K(vk::q4_k_n::<4>)),
            vec_dot8: Some(DotKernelN::Q8K(vk::q4_k_n::<8>)),
            repacked: Some(Repacked { gemv: super::x86::q4k::gemv, gemm4: super::x86::q4k::gemm4 }),
            repacked2x4: if vnni { super::x86::q4k_wide() } else { None },
            ..s
        },
        Q6_K => TypeKernels {
            vec_dot: Some(DotKernel::Q8K(v::q6_k)),
            vec_dot4: Some(DotKernelN::Q8K(vk::q6_k_n::<4>)),
            vec_dot8: Some(DotKernelN::Q8K(vk::q6_k_n::<8>)),
            tiled: Some(vk::q6_k_tiled_n::<1>),
            tiled8: Some(vk::q6_k_tiled_n::<8>),
            tiled2x8: if vnni { super::x86::q6k_wide() } else { None },
            ..s
        },
        _ => s,
    }
}

/// The scalar entry with what [`super::arm`] has for `ty` put in its place; `DOT` picks the
/// `sdot` builds of the integer dot kernels.
#[cfg(target_arch = "aarch64")]
fn arm_entry<const DOT: bool>(ty: GgmlType) -> TypeKernels {
    use super::arm::{decode as d, q4k, vecdot as v, vecdot_k as vk};
    use GgmlType::*;
    let s = scalar_entry(ty);
    let decode: Option<DecodeFn> = match ty {
        F16 => Some(d::f16),
        BF16 => Some(d::bf16),
        Q4_0 => Some(d::q4_0),
        Q4_1 => Some(d::q4_1),
        Q5_0 => Some(d::q5_0),
        Q5_1 => Some(d::q5_1),
        Q8_0 => Some(d::q8_0),
        Q2_K => Some(d::q2_k),
        Q3_K => Some(d::q3_k),
        Q4_K => Some(d::q4_k),
        Q5_K => Some(d::q5_k),
        Q6_K => Some(d::q6_k),
        IQ4_NL => Some(d::iq4_nl),
        IQ4_XS => Some(d::iq4_xs),
        MXFP4 => Some(d::mxfp4),
        TQ2_0 => Some(d::tq2_0),
        _ => None,
    };
    let s = match decode {
        Some(f) => TypeKernels { path: "neon", decode: Some(f), ..s },
        None => s,
    };
    macro_rules! legacy {
        ($one:ident, $n:ident) => {
            TypeKernels {
                vec_dot: Some(DotKernel::Q8(v::$one::<DOT>)),
                vec_dot4: Some(DotKernelN::Q8(v::$n::<4, DOT>)),
                vec_dot8: Some(DotKernelN::Q8(v::$n::<8, DOT>)),
                ..s
            }
        };
    }
    match ty {
        Q4_0 => legacy!(q4_0, q4_0_n),
        Q4_1 => legacy!(q4_1, q4_1_n),
        Q5_0 => legacy!(q5_0, q5_0_n),
        Q5_1 => legacy!(q5_1, q5_1_n),
        Q8_0 => TypeKernels { from_float: Some(Quantizer::Q8(v::quantize_q8::<false>)), ..legacy!(q8_0, q8_0_n) },
        Q8_1 => TypeKernels { from_float: Some(Quantizer::Q8(v::quantize_q8::<true>)), ..s },
        Q8_K => TypeKernels { from_float: Some(Quantizer::Q8K(v::quantize_q8k)), ..s },
        Q4_K => TypeKernels {
            vec_dot: Some(DotKernel::Q8K(v::q4_k::<DOT>)),
            vec_dot4: Some(DotKernelN::Q8K(v::q4_k_n::<4, DOT>)),
            vec_dot8: Some(DotKernelN::Q8K(v::q4_k_n::<8, DOT>)),
            repacked: Some(Repacked { gemv: q4k::gemv::<DOT>, gemm4: q4k::gemm4::<DOT> }),
            ..s
        },
        Q6_K => TypeKernels {
            vec_dot: Some(DotKernel::Q8K(vk::q6_k::<DOT>)),
            vec_dot4: Some(DotKernelN::Q8K(vk::q6_k_n::<4, DOT>)),
            vec_dot8: Some(DotKernelN::Q8K(vk::q6_k_n::<8, DOT>)),
            tiled: Some(vk::q6_k_tiled_n::<1, DOT>),
            tiled8: Some(vk::q6_k_tiled_n::<8, DOT>),
            ..s
        },
        _ => s,
    }
}

/// The `dotprod` entry with [`super::arm::i8mm`]'s two-weight-row kernels added.
#[cfg(target_arch = "aarch64")]
fn arm_i8mm_entry(ty: GgmlType) -> TypeKernels {
    use super::arm::i8mm;
    let s = arm_entry::<true>(ty);
    match ty {
        GgmlType::Q4_K => TypeKernels { repacked2x4: Some(i8mm::q4_k_gemm_2x4), ..s },
        GgmlType::Q6_K => TypeKernels { tiled2x8: Some(i8mm::q6_k_tiled_2xn::<8>), ..s },
        _ => s,
    }
}

impl GgmlType {
    /// Whether this engine can decode the type to f32.
    pub fn can_decode(self) -> bool {
        scalar_kernels(self).decode_scalar.is_some()
    }

    /// Whether this engine can encode f32 into the type.
    pub fn can_encode(self) -> bool {
        scalar_kernels(self).encode.is_some()
    }
}

/// Quantize the rows of `x` (row length `k`) to `act` (Q8_0, Q8_1 or Q8_K) with the fastest
/// quantizer ([`TypeKernels::from_float`]; all give the same bits).
pub fn quantize_rows(act: GgmlType, x: &[f32], k: usize) -> Q8Rows {
    match kernels(act).from_float {
        Some(Quantizer::Q8K(f)) => {
            let mut v = vec![BlockQ8K::default(); x.len() / 256];
            for (xr, br) in x.chunks_exact(k).zip(v.chunks_exact_mut(k / 256)) {
                f(xr, br);
            }
            Q8Rows::Q8K(v)
        }
        Some(Quantizer::Q8(f)) => {
            let mut v = vec![BlockQ8::default(); x.len() / 32];
            f(x, &mut v);
            Q8Rows::Q8(v)
        }
        None => panic!("{act} is not an activation format"),
    }
}

/// The activation rows of `x` (row length `k`, a multiple of 256) as llama.cpp's repacked Q4_K
/// path quantizes them: rows `0 .. t − t%4` by [`q4k_ggml::quantize_q8k_4x8`], the rest by the
/// ordinary Q8_K quantizer ([`quantize_rows`]). `k/256` blocks per row.
pub fn quantize_rows_4x8(x: &[f32], k: usize) -> Vec<BlockQ8K> {
    let t = x.len() / k;
    let t4 = t - t % 4;
    let mut v = vec![BlockQ8K::default(); x.len() / 256];
    q4k_ggml::quantize_q8k_4x8(&x[..t4 * k], &mut v[..t4 * k / 256]);
    if t4 < t {
        match quantize_rows(GgmlType::Q8_K, &x[t4 * k..], k) {
            Q8Rows::Q8K(r) => v[t4 * k / 256..].copy_from_slice(&r),
            Q8Rows::Q8(_) => unreachable!("Q8_K rows"),
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_indexed_by_type_and_keep_the_scalar_references() {
        for (i, &ty) in GgmlType::ALL.iter().enumerate() {
            assert_eq!(ty as usize, i, "{ty}: the tables are indexed by declaration order");
            for isa in Isa::ALL.into_iter().filter(|i| i.supported()) {
                let (k, s) = (kernels_for(isa, ty).unwrap(), scalar_kernels(ty));
                assert_eq!(k.ty, ty);
                // Every level has what the scalar one has (and the same type facts).
                assert_eq!(k.decode.is_some(), s.decode.is_some(), "{ty} at {}", isa.name());
                assert_eq!((k.decode_scalar.is_some(), k.encode.is_some()), (s.decode_scalar.is_some(), s.encode.is_some()));
                assert_eq!(k.vec_dot_type, s.vec_dot_type);
                assert_eq!((k.vec_dot.is_some(), k.vec_dot_scalar.is_some()), (s.vec_dot.is_some(), s.vec_dot_scalar.is_some()));
                assert_eq!(
                    (k.tiled.is_some(), k.tiled_scalar.is_some(), k.repacked.is_some()),
                    (s.tiled.is_some(), s.tiled_scalar.is_some(), s.repacked.is_some())
                );
            }
        }
        assert_eq!(kernels(GgmlType::Q4_K).ty, GgmlType::Q4_K);
    }

    #[test]
    fn simd_kernels_match_the_scalar_ones() {
        let mut seed = 11u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        let nb = 3;
        let w: Vec<u8> = (0..nb * 144).map(|i| if i % 144 < 4 { [0x66, 0x2e, 0x13, 0x1f][i % 144 % 4] } else { rnd() as u8 }).collect();
        // The last block at the integer extremes: every code 15, every scale and min 63.
        let mut w = w;
        w[(nb - 1) * 144 + 4..nb * 144].fill(0xFF);
        let mut x: Vec<f32> = (0..4 * nb * 256).map(|_| (rnd() % 2001) as f32 / 100.0 - 10.0).collect();
        for r in 0..4 {
            let last = &mut x[(r * nb + nb - 1) * 256..(r * nb + nb) * 256];
            last.iter_mut().enumerate().for_each(|(i, v)| *v = if (i + r) % 3 == 0 { -5.0 } else { 5.0 });
        }
        let a = quantize_rows_4x8(&x, nb * 256);
        let r: [&[BlockQ8K]; 4] = std::array::from_fn(|i| &a[i * nb..(i + 1) * nb]);
        let Repacked { gemv: gv, gemm4: g4 } = kernels(GgmlType::Q4_K).repacked.expect("Q4_K has repacked kernels");
        assert_eq!(g4(&w, r).map(f32::to_bits), q4k_ggml::gemm4_scalar(&w, r).map(f32::to_bits));
        for row in r {
            assert_eq!(gv(&w, row).to_bits(), q4k_ggml::gemv_scalar(&w, row).to_bits());
        }
    }
}
