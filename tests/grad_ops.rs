//! Backward passes of the training ops against f64 references written here: a plain-loop f64
//! forward of each op, its central finite-difference gradient of a random scalar loss
//! `L = Σ r·y`, and our f32 analytical backward. Our f32 forwards are checked against the f64
//! forwards too.
//!
//! Tolerances. The f64 finite differences (step 1e-5, central) carry ~1e-10 relative truncation
//! error and ~1e-11 round-off, so the reference gradient is exact to far below f32 precision;
//! what remains is the f32 arithmetic of our ops (~6e-8 per operation, growing with the length
//! of the sums). Gradients must match to a relative L2 error ≤ 1e-4 (≤ 2e-4 where a softcap's
//! `1 − tanh²` or long f32 sums are involved); the measured errors (printed, `--nocapture`) are
//! one to two orders of magnitude below. Linear ops compared against a direct f64 product use
//! ≤ 1e-5.
mod common;

use common::Rng;
use finetune::ops::activation::{glu_backward, glu_inplace, Act};
use finetune::ops::attention::{causal_attention, AttnShape};
use finetune::ops::attention_train::{attention_backward, attention_forward};
use finetune::ops::loss::{cross_entropy, CHUNK};
use finetune::ops::matmul::{matmul_backward_input, QMatrix};
use finetune::ops::norm::{rms_norm_backward, rms_norm_inplace};
use finetune::ops::rope::{Rope, RopeStyle};
use finetune::quant::{self, GgmlType};

const H: f64 = 1e-5;

fn normal(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.normal() * scale).collect()
}

fn f64v(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// ‖a − b‖ / ‖b‖ (or ‖a − b‖ when b is zero).
fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).powi(2)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if den == 0.0 {
        num
    } else {
        num / den
    }
}

/// Central finite-difference gradient of `f` at `x`.
fn fd_grad(x: &[f64], mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut xx = x.to_vec();
    (0..x.len())
        .map(|i| {
            xx[i] = x[i] + H;
            let fp = f(&xx);
            xx[i] = x[i] - H;
            let fm = f(&xx);
            xx[i] = x[i];
            (fp - fm) / (2.0 * H)
        })
        .collect()
}

fn dot64(r: &[f32], y: &[f64]) -> f64 {
    r.iter().zip(y).map(|(&a, &b)| a as f64 * b).sum()
}

/// [`rel_err`], or the absolute error where the true gradient is zero (‖b‖ below FD noise).
fn grad_err(a: &[f32], b: &[f64]) -> f64 {
    let nb = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if nb < 1e-8 {
        a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).powi(2)).sum::<f64>().sqrt()
    } else {
        rel_err(a, b)
    }
}

fn check(what: &str, err: f64, tol: f64) {
    eprintln!("{what}: err {err:.2e} (tol {tol:.0e})");
    assert!(err <= tol, "{what}: error {err:.3e} > {tol:.0e}");
}

// ---------------------------------------------------------------- rmsnorm

fn rms_ref(x: &[f64], w: Option<&[f32]>, n: usize, eps: f64) -> Vec<f64> {
    let mut y = x.to_vec();
    for row in y.chunks_exact_mut(n) {
        let r = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / n as f64 + eps).sqrt();
        for (i, v) in row.iter_mut().enumerate() {
            *v *= r * w.map_or(1.0, |w| w[i] as f64);
        }
    }
    y
}

#[test]
fn rms_norm_backward_matches_finite_differences() {
    let mut rng = Rng(11);
    let (n, t, eps) = (37, 6, 1e-5f32);
    // rows of very different scales, one small enough for eps to matter
    let mut x = normal(&mut rng, n * t, 1.0);
    for (r, s) in [(1, 30.0f32), (2, 0.01), (4, 1e-3)] {
        x[r * n..(r + 1) * n].iter_mut().for_each(|v| *v *= s);
    }
    let w = normal(&mut rng, n, 1.0);
    let r = normal(&mut rng, n * t, 1.0);
    for wopt in [Some(&w[..]), None] {
        let tag = if wopt.is_some() { "with w" } else { "without w" };
        let mut y = x.clone();
        rms_norm_inplace(&mut y, n, eps, wopt);
        check(&format!("rmsnorm {tag} forward"), rel_err(&y, &rms_ref(&f64v(&x), wopt, n, eps as f64)), 1e-6);
        let mut dx = vec![f32::NAN; n * t];
        rms_norm_backward(&x, wopt, n, eps, &r, &mut dx);
        let g = fd_grad(&f64v(&x), |xx| dot64(&r, &rms_ref(xx, wopt, n, eps as f64)));
        check(&format!("rmsnorm {tag} dx"), rel_err(&dx, &g), 1e-4);
        // every row on its own (the scales differ by 10⁴)
        for row in 0..t {
            let e = rel_err(&dx[row * n..(row + 1) * n], &g[row * n..(row + 1) * n]);
            assert!(e <= 1e-4, "rmsnorm {tag} row {row}: {e:.3e}");
        }
    }
}

