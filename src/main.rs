//! The `finetune` command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use finetune::gguf::GgufModel;
use finetune::inspect;

#[derive(Parser)]
#[command(name = "finetune", version, about = "Train LoRA adapters directly on quantized GGUF weights")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Summarize a GGUF model: architecture, parameters, tensor types, hyper-parameters, tokenizer.
    #[command(after_help = "Examples:\n  \
        finetune inspect models/SmolLM2-135M-Instruct.Q4_1.gguf\n  \
        finetune inspect models/gemma-3-270m-q4_k_m.gguf --json\n  \
        finetune inspect models/SmolLM2-135M-Instruct.Q4_1.gguf --tensor blk.0.attn_q.weight --out q.npy")]
    Inspect {
        /// The GGUF file (for split models, the first shard `*-00001-of-0000N.gguf`).
        model: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// List every tensor (name, type, shape, offset).
        #[arg(long)]
        tensors: bool,
        /// Dequantize this tensor to float32 and write it with --out.
        #[arg(long, requires = "out")]
        tensor: Option<String>,
        /// Output .npy path for --tensor (shape in PyTorch order [ne1, ne0]).
        #[arg(long, requires = "tensor")]
        out: Option<PathBuf>,
    },
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Inspect { model, json, tensors, tensor, out } => {
            let m = GgufModel::open(&model).map_err(|e| e.to_string())?;
            if let (Some(name), Some(out)) = (tensor, out) {
                inspect::export_tensor_npy(&m, &name, &out)?;
                let info = m.require(&name).map_err(|e| e.to_string())?.info;
                eprintln!("wrote {} ({} {:?} -> f32 {:?})", out.display(), info.ty, info.dims, info.torch_shape());
                return Ok(());
            }
            let s = inspect::summarize(&model, &m);
            if json {
                let mut j = s.to_json();
                if tensors {
                    j["tensors"] = m
                        .tensor_infos()
                        .map(|t| serde_json::json!({"name": t.name, "type": t.ty.name(), "ne": t.dims, "offset": t.offset}))
                        .collect();
                }
                println!("{}", serde_json::to_string_pretty(&j).expect("json"));
            } else {
                print!("{}", s.to_text());
                if tensors {
                    println!("tensors:");
                    for t in m.tensor_infos() {
                        println!("  {:<40} {:<7} {:?} @ {}", t.name, t.ty.name(), t.dims, t.offset);
                    }
                }
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
