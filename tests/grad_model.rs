//! Whole-model LoRA gradients against finite differences in f64, for every architecture.
//!
//! For tiny synthetic models (real GGUF layout, random quantized weights) of each architecture,
//! an independent f64 reference forward (plain loops over the dequantized weights, written here
//! from the architecture's definition) gives the loss; central finite differences of that loss
//! w.r.t. LoRA parameters (A and B of every target, with B non-zero so A gets a gradient) are
//! compared with the gradients of our f32 training backward. The check covers packing
//! (segments/positions), ignored labels, GQA, q/k norms, biases, post-norms, sliding windows,
//! GELU-tanh and SwiGLU. With LoRA dropout, the reference applies the same fixed masks to the
//! adapter inputs, so the check covers the dropout forward and backward too.
mod common;

use common::rng::Rng;
use common::{model, tmpdir};
use finetune::backend::checked::Checked;
use finetune::backend::cpu::Cpu;
use finetune::gguf::{GgufFile, GgufModel};
use finetune::lora::dropout::Dropout;
use finetune::lora::{init_pair, LoraPair, LoraSet, SplitMix64, Target};
use finetune::model::synth::{write_synthetic, SynthSpec};
use finetune::model::{Config, Model};
use finetune::ops::activation::Act;
use finetune::ops::rope::RopeStyle;
use finetune::quant::GgmlType;
use finetune::train::block::{saved_floats, SeqView, StepOptions, Trainable};

fn dense(w: &dyn finetune::weights::QuantWeight) -> Vec<f64> {
    let mut out = vec![0f32; w.n_in() * w.n_out()];
    w.decode_rows(0, w.n_out(), &mut out);
    out.into_iter().map(f64::from).collect()
}

fn f64v(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// y[T, n_out] = x[T, n_in] · Wᵀ
fn mm(x: &[f64], w: &[f64], n_in: usize, n_out: usize) -> Vec<f64> {
    let t = x.len() / n_in;
    let mut y = vec![0.0; t * n_out];
    for tt in 0..t {
        for o in 0..n_out {
            y[tt * n_out + o] = (0..n_in).map(|i| x[tt * n_in + i] * w[o * n_in + i]).sum();
        }
    }
    y
}

fn rmsnorm(x: &[f64], n: usize, eps: f64, w: &[f64]) -> Vec<f64> {
    let mut y = x.to_vec();
    for row in y.chunks_mut(n) {
        let ms = row.iter().map(|v| v * v).sum::<f64>() / n as f64;
        let s = 1.0 / (ms + eps).sqrt();
        row.iter_mut().zip(w).for_each(|(v, g)| *v *= s * g);
    }
    y
}

/// The reference: f64 everywhere, LoRA pairs as f64.
struct Ref<'a> {
    m: &'a Model<'a>,
    cfg: Config,
    /// Dequantized weights: `w[il][target index]`, embeddings, output.
    w: Vec<Vec<Vec<f64>>>,
    emb: Vec<f64>,
    out: Vec<f64>,
    /// LoRA dropout masks of the pass being checked.
    dropout: Option<Dropout>,
}

impl<'a> Ref<'a> {
    fn new(m: &'a Model<'a>) -> Self {
        let w = (0..m.cfg.n_layer).map(|il| Target::ALL.iter().map(|&t| dense(m.weight(il, t))).collect()).collect();
        Ref { m, cfg: m.cfg.clone(), w, emb: dense(&*m.tok_embd), out: dense(&*m.output), dropout: None }
    }
}

type Lora64 = Vec<Vec<(Target, usize, usize, usize, Vec<f64>, Vec<f64>)>>; // (t, n_in, n_out, r, a, b)

fn to64(l: &LoraSet) -> Lora64 {
    l.layers.iter().map(|ps| ps.iter().map(|(t, p)| (*t, p.n_in, p.n_out, p.r, f64v(&p.a), f64v(&p.b))).collect()).collect()
}

