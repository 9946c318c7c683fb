//! [`CudaBackend`]: the [`Backend`] and [`TrainBackend`] ops on device buffers, each one a
//! kernel of `ggml/*.cu` (f32 numerics, the CPU backend [`crate::backend::cpu::Cpu`]'s
//! formulas). Frozen weights are uploaded as stored (quantized blocks, never expanded) into a
//! cache bounded by the plan's weight budget: with room for all of them they stay resident;
//! otherwise the oldest are dropped and re-uploaded when next needed (the streaming the
//! planner describes, without the copy-stream prefetch yet). Token embeddings are gathered on
//! the host, so the table never occupies the GPU. A failed CUDA call panics naming the op:
//! the traits are infallible, and run setup ([`CudaBackend::new`], [`CudaBackend::supports`])
//! reports the errors a user can act on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::driver::{Arg, DevPtr, Gpu, Kernel};
use crate::backend::{AdamWConfig, Attn, Backend, KvLayer, TrainBackend};
use crate::error::Error;
use crate::lora::LoraPair;
use crate::ops::activation::Act;
use crate::ops::loss::CHUNK;
use crate::ops::rope::{Rope, RopeStyle};
use crate::quant::GgmlType;
use crate::weights::QuantWeight;

include!(concat!(env!("OUT_DIR"), "/ptx.rs"));

/// Every kernel, by file.
const KERNELS: &[(&str, &[&str])] = &[
    ("adamw", &["adamw_f32"]),
    ("attention", &["attention_fwd_f32", "attention_bwd_f32"]),
    ("elementwise", &["add_f32", "add_rows_f32", "scale_f32", "mul_f32", "softcap_f32", "find_not_below_f32"]),
    ("embed", &["embed_f32"]),
    ("glu", &["glu_f32", "glu_backward_f32"]),
    ("lora", &["gemm_f32"]),
    ("loss", &["cross_entropy_rows_f32"]),
    ("mmq", &["mmq_f32", "mmq_backward_input_f32", "dequant_rows_f32"]),
    ("mmvq", &["mmvq_f32"]),
    ("norm", &["rms_norm_f32", "rms_norm_backward_f32"]),
    ("rope", &["rope_f32"]),
];

/// Weight formats the kernels decode.
pub const SUPPORTED: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// An f32 tensor in device memory; freed when dropped.
#[derive(Debug)]
pub struct CudaBuf {
    gpu: Arc<Gpu>,
    ptr: DevPtr,
    n: usize,
}

impl CudaBuf {
    /// Device address of element `i`.
    pub fn at(&self, i: usize) -> DevPtr {
        self.ptr + 4 * i as u64
    }
}

impl Drop for CudaBuf {
    fn drop(&mut self) {
        // A failed free leaks device memory but cannot corrupt anything; nothing to report to.
        let _ = self.gpu.free(self.ptr);
    }
}

/// A weight's device copy.
#[derive(Debug)]
struct DevWeight {
    key: (usize, usize),
    ptr: DevPtr,
    bytes: u64,
}

/// Uploaded weights, oldest first, within `budget` bytes.
#[derive(Debug, Default)]
struct WeightCache {
    entries: Vec<DevWeight>,
    used: u64,
    budget: u64,
    uploads: u64,
    uploaded_bytes: u64,
}

/// The CUDA backend on one device.
#[derive(Debug)]
pub struct CudaBackend {
    gpu: Arc<Gpu>,
    kernels: HashMap<&'static str, Kernel>,
    weights: Mutex<WeightCache>,
}

fn grid1(n: usize, block: u32) -> (u32, u32, u32) {
    (n.div_ceil(block as usize) as u32, 1, 1)
}

fn bytes_of<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: plain-old-data slices (f32, u32, i32) viewed as their bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

