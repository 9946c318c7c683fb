//! The training forward and backward of the whole model with LoRA on frozen quantized weights.
//!
//! Memory plan (per-layer activation checkpointing): the forward keeps each block's input
//! `[T, n_embd]`, and the full intermediates of as many of the last blocks as
//! [`StepOptions::keep_bytes`] allows; the backward recomputes the intermediates of the other
//! blocks from their inputs, one block at a time, then runs that block's backward. Recomputing
//! is deterministic, so kept and recomputed intermediates are the same bits and the gradients
//! do not depend on the budget. The loss is computed in row chunks ([`cross_entropy`]), so full
//! `[T, n_vocab]` logits never exist.
//!
//! Forward of block `il` (pre-norm transformer; optional pieces by architecture):
//! ```text
//! xn1 = rmsnorm(x)·attn_norm
//! q,k,v = xn1·Wᵀ (+ LoRA) (+ bias) → per-head q/k norm → rope → q·attn_scale
//! a = attention(q, k, v)            o = a·Woᵀ (+ LoRA) → post_attn_norm
//! x1 = x + o
//! xn2 = rmsnorm(x1)·ffn_norm        g,u = xn2·Wᵀ (+ LoRA)      h = act(g)·u
//! d = h·W_downᵀ (+ LoRA) → post_ffw_norm           out = x1 + d
//! ```

use crate::model::Model;
use crate::ops::activation::{glu_backward, glu_inplace};
use crate::ops::attention::AttnShape;
use crate::ops::attention_train::{attention_backward, attention_forward};
use crate::ops::loss::cross_entropy;
use crate::ops::matmul::{matmul_backward_input, matmul_backward_input_add};
use crate::ops::norm::{rms_norm, rms_norm_backward};
use crate::train::dropout::Dropout;
use crate::train::lora::{LoraSet, Target};
use crate::train::prof::{span, Phase};

/// One training sequence as the model sees it.
#[derive(Clone, Copy, Debug)]
pub struct SeqView<'s> {
    /// Token ids.
    pub tokens: &'s [u32],
    /// `labels[t]` = the id position `t` should predict, or −1 (not trained).
    pub labels: &'s [i32],
    /// Rope position of each token (restarting at 0 in each packed sample).
    pub positions: &'s [u32],
    /// Segment id of each token (packed samples do not attend to each other); `None` = one.
    pub segments: Option<&'s [u32]>,
}

/// Default of [`StepOptions::keep_bytes`]: 192 MiB of kept intermediates (12 of SmolLM2-135M's
/// 30 blocks at 512 tokens; one block of a 7B model).
pub const DEFAULT_KEEP_BYTES: u64 = 192 << 20;

/// Options of one training forward/backward beyond the sequence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOptions {
    /// LoRA dropout on the adapter inputs (`None`: none).
    pub dropout: Option<Dropout>,
    /// Bytes of block intermediates the forward may keep so that the backward need not
    /// recompute them (0: recompute every block).
    pub keep_bytes: u64,
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions { dropout: None, keep_bytes: DEFAULT_KEEP_BYTES }
    }
}

/// Intermediates of one block's forward, kept for its backward. Pre-norm values (`q_pre`,
/// `k_pre`, `o_pre`, `d_pre`) are empty when the block has no such norm to differentiate.
struct Saved {
    xn1: Vec<f32>,
    q_pre: Vec<f32>,
    k_pre: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    lse: Vec<f32>,
    o_pre: Vec<f32>,
    x1: Vec<f32>,
    xn2: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    h: Vec<f32>,
    d_pre: Vec<f32>,
    /// LoRA codes `u = x·Aᵀ` per target (empty when the target is not adapted).
    codes: [Vec<f32>; 7],
}

impl Saved {
    /// Drop what the backward rebuilds cheaply and bit-exactly from what stays (the normed
    /// block inputs `xn1`, `xn2` and the GLU output `h`), before keeping this across the step.
    fn slim(&mut self) {
        self.xn1 = Vec::new();
        self.xn2 = Vec::new();
        self.h = Vec::new();
    }