// ---------------------------------------------------------------- rope

#[allow(clippy::too_many_arguments)]
fn rope_ref(
    x: &[f64],
    style: RopeStyle,
    n_rot: usize,
    base: f64,
    fs: f64,
    factors: Option<&[f32]>,
    nh: usize,
    hd: usize,
    pos: &[u32],
) -> Vec<f64> {
    let mut y = x.to_vec();
    for (row, &p) in y.chunks_exact_mut(nh * hd).zip(pos) {
        for head in row.chunks_exact_mut(hd) {
            for i in 0..n_rot / 2 {
                let f = factors.map_or(1.0, |f| f[i] as f64);
                let theta = p as f64 * fs * base.powf(-2.0 * i as f64 / n_rot as f64) / f;
                let (a, b) = match style {
                    RopeStyle::Norm => (2 * i, 2 * i + 1),
                    RopeStyle::Neox => (i, i + n_rot / 2),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * theta.cos() - x1 * theta.sin();
                head[b] = x0 * theta.sin() + x1 * theta.cos();
            }
        }
    }
    y
}

#[test]
fn rope_backward_matches_finite_differences() {
    let mut rng = Rng(12);
    let (nh, hd) = (3, 16);
    let pos = [0u32, 1, 7, 31, 100];
    let factors: Vec<f32> = (0..8).map(|i| 1.0 + i as f32 * 0.7).collect();
    let cases: [(RopeStyle, usize, f32, Option<&[f32]>); 5] = [
        (RopeStyle::Norm, 16, 1.0, None),
        (RopeStyle::Neox, 16, 1.0, None),
        (RopeStyle::Norm, 12, 0.5, Some(&factors[..6])),
        (RopeStyle::Neox, 8, 1.0, Some(&factors[..4])),
        (RopeStyle::Neox, 10, 0.25, None),
    ];
    for (style, n_rot, fs, fac) in cases {
        let tag = format!("rope {style:?} n_rot {n_rot}/{hd} fs {fs} factors {}", fac.is_some());
        let rope = Rope::new(style, n_rot, 10000.0, fs, fac);
        let x = normal(&mut rng, pos.len() * nh * hd, 1.0);
        let r = normal(&mut rng, x.len(), 1.0);
        let mut y = x.clone();
        rope.apply_positions(&mut y, nh, hd, &pos);
        let yr = rope_ref(&f64v(&x), style, n_rot, 10000.0, fs as f64, fac, nh, hd, &pos);
        check(&format!("{tag} forward"), rel_err(&y, &yr), 1e-5);
        // rows past n_rot are untouched
        for (a, b) in y.chunks_exact(hd).zip(x.chunks_exact(hd)) {
            assert_eq!(a[n_rot..], b[n_rot..]);
        }
        let mut dx = r.clone();
        rope.apply_backward_positions(&mut dx, nh, hd, &pos);
        let g = fd_grad(&f64v(&x), |xx| dot64(&r, &rope_ref(xx, style, n_rot, 10000.0, fs as f64, fac, nh, hd, &pos)));
        check(&format!("{tag} dx"), rel_err(&dx, &g), 1e-4);
        // the single-position API agrees with the per-row one
        let w = nh * hd;
        for (t, &p) in pos.iter().enumerate() {
            let mut one = r[t * w..(t + 1) * w].to_vec();
            rope.apply_backward(&mut one, nh, hd, p as usize);
            assert_eq!(one, dx[t * w..(t + 1) * w]);
            let mut fwd = x[t * w..(t + 1) * w].to_vec();
            rope.apply(&mut fwd, nh, hd, p as usize);
            assert_eq!(fwd, y[t * w..(t + 1) * w]);
        }
    }
}

// ---------------------------------------------------------------- GLU

fn act_ref(act: Act, x: f64) -> f64 {
    match act {
        Act::SwiGlu => x / (1.0 + (-x).exp()),
        Act::GeGlu => 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh()),
    }
}

