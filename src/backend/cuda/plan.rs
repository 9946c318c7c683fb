//! The GPU memory plan of a training run (`--device cuda --gpu-mem 4G`): pure host arithmetic,
//! printed before the run starts, and a refusal when the run cannot fit.
//!
//! What lives on the GPU: the LoRA parameters, their gradients and both AdamW moments (f32);
//! the per-block checkpoints (each block's input, `[T, n_embd]`, the rest recomputed in the
//! backward); one block's forward intermediates and backward buffers; one loss chunk of logits
//! and its gradient; the CUDA context. The frozen weights stay quantized, as in the file: when
//! all of them fit beside the rest they are resident; otherwise as many blocks as fit are
//! resident and the others are streamed from pinned host memory, one block ahead on a copy
//! stream into two block-sized buffers (double buffering: block `l + 1` is copied while block
//! `l` computes). The output projection, needed by the loss, is resident when it fits and
//! otherwise streamed in pieces of at most one buffer. The token embeddings are gathered on the
//! host (one row per token) and never occupy the GPU.

use std::fmt;

use crate::error::{Error, Result};
use crate::lora::Target;
use crate::model::synth::{q4_k_m_type, SynthSpec};
use crate::model::Model;
use crate::ops::loss::CHUNK;
use crate::quant::GgmlType;
use crate::train::plan::human;

/// CUDA context, kernels, allocator slack: measured budgets of CUDA runtimes start at about
/// 300 MiB per process on recent cards; we reserve that much.
pub const CONTEXT_BYTES: u64 = 320 << 20;

/// A model's shape as far as GPU memory is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VramShape {
    /// Hidden size.
    pub n_embd: u64,
    /// FFN width.
    pub n_ff: u64,
    /// Query heads.
    pub n_head: u64,
    /// KV heads.
    pub n_head_kv: u64,
    /// Key/query head width.
    pub head_dim: u64,
    /// Value head width.
    pub v_dim: u64,
    /// Vocabulary.
    pub n_vocab: u64,
    /// Frozen bytes of each block (its seven projections, norms and biases), as stored.
    pub layer_bytes: Vec<u64>,
    /// Bytes of the output projection (0 when tied to the embeddings: then the embedding
    /// table's bytes, which the loss reads, are counted here by the constructors).
    pub output_bytes: u64,
    /// Trainable LoRA values (A and B of every adapted projection).
    pub lora_params: u64,
}

impl VramShape {
    /// From a loaded model and the LoRA configuration.
    pub fn of_model(model: &Model, targets: &[Target], rank: usize) -> Self {
        let c = &model.cfg;
        let mut layer_bytes = Vec::with_capacity(c.n_layer);
        let mut lora_params = 0u64;
        for il in 0..c.n_layer {
            let mut b = 0u64;
            for t in Target::ALL {
                let w = model.weight(il, t);
                b += w.byte_size() as u64;
                if targets.contains(&t) {
                    lora_params += (rank * (w.n_in() + w.n_out())) as u64;
                }
            }
            // Norm weights and biases (f32): a few vectors of n_embd / projection widths.
            b += 4 * (4 * c.n_embd + c.n_head * c.head_dim + 2 * c.n_head_kv * c.head_dim) as u64;
            layer_bytes.push(b);
        }
        VramShape {
            n_embd: c.n_embd as u64,
            n_ff: c.n_ff as u64,
            n_head: c.n_head as u64,
            n_head_kv: c.n_head_kv as u64,
            head_dim: c.head_dim as u64,
            v_dim: c.v_dim as u64,
            n_vocab: c.n_vocab as u64,
            layer_bytes,
            output_bytes: model.output.byte_size() as u64,
            lora_params,
        }
    }

    /// A synthetic spec's shape with llama.cpp's Q4_K_M type choice per tensor (what
    /// [`crate::model::synth::write_q4_k_m_like`] writes), without writing the file.
    pub fn q4_k_m(spec: &SynthSpec, n_vocab: usize, targets: &[Target], rank: usize) -> Self {
        let (e, ff) = (spec.n_embd, spec.n_ff);
        let (qd, kd) = (spec.n_head * spec.head_dim, spec.n_head_kv * spec.head_dim);
        let bytes = |ty: GgmlType, n: usize| (n / ty.block_size() * ty.type_size()) as u64;
        let dims = |t: Target| match t {
            Target::Q => (e, qd),
            Target::K | Target::V => (e, kd),
            Target::O => (qd, e),
            Target::Gate | Target::Up => (e, ff),
            Target::Down => (ff, e),
        };
        let mut layer_bytes = Vec::with_capacity(spec.n_layer);
        let mut lora_params = 0u64;
        for il in 0..spec.n_layer {
            let mut b = 4 * (4 * e + qd + 2 * kd) as u64;
            for t in Target::ALL {
                let (n_in, n_out) = dims(t);
                b += bytes(q4_k_m_type(&t.tensor_name(il), Some(il), spec.n_layer), n_in * n_out);
                if targets.contains(&t) {
                    lora_params += (rank * (n_in + n_out)) as u64;
                }
            }
            layer_bytes.push(b);
        }
        let out_ty = if spec.untied_output { q4_k_m_type("output.weight", None, spec.n_layer) } else { GgmlType::Q4_K };
        VramShape {
            n_embd: e as u64,
            n_ff: ff as u64,
            n_head: spec.n_head as u64,
            n_head_kv: spec.n_head_kv as u64,
            head_dim: spec.head_dim as u64,
            v_dim: spec.head_dim as u64,
            n_vocab: n_vocab as u64,
            layer_bytes,
            output_bytes: bytes(out_ty, n_vocab * e),
            lora_params,
        }
    }
}

