//! The `finetune` command-line tool.

mod cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use finetune::generate::SamplerConfig;
use finetune::{Error, Result};

#[derive(Parser)]
#[command(
    name = "finetune",
    version,
    about = "Train LoRA adapters directly on quantized GGUF weights",
    after_help = "Training (the top-level command):\n  \
        finetune --model models/SmolLM2-135M-Instruct.Q4_1.gguf --data examples/style_degozaru.jsonl \\\n      \
        --steps 30 --grad-accum 4 --lr 1e-3 --out samurai.gguf\n  \
        finetune --model models/SmolLM2-135M-Instruct.Q4_1.gguf --data examples/style_degozaru.jsonl \\\n      \
        --steps 30 --matmul q8 --out samurai-q8.gguf   # 8-bit integer matmuls (auto picks them from 1 B params)\n  \
        finetune --model models/SmolLM2-135M-Instruct.Q4_1.gguf --data examples/style_degozaru.jsonl --steps 30 \\\n      \
        --eval-data examples/style_degozaru_eval.jsonl --eval-limit 10 --eval-metric 'ends-with:says the samurai' \\\n      \
        --eval-every 10 --keep-best --early-stop 2 --out samurai.gguf\n  \
        finetune --model models/SmolLM2-135M-Instruct.Q4_1.gguf --data examples/style_degozaru.jsonl \\\n      \
        --device cuda --gpu-mem 4G   # prints the GPU memory plan, then needs --features cuda and a GPU\n  \
        finetune generate --model models/SmolLM2-135M-Instruct.Q4_1.gguf --lora samurai.gguf --chat --prompt 'Why is the sky blue?'\n  \
        finetune --model ~/.cache/finetune/hf/smollm2-135m/bf16 --data examples/style_degozaru.jsonl --steps 30 --out samurai-hf.gguf\n\n\
        --model takes a GGUF file or a Hugging Face directory (config.json, model*.safetensors, tokenizer.json; dense\n\
        F32/F16/BF16 weights; llama, qwen2, qwen3, gemma3).\n\n\
        Outputs: no command writes over one of its inputs (symlinks and hard links included); an existing output is\n\
        replaced only with --force (--resume continues its --log and checkpoints and replaces the stopped run's partial\n\
        adapter). Ctrl-C, SIGTERM or SIGHUP: the step finishes, a checkpoint and a partial adapter are written, exit\n\
        130/143/129 (a second signal quits at once); continue with --resume OUT.gguf.ckpt."
)]
struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Inference numerics for generate/chat/serve/perplexity/bench: `ggml` (llama.cpp's: Q8-quantized
    /// activations with integer dot products, f16 K/V) or `f32` (float activations; training
    /// uses f32, with `--matmul q8` 8-bit integer products only). Default: ggml, or the FINETUNE_NUMERICS environment variable.
    #[arg(long, global = true, value_name = "ggml|f32")]
    numerics: Option<String>,
    /// Where to compute: `cpu` (default) or `cuda[:N]` (needs a build with `--features cuda`).
    #[arg(long, global = true, value_name = "cpu|cuda[:N]")]
    device: Option<String>,
    /// GPU memory budget with `--device cuda` (e.g. 4G; default: the card's free memory). The
    /// GPU plan (weights resident or streamed per block, LoRA/Adam state, checkpoints) is
    /// printed before training, and a run that cannot fit is refused.
    #[arg(long, global = true, value_name = "BYTES")]
    gpu_mem: Option<String>,
    /// Replace existing output files (adapter, log, model, Modelfile, PEFT files). Without it a
    /// command refuses an output that exists; an output that is one of the inputs is refused
    /// even with it.
    #[arg(long, global = true)]
    force: bool,
    /// Largest input file read whole (--data, --val-data, --file, --chat-template), e.g. 2G;
    /// larger files, directories, FIFOs and devices are refused before reading.
    #[arg(long, global = true, default_value = "1G")]
    max_data_size: String,
    #[command(flatten)]
    train: cmd::train::TrainArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Summarize a model (GGUF or Hugging Face directory): architecture, parameters, tensor types, hyper-parameters, tokenizer.
    #[command(after_help = "Examples:\n  \
        finetune inspect models/SmolLM2-135M-Instruct.Q4_1.gguf\n  \
        finetune inspect models/gemma-3-270m-q4_k_m.gguf --json\n  \
        finetune inspect models/SmolLM2-135M-Instruct.Q4_1.gguf --tensor blk.0.attn_q.weight --out q.npy\n  \
        finetune inspect ~/.cache/finetune/hf/smollm2-135m/sharded --tensors")]
    Inspect {
        /// The GGUF file (for split models, the first shard `*-00001-of-0000N.gguf`), or a Hugging
        /// Face model directory (or its config.json).
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
    /// Print the token ids of a text, as llama.cpp's tokenizer gives them.
    #[command(after_help = "Examples:\n  \
        finetune tokenize --model models/SmolLM2-135M-Instruct.Q4_1.gguf --text 'Hello world'\n  \
        finetune tokenize --model models/gemma-3-270m-q4_k_m.gguf --file notes.txt --json")]
    Tokenize {
        /// The model whose tokenizer to use (GGUF, or a Hugging Face directory).
        #[arg(long)]
        model: PathBuf,
        /// Text to tokenize.
        #[arg(long, conflicts_with = "file")]
        text: Option<String>,
        /// File to tokenize.
        #[arg(long)]
        file: Option<PathBuf>,
        /// JSON with ids and pieces.
        #[arg(long)]
        json: bool,
        /// Do not add BOS/EOS even if the model asks for them.
        #[arg(long)]
        no_special: bool,
        /// Recognise special-token text such as `<|im_start|>` in the input.
        #[arg(long)]
        parse_special: bool,
    },
    /// Continue a prompt (or, with --chat, answer it), streaming tokens; ends with a tokens/s line.
    #[command(after_help = "Examples:\n  \
        finetune generate --model models/SmolLM2-135M-Instruct.Q4_1.gguf --prompt 'The capital of France is' -n 16\n  \
        finetune generate --model models/gemma-3-270m-q4_k_m.gguf --prompt 'Once upon a time' --temp 0.8 --top-k 40 --top-p 0.95 --seed 1\n  \
        finetune generate --model models/SmolLM2-135M-Instruct.Q4_1.gguf --chat --prompt 'What is the capital of France?' -n 32\n  \
        finetune generate --model models/gemma-3-270m-q4_k_m.gguf --chat --system 'Answer in one word.' --prompt 'Largest planet?'\n  \
        finetune generate --model models/SmolLM2-135M-Instruct.Q4_1.gguf --chat --chat-template my_template.jinja --prompt 'Hi'")]
    Generate {
        /// The model: a GGUF file or a Hugging Face directory.
        #[arg(long)]
        model: PathBuf,
        /// Prompt text (special tokens like <|im_start|> are recognised).
        #[arg(long, conflicts_with = "file")]
        prompt: Option<String>,
        /// Read the prompt from a file.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Tokens to generate at most.
        #[arg(short = 'n', long, default_value_t = 128)]
        n_predict: usize,
        /// Temperature (0 = greedy).
        #[arg(long, default_value_t = 0.0)]
        temp: f32,
        /// Top-k (0 = off).
        #[arg(long, default_value_t = 40)]
        top_k: usize,
        /// Top-p (1 = off).
        #[arg(long, default_value_t = 0.95)]
        top_p: f32,
        /// RNG seed for sampling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Context size (prompt + generated tokens).
        #[arg(long, default_value_t = 2048)]
        ctx: usize,
        /// Apply the model's chat template: the prompt becomes a user message followed by the
        /// opening of the assistant's turn; generation stops at the end of the turn.
        #[arg(long)]
        chat: bool,
        /// System message (with --chat).
        #[arg(long, requires = "chat")]
        system: Option<String>,
        /// Jinja chat template file to use instead of the model's (with --chat).
        #[arg(long, requires = "chat")]
        chat_template: Option<PathBuf>,
        /// LoRA adapter to apply, `A.gguf` or `A.gguf:SCALE` (repeatable; adapters stack).
        #[arg(long, value_name = "A.gguf[:SCALE]")]
        lora: Vec<String>,
    },
    /// Talk with a model: each line on stdin is a user turn, the answer is streamed to stdout.
    #[command(after_help = "Each turn renders the whole conversation with the chat template and evaluates only the\n\
        tokens after the longest prefix already in the KV cache. Lines `/reset` (forget the\n\
        conversation) and `/exit` (or end of input) are commands; empty lines are ignored.\n\n\
        Examples:\n  \
        finetune chat --model models/SmolLM2-135M-Instruct.Q4_1.gguf\n  \
        finetune chat --model models/gemma-3-270m-q4_k_m.gguf --system 'You are a pirate.' --temp 0.7 --seed 3\n  \
        printf 'Hi!\\nWhat is 2+2?\\n' | finetune chat --model models/SmolLM2-135M-Instruct.Q4_1.gguf -n 64")]
    Chat {
        /// The model: a GGUF file or a Hugging Face directory.
        #[arg(long)]
        model: PathBuf,
        /// System message at the start of the conversation (kept by /reset).
        #[arg(long)]
        system: Option<String>,
        /// Jinja chat template file to use instead of the model's.
        #[arg(long)]
        chat_template: Option<PathBuf>,
        /// Tokens to generate at most per answer.
        #[arg(short = 'n', long, default_value_t = 512)]
        n_predict: usize,
        /// Temperature (0 = greedy).
        #[arg(long, default_value_t = 0.0)]
        temp: f32,
        /// Top-k (0 = off).
        #[arg(long, default_value_t = 40)]
        top_k: usize,
        /// Top-p (1 = off).
        #[arg(long, default_value_t = 0.95)]
        top_p: f32,
        /// RNG seed for sampling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Context size (the whole conversation).
        #[arg(long, default_value_t = 4096)]
        ctx: usize,
        /// LoRA adapter to apply, `A.gguf` or `A.gguf:SCALE` (repeatable; adapters stack).
        #[arg(long, value_name = "A.gguf[:SCALE]")]
        lora: Vec<String>,
    },
    /// Perplexity of a text file, computed like llama.cpp's perplexity tool.
    #[command(after_help = "Method (as llama.cpp's `perplexity`): the text is tokenized (with BOS when the model\n\
        adds one) and cut into non-overlapping chunks of --ctx tokens; each chunk's first token is\n\
        replaced by BOS when the model adds BOS; each chunk is evaluated from an empty cache and only\n\
        its second half is scored (positions ctx/2 .. ctx-2 predicting the next token).\n\
        PPL = exp(mean negative log-likelihood).\n\n\
        Example:\n  finetune perplexity --model models/SmolLM2-135M-Instruct.Q4_1.gguf --file tests/data/ppl_text.txt --ctx 256")]
    Perplexity {
        /// The model: a GGUF file or a Hugging Face directory.
        #[arg(long)]
        model: PathBuf,
        /// Text file.
        #[arg(long)]
        file: PathBuf,
        /// Chunk size in tokens.
        #[arg(long, default_value_t = 512)]
        ctx: usize,
        /// LoRA adapter to apply, `A.gguf` or `A.gguf:SCALE` (repeatable; adapters stack).
        #[arg(long, value_name = "A.gguf[:SCALE]")]
        lora: Vec<String>,
    },
    /// Serve a model over an OpenAI-compatible HTTP API, with adapters chosen per request.
    #[command(after_help = "Endpoints: POST /v1/chat/completions (\"stream\": true for server-sent events), POST /v1/completions,\n\
        GET /v1/models (the base and BASE+NAME per adapter), GET /health. A request picks its adapters with\n\
        \"model\": \"BASE+NAME\" (\"BASE+A+B\" stacks them) or llama-server's \"lora\": [{\"id\": N | \"name\": \"NAME\", \"scale\": S}].\n\
        Adapters are loaded once; one request runs at a time with its own adapters, others wait in the queue\n\
        (--queue; beyond it HTTP 503). Sampling: temperature (0 = greedy), top_p, top_k, max_tokens, seed, stop.\n\
        SIGTERM/Ctrl-C: requests already accepted finish, new ones are refused, then it exits.\n\n\
        Example:\n  \
        finetune serve --model models/SmolLM2-135M-Instruct.Q4_1.gguf --lora samurai=samurai.gguf --lora yaml=yaml.gguf:0.8\n  \
        curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\\n      \
        -d '{\"model\": \"SmolLM2-135M-Instruct.Q4_1+samurai\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": 0}'")]
    Serve(cmd::serve::ServeArgs),
    /// Fold LoRA adapters into the model's weights and write one GGUF (for LM Studio and other tools
    /// that take only a model file).
    #[command(after_help = "Each adapted weight becomes W + scale·(alpha/r)·B·A. With --type auto (the default) it is stored in\n\
        the smallest type that keeps at least 99% of its update: its own type where that holds, else Q8_0, else F16\n\
        (a small update vanishes when requantized into 4- or 5-bit blocks). --type same keeps every type; --type X\n\
        forces X. Other tensors and all metadata are copied; one tensor is in memory at a time. The report says\n\
        which weights changed type, how much of the update the file carries, and the size cost.\n\n\
        Example:\n  finetune merge --model models/SmolLM2-135M-Instruct.Q4_1.gguf --lora samurai.gguf --out samurai-merged.gguf\n  \
        # SmolLM2 Q4_1, rank-8 adapter: \"210 Q4_1→Q8_0\", 100.0% of the update kept, tensors 96.6 → 143.0 MB (+48.1%);\n  \
        # with --type same the file keeps 96.6 MB but carries 6.7% of the update")]
    Merge {
        /// The base model: a GGUF file or a Hugging Face directory (merging needs a GGUF).
        #[arg(long)]
        model: PathBuf,
        /// Adapter `A.gguf` or `A.gguf:SCALE` (repeatable).
        #[arg(long, required = true, value_name = "A.gguf[:SCALE]")]
        lora: Vec<String>,
        /// Output model file.
        #[arg(long)]
        out: PathBuf,
        /// Type of merged weights: auto (keeps ≥ 99% of each update), same (each keeps its type), F16, BF16, F32, Q8_0,
        /// Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K.
        #[arg(long = "type", default_value = "auto")]
        ty: String,
    },
    /// Convert an adapter: to a PEFT directory, to an Ollama Modelfile, merged into a model for LM Studio, or combine
    /// several adapters into one.
    #[command(after_help = "Examples:\n  \
        finetune export --peft samurai-peft --model models/SmolLM2-135M-Instruct.Q4_1.gguf --lora samurai.gguf\n  \
        finetune export --ollama samurai-ollama --model models/SmolLM2-135M-Instruct.Q4_1.gguf --lora samurai.gguf\n    \
        (Modelfile with ADAPTER: Ollama < 0.34.1; add --merge for Modelfile.merged + samurai.gguf: any version)\n  \
        finetune export --lmstudio --model models/SmolLM2-135M-Instruct.Q4_1.gguf --lora samurai.gguf\n    \
        (merged, into ~/.lmstudio/models/finetune/samurai/samurai.gguf)\n  \
        finetune export --merge-adapters samurai.gguf yaml.gguf:0.5 --out both.gguf")]
    Export(cmd::export::ExportArgs),
    /// Convert a PEFT adapter directory (Hugging Face) into a GGUF LoRA adapter for this model.
    #[command(after_help = "Example:\n  \
        finetune import --peft samurai-peft --model models/SmolLM2-135M-Instruct.Q4_1.gguf --out samurai.gguf")]
    Import(cmd::export::ImportArgs),
    /// Score a model (and adapters) on held-out records with task metrics: generation with the chat
    /// template, per-record scores, a summary table.
    #[command(after_help = EVAL_HELP)]
    Eval(cmd::eval::EvalArgs),
    /// Dataset tools: `data stats` sizes a dataset against --seq-len before a run.
    #[command(subcommand)]
    Data(DataCommand),
    /// Prompt-processing and generation speed, optionally beside llama.cpp measured in the same run.
    #[command(after_help = "Examples:\n  \
        finetune bench --model models/SmolLM2-135M-Instruct.Q4_1.gguf --threads 2\n  \
        finetune bench --model models/gemma-3-270m-q4_k_m.gguf --threads 2 \\\n      \
        --llama-cpp ~/.cache/finetune/venv/bin/python   # also time llama.cpp (llama-cpp-python)\n  \
        finetune bench --train --model models/SmolLM2-135M-Instruct.Q4_1.gguf --threads 2 \\\n      \
        --peft-python ~/.cache/finetune/venv/bin/python   # training step vs PyTorch+PEFT\n  \
        finetune bench --train --matmul q8 --model models/SmolLM2-135M-Instruct.Q4_1.gguf --threads 2   # 8-bit integer matmuls\n  \
        finetune bench --train --isa avx2 --matmul q8 --model models/SmolLM2-135M-Instruct.Q4_1.gguf --threads 2 \\\n      \
        --peft-python ~/.cache/finetune/venv/bin/python   # both sides capped at AVX2, as on an AVX2-only CPU")]
    Bench {
        /// The model: a GGUF file or a Hugging Face directory.
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
        /// Time LoRA training steps instead (--n-prompt tokens per step, r16 on all seven
        /// projections, forward + backward + AdamW; --reps timed steps after a warm-up).
        #[arg(long)]
        train: bool,
        /// With --train: python with torch/transformers/peft; runs benches/peft_anchor.py on the
        /// same file and thread count and prints the ratios.
        #[arg(long)]
        peft_python: Option<PathBuf>,
        /// With --train: memory for kept block intermediates (as the trainer's --keep-activations).
        #[arg(long, default_value = "192M")]
        keep_activations: String,
        /// With --train: the frozen-weight products, `f32` or `q8` (Q8 activations with integer
        /// dots, as llama.cpp's forward; LoRA gradient 7.4% rel. L2 from f32's on SmolLM2; as the
        /// trainer's --matmul; `auto`: q8 from 1 B block parameters).
        #[arg(long, value_name = "auto|f32|q8", default_value = "auto")]
        matmul: String,
        /// With --train: `avx2` caps both sides at AVX2 as on an AVX2-only CPU (here:
        /// FINETUNE_SIMD=avx2; PyTorch: ATEN_CPU_CAPABILITY=avx2, DNNL_MAX_CPU_ISA=AVX2,
        /// MKL_ENABLE_INSTRUCTIONS=AVX2, checked in the child); `native` uses what the CPU has.
        #[arg(long, value_name = "native|avx2", default_value = "native")]
        isa: String,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Record count, token lengths as a histogram against --seq-len, how many would be truncated,
    /// the response share of the tokens (with the model's tokenizer and chat template, as training).
    #[command(after_help = "Examples:\n  \
        finetune data stats --model models/SmolLM2-135M-Instruct.Q4_1.gguf --data examples/style_degozaru.jsonl --seq-len 64\n  \
        finetune data stats --model models/gemma-3-270m-q4_k_m.gguf --data examples/arabic_train.jsonl --normalize arabic --json")]
    Stats(cmd::data::StatsArgs),
}