#[test]
fn glu_backward_matches_finite_differences() {
    let mut rng = Rng(13);
    let n = 300;
    for act in [Act::SwiGlu, Act::GeGlu] {
        let mut gate = normal(&mut rng, n, 3.0);
        gate[0] = 40.0;
        gate[1] = -40.0;
        gate[2] = 0.0;
        let up = normal(&mut rng, n, 1.0);
        let r = normal(&mut rng, n, 1.0);
        let mut h = gate.clone();
        glu_inplace(act, &mut h, &up);
        let href: Vec<f64> = (0..n).map(|i| act_ref(act, gate[i] as f64) * up[i] as f64).collect();
        check(&format!("{act:?} forward"), rel_err(&h, &href), 1e-6);
        let (mut dg, mut du) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        glu_backward(act, &gate, &up, &r, &mut dg, &mut du);
        let up64 = f64v(&up);
        let gg = fd_grad(&f64v(&gate), |g| (0..n).map(|i| r[i] as f64 * act_ref(act, g[i]) * up64[i]).sum());
        let gate64 = f64v(&gate);
        let gu = fd_grad(&up64, |u| (0..n).map(|i| r[i] as f64 * act_ref(act, gate64[i]) * u[i]).sum());
        check(&format!("{act:?} dgate"), rel_err(&dg, &gg), 1e-4);
        check(&format!("{act:?} dup"), rel_err(&du, &gu), 1e-4);
    }
}

// ---------------------------------------------------------------- attention

/// f64 reference: returns out [T, n_head·v_dim] and lse [T, n_head] (−∞: no visible key).
fn attn_ref(s: &AttnShape, seg: Option<&[u32]>, q: &[f64], k: &[f64], v: &[f64], t: usize) -> (Vec<f64>, Vec<f64>) {
    let (hd, vd, group) = (s.head_dim, s.v_dim, s.n_head / s.n_head_kv);
    let (qw, kw, vw, ow) = (s.n_head * hd, s.n_head_kv * hd, s.n_head_kv * vd, s.n_head * vd);
    let mut out = vec![0f64; t * ow];
    let mut lse = vec![f64::NEG_INFINITY; t * s.n_head];
    for h in 0..s.n_head {
        let kvh = h / group;
        for i in 0..t {
            let vis: Vec<usize> = (0..=i).filter(|&j| s.window.is_none_or(|w| i - j < w) && seg.is_none_or(|sg| sg[i] == sg[j])).collect();
            if vis.is_empty() {
                continue;
            }
            let z: Vec<f64> = vis
                .iter()
                .map(|&j| {
                    let d: f64 = (0..hd).map(|e| q[i * qw + h * hd + e] * k[j * kw + kvh * hd + e]).sum();
                    s.softcap.map_or(d, |c| c as f64 * (d / c as f64).tanh())
                })
                .collect();
            let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let l = m + z.iter().map(|&x| (x - m).exp()).sum::<f64>().ln();
            lse[i * s.n_head + h] = l;
            for (&j, &zj) in vis.iter().zip(&z) {
                let p = (zj - l).exp();
                for e in 0..vd {
                    out[i * ow + h * vd + e] += p * v[j * vw + kvh * vd + e];
                }
            }
        }
    }
    (out, lse)
}

fn shape(n_head: usize, n_head_kv: usize, head_dim: usize, v_dim: usize, window: Option<usize>, softcap: Option<f32>) -> AttnShape {
    AttnShape { n_head, n_head_kv, head_dim, v_dim, window, softcap }
}