    fn bytes(&self) -> u64 {
        let v = [
            &self.xn1, &self.q_pre, &self.k_pre, &self.q, &self.k, &self.v, &self.attn, &self.lse, &self.o_pre, &self.x1,
            &self.xn2, &self.gate, &self.up, &self.h, &self.d_pre,
        ];
        4 * (v.iter().map(|b| b.len()).sum::<usize>() + self.codes.iter().map(Vec::len).sum::<usize>()) as u64
    }
}

/// Floats of one kept (slimmed) block's intermediates for `t` tokens: what the forward keeps
/// per block within [`StepOptions::keep_bytes`], divided by 4. `has`: q-norm, k-norm,
/// post-attention norm, post-FFN norm.
pub fn saved_floats(c: &crate::model::Config, has: [bool; 4], rank: usize, n_targets: usize, t: usize) -> u64 {
    let [q_norm, k_norm, post_attn, post_ffw] = has;
    let (e, qd, kd, vd, ad) = (c.n_embd, c.n_head * c.head_dim, c.n_head_kv * c.head_dim, c.n_head_kv * c.v_dim, c.n_head * c.v_dim);
    let per_token = e
        + qd * (1 + usize::from(q_norm))
        + kd * (1 + usize::from(k_norm))
        + vd
        + ad
        + c.n_head
        + e * (usize::from(post_attn) + usize::from(post_ffw))
        + 2 * c.n_ff
        + rank * n_targets;
    (t * per_token) as u64
}

fn add_bias(buf: &mut [f32], b: &Option<Vec<f32>>) {
    if let Some(b) = b {
        buf.chunks_exact_mut(b.len()).for_each(|r| r.iter_mut().zip(b).for_each(|(a, &bb)| *a += bb));
    }
}

/// `x += post_norm(y)` (or `x += y` without a post-norm), row width `n`.
fn add_residual(x: &mut [f32], y: &[f32], post_norm: Option<&[f32]>, n: usize, eps: f32) {
    match post_norm {
        Some(w) => {
            let mut normed = vec![0f32; y.len()];
            rms_norm(y, &mut normed, n, eps, Some(w));
            x.iter_mut().zip(&normed).for_each(|(a, &b)| *a += b);
        }
        None => x.iter_mut().zip(y).for_each(|(a, &b)| *a += b),
    }
}

/// Context for running blocks of one model with one trainable LoRA set.
pub struct Trainable<'m, 'a> {
    /// The frozen model (weights memory-mapped and quantized).
    pub model: &'m Model<'a>,
}

impl<'m, 'a> Trainable<'m, 'a> {
    fn attn_shape(&self, il: usize) -> AttnShape {
        let c = &self.model.cfg;
        AttnShape {
            n_head: c.n_head,
            n_head_kv: c.n_head_kv,
            head_dim: c.head_dim,
            v_dim: c.v_dim,
            window: if c.is_swa(il) { c.swa.map(|(w, _)| w) } else { None },
            softcap: c.attn_softcap,
        }
    }

    /// `y = x·Wᵀ` (+ the model's applied adapters) + the trainable LoRA on `dropout(x)`;
    /// returns the LoRA code.
    fn proj(&self, lora: &LoraSet, dropout: Option<Dropout>, il: usize, t: Target, x: &[f32], y: &mut [f32]) -> Vec<f32> {
        {
            let _s = span(Phase::FwdMatmul);
            self.model.project(il, t, x, y);
        }
        let _s = span(Phase::FwdLora);
        match (lora.get(il, t), dropout) {
            (Some(p), None) => p.forward_add(x, lora.scale(p), y),
            (Some(p), Some(d)) => p.forward_add(&d.apply(il, t, x), lora.scale(p), y),
            (None, _) => Vec::new(),
        }
    }

