//! A test backend: wraps another backend, checks every call's buffer sizes against the shapes
//! passed with it, checks that every buffer an op writes holds only finite values, and counts
//! the calls per op. Running the model or a training step on it proves that they reach their
//! kernels only through the [`Backend`] / [`TrainBackend`] traits (the counts are non-zero and
//! the results are the inner backend's, bit for bit). A failed check panics naming the op.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{AdamWConfig, Attn, Backend, KvLayer, TrainBackend};
use crate::lora::LoraPair;
use crate::ops::activation::Act;
use crate::ops::rope::Rope;
use crate::weights::QuantWeight;

/// [`Backend`] wrapper that checks shapes and finiteness and counts calls.
#[derive(Debug, Default)]
pub struct Checked<B> {
    inner: B,
    calls: Mutex<BTreeMap<&'static str, usize>>,
}

impl<B: Backend> Checked<B> {
    /// Wrap `inner`.
    pub fn new(inner: B) -> Self {
        Checked { inner, calls: Mutex::new(BTreeMap::new()) }
    }

    /// Calls so far, per op name.
    pub fn calls(&self) -> BTreeMap<&'static str, usize> {
        self.calls.lock().expect("call counter").clone()
    }

    fn count(&self, op: &'static str) {
        *self.calls.lock().expect("call counter").entry(op).or_default() += 1;
    }

    fn n(&self, x: &B::Buf) -> usize {
        self.inner.len(x)
    }

    fn finite(&self, op: &str, what: &str, x: &B::Buf) {
        if let Some(i) = self.inner.download(x).iter().position(|v| !v.is_finite()) {
            panic!("checked backend: {op}: {what}[{i}] is not finite");
        }
    }

    fn rows(&self, op: &str, what: &str, x: &B::Buf, width: usize) -> usize {
        let n = self.n(x);
        assert!(width > 0 && n % width == 0, "checked backend: {op}: {what} holds {n} values, not whole rows of {width}");
        n / width
    }

    fn same(&self, op: &str, a: (&str, &B::Buf), b: (&str, &B::Buf)) {
        let (na, nb) = (self.n(a.1), self.n(b.1));
        assert_eq!(na, nb, "checked backend: {op}: {} holds {na} values, {} holds {nb}", a.0, b.0);
    }
}

impl<B: Backend> Backend for Checked<B> {
    type Buf = B::Buf;