impl CudaBackend {
    /// Open device `ordinal`, load every kernel, keep at most `weight_budget` bytes of frozen
    /// weights on the device (`u64::MAX`: all).
    pub fn new(ordinal: usize, weight_budget: u64) -> Result<Self, Error> {
        let gpu = Arc::new(Gpu::open(ordinal)?);
        let mut kernels = HashMap::new();
        for (file, names) in KERNELS {
            let ptx =
                PTX.iter().find(|(f, _)| f == file).map(|(_, p)| *p).ok_or_else(|| Error::Backend(format!("no PTX for ggml/{file}.cu")))?;
            for (name, k) in gpu.load_module(ptx, names)? {
                let name: &'static str = names.iter().copied().find(|n| *n == name).expect("listed kernel");
                kernels.insert(name, k);
            }
        }
        Ok(CudaBackend { gpu, kernels, weights: Mutex::new(WeightCache { budget: weight_budget, ..Default::default() }) })
    }

    /// The device.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Whether the kernels handle `w`'s format; an error naming the tensor's type otherwise.
    pub fn supports(w: &dyn QuantWeight) -> Result<(), Error> {
        match w.as_ggml() {
            Some(q) if SUPPORTED.contains(&q.ty) => Ok(()),
            Some(q) => Err(Error::Backend(format!(
                "the CUDA backend has no kernel for {} weights (it handles {})",
                q.ty.name(),
                SUPPORTED.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
            ))),
            None => Err(Error::Backend(format!("the CUDA backend reads GGUF blocks only, not {}", w.format()))),
        }
    }

    /// (uploads, bytes uploaded) of frozen weights so far: with everything resident, each
    /// weight once.
    pub fn weight_traffic(&self) -> (u64, u64) {
        let c = self.weights.lock().expect("weight cache");
        (c.uploads, c.uploaded_bytes)
    }

    fn run(&self, name: &str, grid: (u32, u32, u32), block: (u32, u32, u32), args: &[Arg]) {
        let k = *self.kernels.get(name).unwrap_or_else(|| panic!("cuda backend: kernel {name} not loaded"));
        if let Err(e) = self.gpu.launch(k, grid, block, args) {
            panic!("cuda backend: {name}: {e}");
        }
    }

    fn ok<T>(&self, what: &str, r: Result<T, Error>) -> T {
        r.unwrap_or_else(|e| panic!("cuda backend: {what}: {e}"))
    }

    fn alloc(&self, n: usize) -> CudaBuf {
        let ptr = self.ok("allocation", self.gpu.alloc(4 * n));
        CudaBuf { gpu: self.gpu.clone(), ptr, n }
    }

    fn upload_raw<T: Copy>(&self, v: &[T]) -> (DevPtr, RawGuard<'_>) {
        let b = bytes_of(v);
        let ptr = self.ok("allocation", self.gpu.alloc(b.len()));
        self.ok("upload", self.gpu.upload(ptr, b));
        (ptr, RawGuard { gpu: &self.gpu, ptr })
    }

    /// The device copy of `w` (type id, address, row bytes), uploading it if needed.
    fn weight(&self, w: &dyn QuantWeight) -> (i32, DevPtr, i64) {
        let q = w.as_ggml().unwrap_or_else(|| panic!("cuda backend: {} weights are not GGUF blocks", w.format()));
        assert!(SUPPORTED.contains(&q.ty), "cuda backend: no kernel for {} weights", q.ty.name());
        let key = (q.data.as_ptr() as usize, q.data.len());
        let mut c = self.weights.lock().expect("weight cache");
        if let Some(e) = c.entries.iter().find(|e| e.key == key) {
            return (q.ty.id() as i32, e.ptr, q.row_bytes() as i64);
        }
        let bytes = q.data.len() as u64;
        while c.used + bytes > c.budget && !c.entries.is_empty() {
            let old = c.entries.remove(0);
            c.used -= old.bytes;
            self.ok("freeing a streamed weight", self.gpu.free(old.ptr));
        }
        let ptr = self.ok("weight allocation", self.gpu.alloc(q.data.len()));
        self.ok("weight upload", self.gpu.upload(ptr, q.data));
        c.entries.push(DevWeight { key, ptr, bytes });
        c.used += bytes;
        c.uploads += 1;
        c.uploaded_bytes += bytes;
        (q.ty.id() as i32, ptr, q.row_bytes() as i64)
    }

