//! The training step of the whole model with LoRA on frozen quantized weights: the forward of
//! every block ([`Model::block_forward`] in training mode, the same block inference runs), the
//! chunked loss, and each block's backward ([`Trainable::backward_block`]), all on a
//! [`TrainBackend`].
//!
//! Memory plan (per-layer activation checkpointing): the forward keeps each block's input
//! `[T, n_embd]`, and the full intermediates of as many of the last blocks as
//! [`StepOptions::keep_bytes`] allows; the backward recomputes the intermediates of the other
//! blocks from their inputs, one block at a time, then runs that block's backward. Recomputing
//! is deterministic, so kept and recomputed intermediates are the same bits and the gradients
//! do not depend on the budget. The loss is computed in row chunks ([`cross_entropy`]), so full
//! `[T, n_vocab]` logits never exist.

use crate::backend::cpu::Cpu;
use crate::backend::TrainBackend;
use crate::error::{Error, Result};
use crate::lora::dropout::Dropout;
use crate::lora::{LoraPair, LoraSet, Target};
use crate::model::block::{Mode, Saved};
use crate::model::Model;
use crate::prof::{span, Phase};

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

/// One model with one training backend: runs training steps for a trainable LoRA set.
///
/// Only a [`TrainBackend`] can train, so a step cannot run on numerics its backward does not
/// differentiate (llama.cpp's inference numerics are [`Backend`](crate::backend::Backend) only).
/// This compiles:
///
/// ```
/// use finetune::backend::cpu::Cpu;
/// use finetune::model::Model;
/// use finetune::train::block::Trainable;
/// fn train_on_f32_numerics(m: &Model) {
///     let _ = Trainable::on(Cpu::default(), m);
/// }
/// ```
///
/// and the same with the ggml numerics does not:
///
/// ```compile_fail
/// use finetune::backend::cpu::CpuGgml;
/// use finetune::model::Model;
/// use finetune::train::block::Trainable;
/// fn train_on_ggml_numerics(m: &Model) {
///     let _ = Trainable::on(CpuGgml::default(), m);
/// }
/// ```
pub struct Trainable<'m, 'a, B: TrainBackend = Cpu> {
    /// The frozen model (weights memory-mapped and quantized; small buffers on `backend`).
    pub model: &'m Model<'a, B::Buf>,
    /// Where every op runs.
    pub backend: B,
}

impl<'m, 'a> Trainable<'m, 'a, Cpu> {
    /// Train on the CPU backend (f32 numerics, whatever [`Model::numerics`] says).
    pub fn new(model: &'m Model<'a>) -> Self {
        Trainable { model, backend: Cpu::default() }
    }
}

impl<'m, 'a, B: TrainBackend> Trainable<'m, 'a, B> {
    /// Train on `backend`.
    pub fn on(backend: B, model: &'m Model<'a, B::Buf>) -> Self {
        Trainable { model, backend }
    }

    fn forward_block(
        &self,
        lora: &LoraSet<B::Buf>,
        dropout: Option<Dropout>,
        il: usize,
        x: &B::Buf,
        seq: &SeqView,
    ) -> (B::Buf, Saved<B::Buf>) {
        let mode = Mode::Train { lora, dropout, segments: seq.segments };
        let (out, saved) = self.model.block_forward(&self.backend, il, x, seq.positions, mode);
        (out, saved.expect("training mode saves"))
    }

