//! Bodies of the CLI subcommands (the clap definitions are in `main.rs`).

pub mod bench;
pub mod chat;
pub mod checks;
pub mod data;
pub mod eval;
pub mod export;
pub mod generate;
pub mod inspect;
pub mod memory;
pub mod merge;
pub mod perplexity;
pub mod serve;
pub mod tokenize;
pub mod train;

use std::path::Path;

use finetune::chat::ChatTemplate;
pub use finetune::model_file::ModelFile;
use finetune::tokenizer::Tokenizer;
use finetune::{Error, Result};

/// Open `--model`: a GGUF file, or a Hugging Face directory (or its `config.json`).
pub fn open(path: &Path) -> Result<ModelFile> {
    ModelFile::open(path)
}

/// The tokenizer of an opened model.
pub fn tokenizer(g: &ModelFile) -> Result<Tokenizer> {
    g.tokenizer()
}

/// Read `--text` or `--file` input.
pub fn text_arg(text: Option<String>, file: Option<&Path>) -> Result<String> {
    match (text, file) {
        (Some(t), None) => Ok(t),
        (None, Some(f)) => read_text(f),
        _ => Err(Error::usage("give exactly one of --text / --prompt or --file")),
    }
}

/// The chat template: `--chat-template FILE` (Jinja, with the model's BOS/EOS texts as
/// `bos_token`/`eos_token`), else the model's own (or the built-in one for its architecture).
pub fn chat_template(g: &ModelFile, tok: &Tokenizer, file: Option<&Path>) -> Result<ChatTemplate> {
    match file {
        Some(f) => {
            let src = read_text(f)?;
            let text = |id: Option<u32>| id.map_or("", |i| tok.token_text(i));
            ChatTemplate::from_source(&src, text(tok.bos()), text(tok.eos())).map_err(|e| Error::format(f, e))
        }
        None => g.chat_template(tok),
    }
}

static FORCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Set the global `--force` (replace existing outputs; an input is never replaced).
pub fn set_force(force: bool) {
    FORCE.store(force, std::sync::atomic::Ordering::Relaxed);
}

/// Whether `--force` was given.
pub fn force() -> bool {
    FORCE.load(std::sync::atomic::Ordering::Relaxed)
}

/// The file of a `PATH[:SCALE]` adapter argument and its scale (1 when absent).
pub fn lora_spec(spec: &str) -> (&Path, f32) {
    match spec.rsplit_once(':') {
        Some((p, s)) if !p.is_empty() && s.parse::<f32>().is_ok() => (Path::new(p), s.parse::<f32>().unwrap_or(1.0)),
        _ => (Path::new(spec), 1.0),
    }
}

/// The files of a model: every shard of a split model, every file of a Hugging Face directory
/// (`(flag, path)` pairs for the output policy, [`finetune::util::outpath`]).
pub fn model_inputs<'a>(flag: &'a str, model: &'a Path) -> Vec<(&'a str, std::path::PathBuf)> {
    if finetune::weights::hf::is_hf_path(model) {
        let dir = if model.is_dir() { model } else { finetune::util::outpath::parent_dir(model) };
        let files = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_file());
        return files.map(|p| (flag, p)).collect();
    }
    let mut v = vec![(flag, model.to_path_buf())];
    if let Some((prefix, 1, n)) = finetune::gguf::split::parse_split_name(model) {
        let dir = finetune::util::outpath::parent_dir(model);
        v.extend((2..=n).map(|k| (flag, finetune::gguf::split::split_path(dir, &prefix, k, n))));
    }
    v
}

static MAX_INPUT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Set the `--max-data-size` limit (before any input is read).
pub fn set_max_input(bytes: u64) {
    let _ = MAX_INPUT.set(bytes);
}

/// The most bytes one input file (data, `--file`, template) may have.
pub fn max_input() -> u64 {
    MAX_INPUT.get().copied().unwrap_or(finetune::util::input::DEFAULT_MAX_INPUT_BYTES)
}

/// An input text file: a regular file of at most [`max_input`] bytes, UTF-8.
pub fn read_text(f: &Path) -> Result<String> {
    finetune::util::input::read_input_string(f, max_input()).map_err(|e| Error::io(f, e))
}

static DEVICE: std::sync::OnceLock<(finetune::backend::cuda::Device, Option<u64>)> = std::sync::OnceLock::new();

/// Set the device chosen with `--device` and the `--gpu-mem` budget (checked already).
pub fn set_device(d: finetune::backend::cuda::Device, gpu_mem: Option<u64>) {
    let _ = DEVICE.set((d, gpu_mem));
}

/// The device and GPU memory budget of this run.
pub fn device() -> (finetune::backend::cuda::Device, Option<u64>) {
    DEVICE.get().copied().unwrap_or_default()
}