    /// Decode rows `r0..r0 + rows` of `w` on the device (the bit-exactness check of the
    /// block decoders).
    pub fn dequant_rows(&self, w: &dyn QuantWeight, r0: usize, rows: usize) -> Vec<f32> {
        let (ty, ptr, rb) = self.weight(w);
        let k = w.n_in();
        let out = self.alloc(rows * k);
        let args =
            [Arg::I32(ty), Arg::Ptr(ptr), Arg::I64(rb), Arg::I32(r0 as i32), Arg::I32(rows as i32), Arg::I32(k as i32), Arg::Ptr(out.ptr)];
        self.run("dequant_rows_f32", grid1(rows * k, 256), (256, 1, 1), &args);
        self.download(&out)
    }

    /// [`Backend::embed`] on the device (the embedding kernel; the trait's `embed` gathers on
    /// the host instead, to keep the table off the GPU).
    pub fn embed_on_device(&self, table: &dyn QuantWeight, tokens: &[u32], scale: Option<f32>, out: &mut CudaBuf) {
        let (ty, ptr, rb) = self.weight(table);
        let (tok, _g) = self.upload_raw(tokens);
        let n_in = table.n_in();
        let args = [
            Arg::I32(ty),
            Arg::Ptr(ptr),
            Arg::I64(rb),
            Arg::Ptr(tok),
            Arg::I32(tokens.len() as i32),
            Arg::I32(n_in as i32),
            Arg::I32(scale.is_some() as i32),
            Arg::F32(scale.unwrap_or(1.0)),
            Arg::Ptr(out.ptr),
        ];
        self.run("embed_f32", grid1(tokens.len() * n_in, 256), (256, 1, 1), &args);
    }

    /// `y[T, N] = x·Wᵀ` at raw addresses (`x` T rows of K, `y` T rows of N).
    fn matmul_raw(&self, w: &dyn QuantWeight, x: DevPtr, y: DevPtr, t: usize) {
        let (ty, ptr, rb) = self.weight(w);
        let (n, k) = (w.n_out(), w.n_in());
        if t == 1 {
            let args = [Arg::I32(ty), Arg::Ptr(ptr), Arg::I64(rb), Arg::Ptr(x), Arg::Ptr(y), Arg::I32(n as i32), Arg::I32(k as i32)];
            self.run("mmvq_f32", (n.div_ceil(8) as u32, 1, 1), (32, 8, 1), &args);
        } else {
            let args = [
                Arg::I32(ty),
                Arg::Ptr(ptr),
                Arg::I64(rb),
                Arg::Ptr(x),
                Arg::Ptr(y),
                Arg::I32(t as i32),
                Arg::I32(n as i32),
                Arg::I32(k as i32),
            ];
            self.run("mmq_f32", (n.div_ceil(16) as u32, t.div_ceil(16) as u32, 1), (16, 16, 1), &args);
        }
    }

    /// `dx[T, K] (+)= dy[T, N]·W` at raw addresses.
    fn matmul_back_raw(&self, w: &dyn QuantWeight, dy: DevPtr, dx: DevPtr, t: usize, accumulate: bool) {
        let (ty, ptr, rb) = self.weight(w);
        let (n, k) = (w.n_out(), w.n_in());
        let args = [
            Arg::I32(ty),
            Arg::Ptr(ptr),
            Arg::I64(rb),
            Arg::Ptr(dy),
            Arg::Ptr(dx),
            Arg::I32(t as i32),
            Arg::I32(n as i32),
            Arg::I32(k as i32),
            Arg::I32(accumulate as i32),
        ];
        self.run("mmq_backward_input_f32", (k.div_ceil(16) as u32, t.div_ceil(16) as u32, 1), (16, 16, 1), &args);
    }