/// Where the frozen weights live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Every block and the output projection stay on the GPU.
    Resident,
    /// Blocks `0..resident` stay on the GPU; the rest are streamed one block ahead through two
    /// buffers of `buffer` bytes; the output projection is resident or streamed in `output_pieces`
    /// pieces through the same buffers.
    Streaming {
        /// Blocks kept on the GPU (the first ones).
        resident: usize,
        /// Bytes of each of the two streaming buffers.
        buffer: u64,
        /// 0 when the output projection is resident, else the pieces it is streamed in.
        output_pieces: u64,
    },
}

/// The GPU memory plan of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VramPlan {
    /// The device budget (`--gpu-mem`, or the card's free memory).
    pub budget: u64,
    /// How the frozen weights are placed.
    pub placement: Placement,
    /// Blocks in the model.
    pub n_layer: usize,
    /// Frozen weight bytes on the GPU (resident blocks and output, plus the two buffers).
    pub weights: u64,
    /// All frozen weight bytes (what a fully resident run would need).
    pub weights_all: u64,
    /// LoRA parameters, gradients and two AdamW moments (f32).
    pub lora: u64,
    /// Per-block checkpoints (block inputs) and the final hidden state.
    pub checkpoints: u64,
    /// One block's recomputed intermediates and backward buffers.
    pub block: u64,
    /// One loss chunk of logits and its gradient.
    pub loss: u64,
    /// CUDA context and slack ([`CONTEXT_BYTES`]).
    pub context: u64,
}

impl VramPlan {
    /// Everything but the frozen weights.
    pub fn fixed(&self) -> u64 {
        self.lora + self.checkpoints + self.block + self.loss + self.context
    }
    /// The planned peak.
    pub fn total(&self) -> u64 {
        self.weights + self.fixed()
    }
}

impl fmt::Display for VramPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.placement {
            Placement::Resident => writeln!(f, "gpu plan: all {} blocks resident ({})", self.n_layer, human(self.weights))?,
            Placement::Streaming { resident, buffer, output_pieces } => {
                writeln!(
                    f,
                    "gpu plan: streaming — {resident} of {} blocks resident, {} streamed from pinned host memory one block ahead \
                     through 2 × {} buffers; output projection {}; weights on the GPU {} of {}",
                    self.n_layer,
                    self.n_layer - resident,
                    human(buffer),
                    if output_pieces == 0 { "resident".to_string() } else { format!("streamed in {output_pieces} pieces") },
                    human(self.weights),
                    human(self.weights_all)
                )?;
            }
        }
        write!(
            f,
            "gpu plan: LoRA + grads + AdamW {}, checkpoints {}, block {}, loss chunk {}, context {}; total {} of {}",
            human(self.lora),
            human(self.checkpoints),
            human(self.block),
            human(self.loss),
            human(self.context),
            human(self.total()),
            human(self.budget)
        )
    }
}