    /// Backward of [`Model::project`]: accumulates LoRA gradients into `grads` and returns
    /// `dx = dy·W (+ LoRA)`, overwritten into `dx` when `accumulate` is false, added otherwise.
    #[allow(clippy::too_many_arguments)]
    fn proj_backward(
        &self,
        lora: &LoraSet<B::Buf>,
        dropout: Option<Dropout>,
        grads: &mut LoraSet<B::Buf>,
        il: usize,
        t: Target,
        x: &B::Buf,
        code: Option<&B::Buf>,
        dy: &B::Buf,
        dx: &mut B::Buf,
        accumulate: bool,
    ) {
        let b = &self.backend;
        let w = self.model.weight(il, t);
        let sp = span(Phase::BwdMatmul);
        b.matmul_backward_input(w, dy, dx, accumulate);
        drop(sp);
        let _s = span(Phase::BwdLora);
        for (set, user_scale) in &self.model.adapters {
            if let Some(p) = set.get(il, t) {
                // Frozen applied adapter: input gradient only.
                let s = user_scale * set.scale(p);
                let u = b.lora_down(p, x);
                let mut scratch = LoraPair { n_in: p.n_in, n_out: p.n_out, r: p.r, a: b.zeros(b.len(&p.a)), b: b.zeros(b.len(&p.b)) };
                b.lora_backward(p, x, &u, dy, s, &mut scratch, Some(dx));
            }
        }
        if let (Some(p), Some(g), Some(code)) = (lora.get(il, t), grads.get_mut(il, t), code) {
            match dropout {
                None => b.lora_backward(p, x, code, dy, lora.scale(p), g, Some(dx)),
                Some(d) => {
                    // The branch saw x ⊙ mask: A's gradient uses the dropped input and the
                    // branch's input gradient goes back through the same mask.
                    let mask = b.upload(&d.mask(il, t, b.len(x)));
                    let xd = b.mul(x, &mask);
                    let mut dxd = b.zeros(b.len(dx));
                    b.lora_backward(p, &xd, code, dy, lora.scale(p), g, Some(&mut dxd));
                    b.add(dx, &b.mul(&dxd, &mask));
                }
            }
        }
    }