    fn name(&self) -> &'static str {
        "checked"
    }
    fn zeros(&self, n: usize) -> B::Buf {
        self.inner.zeros(n)
    }
    fn upload(&self, data: &[f32]) -> B::Buf {
        self.inner.upload(data)
    }
    fn download(&self, x: &B::Buf) -> Vec<f32> {
        self.inner.download(x)
    }
    fn len(&self, x: &B::Buf) -> usize {
        self.inner.len(x)
    }
    fn copy(&self, x: &B::Buf) -> B::Buf {
        self.inner.copy(x)
    }
    fn write_at(&self, dst: &mut B::Buf, at: usize, src: &B::Buf) {
        assert!(at + self.n(src) <= self.n(dst), "checked backend: write_at past the end");
        self.inner.write_at(dst, at, src)
    }
    fn add(&self, x: &mut B::Buf, y: &B::Buf) {
        self.count("add");
        self.same("add", ("x", x), ("y", y));
        self.inner.add(x, y);
        self.finite("add", "x", x);
    }
    fn add_rows(&self, x: &mut B::Buf, bias: &B::Buf) {
        self.count("add_rows");
        self.rows("add_rows", "x", x, self.n(bias));
        self.inner.add_rows(x, bias);
        self.finite("add_rows", "x", x);
    }
    fn scale(&self, x: &mut B::Buf, s: f32) {
        self.count("scale");
        self.inner.scale(x, s);
        self.finite("scale", "x", x);
    }
    fn mul(&self, x: &B::Buf, m: &B::Buf) -> B::Buf {
        self.count("mul");
        self.same("mul", ("x", x), ("m", m));
        self.inner.mul(x, m)
    }
    fn softcap(&self, x: &mut B::Buf, cap: f32) {
        self.count("softcap");
        self.inner.softcap(x, cap);
        self.finite("softcap", "x", x);
    }
    fn find_not_below(&self, x: &B::Buf, bound: f32) -> Option<f32> {
        self.inner.find_not_below(x, bound)
    }
    fn embed(&self, table: &dyn QuantWeight, tokens: &[u32], scale: Option<f32>, out: &mut B::Buf) {
        self.count("embed");
        assert_eq!(self.n(out), tokens.len() * table.n_in(), "checked backend: embed: out is not [T, n_embd]");
        assert!(tokens.iter().all(|&t| (t as usize) < table.n_out()), "checked backend: embed: token id past the table");
        self.inner.embed(table, tokens, scale, out);
        self.finite("embed", "out", out);
    }
    fn matmul(&self, w: &dyn QuantWeight, x: &B::Buf, y: &mut B::Buf) {
        self.count("matmul");
        let t = self.rows("matmul", "x", x, w.n_in());
        assert_eq!(self.n(y), t * w.n_out(), "checked backend: matmul: y is not [T, n_out]");
        self.inner.matmul(w, x, y);
        self.finite("matmul", "y", y);
    }
    fn rms_norm(&self, x: &B::Buf, out: &mut B::Buf, n: usize, eps: f32, w: Option<&B::Buf>) {
        self.count("rms_norm");
        self.rows("rms_norm", "x", x, n);
        self.same("rms_norm", ("x", x), ("out", out));
        assert!(w.is_none_or(|w| self.n(w) == n), "checked backend: rms_norm: weight is not [n]");
        self.inner.rms_norm(x, out, n, eps, w);
        self.finite("rms_norm", "out", out);
    }
    fn rope(&self, rope: &Rope, x: &mut B::Buf, n_heads: usize, head_dim: usize, positions: &[u32]) {
        self.count("rope");
        assert_eq!(self.rows("rope", "x", x, n_heads * head_dim), positions.len(), "checked backend: rope: one position per row");
        self.inner.rope(rope, x, n_heads, head_dim, positions);
        self.finite("rope", "x", x);
    }
    fn glu(&self, act: Act, gate: &mut B::Buf, up: &B::Buf) {
        self.count("glu");
        self.same("glu", ("gate", gate), ("up", up));
        self.inner.glu(act, gate, up);
        self.finite("glu", "gate", gate);
    }
    fn attention_kv(
        &self,
        a: Attn,
        q: &mut B::Buf,
        k: &mut B::Buf,
        v: &mut B::Buf,
        cache: KvLayer<'_, B::Buf>,
        n_past: usize,
        out: &mut B::Buf,
    ) {
        self.count("attention_kv");
        let s = a.shape;
        let t = self.rows("attention_kv", "q", q, s.n_head * s.head_dim);
        assert_eq!(self.rows("attention_kv", "k", k, s.n_head_kv * s.head_dim), t, "checked backend: attention_kv: k rows");
        assert_eq!(self.rows("attention_kv", "v", v, s.n_head_kv * s.v_dim), t, "checked backend: attention_kv: v rows");
        assert_eq!(self.n(out), t * s.n_head * s.v_dim, "checked backend: attention_kv: out");
        assert!((n_past + t) * s.n_head_kv * s.head_dim <= self.n(cache.k), "checked backend: attention_kv: cache full");
        self.inner.attention_kv(a, q, k, v, cache, n_past, out);
        self.finite("attention_kv", "out", out);
    }
    fn attention(&self, a: Attn, q: &B::Buf, k: &B::Buf, v: &B::Buf, segments: Option<&[u32]>, out: &mut B::Buf, lse: &mut B::Buf) {
        self.count("attention");
        let s = a.shape;
        let t = self.rows("attention", "q", q, s.n_head * s.head_dim);
        assert_eq!(self.rows("attention", "k", k, s.n_head_kv * s.head_dim), t, "checked backend: attention: k rows");
        assert_eq!(self.rows("attention", "v", v, s.n_head_kv * s.v_dim), t, "checked backend: attention: v rows");
        assert!(segments.is_none_or(|g| g.len() == t), "checked backend: attention: one segment id per token");
        assert_eq!(self.n(out), t * s.n_head * s.v_dim, "checked backend: attention: out");
        assert_eq!(self.n(lse), t * s.n_head, "checked backend: attention: lse");
        self.inner.attention(a, q, k, v, segments, out, lse);
        self.finite("attention", "out", out);
        self.finite("attention", "lse", lse);
    }
    fn lora_down(&self, p: &LoraPair<B::Buf>, x: &B::Buf) -> B::Buf {
        self.count("lora_down");
        self.rows("lora_down", "x", x, p.n_in);
        let u = self.inner.lora_down(p, x);
        self.finite("lora_down", "u", &u);
        u
    }
    fn lora_up_add(&self, p: &LoraPair<B::Buf>, u: &B::Buf, s: f32, y: &mut B::Buf) {
        self.count("lora_up_add");
        let t = self.rows("lora_up_add", "u", u, p.r);
        assert_eq!(self.n(y), t * p.n_out, "checked backend: lora_up_add: y");
        self.inner.lora_up_add(p, u, s, y);
        self.finite("lora_up_add", "y", y);
    }
}