    /// Backward of [`proj`](Self::proj): accumulates LoRA gradients into `grads` and returns
    /// `dx = dy·W (+ LoRA)`, overwritten into `dx` when `accumulate` is false, added otherwise.
    #[allow(clippy::too_many_arguments)]
    fn proj_backward(
        &self,
        lora: &LoraSet,
        dropout: Option<Dropout>,
        grads: &mut LoraSet,
        il: usize,
        t: Target,
        x: &[f32],
        code: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        accumulate: bool,
    ) {
        let w = self.model.weight(il, t);
        let sp = span(Phase::BwdMatmul);
        if accumulate {
            matmul_backward_input_add(w, dy, dx);
        } else {
            matmul_backward_input(w, dy, dx);
        }
        drop(sp);
        let _s = span(Phase::BwdLora);
        for (set, user_scale) in &self.model.adapters {
            if let Some(p) = set.get(il, t) {
                // Frozen applied adapter: input gradient only.
                let s = user_scale * set.scale(p);
                let u = p.down(x);
                let mut scratch = crate::train::lora::LoraPair::zeros(p.n_in, p.n_out, p.r);
                p.backward(x, &u, dy, s, &mut scratch, Some(dx));
            }
        }
        if let (Some(p), Some(g)) = (lora.get(il, t), grads.get_mut(il, t)) {
            match dropout {
                None => p.backward(x, code, dy, lora.scale(p), g, Some(dx)),
                Some(d) => {
                    // The branch saw x ⊙ mask: A's gradient uses the dropped input and the
                    // branch's input gradient goes back through the same mask.
                    let mask = d.mask(il, t, x.len());
                    let xd: Vec<f32> = x.iter().zip(&mask).map(|(&a, &k)| a * k).collect();
                    let mut dxd = vec![0f32; dx.len()];
                    p.backward(&xd, code, dy, lora.scale(p), g, Some(&mut dxd));
                    dx.iter_mut().zip(dxd.iter().zip(&mask)).for_each(|(a, (&b, &k))| *a += b * k);
                }
            }
        }
    }

    fn forward_block(&self, lora: &LoraSet, dropout: Option<Dropout>, il: usize, x: &[f32], seq: &SeqView) -> (Vec<f32>, Saved) {
        let m = self.model;
        let c = &m.cfg;
        let l = &m.layers[il];
        let (e, hd, vd) = (c.n_embd, c.head_dim, c.v_dim);
        let t = x.len() / e;
        let (qd, kd, vvd, ad) = (c.n_head * hd, c.n_head_kv * hd, c.n_head_kv * vd, c.n_head * vd);
        let mut codes: [Vec<f32>; 7] = Default::default();

        let mut xn1 = vec![0f32; t * e];
        rms_norm(x, &mut xn1, e, c.eps, Some(&l.attn_norm));
        let mut q_pre = vec![0f32; t * qd];
        let mut k_pre = vec![0f32; t * kd];
        let mut v = vec![0f32; t * vvd];
        codes[0] = self.proj(lora, dropout, il, Target::Q, &xn1, &mut q_pre);
        codes[1] = self.proj(lora, dropout, il, Target::K, &xn1, &mut k_pre);
        codes[2] = self.proj(lora, dropout, il, Target::V, &xn1, &mut v);
        add_bias(&mut q_pre, &l.bq);
        add_bias(&mut k_pre, &l.bk);
        add_bias(&mut v, &l.bv);
        let mut q = q_pre.clone();
        let mut k = k_pre.clone();
        if let Some(w) = &l.q_norm {
            rms_norm(&q_pre, &mut q, hd, c.eps, Some(w));
        }
        if let Some(w) = &l.k_norm {
            rms_norm(&k_pre, &mut k, hd, c.eps, Some(w));
        }
        let rope = m.rope_for(il);
        rope.apply_positions(&mut q, c.n_head, hd, seq.positions);
        rope.apply_positions(&mut k, c.n_head_kv, hd, seq.positions);
        q.iter_mut().for_each(|a| *a *= c.attn_scale);
        let mut attn = vec![0f32; t * ad];
        let mut lse = vec![0f32; t * c.n_head];
        {
            let _s = span(Phase::FwdAttn);
            attention_forward(self.attn_shape(il), &q, &k, &v, seq.segments, &mut attn, &mut lse);
        }
        let mut o_pre = vec![0f32; t * e];
        codes[3] = self.proj(lora, dropout, il, Target::O, &attn, &mut o_pre);
        let mut x1 = x.to_vec();
        add_residual(&mut x1, &o_pre, l.post_attn_norm.as_deref(), e, c.eps);

        let mut xn2 = vec![0f32; t * e];
        rms_norm(&x1, &mut xn2, e, c.eps, Some(&l.ffn_norm));
        let mut gate = vec![0f32; t * c.n_ff];
        let mut up = vec![0f32; t * c.n_ff];
        codes[4] = self.proj(lora, dropout, il, Target::Gate, &xn2, &mut gate);
        codes[5] = self.proj(lora, dropout, il, Target::Up, &xn2, &mut up);
        let mut h = gate.clone();
        glu_inplace(c.act, &mut h, &up);
        let mut d_pre = vec![0f32; t * e];
        codes[6] = self.proj(lora, dropout, il, Target::Down, &h, &mut d_pre);
        let mut out = x1.clone();
        add_residual(&mut out, &d_pre, l.post_ffw_norm.as_deref(), e, c.eps);
        let keep_if = |b: Vec<f32>, needed: bool| if needed { b } else { Vec::new() };
        let saved = Saved {
            xn1,
            q_pre: keep_if(q_pre, l.q_norm.is_some()),
            k_pre: keep_if(k_pre, l.k_norm.is_some()),
            q,
            k,
            v,
            attn,
            lse,
            o_pre: keep_if(o_pre, l.post_attn_norm.is_some()),
            x1,
            xn2,
            gate,
            up,
            h,
            d_pre: keep_if(d_pre, l.post_ffw_norm.is_some()),
            codes,
        };
        (out, saved)
    }