impl Ref<'_> {
    fn proj(&self, lora: &Lora64, alpha: f64, il: usize, t: Target, x: &[f64]) -> Vec<f64> {
        let w = self.m.weight(il, t);
        let ti = Target::ALL.iter().position(|&x| x == t).unwrap();
        let mut y = mm(x, &self.w[il][ti], w.n_in(), w.n_out());
        if let Some((_, n_in, n_out, r, a, b)) = lora[il].iter().find(|p| p.0 == t) {
            let xd: Vec<f64> = match self.dropout {
                Some(d) => x.iter().zip(d.mask(il, t, x.len())).map(|(&v, k)| v * k as f64).collect(),
                None => x.to_vec(),
            };
            let u = mm(&xd, a, *n_in, *r);
            let d = mm(&u, b, *r, *n_out);
            let s = alpha / *r as f64;
            y.iter_mut().zip(&d).for_each(|(y, d)| *y += s * d);
        }
        y
    }

    fn rope(&self, x: &mut [f64], n_heads: usize, positions: &[u32], il: usize) {
        let c = &self.cfg;
        let hd = c.head_dim;
        let (base, fs) = if c.is_swa(il) { (c.rope_base_swa as f64, 1.0) } else { (c.rope_base as f64, c.rope_freq_scale as f64) };
        let half = c.n_rot / 2;
        for (tt, &pos) in positions.iter().enumerate() {
            for h in 0..n_heads {
                let v = &mut x[(tt * n_heads + h) * hd..(tt * n_heads + h + 1) * hd];
                for i in 0..half {
                    let theta = pos as f64 * fs * base.powf(-2.0 * i as f64 / c.n_rot as f64);
                    let (s, co) = theta.sin_cos();
                    let (a, b) = match c.rope_style {
                        RopeStyle::Norm => (2 * i, 2 * i + 1),
                        RopeStyle::Neox => (i, i + half),
                    };
                    let (x0, x1) = (v[a], v[b]);
                    v[a] = x0 * co - x1 * s;
                    v[b] = x0 * s + x1 * co;
                }
            }
        }
    }

    fn loss(&self, lora: &Lora64, alpha: f64, seq: &SeqView) -> f64 {
        let c = &self.cfg;
        let m = self.m;
        let (e, hd, vd) = (c.n_embd, c.head_dim, c.v_dim);
        let t = seq.tokens.len();
        let emb = &self.emb;
        let mut x: Vec<f64> = Vec::with_capacity(t * e);
        for &id in seq.tokens {
            x.extend_from_slice(&emb[id as usize * e..(id as usize + 1) * e]);
        }
        if let Some(s) = c.embed_scale {
            x.iter_mut().for_each(|v| *v *= s as f64);
        }
        let eps = c.eps as f64;
        for (il, l) in m.layers.iter().enumerate() {
            let xn = rmsnorm(&x, e, eps, &f64v(&l.attn_norm));
            let mut q = self.proj(lora, alpha, il, Target::Q, &xn);
            let mut k = self.proj(lora, alpha, il, Target::K, &xn);
            let mut v = self.proj(lora, alpha, il, Target::V, &xn);
            for (buf, b) in [(&mut q, &l.bq), (&mut k, &l.bk), (&mut v, &l.bv)] {
                if let Some(b) = b {
                    let b = f64v(b);
                    buf.chunks_mut(b.len()).for_each(|r| r.iter_mut().zip(&b).for_each(|(a, bb)| *a += bb));
                }
            }
            if let Some(w) = &l.q_norm {
                q = rmsnorm(&q, hd, eps, &f64v(w));
            }
            if let Some(w) = &l.k_norm {
                k = rmsnorm(&k, hd, eps, &f64v(w));
            }
            self.rope(&mut q, c.n_head, seq.positions, il);
            self.rope(&mut k, c.n_head_kv, seq.positions, il);
            let window = if c.is_swa(il) { c.swa.map(|(w, _)| w) } else { None };
            let group = c.n_head / c.n_head_kv;
            let mut attn = vec![0.0; t * c.n_head * vd];
            for i in 0..t {
                for h in 0..c.n_head {
                    let kvh = h / group;
                    let qv = &q[(i * c.n_head + h) * hd..(i * c.n_head + h + 1) * hd];
                    let mut sc: Vec<(usize, f64)> = Vec::new();
                    for j in 0..=i {
                        if window.is_some_and(|w| i - j >= w) {
                            continue;
                        }
                        if seq.segments.is_some_and(|s| s[i] != s[j]) {
                            continue;
                        }
                        let kv = &k[(j * c.n_head_kv + kvh) * hd..(j * c.n_head_kv + kvh + 1) * hd];
                        let mut d: f64 = qv.iter().zip(kv).map(|(a, b)| a * b).sum::<f64>() * c.attn_scale as f64;
                        if let Some(cap) = c.attn_softcap {
                            d = cap as f64 * (d / cap as f64).tanh();
                        }
                        sc.push((j, d));
                    }
                    let mx = sc.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = sc.iter().map(|s| (s.1 - mx).exp()).sum();
                    let o = &mut attn[(i * c.n_head + h) * vd..(i * c.n_head + h + 1) * vd];
                    for (j, s) in &sc {
                        let p = (s - mx).exp() / z;
                        let vv = &v[(j * c.n_head_kv + kvh) * vd..(j * c.n_head_kv + kvh + 1) * vd];
                        o.iter_mut().zip(vv).for_each(|(o, v)| *o += p * v);
                    }
                }
            }
            let mut o = self.proj(lora, alpha, il, Target::O, &attn);
            if let Some(w) = &l.post_attn_norm {
                o = rmsnorm(&o, e, eps, &f64v(w));
            }
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let xn = rmsnorm(&x, e, eps, &f64v(&l.ffn_norm));
            let g = self.proj(lora, alpha, il, Target::Gate, &xn);
            let u = self.proj(lora, alpha, il, Target::Up, &xn);
            let h: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(&g, &u)| {
                    let a = match c.act {
                        Act::SwiGlu => g / (1.0 + (-g).exp()),
                        Act::GeGlu => 0.5 * g * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g)).tanh()),
                    };
                    a * u
                })
                .collect();
            let mut d = self.proj(lora, alpha, il, Target::Down, &h);
            if let Some(w) = &l.post_ffw_norm {
                d = rmsnorm(&d, e, eps, &f64v(w));
            }
            x.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
        }
        let xf = rmsnorm(&x, e, eps, &f64v(&m.output_norm));
        let out = &self.out;
        let nv = c.n_vocab;
        let mut total = 0.0;
        for (tt, &lab) in seq.labels.iter().enumerate() {
            if lab < 0 {
                continue;
            }
            let mut logits = mm(&xf[tt * e..(tt + 1) * e], out, e, nv);
            if let Some(cap) = c.final_softcap {
                logits.iter_mut().for_each(|z| *z = cap as f64 * (*z / cap as f64).tanh());
            }
            let mx = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = mx + logits.iter().map(|z| (z - mx).exp()).sum::<f64>().ln();
            total += lse - logits[lab as usize];
        }
        total
    }
}