impl<B: TrainBackend> TrainBackend for Checked<B> {
    fn matmul_backward_input(&self, w: &dyn QuantWeight, dy: &B::Buf, dx: &mut B::Buf, accumulate: bool) {
        self.count("matmul_backward_input");
        let t = self.rows("matmul_backward_input", "dy", dy, w.n_out());
        assert_eq!(self.n(dx), t * w.n_in(), "checked backend: matmul_backward_input: dx");
        self.inner.matmul_backward_input(w, dy, dx, accumulate);
        self.finite("matmul_backward_input", "dx", dx);
    }
    fn rms_norm_backward(&self, x: &B::Buf, w: Option<&B::Buf>, n: usize, eps: f32, dy: &B::Buf, dx: &mut B::Buf) {
        self.count("rms_norm_backward");
        self.rows("rms_norm_backward", "x", x, n);
        self.same("rms_norm_backward", ("x", x), ("dy", dy));
        self.same("rms_norm_backward", ("x", x), ("dx", dx));
        self.inner.rms_norm_backward(x, w, n, eps, dy, dx);
        self.finite("rms_norm_backward", "dx", dx);
    }
    fn rope_backward(&self, rope: &Rope, dx: &mut B::Buf, n_heads: usize, head_dim: usize, positions: &[u32]) {
        self.count("rope_backward");
        assert_eq!(self.rows("rope_backward", "dx", dx, n_heads * head_dim), positions.len(), "checked backend: rope_backward");
        self.inner.rope_backward(rope, dx, n_heads, head_dim, positions);
        self.finite("rope_backward", "dx", dx);
    }
    fn glu_backward(&self, act: Act, gate: &B::Buf, up: &B::Buf, dh: &B::Buf, dgate: &mut B::Buf, dup: &mut B::Buf) {
        self.count("glu_backward");
        for (name, b) in [("up", up), ("dh", dh), ("dgate", &*dgate), ("dup", &*dup)] {
            self.same("glu_backward", ("gate", gate), (name, b));
        }
        self.inner.glu_backward(act, gate, up, dh, dgate, dup);
        self.finite("glu_backward", "dgate", dgate);
        self.finite("glu_backward", "dup", dup);
    }
    fn attention_backward(
        &self,
        a: Attn,
        q: &B::Buf,
        k: &B::Buf,
        v: &B::Buf,
        segments: Option<&[u32]>,
        out: &B::Buf,
        lse: &B::Buf,
        dout: &B::Buf,
        dq: &mut B::Buf,
        dk: &mut B::Buf,
        dv: &mut B::Buf,
    ) {
        self.count("attention_backward");
        self.same("attention_backward", ("q", q), ("dq", dq));
        self.same("attention_backward", ("k", k), ("dk", dk));
        self.same("attention_backward", ("v", v), ("dv", dv));
        self.same("attention_backward", ("out", out), ("dout", dout));
        self.inner.attention_backward(a, q, k, v, segments, out, lse, dout, dq, dk, dv);
        self.finite("attention_backward", "dq", dq);
        self.finite("attention_backward", "dk", dk);
        self.finite("attention_backward", "dv", dv);
    }
    fn lora_backward(
        &self,
        p: &LoraPair<B::Buf>,
        x: &B::Buf,
        u: &B::Buf,
        dy: &B::Buf,
        s: f32,
        grad: &mut LoraPair<B::Buf>,
        dx: Option<&mut B::Buf>,
    ) {
        self.count("lora_backward");
        let t = self.rows("lora_backward", "x", x, p.n_in);
        assert_eq!(self.n(u), t * p.r, "checked backend: lora_backward: u");
        assert_eq!(self.n(dy), t * p.n_out, "checked backend: lora_backward: dy");
        assert!(self.n(&grad.a) == self.n(&p.a) && self.n(&grad.b) == self.n(&p.b), "checked backend: lora_backward: grad shapes");
        if let Some(dx) = &dx {
            self.same("lora_backward", ("x", x), ("dx", dx));
        }
        self.inner.lora_backward(p, x, u, dy, s, grad, dx);
        self.finite("lora_backward", "grad.a", &grad.a);
        self.finite("lora_backward", "grad.b", &grad.b);
    }
    fn cross_entropy(
        &self,
        output: &dyn QuantWeight,
        softcap: Option<f32>,
        hidden: &B::Buf,
        targets: &[i32],
        scale: f32,
        dhidden: Option<&mut B::Buf>,
    ) -> (f64, usize) {
        self.count("cross_entropy");
        assert_eq!(
            self.rows("cross_entropy", "hidden", hidden, output.n_in()),
            targets.len(),
            "checked backend: cross_entropy: one target per row"
        );
        if let Some(d) = &dhidden {
            self.same("cross_entropy", ("hidden", hidden), ("dhidden", d));
        }
        let r = self.inner.cross_entropy(output, softcap, hidden, targets, scale, dhidden);
        assert!(r.0.is_finite(), "checked backend: cross_entropy: loss {} is not finite", r.0);
        r
    }
    fn sum_squares(&self, x: &B::Buf, acc: f64) -> f64 {
        self.count("sum_squares");
        self.inner.sum_squares(x, acc)
    }
    fn adamw(
        &self,
        cfg: AdamWConfig,
        step_size: f32,
        bc2_sqrt: f32,
        decay: f32,
        p: &mut B::Buf,
        g: &B::Buf,
        m: &mut B::Buf,
        v: &mut B::Buf,
    ) {
        self.count("adamw");
        self.same("adamw", ("p", p), ("g", g));
        self.same("adamw", ("p", p), ("m", m));
        self.same("adamw", ("p", p), ("v", v));
        self.inner.adamw(cfg, step_size, bc2_sqrt, decay, p, g, m, v);
        self.finite("adamw", "p", p);
    }
}