    /// Given the block input `x`, its saved forward and `dout`, accumulate LoRA gradients and
    /// return `dx`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_block(
        &self,
        lora: &LoraSet<B::Buf>,
        dropout: Option<Dropout>,
        grads: &mut LoraSet<B::Buf>,
        il: usize,
        x: &B::Buf,
        s: &Saved<B::Buf>,
        seq: &SeqView,
        dout: &B::Buf,
    ) -> B::Buf {
        let (m, b) = (self.model, &self.backend);
        let c = &m.cfg;
        let l = &m.layers[il];
        let (e, hd, vd) = (c.n_embd, c.head_dim, c.v_dim);
        let t = seq.tokens.len();
        let (qd, kd, vvd, ad) = (c.n_head * hd, c.n_head_kv * hd, c.n_head_kv * vd, c.n_head * vd);

        // Rebuild what a kept block dropped (see `Saved::slim`): the same ops on the same
        // inputs, so the same bits as the forward's.
        let (xn1_r, xn2_r, h_r);
        let xn1 = match &s.xn1 {
            Some(v) => v,
            None => {
                let mut v = b.zeros(t * e);
                b.rms_norm(x, &mut v, e, c.eps, Some(&l.attn_norm));
                xn1_r = v;
                &xn1_r
            }
        };
        let xn2 = match &s.xn2 {
            Some(v) => v,
            None => {
                let mut v = b.zeros(t * e);
                b.rms_norm(&s.x1, &mut v, e, c.eps, Some(&l.ffn_norm));
                xn2_r = v;
                &xn2_r
            }
        };
        let h = match &s.h {
            Some(v) => v,
            None => {
                let mut v = b.copy(&s.gate);
                b.glu(c.act, &mut v, &s.up);
                h_r = v;
                &h_r
            }
        };
        let code = |i: usize| s.codes[i].as_ref();

        // out = x1 + post_ffw_norm(d_pre)
        let mut dx1 = b.copy(dout);
        let dd_pre = match (&l.post_ffw_norm, &s.d_pre) {
            (Some(w), Some(d_pre)) => {
                let mut g = b.zeros(t * e);
                b.rms_norm_backward(d_pre, Some(w), e, c.eps, dout, &mut g);
                g
            }
            _ => b.copy(dout),
        };
        let mut dh = b.zeros(t * c.n_ff);
        self.proj_backward(lora, dropout, grads, il, Target::Down, h, code(6), &dd_pre, &mut dh, false);
        let (mut dgate, mut dup) = (b.zeros(t * c.n_ff), b.zeros(t * c.n_ff));
        b.glu_backward(c.act, &s.gate, &s.up, &dh, &mut dgate, &mut dup);
        drop(dh);
        let mut dxn2 = b.zeros(t * e);
        self.proj_backward(lora, dropout, grads, il, Target::Gate, xn2, code(4), &dgate, &mut dxn2, false);
        self.proj_backward(lora, dropout, grads, il, Target::Up, xn2, code(5), &dup, &mut dxn2, true);
        let mut g = b.zeros(t * e);
        let sp = span(Phase::BwdNorm);
        b.rms_norm_backward(&s.x1, Some(&l.ffn_norm), e, c.eps, &dxn2, &mut g);
        drop(sp);
        b.add(&mut dx1, &g);

        // x1 = x + post_attn_norm(o_pre)
        let mut dx = b.copy(&dx1);
        let do_pre = match (&l.post_attn_norm, &s.o_pre) {
            (Some(w), Some(o_pre)) => {
                let mut g = b.zeros(t * e);
                b.rms_norm_backward(o_pre, Some(w), e, c.eps, &dx1, &mut g);
                g
            }
            _ => dx1,
        };
        let mut dattn = b.zeros(t * ad);
        self.proj_backward(lora, dropout, grads, il, Target::O, &s.attn, code(3), &do_pre, &mut dattn, false);
        let (mut dq, mut dk, mut dv) = (b.zeros(t * qd), b.zeros(t * kd), b.zeros(t * vvd));
        let sp = span(Phase::BwdAttn);
        b.attention_backward(m.attn(il), &s.q, &s.k, &s.v, seq.segments, &s.attn, &s.lse, &dattn, &mut dq, &mut dk, &mut dv);
        drop(sp);
        let rope = m.rope_for(il);
        b.rope_backward(rope, &mut dq, c.n_head, hd, seq.positions);
        b.rope_backward(rope, &mut dk, c.n_head_kv, hd, seq.positions);
        if let (Some(w), Some(q_pre)) = (&l.q_norm, &s.q_pre) {
            let mut g = b.zeros(t * qd);
            b.rms_norm_backward(q_pre, Some(w), hd, c.eps, &dq, &mut g);
            dq = g;
        }
        if let (Some(w), Some(k_pre)) = (&l.k_norm, &s.k_pre) {
            let mut g = b.zeros(t * kd);
            b.rms_norm_backward(k_pre, Some(w), hd, c.eps, &dk, &mut g);
            dk = g;
        }
        let mut dxn1 = b.zeros(t * e);
        self.proj_backward(lora, dropout, grads, il, Target::Q, xn1, code(0), &dq, &mut dxn1, false);
        self.proj_backward(lora, dropout, grads, il, Target::K, xn1, code(1), &dk, &mut dxn1, true);
        self.proj_backward(lora, dropout, grads, il, Target::V, xn1, code(2), &dv, &mut dxn1, true);
        let mut g = b.zeros(t * e);
        let _s = span(Phase::BwdNorm);
        b.rms_norm_backward(x, Some(&l.attn_norm), e, c.eps, &dxn1, &mut g);
        b.add(&mut dx, &g);
        dx
    }

    /// Loss of one sequence: returns (Σ −log p over trained positions, their count). When
    /// `grads` is given, also runs the backward and adds `scale · d(Σ loss)/dθ` to it.
    pub fn forward_backward(
        &self,
        lora: &LoraSet<B::Buf>,
        grads: Option<&mut LoraSet<B::Buf>>,
        seq: &SeqView,
        scale: f32,
    ) -> Result<(f64, usize)> {
        self.forward_backward_with(lora, grads, seq, scale, StepOptions::default())
    }

    /// [`forward_backward`](Self::forward_backward) with options: LoRA dropout on every adapter
    /// input (training only; `None` is exactly the plain pass) and the budget of kept
    /// intermediates (any budget gives the same bits).
    pub fn forward_backward_with(
        &self,
        lora: &LoraSet<B::Buf>,
        grads: Option<&mut LoraSet<B::Buf>>,
        seq: &SeqView,
        scale: f32,
        opts: StepOptions,
    ) -> Result<(f64, usize)> {
        let dropout = opts.dropout;
        let (m, b) = (self.model, &self.backend);
        let c = &m.cfg;
        let n = seq.tokens.len();
        if seq.labels.len() != n || seq.positions.len() != n || seq.segments.is_some_and(|s| s.len() != n) {
            return Err(Error::Usage("sequence tokens/labels/positions/segments lengths differ".into()));
        }
        if let Some(&bad) = seq.labels.iter().find(|&&l| l >= c.n_vocab as i32) {
            return Err(Error::Usage(format!("label {bad} is outside the vocabulary (size {})", c.n_vocab)));
        }
        let sp = span(Phase::Forward);
        let mut x = m.embed_on(b, seq.tokens)?;
        let keep = grads.is_some();
        let mut inputs: Vec<B::Buf> = Vec::with_capacity(if keep { c.n_layer } else { 0 });
        // Intermediates of the last `n_kept` blocks (all blocks have the same shapes: the
        // first block's size decides how many fit the budget).
        let mut kept: Vec<Option<Saved<B::Buf>>> = Vec::with_capacity(if keep { c.n_layer } else { 0 });
        let mut n_kept = 0;
        for il in 0..c.n_layer {
            let (out, mut saved) = self.forward_block(lora, dropout, il, &x, seq);
            let xin = std::mem::replace(&mut x, out);
            if keep {
                saved.slim();
                if il == 0 {
                    n_kept = (opts.keep_bytes / saved.bytes(b).max(1)).min(c.n_layer as u64) as usize;
                }
                inputs.push(xin);
                kept.push((il >= c.n_layer - n_kept).then_some(saved));
            }
        }
        // Past √f32::MAX a square overflows, RMS norm maps the row to zeros and the loss sits at
        // ln(n_vocab) with a zero gradient: stop instead of training on silently (e.g. a huge --lr).
        if let Some(v) = b.find_not_below(&x, 1.8e19) {
            return Err(Error::Train(format!(
                "the loss became undefined: hidden states overflowed f32 (a value of {v:e} at the model output); try a lower --lr"
            )));
        }
        drop(sp);
        let sp = span(Phase::Loss);
        let mut xf = b.zeros(b.len(&x));
        b.rms_norm(&x, &mut xf, c.n_embd, c.eps, Some(&m.output_norm));
        let Some(grads) = grads else {
            return Ok(b.cross_entropy(&*m.output, c.final_softcap, &xf, seq.labels, scale, None));
        };
        let mut dxf = b.zeros(b.len(&xf));
        let (loss, count) = b.cross_entropy(&*m.output, c.final_softcap, &xf, seq.labels, scale, Some(&mut dxf));
        let mut dx = b.zeros(b.len(&x));
        b.rms_norm_backward(&x, Some(&m.output_norm), c.n_embd, c.eps, &dxf, &mut dx);
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
    pub fn loss(&self, lora: &LoraSet<B::Buf>, seq: &SeqView) -> Result<(f64, usize)> {
        self.forward_backward(lora, None, seq, 1.0)
    }

    /// Zeroed gradient buffers shaped like `lora`.
    pub fn zero_grads(&self, lora: &LoraSet<B::Buf>) -> LoraSet<B::Buf> {
        let b = &self.backend;
        lora.map(|x| b.zeros(b.len(x)))
    }
}