fn spec(arch: &str) -> SynthSpec {
    SynthSpec {
        arch: arch.into(),
        n_embd: 64,
        n_layer: 2,
        n_head: 4,
        n_head_kv: 2,
        head_dim: 16,
        n_ff: 96,
        weight_type: GgmlType::Q8_0,
        rope_base: 10000.0,
        rope_linear: None,
        sliding_window: None,
        untied_output: false,
        seed: 7,
    }
}

fn check(s: SynthSpec, tokenizer_model: &str, dropout: f32) {
    let dir = tmpdir(&format!("grad-{}-d{dropout}", s.arch));
    let path = dir.join(format!("{}.gguf", s.arch));
    let tok = GgufFile::open(model(tokenizer_model)).unwrap();
    write_synthetic(&s, &tok, &path).unwrap();
    let g = GgufModel::open(&path).unwrap();
    let m = Model::load(&g).unwrap();
    let n_layer = m.cfg.n_layer;

    // LoRA on every target; B random too, so that A has a gradient.
    let r = 4;
    let mut rng = SplitMix64(s.seed ^ 0xABCD);
    let mut lora = LoraSet { alpha: 8.0, layers: Vec::new() };
    for il in 0..n_layer {
        let mut ps: Vec<(Target, LoraPair)> = Vec::new();
        for t in Target::ALL {
            let w = m.weight(il, t);
            let mut p = init_pair(w.n_in(), w.n_out(), r, &mut rng);
            p.b.iter_mut().for_each(|v| *v = ((rng.next_f64() * 2.0 - 1.0) * 0.3) as f32);
            ps.push((t, p));
        }
        lora.layers.push(ps);
    }

    // Two packed samples with their own positions; some labels ignored.
    let mut trng = Rng(s.seed);
    let n = 14;
    let tokens: Vec<u32> = (0..n).map(|_| (trng.next_u64() % m.cfg.n_vocab as u64) as u32).collect();
    let segments: Vec<u32> = (0..n).map(|i| u32::from(i >= 8)).collect();
    let positions: Vec<u32> = (0..n).map(|i| if i >= 8 { i - 8 } else { i } as u32).collect();
    let labels: Vec<i32> = (0..n).map(|i| if i == 7 || i == n - 1 || i == 2 { -1 } else { tokens[i + 1] as i32 }).collect();
    let seq = SeqView { tokens: &tokens, labels: &labels, positions: &positions, segments: Some(&segments) };

    // Through the checked backend (every call's shapes and finiteness checked, calls counted):
    // the step reaches its kernels only through the backend traits.
    let tr = Trainable::on(Checked::new(Cpu::default()), &m);
    let mut grads = lora.zeros_like();
    let drop = Dropout::for_micro_batch(dropout, s.seed, 5, 1);
    let (loss, count) = tr.forward_backward_with(&lora, Some(&mut grads), &seq, 1.0, StepOptions { dropout: drop, keep_bytes: 0 }).unwrap();
    let calls = tr.backend.calls();
    for op in [
        "embed",
        "matmul",
        "matmul_backward_input",
        "rms_norm",
        "rms_norm_backward",
        "rope",
        "rope_backward",
        "glu",
        "glu_backward",
        "attention",
        "attention_backward",
        "lora_down",
        "lora_up_add",
        "lora_backward",
        "cross_entropy",
    ] {
        assert!(calls.get(op).copied().unwrap_or(0) > 0, "{}: the training step never called backend op {op}: {calls:?}", s.arch);
    }
    // The checked wrapper is transparent: the plain CPU backend gives the same bits.
    let mut g0 = lora.zeros_like();
    let (l0, _) =
        Trainable::new(&m).forward_backward_with(&lora, Some(&mut g0), &seq, 1.0, StepOptions { dropout: drop, keep_bytes: 0 }).unwrap();
    assert!(l0 == loss && g0 == grads, "{}: the checked backend changed the result", s.arch);
    // Kept intermediates (here every block fits) give the same bits as recomputed ones.
    let l0 = &m.layers[0];
    let has = [l0.q_norm.is_some(), l0.k_norm.is_some(), l0.post_attn_norm.is_some(), l0.post_ffw_norm.is_some()];
    let one_block = 4 * saved_floats(&m.cfg, has, r, 7, n);
    for keep in [1 << 30, one_block] {
        let mut g2 = lora.zeros_like();
        let (l2, _) = tr.forward_backward_with(&lora, Some(&mut g2), &seq, 1.0, StepOptions { dropout: drop, keep_bytes: keep }).unwrap();
        assert!(l2 == loss && g2 == grads, "{}: keeping {keep} bytes of intermediates changed the result", s.arch);
    }
    let mut reference = Ref::new(&m);
    reference.dropout = drop;
    if drop.is_some() {
        // The masks matter: without them the reference loss is another number.
        let plain = Ref::new(&m).loss(&to64(&lora), lora.alpha as f64, &seq);
        let masked = reference.loss(&to64(&lora), lora.alpha as f64, &seq);
        assert!((plain - masked).abs() > 1e-3 * plain.abs(), "dropout did not change the loss: {plain} vs {masked}");
    }
    let l64 = to64(&lora);
    let ref_loss = reference.loss(&l64, lora.alpha as f64, &seq);
    assert_eq!(count, labels.iter().filter(|&&l| l >= 0).count());
    let rel = (loss - ref_loss).abs() / ref_loss.abs();
    println!("{}: loss ours {loss:.6} ref {ref_loss:.6} (rel {rel:.2e})", s.arch);
    assert!(rel < 1e-4, "{}: forward loss differs from the f64 reference: {loss} vs {ref_loss}", s.arch);

    // Finite differences on a sample of parameters of every pair.
    let h = 1e-4;
    let (mut num, mut ana) = (Vec::new(), Vec::new());
    for il in 0..n_layer {
        for (pi, (t, p)) in lora.layers[il].iter().enumerate() {
            for (is_a, len) in [(true, p.a.len()), (false, p.b.len())] {
                for k in 0..3 {
                    let idx = (trng.next_u64() as usize + k) % len;
                    let mut plus = l64.clone();
                    let mut minus = l64.clone();
                    let (vp, vm) = if is_a {
                        (&mut plus[il][pi].4[idx], &mut minus[il][pi].4[idx])
                    } else {
                        (&mut plus[il][pi].5[idx], &mut minus[il][pi].5[idx])
                    };
                    *vp += h;
                    *vm -= h;
                    let fd = (reference.loss(&plus, lora.alpha as f64, &seq) - reference.loss(&minus, lora.alpha as f64, &seq)) / (2.0 * h);
                    let gp = grads.get(il, *t).unwrap();
                    let an = if is_a { gp.a[idx] } else { gp.b[idx] } as f64;
                    num.push(fd);
                    ana.push(an);
                }
            }
        }
    }
    let diff: f64 = num.iter().zip(&ana).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
    let norm: f64 = num.iter().map(|a| a * a).sum::<f64>().sqrt();
    let max_abs = num.iter().zip(&ana).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    println!("{}: {} parameters, relative L2 error {:.2e}, max |Δ| {max_abs:.2e}, |g| {norm:.3}", s.arch, num.len(), diff / norm);
    assert!(norm > 1e-3, "gradients are trivially small");
    assert!(diff / norm < 2e-3, "{}: LoRA gradients differ from finite differences: rel L2 {}", s.arch, diff / norm);
}

const SMOL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";

#[test]
fn llama_lora_gradients_match_finite_differences() {
    check(SynthSpec { rope_linear: Some(2.0), untied_output: true, ..spec("llama") }, SMOL, 0.0);
}

#[test]
fn qwen2_lora_gradients_match_finite_differences() {
    check(SynthSpec { weight_type: GgmlType::Q4_0, ..spec("qwen2") }, SMOL, 0.0);
}

#[test]
fn qwen3_lora_gradients_match_finite_differences() {
    check(spec("qwen3"), SMOL, 0.0);
}

#[test]
fn gemma3_lora_gradients_match_finite_differences() {
    check(SynthSpec { sliding_window: Some(4), weight_type: GgmlType::F16, ..spec("gemma3") }, GEMMA, 0.0);
}

#[test]
fn lora_gradients_with_dropout_match_finite_differences() {
    check(SynthSpec { rope_linear: Some(2.0), untied_output: true, ..spec("llama") }, SMOL, 0.3);
    check(SynthSpec { weight_type: GgmlType::Q4_0, seed: 9, ..spec("qwen2") }, SMOL, 0.5);
}