fn attn_case(tag: &str, s: AttnShape, t: usize, seg: Option<&[u32]>, rng: &mut Rng) {
    let q = normal(rng, t * s.n_head * s.head_dim, 0.6);
    let k = normal(rng, t * s.n_head_kv * s.head_dim, 0.6);
    let v = normal(rng, t * s.n_head_kv * s.v_dim, 1.0);
    let r = normal(rng, t * s.n_head * s.v_dim, 1.0);
    let mut out = vec![f32::NAN; r.len()];
    let mut lse = vec![f32::NAN; t * s.n_head];
    attention_forward(s, &q, &k, &v, seg, &mut out, &mut lse);
    let (q64, k64, v64) = (f64v(&q), f64v(&k), f64v(&v));
    let (oref, lref) = attn_ref(&s, seg, &q64, &k64, &v64, t);
    check(&format!("attn {tag} forward"), rel_err(&out, &oref), 1e-5);
    for (a, b) in lse.iter().zip(&lref) {
        assert!((*a as f64 - b).abs() <= 1e-5 * (1.0 + b.abs()), "attn {tag} lse {a} vs {b}");
    }
    let (mut dq, mut dk, mut dv) = (vec![f32::NAN; q.len()], vec![f32::NAN; k.len()], vec![f32::NAN; v.len()]);
    attention_backward(s, &q, &k, &v, seg, &out, &lse, &r, &mut dq, &mut dk, &mut dv);
    let gq = fd_grad(&q64, |x| dot64(&r, &attn_ref(&s, seg, x, &k64, &v64, t).0));
    let gk = fd_grad(&k64, |x| dot64(&r, &attn_ref(&s, seg, &q64, x, &v64, t).0));
    let gv = fd_grad(&v64, |x| dot64(&r, &attn_ref(&s, seg, &q64, &k64, x, t).0));
    let tol = if s.softcap.is_some() { 2e-4 } else { 1e-4 };
    // (with one key per row, dq and dk are exactly zero: grad_err is then absolute)
    check(&format!("attn {tag} dq"), grad_err(&dq, &gq), tol);
    check(&format!("attn {tag} dk"), grad_err(&dk, &gk), tol);
    check(&format!("attn {tag} dv"), grad_err(&dv, &gv), tol);
}

#[test]
fn attention_backward_matches_finite_differences() {
    let mut rng = Rng(14);
    attn_case("gqa 4/2 hd16 vd8 T40", shape(4, 2, 16, 8, None, None), 40, None, &mut rng);
    // T > BQ (64): several query blocks, dk/dv accumulated across them
    attn_case("window 7 T70", shape(4, 2, 16, 8, Some(7), None), 70, None, &mut rng);
    let long: Vec<u32> = (0..100).map(|i| (i / 45) as u32).collect();
    attn_case("T100 gqa 2/1 softcap 3 segments", shape(2, 1, 8, 4, None, Some(3.0)), 100, Some(&long), &mut rng);
    attn_case("softcap 1.5", shape(4, 2, 16, 8, None, Some(1.5)), 33, None, &mut rng);
    let packed: Vec<u32> = (0..37)
        .map(|i| {
            if i < 13 {
                0
            } else if i < 22 {
                1
            } else {
                2
            }
        })
        .collect();
    attn_case("segments", shape(4, 2, 12, 8, None, None), 37, Some(&packed), &mut rng);
    // ids that come back (0 1 0 2 …): a query sees every earlier key with its id
    let scattered: Vec<u32> = (0..35).map(|i| [0u32, 1, 0, 2, 2, 1][i % 6]).collect();
    attn_case("scattered segments", shape(2, 1, 8, 12, None, None), 35, Some(&scattered), &mut rng);
    attn_case("all: gqa 6/2, window 5, softcap 2, segments", shape(6, 2, 8, 4, Some(5), Some(2.0)), 37, Some(&packed), &mut rng);
    attn_case("mha T1", shape(2, 2, 8, 8, None, None), 1, None, &mut rng);
}

#[test]
fn attention_forward_equals_causal_attention() {
    let mut rng = Rng(15);
    for (t, s) in [
        (1, shape(4, 2, 16, 8, None, None)),
        (2, shape(4, 2, 16, 8, Some(1), Some(3.0))),
        (40, shape(4, 2, 16, 8, None, None)),
        (70, shape(8, 2, 32, 16, Some(9), None)),
        (45, shape(3, 1, 16, 24, None, Some(2.0))),
    ] {
        let q = normal(&mut rng, t * s.n_head * s.head_dim, 0.5);
        let k = normal(&mut rng, t * s.n_head_kv * s.head_dim, 0.5);
        let v = normal(&mut rng, t * s.n_head_kv * s.v_dim, 1.0);
        let (mut a, mut b) = (vec![0f32; t * s.n_head * s.v_dim], vec![0f32; t * s.n_head * s.v_dim]);
        let mut lse = vec![0f32; t * s.n_head];
        attention_forward(s, &q, &k, &v, None, &mut a, &mut lse);
        causal_attention(s, &q, &k, &v, 0, &mut b);
        let max = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        eprintln!("attention_forward vs causal_attention T{t}: max |Δ| {max:.2e}");
        assert!(max <= 1e-5, "T{t} {s:?}: max |Δ| {max}");
    }
}