    /// Given the block input `x`, its saved forward and `dout`, accumulate LoRA gradients and
    /// return `dx`.
    #[allow(clippy::too_many_arguments)]
    fn backward_block(
        &self,
        lora: &LoraSet,
        dropout: Option<Dropout>,
        grads: &mut LoraSet,
        il: usize,
        x: &[f32],
        s: &Saved,
        seq: &SeqView,
        dout: &[f32],
    ) -> Vec<f32> {
        let m = self.model;
        let c = &m.cfg;
        let l = &m.layers[il];
        let (e, hd, vd) = (c.n_embd, c.head_dim, c.v_dim);
        let t = x.len() / e;
        let (qd, kd, vvd, ad) = (c.n_head * hd, c.n_head_kv * hd, c.n_head_kv * vd, c.n_head * vd);

        // Rebuild what a kept block dropped (see `Saved::slim`): the same ops on the same
        // inputs, so the same bits as the forward's.
        let (xn1_r, xn2_r, h_r);
        let xn1: &[f32] = if s.xn1.is_empty() {
            let mut b = vec![0f32; t * e];
            rms_norm(x, &mut b, e, c.eps, Some(&l.attn_norm));
            xn1_r = b;
            &xn1_r
        } else {
            &s.xn1
        };
        let xn2: &[f32] = if s.xn2.is_empty() {
            let mut b = vec![0f32; t * e];
            rms_norm(&s.x1, &mut b, e, c.eps, Some(&l.ffn_norm));
            xn2_r = b;
            &xn2_r
        } else {
            &s.xn2
        };
        let h: &[f32] = if s.h.is_empty() {
            let mut b = s.gate.clone();
            glu_inplace(c.act, &mut b, &s.up);
            h_r = b;
            &h_r
        } else {
            &s.h
        };

        // out = x1 + post_ffw_norm(d_pre)
        let mut dx1 = dout.to_vec();
        let dd_pre = match &l.post_ffw_norm {
            Some(w) => {
                let mut g = vec![0f32; t * e];
                rms_norm_backward(&s.d_pre, Some(w), e, c.eps, dout, &mut g);
                g
            }
            None => dout.to_vec(),
        };
        let mut dh = vec![0f32; t * c.n_ff];
        self.proj_backward(lora, dropout, grads, il, Target::Down, h, &s.codes[6], &dd_pre, &mut dh, false);
        let mut dgate = vec![0f32; t * c.n_ff];
        let mut dup = vec![0f32; t * c.n_ff];
        glu_backward(c.act, &s.gate, &s.up, &dh, &mut dgate, &mut dup);
        drop(dh);
        let mut dxn2 = vec![0f32; t * e];
        self.proj_backward(lora, dropout, grads, il, Target::Gate, xn2, &s.codes[4], &dgate, &mut dxn2, false);
        self.proj_backward(lora, dropout, grads, il, Target::Up, xn2, &s.codes[5], &dup, &mut dxn2, true);
        let mut g = vec![0f32; t * e];
        let sp = span(Phase::BwdNorm);
        rms_norm_backward(&s.x1, Some(&l.ffn_norm), e, c.eps, &dxn2, &mut g);
        drop(sp);
        dx1.iter_mut().zip(&g).for_each(|(a, &b)| *a += b);

        // x1 = x + post_attn_norm(o_pre)
        let mut dx = dx1.clone();
        let do_pre = match &l.post_attn_norm {
            Some(w) => {
                let mut g = vec![0f32; t * e];
                rms_norm_backward(&s.o_pre, Some(w), e, c.eps, &dx1, &mut g);
                g
            }
            None => dx1,
        };
        let mut dattn = vec![0f32; t * ad];
        self.proj_backward(lora, dropout, grads, il, Target::O, &s.attn, &s.codes[3], &do_pre, &mut dattn, false);
        let mut dq = vec![0f32; t * qd];
        let mut dk = vec![0f32; t * kd];
        let mut dv = vec![0f32; t * vvd];
        let sp = span(Phase::BwdAttn);
        attention_backward(
            self.attn_shape(il),
            &s.q,
            &s.k,
            &s.v,
            seq.segments,
            &s.attn,
            &s.lse,
            &dattn,
            &mut dq,
            &mut dk,
            &mut dv,
        );
        drop(sp);
        dq.iter_mut().for_each(|a| *a *= c.attn_scale);
        let rope = m.rope_for(il);
        rope.apply_backward_positions(&mut dq, c.n_head, hd, seq.positions);
        rope.apply_backward_positions(&mut dk, c.n_head_kv, hd, seq.positions);
        if let Some(w) = &l.q_norm {
            let mut g = vec![0f32; t * qd];
            rms_norm_backward(&s.q_pre, Some(w), hd, c.eps, &dq, &mut g);
            dq = g;
        }
        if let Some(w) = &l.k_norm {
            let mut g = vec![0f32; t * kd];
            rms_norm_backward(&s.k_pre, Some(w), hd, c.eps, &dk, &mut g);
            dk = g;
        }
        let mut dxn1 = vec![0f32; t * e];
        self.proj_backward(lora, dropout, grads, il, Target::Q, xn1, &s.codes[0], &dq, &mut dxn1, false);
        self.proj_backward(lora, dropout, grads, il, Target::K, xn1, &s.codes[1], &dk, &mut dxn1, true);
        self.proj_backward(lora, dropout, grads, il, Target::V, xn1, &s.codes[2], &dv, &mut dxn1, true);
        let mut g = vec![0f32; t * e];
        let _s = span(Phase::BwdNorm);
        rms_norm_backward(x, Some(&l.attn_norm), e, c.eps, &dxn1, &mut g);
        dx.iter_mut().zip(&g).for_each(|(a, &b)| *a += b);
        dx
    }