const EVAL_HELP: &str = "Each record's conversation up to its last message is the prompt (rendered with the chat template,
greedy decoding unless --temp); the last assistant message is the reference. Records without one
(raw {\"text\"}, a chat ending with a user turn, an empty answer) are errors naming file:line.

Metrics (--metric, repeatable; texts after ':' are normalised like the data):
  exact               output == reference, both trimmed
  contains[:TEXT]     output contains TEXT (without TEXT: the trimmed reference)
  ends-with:A|B       output ends with A or B, ignoring trailing whitespace and final punctuation
                      . ! ? , ; : … 。 ！ ？ 、 ． ， ； ： ‥ ؟ ، ؛ ۔ and closing quotes/brackets \" ' ” ’ ) ） 」 』
  regex:RE            RE (fancy-regex syntax) matches somewhere in the output; anchor with ^…$
  json yaml toml xml csv
                      validity (the output parses) and accuracy (equal to the reference after
                      parsing). Payload: the first ``` fenced block when there is one, else the whole
                      text. Numbers by value (1 = 1.0 = 1e0; \"1\" ≠ 1); map keys in any order, lists in
                      order; YAML anchors/aliases resolved and << merges applied; XML: namespace URI +
                      local name, attributes in any order, children in order, text trimmed,
                      whitespace-only text, comments and PIs ignored; CSV: rows and fields in order
                      (the header is a row), quoting ignored (\"a\" = a), rows must have equal lengths.
                      A reference that does not parse is an error naming the record.
  choice              the reference is one label of --choices a,b,c (default: the set of references);
                      the prediction is the longest label the output starts with (case-insensitive,
                      followed by a non-letter), else the one label found as a whole word, else none
  nll                 teacher-forced mean NLL per response token and perplexity of the references
                      (no generation): training's loss path, so it equals training's val loss for the
                      same records, --seq-len and adapter

--normalize (as at training) applies to prompts, references and the generated outputs.
--compare evaluates the base, each adapter alone and (with several) the stack, side by side.
--out writes one JSON line per record and configuration: prompt, messages, reference, output,
output_tokens, scores. The table ends with the generation speed (tokens/s, after each prompt).

Examples:
  finetune eval --model models/SmolLM2-135M-Instruct.Q4_1.gguf --lora samurai.gguf --compare \\
      --data examples/style_degozaru_eval.jsonl --metric 'ends-with:, says the samurai.' --metric nll -n 64
  finetune eval --model models/SmolLM2-135M-Instruct.Q4_1.gguf --data examples/convert_test_json_to_yaml.jsonl \\
      --metric yaml -n 160 --out results.jsonl --json
  finetune eval --model models/gemma-3-270m-q4_k_m.gguf --data examples/gozaru_ja_eval.json \\
      --metric 'ends-with:でござる|でござるよ|でござるな' -n 48
  finetune eval --model models/gemma-3-270m-q4_k_m.gguf --normalize arabic --data examples/arabic_test_topic.jsonl \\
      --metric choice --choices رياضة,سياسة,اقتصاد,صحة -n 8";

fn run(cli: Cli) -> Result<()> {
    let threads = cmd::checks::threads(cli.threads)?;
    cmd::set_max_input(finetune::train::plan::parse_bytes(&cli.max_data_size)?);
    if let Some(n) = &cli.numerics {
        let n = finetune::model::Numerics::from_name(n).ok_or_else(|| Error::usage(format!("--numerics {n}: use ggml or f32")))?;
        cmd::set_numerics(n);
    }
    let gpu_mem = cli.gpu_mem.as_deref().map(finetune::train::plan::parse_bytes).transpose()?;
    let device = cli.device.as_deref().map(finetune::backend::cuda::Device::parse).transpose()?.unwrap_or_default();
    if gpu_mem.is_some() && device == finetune::backend::cuda::Device::Cpu {
        return Err(Error::usage("--gpu-mem needs --device cuda[:N]"));
    }
    // Training with --gpu-mem prints its GPU plan first and checks the device after it.
    if !(cli.command.is_none() && gpu_mem.is_some()) {
        device.check()?;
    }
    cmd::set_device(device, gpu_mem);
    cmd::set_force(cli.force);
    finetune::util::signals::catch_file_size_limit().map_err(|e| Error::Msg(format!("installing a signal handler: {e}")))?;
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().map_err(|e| Error::Msg(e.to_string()))?;
    let Some(command) = cli.command else {
        return cmd::train::run(cli.train);
    };
    if cmd::device().0 != finetune::backend::cuda::Device::Cpu {
        use clap::CommandFactory;
        let name = Cli::command().get_subcommands().map(|c| c.get_name().to_string()).find(|n| std::env::args().any(|a| &a == n));
        cmd::cpu_only(name.as_deref().unwrap_or("this command"))?;
    }
    match command {
        Command::Inspect { model, json, tensors, tensor, out } => cmd::inspect::run(model, json, tensors, tensor, out),
        Command::Tokenize { model, text, file, json, no_special, parse_special } => {
            cmd::tokenize::run(model, text, file, json, no_special, parse_special)
        }
        Command::Generate { model, prompt, file, n_predict, temp, top_k, top_p, seed, ctx, chat, system, chat_template, lora } => {
            cmd::generate::run(cmd::generate::GenerateArgs {
                model,
                prompt,
                file,
                n: n_predict,
                sampler: SamplerConfig { temp, top_k, top_p, seed },
                ctx,
                chat,
                system,
                chat_template,
                lora,
            })
        }
        Command::Chat { model, system, chat_template, n_predict, temp, top_k, top_p, seed, ctx, lora } => {
            cmd::chat::run(cmd::chat::ChatArgs {
                model,
                system,
                chat_template,
                n: n_predict,
                sampler: SamplerConfig { temp, top_k, top_p, seed },
                ctx,
                lora,
            })
        }
        Command::Perplexity { model, file, ctx, lora } => cmd::perplexity::run(model, file, ctx, lora),
        Command::Merge { model, lora, out, ty } => cmd::merge::run(model, lora, out, ty),
        Command::Export(a) => cmd::export::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Import(a) => cmd::export::run_import(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Data(DataCommand::Stats(a)) => cmd::data::stats(a),
        Command::Bench { model, n_prompt, n_gen, reps, llama_cpp, train, peft_python, keep_activations, matmul, isa } => {
            if train {
                let keep = if keep_activations.trim() == "0" { 0 } else { finetune::train::plan::parse_bytes(&keep_activations)? };
                cmd::bench::run_train(model, n_prompt, reps, keep, &matmul, &isa, peft_python, threads)
            } else {
                cmd::bench::run(model, n_prompt, n_gen, reps, llama_cpp, threads)
            }
        }
    }
}

/// Parse the command line. The training flags belong to the top-level command only; the global
/// flags (`--threads`, `--force`, …) go before or after a subcommand alike.
fn parse_cli() -> Cli {
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    if let Some((name, _)) = matches.subcommand() {
        let cli = Cli::command();
        let global: Vec<&str> = cli.get_arguments().filter(|a| a.is_global_set()).map(|a| a.get_id().as_str()).collect();
        let training = matches
            .ids()
            .map(|id| id.as_str())
            .find(|id| !global.contains(id) && matches.value_source(id) == Some(ValueSource::CommandLine));
        if let Some(id) = training {
            let flag = id.replace('_', "-");
            Cli::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("--{flag} is a training flag (the top-level command): it cannot be used with the subcommand '{name}'; put the subcommand's own flags after its name"),
                )
                .exit();
        }
    }
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    finetune::util::alloc::keep_freed_buffers();
    match run(parse_cli()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", finetune::util::text::printable_message(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}