    /// `C[M, N] = α·op(A)·op(B) + β·C` (row-major; `ta`: A stored `[K, M]`, `tb`: B stored `[N, K]`).
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        a: DevPtr,
        lda: usize,
        ta: bool,
        b: DevPtr,
        ldb: usize,
        tb: bool,
        c: DevPtr,
        ldc: usize,
        alpha: f32,
        beta: f32,
    ) {
        let args = [
            Arg::I32(m as i32),
            Arg::I32(n as i32),
            Arg::I32(k as i32),
            Arg::Ptr(a),
            Arg::I32(lda as i32),
            Arg::I32(ta as i32),
            Arg::Ptr(b),
            Arg::I32(ldb as i32),
            Arg::I32(tb as i32),
            Arg::Ptr(c),
            Arg::I32(ldc as i32),
            Arg::F32(alpha),
            Arg::F32(beta),
        ];
        self.run("gemm_f32", (n.div_ceil(16) as u32, m.div_ceil(16) as u32, 1), (16, 16, 1), &args);
    }

    /// Per-row (cos θ, sin θ) of `rope` at `positions`, θ computed as the CPU backend does.
    fn rope_table(rope: &Rope, positions: &[u32]) -> Vec<f32> {
        let inv = rope.inv_freq();
        let mut cs = Vec::with_capacity(positions.len() * inv.len() * 2);
        for &p in positions {
            for &f in inv {
                let (s, c) = (p as f32 * f).sin_cos();
                cs.push(c);
                cs.push(s);
            }
        }
        cs
    }

    fn rope_run(&self, rope: &Rope, x: &mut CudaBuf, n_heads: usize, head_dim: usize, positions: &[u32], back: bool) {
        let cs = Self::rope_table(rope, positions);
        let (table, _g) = self.upload_raw(&cs);
        let half = rope.n_rot / 2;
        let style = match rope.style {
            RopeStyle::Norm => 0,
            RopeStyle::Neox => 1,
        };
        let args = [
            Arg::Ptr(x.ptr),
            Arg::Ptr(table),
            Arg::I32(positions.len() as i32),
            Arg::I32(n_heads as i32),
            Arg::I32(head_dim as i32),
            Arg::I32(rope.n_rot as i32),
            Arg::I32(style),
            Arg::I32(back as i32),
        ];
        self.run("rope_f32", grid1(positions.len() * n_heads * half, 256), (256, 1, 1), &args);
    }

    /// q·scale as a new buffer.
    fn scaled(&self, q: &CudaBuf, s: f32) -> CudaBuf {
        let mut c = self.copy(q);
        self.scale(&mut c, s);
        c
    }

    #[allow(clippy::too_many_arguments)]
    fn attention_fwd(&self, a: Attn, q: &CudaBuf, k: DevPtr, v: DevPtr, seg: DevPtr, n_past: usize, out: &mut CudaBuf, lse: DevPtr) {
        let s = a.shape;
        assert!(s.head_dim <= 512 && s.v_dim <= 512, "cuda backend: attention heads wider than 512");
        let tq = q.n / (s.n_head * s.head_dim);
        let args = [
            Arg::Ptr(q.ptr),
            Arg::Ptr(k),
            Arg::Ptr(v),
            Arg::Ptr(out.ptr),
            Arg::Ptr(lse),
            Arg::Ptr(seg),
            Arg::I32(n_past as i32),
            Arg::I32(s.n_head as i32),
            Arg::I32(s.n_head_kv as i32),
            Arg::I32(s.head_dim as i32),
            Arg::I32(s.v_dim as i32),
            Arg::I32(s.window.unwrap_or(0) as i32),
            Arg::F32(s.softcap.unwrap_or(0.0)),
        ];
        self.run("attention_fwd_f32", ((tq * s.n_head) as u32, 1, 1), (128, 1, 1), &args);
    }
}

/// Frees a raw upload (small per-call tables) at the end of the op.
struct RawGuard<'g> {
    gpu: &'g Gpu,
    ptr: DevPtr,
}

impl Drop for RawGuard<'_> {
    fn drop(&mut self) {
        let _ = self.gpu.free(self.ptr);
    }
}

