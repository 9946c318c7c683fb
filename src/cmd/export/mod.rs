//! `finetune export` (adapter → PEFT directory, Ollama Modelfile, merged model in LM Studio's
//! layout, several adapters → one) and `finetune import` (PEFT directory → GGUF adapter).
//!
//! One file per destination: [`peft`] (both directions), [`ollama`], [`lmstudio`], [`combine`].

pub mod combine;
pub mod lmstudio;
pub mod ollama;
pub mod peft;

use std::path::PathBuf;

use finetune::Result;

/// Options of `finetune export`; exactly one of `--peft`, `--ollama`, `--lmstudio`, `--merge-adapters`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("dest").required(true).args(["peft", "ollama", "lmstudio", "merge_adapters"])))]
pub struct ExportArgs {
    /// Write a PEFT adapter directory (adapter_model.safetensors + adapter_config.json).
    #[arg(long, value_name = "DIR", requires_all = ["model", "lora"])]
    pub peft: Option<PathBuf>,
    /// Write Ollama Modelfiles into DIR: `Modelfile` (FROM the base + ADAPTER; Ollama < 0.34.1) and,
    /// with --merge, for architectures older Ollama ran without adapters (gemma3, qwen3, …) or as
    /// --ollama-version asks, `Modelfile.merged` FROM the merged model DIR/<name>.gguf (any version).
    #[arg(long, value_name = "DIR", requires_all = ["model", "lora"])]
    pub ollama: Option<PathBuf>,
    /// With --ollama: also merge the adapter and write `Modelfile.merged` (works with every Ollama).
    #[arg(long, requires = "ollama")]
    pub merge: bool,
    /// With --ollama: the Ollama version to write for (e.g. 0.34.1; from 0.34.1 on only the merged
    /// Modelfile, since `ollama create` rejects ADAPTER).
    #[arg(long, value_name = "X.Y.Z", requires = "ollama")]
    pub ollama_version: Option<String>,
    /// Merge the adapter into the model (`merge --type auto`) and write it in LM Studio's layout:
    /// DIR/<publisher>/<name>/<name>.gguf, DIR defaulting to ~/.lmstudio/models.
    #[arg(long, value_name = "DIR", num_args = 0..=1, requires_all = ["model", "lora"])]
    pub lmstudio: Option<Option<PathBuf>>,
    /// Model name (with --lmstudio): folder, file stem and `general.name` (default: the adapter's file stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Publisher folder (with --lmstudio).
    #[arg(long, default_value = "finetune")]
    pub publisher: String,
    /// Combine these adapters (`A.gguf` or `A.gguf:SCALE`) into one file (--out), ranks concatenated.
    #[arg(long, value_name = "A.gguf[:SCALE]", num_args = 1.., requires = "out")]
    pub merge_adapters: Vec<String>,
    /// The base model: a GGUF file or a Hugging Face directory (--peft; --ollama/--lmstudio need a GGUF).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The GGUF LoRA adapter to export.
    #[arg(long, value_name = "A.gguf")]
    pub lora: Option<PathBuf>,
    /// Output file (with --merge-adapters).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// System message for the Modelfile's SYSTEM line (with --ollama).
    #[arg(long)]
    pub system: Option<String>,
    /// `base_model_name_or_path` written to adapter_config.json (with --peft; default: the base's
    /// `general.name` / file name).
    #[arg(long)]
    pub base_name: Option<String>,
    /// Storage type of the combined adapter (with --merge-adapters): F32, F16, BF16, Q8_0.
    #[arg(long, default_value = "F32")]
    pub adapter_type: String,
}

/// Options of `finetune import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The PEFT adapter directory (adapter_config.json + adapter_model.safetensors).
    #[arg(long, value_name = "DIR")]
    pub peft: PathBuf,
    /// The base model the adapter was trained on (GGUF or Hugging Face directory).
    #[arg(long)]
    pub model: PathBuf,
    /// Output GGUF adapter.
    #[arg(long)]
    pub out: PathBuf,
    /// Storage type of the written adapter: F32, F16, BF16, Q8_0.
    #[arg(long, default_value = "F32")]
    pub adapter_type: String,
}

/// Run `finetune export`.
pub fn run(a: ExportArgs) -> Result<()> {
    if let Some(dir) = a.peft.clone() {
        return peft::export(&a, &dir);
    }
    if let Some(dir) = a.ollama.clone() {
        return ollama::export(&a, &dir);
    }
    if let Some(dir) = a.lmstudio.clone() {
        return lmstudio::export(&a, dir);
    }
    combine::run(&a)
}

/// Run `finetune import`.
pub fn run_import(a: ImportArgs) -> Result<()> {
    peft::import(&a)
}