#[test]
fn attention_rows_without_keys_are_zero() {
    // window 0 hides every key: no NaN, zero output and zero gradients
    let s = shape(2, 1, 8, 8, Some(0), None);
    let t = 5;
    let mut rng = Rng(16);
    let (q, k, v) = (normal(&mut rng, t * 16, 1.0), normal(&mut rng, t * 8, 1.0), normal(&mut rng, t * 8, 1.0));
    let (mut out, mut lse) = (vec![f32::NAN; t * 16], vec![0f32; t * 2]);
    attention_forward(s, &q, &k, &v, None, &mut out, &mut lse);
    assert!(out.iter().all(|&x| x == 0.0) && lse.iter().all(|&x| x == f32::NEG_INFINITY));
    let (mut dq, mut dk, mut dv) = (vec![f32::NAN; q.len()], vec![f32::NAN; k.len()], vec![f32::NAN; v.len()]);
    attention_backward(s, &q, &k, &v, None, &out, &lse, &normal(&mut rng, t * 16, 1.0), &mut dq, &mut dk, &mut dv);
    assert!(dq.iter().chain(&dk).chain(&dv).all(|&x| x == 0.0));
}

// ---------------------------------------------------------------- matmul input gradient

fn quantize(ty: GgmlType, n_in: usize, n_out: usize, rng: &mut Rng) -> (Vec<u8>, Vec<f32>) {
    let wf = normal(rng, n_in * n_out, 0.5);
    let mut bytes = vec![0u8; n_in * n_out / ty.block_size() * ty.type_size()];
    quant::encode(ty, &wf, &mut bytes).unwrap();
    let mut wd = vec![0f32; wf.len()];
    quant::decode_scalar(ty, &bytes, &mut wd).unwrap();
    (bytes, wd)
}

fn matmul_bwd_case(ty: GgmlType, n_in: usize, n_out: usize, t: usize, rng: &mut Rng) -> f64 {
    let (bytes, wd) = quantize(ty, n_in, n_out, rng);
    let w = QMatrix { ty, n_in, n_out, data: &bytes };
    let dy = normal(rng, t * n_out, 1.0);
    let mut want = vec![0f64; t * n_in];
    for tt in 0..t {
        for o in 0..n_out {
            let g = dy[tt * n_out + o] as f64;
            for i in 0..n_in {
                want[tt * n_in + i] += g * wd[o * n_in + i] as f64;
            }
        }
    }
    let mut dx = vec![f32::NAN; t * n_in];
    matmul_backward_input(&w, &dy, &mut dx);
    let e = rel_err(&dx, &want);
    assert!(e <= 1e-5, "{ty} n_in {n_in} n_out {n_out} T {t}: rel err {e:.3e}");
    let worst = dx.iter().zip(&want).map(|(&a, &b)| (a as f64 - b).abs()).fold(0f64, f64::max);
    let scale = want.iter().map(|x| x.abs()).fold(0f64, f64::max);
    assert!(worst <= 1e-5 * scale.max(1.0), "{ty} n_in {n_in} n_out {n_out} T {t}: max |Δ| {worst:.3e}");
    e
}

#[test]
fn matmul_backward_input_matches_dense_f64() {
    let mut rng = Rng(17);
    let run = |rng: &mut Rng| {
        let mut worst = 0f64;
        for ty in [GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q4_K, GgmlType::Q6_K] {
            let bs = ty.block_size();
            let b = |m: usize| (m * 32).div_ceil(bs) * bs;
            let shapes = [(b(1), 17, 1), (b(3), 50, 2), (b(3), 1, 3), (b(20), 333, 7), (b(3), 1500, 13), (b(24), 40, 6), (b(5), 700, 31)];
            for (n_in, n_out, t) in shapes {
                worst = worst.max(matmul_bwd_case(ty, n_in, n_out, t, rng));
            }
            if bs == 1 {
                // widths that are no multiple of the 16-wide sliver
                worst = worst.max(matmul_bwd_case(ty, 100, 37, 5, rng));
                worst = worst.max(matmul_bwd_case(ty, 7, 3, 1, rng));
            }
        }
        worst
    };
    let w1 = run(&mut rng);
    // a wider pool changes the column ranges and splits the rows between tasks
    let pool = rayon::ThreadPoolBuilder::new().num_threads(7).build().unwrap();
    let w2 = pool.install(|| run(&mut rng));
    eprintln!("matmul_backward_input: max rel err {:.2e} (default pool), {:.2e} (7 threads), tol 1e-5", w1, w2);
}