impl Backend for CudaBackend {
    type Buf = CudaBuf;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn zeros(&self, n: usize) -> CudaBuf {
        let b = self.alloc(n);
        self.ok("memset", self.gpu.zero(b.ptr, 4 * n));
        b
    }
    fn upload(&self, data: &[f32]) -> CudaBuf {
        let b = self.alloc(data.len());
        self.ok("upload", self.gpu.upload(b.ptr, bytes_of(data)));
        b
    }
    fn download(&self, x: &CudaBuf) -> Vec<f32> {
        let mut v = vec![0f32; x.n];
        // SAFETY: f32 has no invalid bit patterns; the slice covers exactly the vector.
        let bytes = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), 4 * x.n) };
        self.ok("download", self.gpu.download(bytes, x.ptr));
        v
    }
    fn len(&self, x: &CudaBuf) -> usize {
        x.n
    }
    fn copy(&self, x: &CudaBuf) -> CudaBuf {
        let b = self.alloc(x.n);
        self.ok("copy", self.gpu.copy(b.ptr, x.ptr, 4 * x.n));
        b
    }
    fn write_at(&self, dst: &mut CudaBuf, at: usize, src: &CudaBuf) {
        assert!(at + src.n <= dst.n, "cuda backend: write_at past the end");
        self.ok("copy", self.gpu.copy(dst.at(at), src.ptr, 4 * src.n));
    }

    fn add(&self, x: &mut CudaBuf, y: &CudaBuf) {
        self.run("add_f32", grid1(x.n, 256), (256, 1, 1), &[Arg::Ptr(x.ptr), Arg::Ptr(y.ptr), Arg::I64(x.n as i64)]);
    }
    fn add_rows(&self, x: &mut CudaBuf, bias: &CudaBuf) {
        let args = [Arg::Ptr(x.ptr), Arg::Ptr(bias.ptr), Arg::I32(bias.n as i32), Arg::I64(x.n as i64)];
        self.run("add_rows_f32", grid1(x.n, 256), (256, 1, 1), &args);
    }
    fn scale(&self, x: &mut CudaBuf, s: f32) {
        self.run("scale_f32", grid1(x.n, 256), (256, 1, 1), &[Arg::Ptr(x.ptr), Arg::F32(s), Arg::I64(x.n as i64)]);
    }
    fn mul(&self, x: &CudaBuf, m: &CudaBuf) -> CudaBuf {
        let out = self.alloc(x.n);
        self.run("mul_f32", grid1(x.n, 256), (256, 1, 1), &[Arg::Ptr(x.ptr), Arg::Ptr(m.ptr), Arg::Ptr(out.ptr), Arg::I64(x.n as i64)]);
        out
    }
    fn softcap(&self, x: &mut CudaBuf, cap: f32) {
        self.run("softcap_f32", grid1(x.n, 256), (256, 1, 1), &[Arg::Ptr(x.ptr), Arg::F32(cap), Arg::I64(x.n as i64)]);
    }
    fn find_not_below(&self, x: &CudaBuf, bound: f32) -> Option<f32> {
        let (first, _g) = self.upload_raw(&[x.n as u64]);
        self.run(
            "find_not_below_f32",
            grid1(x.n, 256),
            (256, 1, 1),
            &[Arg::Ptr(x.ptr), Arg::F32(bound), Arg::Ptr(first), Arg::I64(x.n as i64)],
        );
        let mut i = [0u8; 8];
        self.ok("download", self.gpu.download(&mut i, first));
        let i = u64::from_le_bytes(i) as usize;
        (i < x.n).then(|| {
            let mut v = [0u8; 4];
            self.ok("download", self.gpu.download(&mut v, x.at(i)));
            f32::from_le_bytes(v)
        })
    }

    fn embed(&self, table: &dyn QuantWeight, tokens: &[u32], scale: Option<f32>, out: &mut CudaBuf) {
        let e = table.n_in();
        let mut rows = vec![0f32; tokens.len() * e];
        for (t, &id) in tokens.iter().enumerate() {
            table.decode_rows(id as usize, id as usize + 1, &mut rows[t * e..(t + 1) * e]);
        }
        if let Some(s) = scale {
            rows.iter_mut().for_each(|v| *v *= s);
        }
        self.ok("upload", self.gpu.upload(out.ptr, bytes_of(&rows)));
    }
    fn matmul(&self, w: &dyn QuantWeight, x: &CudaBuf, y: &mut CudaBuf) {
        self.matmul_raw(w, x.ptr, y.ptr, x.n / w.n_in());
    }
    fn rms_norm(&self, x: &CudaBuf, out: &mut CudaBuf, n: usize, eps: f32, w: Option<&CudaBuf>) {
        let args = [Arg::Ptr(x.ptr), Arg::Ptr(out.ptr), Arg::I32(n as i32), Arg::F32(eps), Arg::Ptr(w.map_or(0, |w| w.ptr))];
        self.run("rms_norm_f32", ((x.n / n) as u32, 1, 1), (256, 1, 1), &args);
    }
    fn rope(&self, rope: &Rope, x: &mut CudaBuf, n_heads: usize, head_dim: usize, positions: &[u32]) {
        self.rope_run(rope, x, n_heads, head_dim, positions, false);
    }
    fn glu(&self, act: Act, gate: &mut CudaBuf, up: &CudaBuf) {
        let act = matches!(act, Act::GeGlu) as i32;
        self.run(
            "glu_f32",
            grid1(gate.n, 256),
            (256, 1, 1),
            &[Arg::I32(act), Arg::Ptr(gate.ptr), Arg::Ptr(up.ptr), Arg::I64(gate.n as i64)],
        );
    }
    fn attention_kv(
        &self,
        a: Attn,
        q: &mut CudaBuf,
        k: &mut CudaBuf,
        v: &mut CudaBuf,
        cache: KvLayer<'_, CudaBuf>,
        n_past: usize,
        out: &mut CudaBuf,
    ) {
        let s = a.shape;
        let (kd, vd) = (s.n_head_kv * s.head_dim, s.n_head_kv * s.v_dim);
        self.scale(q, a.scale);
        self.write_at(cache.k, n_past * kd, k);
        self.write_at(cache.v, n_past * vd, v);
        self.attention_fwd(a, q, cache.k.ptr, cache.v.ptr, 0, n_past, out, 0);
    }
    fn attention(&self, a: Attn, q: &CudaBuf, k: &CudaBuf, v: &CudaBuf, segments: Option<&[u32]>, out: &mut CudaBuf, lse: &mut CudaBuf) {
        let qs = self.scaled(q, a.scale);
        let seg = segments.map(|s| self.upload_raw(s));
        self.attention_fwd(a, &qs, k.ptr, v.ptr, seg.as_ref().map_or(0, |s| s.0), 0, out, lse.ptr);
    }
    fn lora_down(&self, p: &LoraPair<CudaBuf>, x: &CudaBuf) -> CudaBuf {
        let t = x.n / p.n_in;
        let u = self.alloc(t * p.r);
        self.gemm(t, p.r, p.n_in, x.ptr, p.n_in, false, p.a.ptr, p.n_in, true, u.ptr, p.r, 1.0, 0.0);
        u
    }
    fn lora_up_add(&self, p: &LoraPair<CudaBuf>, u: &CudaBuf, s: f32, y: &mut CudaBuf) {
        let t = u.n / p.r.max(1);
        self.gemm(t, p.n_out, p.r, u.ptr, p.r, false, p.b.ptr, p.r, true, y.ptr, p.n_out, s, 1.0);
    }
}

