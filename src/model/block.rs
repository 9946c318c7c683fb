//! The one transformer block, for inference and for training.
//!
//! [`Model::block_forward`] runs block `il` on any [`Backend`] in one of two modes (as llm.c's
//! `gpt2_forward` serves both): [`Mode::Infer`] writes the new keys/values into the KV cache and
//! attends over it; [`Mode::Train`] adds the trainable LoRA (with optional dropout) on every
//! adapted projection, attends within the packed sequence, and returns the intermediates the
//! backward needs ([`Saved`]; the backward itself is [`crate::train::block`]). The attention
//! shape is built in one place, [`Model::attn`].
//!
//! ```text
//! xn1 = rmsnorm(x)·attn_norm
//! q,k,v = xn1·Wᵀ (+ adapters) (+ bias) → per-head q/k norm → rope
//! a = attention(q, k, v)            o = a·Woᵀ (+ adapters) → post_attn_norm
//! x1 = x + o
//! xn2 = rmsnorm(x1)·ffn_norm        g,u = xn2·Wᵀ (+ adapters)      h = act(g)·u
//! d = h·W_downᵀ (+ adapters) → post_ffw_norm           out = x1 + d
//! ```

use super::trace::trace;
use super::{Arch, KvCache, Model};
use crate::backend::{Attn, AttnShape, Backend, KvLayer};
use crate::lora::dropout::Dropout;
use crate::lora::{LoraSet, Target};
use crate::prof::{span, Phase};

/// What a block run is for.
pub enum Mode<'c, T> {
    /// Inference: attend over (and extend) the cache from position `cache.n_past`.
    Infer {
        /// The KV cache (not advanced here; the caller advances it after the last block).
        cache: &'c mut KvCache<T>,
    },
    /// Training forward: the trainable LoRA on top, attention within the sequence.
    Train {
        /// The LoRA being trained.
        lora: &'c LoraSet<T>,
        /// Dropout on the LoRA branch inputs (`None`: none).
        dropout: Option<Dropout>,
        /// Segment id of each token (packed samples do not attend to each other).
        segments: Option<&'c [u32]>,
    },
}

/// Intermediates of one block's training forward, kept for its backward. Pre-norm values
/// (`q_pre`, `k_pre`, `o_pre`, `d_pre`) are `None` when the block has no such norm.
pub struct Saved<T> {
    /// Normed block input (dropped by [`Saved::slim`]).
    pub xn1: Option<T>,
    /// q before its per-head norm.
    pub q_pre: Option<T>,
    /// k before its per-head norm.
    pub k_pre: Option<T>,
    /// q after norm and rope (unscaled).
    pub q: T,
    /// k after norm and rope.
    pub k: T,
    /// v.
    pub v: T,
    /// Attention output.
    pub attn: T,
    /// Attention log-sum-exp per (token, head).
    pub lse: T,
    /// Attention projection before its post-norm.
    pub o_pre: Option<T>,
    /// Residual after attention.
    pub x1: T,
    /// Normed FFN input (dropped by [`Saved::slim`]).
    pub xn2: Option<T>,
    /// Gate projection.
    pub gate: T,
    /// Up projection.
    pub up: T,
    /// GLU output (dropped by [`Saved::slim`]).
    pub h: Option<T>,
    /// Down projection before its post-norm.
    pub d_pre: Option<T>,
    /// LoRA codes `u = x·Aᵀ` per target (`None` when the target is not adapted).
    pub codes: [Option<T>; 7],
}

impl<T> Saved<T> {
    /// Drop what the backward rebuilds cheaply and bit-exactly from what stays (the normed
    /// block inputs `xn1`, `xn2` and the GLU output `h`), before keeping this across the step.
    pub fn slim(&mut self) {
        self.xn1 = None;
        self.xn2 = None;
        self.h = None;
    }

    /// Bytes held (f32 values × 4), as measured on backend `b`.
    pub fn bytes<B: Backend<Buf = T>>(&self, b: &B) -> u64 {
        let opt = [&self.xn1, &self.q_pre, &self.k_pre, &self.o_pre, &self.xn2, &self.h, &self.d_pre];
        let all = [&self.q, &self.k, &self.v, &self.attn, &self.lse, &self.x1, &self.gate, &self.up];
        let n = opt.iter().filter_map(|o| o.as_ref()).map(|x| b.len(x)).sum::<usize>()
            + all.iter().map(|x| b.len(x)).sum::<usize>()
            + self.codes.iter().flatten().map(|x| b.len(x)).sum::<usize>();
        4 * n as u64
    }
}

/// `post_norm(y)` when the block has that norm (`None` otherwise: `y` itself is added).
fn post_norm<B: Backend>(b: &B, y: &B::Buf, w: Option<&B::Buf>, n: usize, eps: f32) -> Option<B::Buf> {
    w.map(|w| {
        let mut normed = b.zeros(b.len(y));
        b.rms_norm(y, &mut normed, n, eps, Some(w));
        normed
    })
}