/// Plan a training run of `seq_len`-token sequences in `budget` bytes of GPU memory; an error
/// (with the plan's figures) when even full streaming cannot fit.
pub fn plan_vram(shape: &VramShape, seq_len: usize, budget: u64) -> Result<VramPlan> {
    let s = shape;
    let t = seq_len as u64;
    let f = 4u64;
    let (e, ff) = (s.n_embd, s.n_ff);
    let (qd, kd, vd, ad) = (s.n_head * s.head_dim, s.n_head_kv * s.head_dim, s.n_head_kv * s.v_dim, s.n_head * s.v_dim);
    let n_layer = s.layer_bytes.len();
    // Saved per block: norms' inputs/outputs and residuals (5·e), q/k before and after rope,
    // v, attention output, lse, gate, up, h; backward: 7·e, 3·ff, and one of each attention
    // gradient, plus the matmul-backward temporary.
    let saved = t * (5 * e + 2 * qd + 2 * kd + vd + ad + s.n_head + 3 * ff);
    let backward = t * (7 * e + 3 * ff + ad + qd + kd + vd + ff.max(qd));
    let block = (saved + backward) * f;
    let checkpoints = (n_layer as u64 + 2) * t * e * f;
    let loss = 2 * CHUNK.min(seq_len) as u64 * s.n_vocab * f + 2 * t * e * f;
    let lora = 4 * s.lora_params * f;
    let weights_all: u64 = s.layer_bytes.iter().sum::<u64>() + s.output_bytes;
    let mut plan = VramPlan {
        budget,
        placement: Placement::Resident,
        n_layer,
        weights: weights_all,
        weights_all,
        lora,
        checkpoints,
        block,
        loss,
        context: CONTEXT_BYTES,
    };
    if plan.total() <= budget {
        return Ok(plan);
    }
    // Streaming: two buffers of the largest block; the output projection resident if it fits
    // after them, else streamed in buffer-sized pieces.
    let buffer = s.layer_bytes.iter().copied().max().unwrap_or(0);
    let room = budget.saturating_sub(plan.fixed() + 2 * buffer);
    let (output_resident, output_pieces) =
        if s.output_bytes <= room { (s.output_bytes, 0) } else { (0, s.output_bytes.div_ceil(buffer.max(1))) };
    let mut left = room - output_resident;
    let mut resident = 0;
    for &b in &s.layer_bytes {
        if b > left {
            break;
        }
        left -= b;
        resident += 1;
    }
    let resident = resident.min(n_layer.saturating_sub(1));
    let resident_bytes: u64 = s.layer_bytes[..resident].iter().sum();
    plan.placement = Placement::Streaming { resident, buffer, output_pieces };
    plan.weights = resident_bytes + output_resident + 2 * buffer;
    if plan.total() > budget {
        return Err(Error::Usage(format!(
            "--gpu-mem {}: the run cannot fit even with every block streamed — it needs {} \
             (LoRA + grads + AdamW {}, checkpoints {}, block {}, loss chunk {}, context {}, 2 stream buffers {}); \
             raise --gpu-mem, or lower --seq-len or --rank",
            human(budget),
            human(plan.total()),
            human(plan.lora),
            human(plan.checkpoints),
            human(plan.block),
            human(plan.loss),
            human(plan.context),
            human(2 * buffer)
        )));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qwen2_7b(rank: usize) -> VramShape {
        VramShape::q4_k_m(&SynthSpec::qwen2_7b(), 152064, &Target::ALL, rank)
    }

    #[test]
    fn qwen2_7b_q4_k_m_weights_match_the_file_size() {
        // A real Qwen2-7B-Instruct Q4_K_M GGUF is 4.68 GB (4.36 GiB), embeddings included; the
        // embedding table (Q4_K, 152064 × 3584) is not on the GPU.
        let s = qwen2_7b(16);
        let emb = (152064 * 3584 / 256 * 144) as u64;
        let file = s.layer_bytes.iter().sum::<u64>() + s.output_bytes + emb;
        assert!((4.2e9..4.8e9).contains(&(file as f64)), "{file}");
        // r16 on all seven projections of 28 blocks.
        let per_layer = 16 * ((3584 + 3584) * 2 + (3584 + 512) * 2 + (3584 + 18944) * 3);
        assert_eq!(s.lora_params, 28 * per_layer as u64);
    }

    #[test]
    fn qwen2_7b_at_4_gib_streams_and_fits() {
        let p = plan_vram(&qwen2_7b(16), 512, 4 << 30).unwrap();
        let Placement::Streaming { resident, buffer, output_pieces } = p.placement else { panic!("{p}") };
        assert!(p.total() <= 4 << 30, "{p}");
        assert!(resident > 0 && resident < 28, "{p}");
        // The largest block is a Q6_K-ffn_down block: ~150 MB; the two buffers hold it.
        assert!((120e6..180e6).contains(&(buffer as f64)), "{p}");
        // Every resident block fits, the next one would not.
        let left = p.budget - p.total();
        assert!(left < qwen2_7b(16).layer_bytes[resident], "{p}");
        assert!(p.weights < p.weights_all, "{p}");
        let text = p.to_string();
        assert!(text.contains("streaming") && text.contains(&format!("{resident} of 28 blocks resident")), "{text}");
        eprintln!("{text} (output pieces {output_pieces})");
    }

    #[test]
    fn qwen2_7b_resident_at_16_gib_and_refused_at_1_gib() {
        let p = plan_vram(&qwen2_7b(16), 512, 16 << 30).unwrap();
        assert_eq!(p.placement, Placement::Resident, "{p}");
        assert_eq!(p.weights, p.weights_all);
        let e = plan_vram(&qwen2_7b(16), 512, 1 << 30).unwrap_err().to_string();
        assert!(e.contains("--gpu-mem 1.00 GiB") && e.contains("cannot fit"), "{e}");
        // Longer sequences need more: 4 GiB refuses seq 8192 at r64.
        assert!(plan_vram(&qwen2_7b(64), 8192, 4 << 30).is_err());
    }

    #[test]
    fn more_budget_never_keeps_fewer_blocks() {
        let s = qwen2_7b(16);
        let mut last = 0;
        for gib in [3u64, 4, 5, 6, 8] {
            if let Ok(p) = plan_vram(&s, 512, gib << 30) {
                let r = match p.placement {
                    Placement::Resident => 28,
                    Placement::Streaming { resident, .. } => resident,
                };
                assert!(r >= last, "{gib} GiB: {p}");
                assert!(p.total() <= gib << 30);
                last = r;
            }
        }
        assert!(last > 0);
    }
}