impl TrainBackend for CudaBackend {
    fn matmul_backward_input(&self, w: &dyn QuantWeight, dy: &CudaBuf, dx: &mut CudaBuf, accumulate: bool) {
        self.matmul_back_raw(w, dy.ptr, dx.ptr, dy.n / w.n_out(), accumulate);
    }
    fn rms_norm_backward(&self, x: &CudaBuf, w: Option<&CudaBuf>, n: usize, eps: f32, dy: &CudaBuf, dx: &mut CudaBuf) {
        let args =
            [Arg::Ptr(x.ptr), Arg::Ptr(w.map_or(0, |w| w.ptr)), Arg::I32(n as i32), Arg::F32(eps), Arg::Ptr(dy.ptr), Arg::Ptr(dx.ptr)];
        self.run("rms_norm_backward_f32", ((x.n / n) as u32, 1, 1), (256, 1, 1), &args);
    }
    fn rope_backward(&self, rope: &Rope, dx: &mut CudaBuf, n_heads: usize, head_dim: usize, positions: &[u32]) {
        self.rope_run(rope, dx, n_heads, head_dim, positions, true);
    }
    fn glu_backward(&self, act: Act, gate: &CudaBuf, up: &CudaBuf, dh: &CudaBuf, dgate: &mut CudaBuf, dup: &mut CudaBuf) {
        let act = matches!(act, Act::GeGlu) as i32;
        let args = [
            Arg::I32(act),
            Arg::Ptr(gate.ptr),
            Arg::Ptr(up.ptr),
            Arg::Ptr(dh.ptr),
            Arg::Ptr(dgate.ptr),
            Arg::Ptr(dup.ptr),
            Arg::I64(gate.n as i64),
        ];
        self.run("glu_backward_f32", grid1(gate.n, 256), (256, 1, 1), &args);
    }
    fn attention_backward(
        &self,
        a: Attn,
        q: &CudaBuf,
        k: &CudaBuf,
        v: &CudaBuf,
        segments: Option<&[u32]>,
        out: &CudaBuf,
        lse: &CudaBuf,
        dout: &CudaBuf,
        dq: &mut CudaBuf,
        dk: &mut CudaBuf,
        dv: &mut CudaBuf,
    ) {
        let s = a.shape;
        assert!(s.head_dim <= 512 && s.v_dim <= 512, "cuda backend: attention heads wider than 512");
        let qs = self.scaled(q, a.scale);
        let seg = segments.map(|s| self.upload_raw(s));
        self.ok("memset", self.gpu.zero(dk.ptr, 4 * dk.n));
        self.ok("memset", self.gpu.zero(dv.ptr, 4 * dv.n));
        let t = q.n / (s.n_head * s.head_dim);
        let args = [
            Arg::Ptr(qs.ptr),
            Arg::Ptr(k.ptr),
            Arg::Ptr(v.ptr),
            Arg::Ptr(out.ptr),
            Arg::Ptr(lse.ptr),
            Arg::Ptr(dout.ptr),
            Arg::Ptr(dq.ptr),
            Arg::Ptr(dk.ptr),
            Arg::Ptr(dv.ptr),
            Arg::Ptr(seg.as_ref().map_or(0, |s| s.0)),
            Arg::I32(s.n_head as i32),
            Arg::I32(s.n_head_kv as i32),
            Arg::I32(s.head_dim as i32),
            Arg::I32(s.v_dim as i32),
            Arg::I32(s.window.unwrap_or(0) as i32),
            Arg::F32(s.softcap.unwrap_or(0.0)),
        ];
        self.run("attention_bwd_f32", ((t * s.n_head) as u32, 1, 1), (128, 1, 1), &args);
        self.scale(dq, a.scale);
    }
    fn lora_backward(
        &self,
        p: &LoraPair<CudaBuf>,
        x: &CudaBuf,
        u: &CudaBuf,
        dy: &CudaBuf,
        s: f32,
        grad: &mut LoraPair<CudaBuf>,
        dx: Option<&mut CudaBuf>,
    ) {
        let (r, n_in, n_out) = (p.r, p.n_in, p.n_out);
        let t = x.n / n_in;
        let du = self.alloc(t * r);
        // du = s·dy·B; grad.b += s·dyᵀ·u; grad.a += duᵀ·x; dx += du·A.
        self.gemm(t, r, n_out, dy.ptr, n_out, false, p.b.ptr, r, false, du.ptr, r, s, 0.0);
        self.gemm(n_out, r, t, dy.ptr, n_out, true, u.ptr, r, false, grad.b.ptr, r, s, 1.0);
        self.gemm(r, n_in, t, du.ptr, r, true, x.ptr, n_in, false, grad.a.ptr, n_in, 1.0, 1.0);
        if let Some(dx) = dx {
            self.gemm(t, n_in, r, du.ptr, r, false, p.a.ptr, n_in, false, dx.ptr, n_in, 1.0, 1.0);
        }
    }
    fn cross_entropy(
        &self,
        output: &dyn QuantWeight,
        softcap: Option<f32>,
        hidden: &CudaBuf,
        targets: &[i32],
        scale: f32,
        mut dhidden: Option<&mut CudaBuf>,
    ) -> (f64, usize) {
        let (e, nv) = (output.n_in(), output.n_out());
        let t = targets.len();
        assert_eq!(hidden.n, t * e, "cross_entropy: hidden must be [targets, n_embd]");
        if let Some(&bad) = targets.iter().find(|&&x| x >= 0 && x as usize >= nv) {
            panic!("cross_entropy: target {bad} is outside the vocabulary (size {nv})");
        }
        let logits = self.alloc(CHUNK.min(t) * nv);
        let row_loss = self.ok("allocation", self.gpu.alloc(8 * CHUNK));
        let _g = RawGuard { gpu: &self.gpu, ptr: row_loss };
        let (mut loss, mut count) = (0f64, 0usize);
        for r0 in (0..t).step_by(CHUNK) {
            let r1 = (r0 + CHUNK).min(t);
            let tg = &targets[r0..r1];
            if tg.iter().all(|&x| x < 0) {
                if let Some(d) = dhidden.as_deref_mut() {
                    self.ok("memset", self.gpu.zero(d.at(r0 * e), 4 * (r1 - r0) * e));
                }
                continue;
            }
            self.matmul_raw(output, hidden.at(r0 * e), logits.ptr, r1 - r0);
            let (tgt, _tg) = self.upload_raw(tg);
            let grad = dhidden.is_some();
            let args = [
                Arg::Ptr(logits.ptr),
                Arg::Ptr(tgt),
                Arg::I32(nv as i32),
                Arg::F32(softcap.unwrap_or(0.0)),
                Arg::F32(scale),
                Arg::I32(grad as i32),
                Arg::Ptr(row_loss),
            ];
            self.run("cross_entropy_rows_f32", ((r1 - r0) as u32, 1, 1), (256, 1, 1), &args);
            let mut rows = vec![0u8; 8 * (r1 - r0)];
            self.ok("download", self.gpu.download(&mut rows, row_loss));
            loss += rows.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).sum::<f64>();
            count += tg.iter().filter(|&&x| x >= 0).count();
            if let Some(d) = dhidden.as_deref_mut() {
                self.matmul_back_raw(output, logits.ptr, d.at(r0 * e), r1 - r0, false);
            }
        }
        (loss, count)
    }
    fn sum_squares(&self, x: &CudaBuf, acc: f64) -> f64 {
        // On the host, in element order: the CPU backend's sum bit for bit (the gradients are
        // small: LoRA sizes).
        self.download(x).iter().fold(acc, |s, &g| s + (g as f64) * (g as f64))
    }
    fn adamw(
        &self,
        c: AdamWConfig,
        step_size: f32,
        bc2_sqrt: f32,
        decay: f32,
        p: &mut CudaBuf,
        g: &CudaBuf,
        m: &mut CudaBuf,
        v: &mut CudaBuf,
    ) {
        let args = [
            Arg::Ptr(p.ptr),
            Arg::Ptr(g.ptr),
            Arg::Ptr(m.ptr),
            Arg::Ptr(v.ptr),
            Arg::F32(c.beta1),
            Arg::F32(c.beta2),
            Arg::F32(c.eps),
            Arg::F32(step_size),
            Arg::F32(bc2_sqrt),
            Arg::F32(decay),
            Arg::I64(p.n as i64),
        ];
        self.run("adamw_f32", grid1(p.n, 256), (256, 1, 1), &args);
    }
}