/// For a command that has no CUDA path yet: refuse `--device cuda` clearly.
pub fn cpu_only(command: &str) -> Result<()> {
    match device().0 {
        finetune::backend::cuda::Device::Cpu => Ok(()),
        finetune::backend::cuda::Device::Cuda(n) => Err(Error::Usage(format!(
            "--device cuda:{n}: `{command}` runs on the CPU only in this version (the CUDA backend's kernels are \
             checked by tests/gpu/run.sh; training and inference on it from the command line are not wired yet)"
        ))),
    }
}

static NUMERICS: std::sync::OnceLock<finetune::model::Numerics> = std::sync::OnceLock::new();

/// Set the inference numerics chosen with `--numerics` (before any model is loaded).
pub fn set_numerics(n: finetune::model::Numerics) {
    let _ = NUMERICS.set(n);
}

/// The inference numerics: `--numerics`, else [`finetune::model::Numerics::inference_default`].
pub fn numerics() -> finetune::model::Numerics {
    NUMERICS.get().copied().unwrap_or_else(finetune::model::Numerics::inference_default)
}

/// Load the model of `g` with adapters given as `PATH[:SCALE]` (scale 1 by default) applied,
/// as llama.cpp's `--lora` / `--lora-scaled`.
pub fn load_model<'a>(g: &'a ModelFile, loras: &[String]) -> Result<finetune::model::Model<'a>> {
    let mut m = g.load()?;
    m.numerics = numerics();
    for spec in loras {
        let (path, scale) = checks::lora_spec(spec)?;
        let set = finetune::adapter::read_adapter(Path::new(path), &m)?;
        m.adapters.push((set, scale));
    }
    Ok(m)
}

/// `--matmul f32|q8` (use [`resolve_matmul`] where `auto` is allowed).
pub fn parse_matmul(s: &str) -> Result<finetune::backend::cpu::Matmul> {
    finetune::backend::cpu::Matmul::from_name(s).ok_or_else(|| Error::usage(format!("--matmul {s}: use auto, f32 or q8")))
}

/// Block weights from which `--matmul auto` picks `q8`: at 1 B parameters and above the frozen
/// products are ≥ 90 % of a step and q8 doubles its speed (7B-shaped Q4_K_M: 3.4 → 7.6 tok/s);
/// small models keep exact f32 products (their steps are short anyway).
pub const AUTO_Q8_PARAMS: u64 = 1_000_000_000;

/// `--matmul auto|f32|q8` for `model`, with the reason when `auto` chose: `q8` when the
/// transformer blocks' weight matrices hold at least [`AUTO_Q8_PARAMS`] parameters, else `f32`.
pub fn resolve_matmul<T>(s: &str, model: &finetune::model::Model<'_, T>) -> Result<(finetune::backend::cpu::Matmul, Option<String>)> {
    use finetune::backend::cpu::Matmul;
    if !s.trim().eq_ignore_ascii_case("auto") {
        return Ok((parse_matmul(s)?, None));
    }
    let params = block_params(model);
    let m = auto_matmul(params);
    let cmp = if m == Matmul::Q8 { "≥" } else { "<" };
    let why = format!(
        "--matmul auto: {} ({:.2} B block parameters {cmp} {:.0} B{})",
        m.name(),
        params as f64 / 1e9,
        AUTO_Q8_PARAMS as f64 / 1e9,
        if m == Matmul::Q8 { "; --matmul f32 for exact f32 products" } else { "" }
    );
    Ok((m, Some(why)))
}

/// What `--matmul auto` picks for `params` block parameters.
pub fn auto_matmul(params: u64) -> finetune::backend::cpu::Matmul {
    use finetune::backend::cpu::Matmul;
    if params >= AUTO_Q8_PARAMS {
        Matmul::Q8
    } else {
        Matmul::F32
    }
}

/// Parameters in the transformer blocks' seven weight matrices (q, k, v, o, gate, up, down).
pub fn block_params<T>(model: &finetune::model::Model<'_, T>) -> u64 {
    (0..model.cfg.n_layer)
        .flat_map(|il| finetune::lora::Target::ALL.map(|t| model.weight(il, t)))
        .map(|w| (w.n_in() * w.n_out()) as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use finetune::backend::cpu::Matmul;

    #[test]
    fn auto_matmul_switches_to_q8_at_one_billion_block_parameters() {
        // SmolLM2-135M's blocks (≈ 0.1 B) and Gemma-3-270M's stay f32; Qwen2-7B's (6.5 B) take q8.
        assert_eq!(super::auto_matmul(106_000_000), Matmul::F32);
        assert_eq!(super::auto_matmul(super::AUTO_Q8_PARAMS - 1), Matmul::F32);
        assert_eq!(super::auto_matmul(super::AUTO_Q8_PARAMS), Matmul::Q8);
        assert_eq!(super::auto_matmul(6_530_000_000), Matmul::Q8);
        assert!(super::parse_matmul("auto").is_err(), "auto is resolved per model, never parsed as a mode");
    }
}
