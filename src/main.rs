//! The `finetune` command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use finetune::gguf::GgufModel;
use finetune::inspect;

#[derive(Parser)]
#[command(name = "finetune", version, about = "Train LoRA adapters directly on quantized GGUF weights")]
struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
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
    /// Prompt-processing and generation speed, optionally beside llama.cpp measured in the same run.
    #[command(after_help = "Examples:\n  \
        finetune bench --model models/SmolLM2-135M-Instruct.Q4_1.gguf --threads 2\n  \
        finetune bench --model models/gemma-3-270m-q4_k_m.gguf --threads 2 \\\n      \
        --llama-cpp ~/.cache/finetune/venv/bin/python   # also time llama.cpp (llama-cpp-python)")]
    Bench {
        /// The GGUF model.
        #[arg(long)]
        model: PathBuf,
        /// Prompt tokens processed in one batch (ppN).
        #[arg(short = 'p', long, default_value_t = 512)]
        n_prompt: usize,
        /// Generated tokens, one at a time (tgN).
        #[arg(short = 'n', long, default_value_t = 128)]
        n_gen: usize,
        /// Repetitions (the median is reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Python with llama-cpp-python installed: measure llama.cpp too and print the ratio.
        #[arg(long)]
        llama_cpp: Option<PathBuf>,
    },
}

fn run(cli: Cli) -> Result<(), String> {
    let threads = cli.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().map_err(|e| e.to_string())?;
    match cli.command {
        Command::Bench { model, n_prompt, n_gen, reps, llama_cpp } => {
            if n_prompt == 0 {
                return Err("--n-prompt must be at least 1".into());
            }
            let g = GgufModel::open(&model).map_err(|e| e.to_string())?;
            let m = finetune::model::Model::load(&g).map_err(|e| e.to_string())?;
            let ours = finetune::bench::measure(&m, n_prompt, n_gen, reps)?;
            println!("model: {} ({} threads, median of {reps})", model.display(), threads);
            println!("| engine | pp{n_prompt} t/s | tg{n_gen} t/s |");
            println!("|---|---|---|");
            println!("| finetune | {:.1} | {:.1} |", ours.pp, ours.tg);
            if let Some(py) = llama_cpp {
                let oracle = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/oracle.py");
                let l = finetune::bench::measure_llama_cpp(&py, &oracle, &model, n_prompt, n_gen, threads, reps)?;
                println!("| llama.cpp | {:.1} | {:.1} |", l.pp, l.tg);
                println!("| ratio | {:.2}× | {:.2}× |", ours.pp / l.pp, ours.tg / l.tg);
            }
            Ok(())
        }
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