    /// Loss of one sequence: returns (Σ −log p over trained positions, their count). When
    /// `grads` is given, also runs the backward and adds `scale · d(Σ loss)/dθ` to it.
    pub fn forward_backward(
        &self,
        lora: &LoraSet,
        grads: Option<&mut LoraSet>,
        seq: &SeqView,
        scale: f32,
    ) -> Result<(f64, usize), String> {
        self.forward_backward_with(lora, grads, seq, scale, StepOptions::default())
    }

    /// [`forward_backward`](Self::forward_backward) with options: LoRA dropout on every adapter
    /// input (training only; `None` is exactly the plain pass) and the budget of kept
    /// intermediates (any budget gives the same bits).
    pub fn forward_backward_with(
        &self,
        lora: &LoraSet,
        grads: Option<&mut LoraSet>,
        seq: &SeqView,
        scale: f32,
        opts: StepOptions,
    ) -> Result<(f64, usize), String> {
        let dropout = opts.dropout;
        let m = self.model;
        let c = &m.cfg;
        let n = seq.tokens.len();
        if seq.labels.len() != n || seq.positions.len() != n || seq.segments.is_some_and(|s| s.len() != n) {
            return Err("sequence tokens/labels/positions/segments lengths differ".into());
        }
        if let Some(&bad) = seq.labels.iter().find(|&&l| l >= c.n_vocab as i32) {
            return Err(format!("label {bad} is outside the vocabulary (size {})", c.n_vocab));
        }
        let sp = span(Phase::Forward);
        let mut x = m.embed(seq.tokens)?;
        let keep = grads.is_some();
        let mut inputs: Vec<Vec<f32>> = Vec::with_capacity(if keep { c.n_layer } else { 0 });
        // Intermediates of the last `n_kept` blocks (all blocks have the same shapes: the
        // first block's size decides how many fit the budget).
        let mut kept: Vec<Option<Saved>> = Vec::with_capacity(if keep { c.n_layer } else { 0 });
        let mut n_kept = 0;
        for il in 0..c.n_layer {
            let (out, mut saved) = self.forward_block(lora, dropout, il, &x, seq);
            let xin = std::mem::replace(&mut x, out);
            if keep {
                saved.slim();
                if il == 0 {
                    n_kept = (opts.keep_bytes / saved.bytes().max(1)).min(c.n_layer as u64) as usize;
                }
                inputs.push(xin);
                kept.push((il >= c.n_layer - n_kept).then_some(saved));
            }
        }
        // Past √f32::MAX a square overflows, RMS norm maps the row to zeros and the loss sits at
        // ln(n_vocab) with a zero gradient: stop instead of training on silently (e.g. a huge --lr).
        if let Some(v) = x.iter().find(|v| !(v.abs() < 1.8e19)) {
            return Err(format!("the loss became undefined: hidden states overflowed f32 (a value of {v:e} at the model output); try a lower --lr"));
        }
        drop(sp);
        let sp = span(Phase::Loss);
        let mut xf = vec![0f32; x.len()];
        rms_norm(&x, &mut xf, c.n_embd, c.eps, Some(&m.output_norm));
        let Some(grads) = grads else {
            return Ok(cross_entropy(&m.output, c.final_softcap, &xf, seq.labels, scale, None));
        };
        let mut dxf = vec![0f32; xf.len()];
        let (loss, count) = cross_entropy(&m.output, c.final_softcap, &xf, seq.labels, scale, Some(&mut dxf));
        let mut dx = vec![0f32; x.len()];
        rms_norm_backward(&x, Some(&m.output_norm), c.n_embd, c.eps, &dxf, &mut dx);
        drop((xf, dxf, x, sp));
        for il in (0..c.n_layer).rev() {
            let xin = inputs.pop().expect("one input per layer");
            let saved = match kept.pop().flatten() {
                Some(s) => s,
                None => {
                    let _s = span(Phase::Recompute);
                    self.forward_block(lora, dropout, il, &xin, seq).1
                }
            };
            let _s = span(Phase::Backward);
            dx = self.backward_block(lora, dropout, grads, il, &xin, &saved, seq, &dx);
        }
        Ok((loss, count))
    }

    /// Plain forward logits-free loss evaluation (no gradients), e.g. for validation.
    pub fn loss(&self, lora: &LoraSet, seq: &SeqView) -> Result<(f64, usize), String> {
        self.forward_backward(lora, None, seq, 1.0)
    }
}