// ---------------------------------------------------------------- cross-entropy

/// Per-row f64 loss `logsumexp(z) − z[target]` of hidden row `h`.
fn ce_row(wd: &[f32], n_embd: usize, softcap: Option<f32>, h: &[f64], target: usize) -> f64 {
    let z: Vec<f64> = wd
        .chunks_exact(n_embd)
        .map(|w| {
            let y: f64 = w.iter().zip(h).map(|(&a, &b)| a as f64 * b).sum();
            softcap.map_or(y, |c| c as f64 * (y / c as f64).tanh())
        })
        .collect();
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + z.iter().map(|&x| (x - m).exp()).sum::<f64>().ln() - z[target]
}

#[test]
fn cross_entropy_matches_finite_differences() {
    let mut rng = Rng(18);
    let (e, nv, t) = (64, 77, 3 * CHUNK + 5);
    for (ty, softcap) in [(GgmlType::Q8_0, None), (GgmlType::Q8_0, Some(2.0f32)), (GgmlType::Q4_1, Some(5.0))] {
        let tag = format!("cross_entropy {ty} softcap {softcap:?}");
        let (bytes, wd) = quantize(ty, e, nv, &mut rng);
        let w = QMatrix { ty, n_in: e, n_out: nv, data: &bytes };
        let hidden = normal(&mut rng, t * e, 1.0);
        // chunk 1 ignored entirely; elsewhere every fifth row
        let targets: Vec<i32> =
            (0..t).map(|i| if (CHUNK..2 * CHUNK).contains(&i) || i % 5 == 3 { -1 } else { rng.below(nv as u64) as i32 }).collect();
        let scale = 0.37f32;
        let mut dh = vec![f32::NAN; t * e];
        let (loss, count) = cross_entropy(&w, softcap, &hidden, &targets, scale, Some(&mut dh));
        let (loss2, count2) = cross_entropy(&w, softcap, &hidden, &targets, scale, None);
        assert_eq!((loss, count), (loss2, count2), "{tag}: loss without gradient differs");
        let h64 = f64v(&hidden);
        let mut want_loss = 0f64;
        let mut g = vec![0f64; t * e];
        for (i, &tg) in targets.iter().enumerate() {
            if tg < 0 {
                assert!(dh[i * e..(i + 1) * e].iter().all(|&x| x == 0.0), "{tag}: ignored row {i} has a gradient");
                continue;
            }
            let row = &h64[i * e..(i + 1) * e];
            want_loss += ce_row(&wd, e, softcap, row, tg as usize);
            // rows are independent: differentiate each row's loss on its own
            let gr = fd_grad(row, |x| scale as f64 * ce_row(&wd, e, softcap, x, tg as usize));
            g[i * e..(i + 1) * e].copy_from_slice(&gr);
        }
        assert_eq!(count, targets.iter().filter(|&&x| x >= 0).count());
        let le = (loss - want_loss).abs() / want_loss;
        check(&format!("{tag} loss"), le, 1e-5);
        check(&format!("{tag} dhidden"), rel_err(&dh, &g), 1e-4);
    }
}

#[test]
fn cross_entropy_all_ignored_and_empty() {
    let mut rng = Rng(19);
    let (bytes, _) = quantize(GgmlType::Q8_0, 32, 10, &mut rng);
    let w = QMatrix { ty: GgmlType::Q8_0, n_in: 32, n_out: 10, data: &bytes };
    let hidden = normal(&mut rng, 3 * 32, 1.0);
    let mut dh = vec![f32::NAN; 3 * 32];
    assert_eq!(cross_entropy(&w, None, &hidden, &[-1, -1, -1], 1.0, Some(&mut dh)), (0.0, 0));
    assert!(dh.iter().all(|&x| x == 0.0));
    assert_eq!(cross_entropy(&w, Some(3.0), &[], &[], 1.0, Some(&mut [])), (0.0, 0));
}