impl<T> Model<'_, T> {
    /// The attention of layer `il`: heads, widths, sliding window, softcap and scale.
    pub fn attn(&self, il: usize) -> Attn {
        let c = &self.cfg;
        Attn {
            shape: AttnShape {
                n_head: c.n_head,
                n_head_kv: c.n_head_kv,
                head_dim: c.head_dim,
                v_dim: c.v_dim,
                window: if c.is_swa(il) { c.swa.map(|(w, _)| w) } else { None },
                softcap: c.attn_softcap,
            },
            scale: c.attn_scale,
            // llama.cpp's graph scales q itself only for gemma3, the scores otherwise.
            scale_q: c.arch == Arch::Gemma3,
        }
    }

    /// `y = x·Wᵀ` for `target` in layer `il`, plus every applied adapter's `scale·B·A·x`, plus
    /// (training) the trainable LoRA on `dropout(x)`, whose code `u = x·Aᵀ` is returned.
    #[allow(clippy::too_many_arguments)]
    pub fn project<B: Backend<Buf = T>>(
        &self,
        b: &B,
        il: usize,
        target: Target,
        x: &T,
        y: &mut T,
        train: Option<(&LoraSet<T>, Option<Dropout>)>,
    ) -> Option<T> {
        {
            let _s = span(Phase::FwdMatmul);
            b.matmul(self.weight(il, target), x, y);
        }
        self.adapt(b, il, target, x, y, train)
    }

    /// [`Model::project`] of several targets on the same `x` (q, k, v or gate, up): the frozen
    /// weights in one [`Backend::matmul_many`], then each target's adapters and LoRA as
    /// [`Model::project`] adds them (the same values: every target is computed on its own).
    pub fn project_many<B: Backend<Buf = T>, const N: usize>(
        &self,
        b: &B,
        il: usize,
        targets: [Target; N],
        x: &T,
        mut ys: [&mut T; N],
        train: Option<(&LoraSet<T>, Option<Dropout>)>,
    ) -> [Option<T>; N] {
        {
            let _s = span(Phase::FwdMatmul);
            b.matmul_many(&targets.map(|t| self.weight(il, t)), x, &mut ys);
        }
        std::array::from_fn(|i| self.adapt(b, il, targets[i], x, ys[i], train))
    }

    /// The adapters (and the trainable LoRA) of [`Model::project`], added to `y = x·Wᵀ`.
    fn adapt<B: Backend<Buf = T>>(
        &self,
        b: &B,
        il: usize,
        target: Target,
        x: &T,
        y: &mut T,
        train: Option<(&LoraSet<T>, Option<Dropout>)>,
    ) -> Option<T> {
        {
            let _s = span(Phase::FwdMatmul);
            for (set, user_scale) in &self.adapters {
                if let Some(p) = set.get(il, target) {
                    b.lora_forward(p, x, user_scale * set.scale(p), y);
                }
            }
        }
        let _s = span(Phase::FwdLora);
        let (lora, dropout) = train?;
        let p = lora.get(il, target)?;
        let u = match dropout {
            None => b.lora_forward(p, x, lora.scale(p), y),
            Some(d) => b.lora_forward(p, &b.mul(x, &b.upload(&d.mask(il, target, b.len(x)))), lora.scale(p), y),
        };
        Some(u)
    }

    /// Run block `il` on `x` (`[T, n_embd]`, token `t` at rope position `positions[t]`):
    /// returns the block output and, in training mode, what its backward needs.
    pub fn block_forward<B: Backend<Buf = T>>(
        &self,
        b: &B,
        il: usize,
        x: &T,
        positions: &[u32],
        mode: Mode<'_, T>,
    ) -> (T, Option<Saved<T>>) {
        let c = &self.cfg;
        let l = &self.layers[il];
        let (e, hd, vd) = (c.n_embd, c.head_dim, c.v_dim);
        let t = positions.len();
        let (qd, kd, vvd, ad) = (c.n_head * hd, c.n_head_kv * hd, c.n_head_kv * vd, c.n_head * vd);
        let (train, infer) = match mode {
            Mode::Train { lora, dropout, segments } => (Some((lora, dropout, segments)), None),
            Mode::Infer { cache } => (None, Some(cache)),
        };
        let tr = train.map(|(lora, dropout, _)| (lora, dropout));
        let il_t = Some(il);
        let tracing = infer.is_some();
        let tr_ = |name: &str, buf: &T| {
            if tracing {
                trace(b, name, il_t, buf)
            }
        };

        let mut xn1 = b.zeros(t * e);
        b.rms_norm(x, &mut xn1, e, c.eps, Some(&l.attn_norm));
        tr_("attn_norm", &xn1);
        let (mut q_pre, mut k_pre, mut v) = (b.zeros(t * qd), b.zeros(t * kd), b.zeros(t * vvd));
        let mut codes: [Option<T>; 7] = Default::default();
        [codes[0], codes[1], codes[2]] =
            self.project_many(b, il, [Target::Q, Target::K, Target::V], &xn1, [&mut q_pre, &mut k_pre, &mut v], tr);
        tr_("Qcur", &q_pre);
        tr_("Kcur", &k_pre);
        tr_("Vcur", &v);
        for (buf, bias) in [(&mut q_pre, &l.bq), (&mut k_pre, &l.bk), (&mut v, &l.bv)] {
            if let Some(bias) = bias {
                b.add_rows(buf, bias);
            }
        }
        let normed = |pre: &T, w: &Option<T>| {
            w.as_ref().map(|w| {
                let mut out = b.zeros(b.len(pre));
                b.rms_norm(pre, &mut out, hd, c.eps, Some(w));
                out
            })
        };
        let (q_n, k_n) = (normed(&q_pre, &l.q_norm), normed(&k_pre, &l.k_norm));
        // Without a per-head norm the pre-norm value is the value itself (not kept apart).
        let (mut q, q_pre) = match q_n {
            Some(q) => (q, Some(q_pre)),
            None => (q_pre, None),
        };
        let (mut k, k_pre) = match k_n {
            Some(k) => (k, Some(k_pre)),
            None => (k_pre, None),
        };
        tr_("Qcur_normed", &q);
        tr_("Kcur_normed", &k);
        let rope = self.rope_for(il);
        b.rope(rope, &mut q, c.n_head, hd, positions);
        b.rope(rope, &mut k, c.n_head_kv, hd, positions);
        tr_("Qrope", &q);
        tr_("Krope", &k);
        let a = self.attn(il);
        let mut attn = b.zeros(t * ad);
        let lse = match (infer, train) {
            (Some(cache), _) => {
                let n_past = cache.n_past;
                let kv = KvLayer { k: &mut cache.k[il], v: &mut cache.v[il] };
                b.attention_kv(a, &mut q, &mut k, &mut v, kv, n_past, &mut attn);
                None
            }
            (None, Some((_, _, segments))) => {
                let _s = span(Phase::FwdAttn);
                let mut lse = b.zeros(t * c.n_head);
                b.attention(a, &q, &k, &v, segments, &mut attn, &mut lse);
                Some(lse)
            }
            (None, None) => unreachable!("a mode is either inference or training"),
        };
        tr_("kqv_out", &attn);
        let mut o_pre = b.zeros(t * e);
        codes[3] = self.project(b, il, Target::O, &attn, &mut o_pre, tr);
        tr_("attn_out", &o_pre);
        let o_post = post_norm(b, &o_pre, l.post_attn_norm.as_ref(), e, c.eps);
        let o = o_post.as_ref().unwrap_or(&o_pre);
        tr_("attn_post_norm", o);
        let mut x1 = b.copy(x);
        b.add(&mut x1, o);
        tr_("sa_out", &x1);

        let mut xn2 = b.zeros(t * e);
        b.rms_norm(&x1, &mut xn2, e, c.eps, Some(&l.ffn_norm));
        tr_("ffn_norm", &xn2);
        let (mut gate, mut up) = (b.zeros(t * c.n_ff), b.zeros(t * c.n_ff));
        [codes[4], codes[5]] = self.project_many(b, il, [Target::Gate, Target::Up], &xn2, [&mut gate, &mut up], tr);
        tr_("ffn_gate", &gate);
        tr_("ffn_up", &up);
        let mut h = b.copy(&gate);
        b.glu(c.act, &mut h, &up);
        tr_("ffn_geglu", &h);
        let mut d_pre = b.zeros(t * e);
        codes[6] = self.project(b, il, Target::Down, &h, &mut d_pre, tr);
        tr_("ffn_out", &d_pre);
        let d_post = post_norm(b, &d_pre, l.post_ffw_norm.as_ref(), e, c.eps);
        let mut out = b.copy(&x1);
        b.add(&mut out, d_post.as_ref().unwrap_or(&d_pre));
        tr_("l_out", &out);
        let Some(lse) = lse else { return (out, None) };
        let keep = |buf: T, needed: bool| needed.then_some(buf);
        let saved = Saved {
            xn1: Some(xn1),
            q_pre,
            k_pre,
            q,
            k,
            v,
            attn,
            lse,
            o_pre: keep(o_pre, l.post_attn_norm.is_some()),
            x1,
            xn2: Some(xn2),
            gate,
            up,
            h: Some(h),
            d_pre: keep(d_pre, l.post_ffw_norm.is_some()),
            codes,
        };
        (out, Some(saved))
    }
}
