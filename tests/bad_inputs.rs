//! Wrong files handed to the commands that take adapters or checkpoints, and bad option values:
//! each must end with a clear error that names the file or the value (exit code 1, never a panic, nothing written).
mod common;

use std::path::Path;
use std::process::Command;

use common::{bin, tmpdir};
use finetune::adapter::{write_adapter, BaseInfo};
use finetune::gguf::GgufModel;
use finetune::lora::Target;
use finetune::model::Model;
use finetune::quant::GgmlType;
use finetune::train::trainer::init_lora;

fn run(args: &[&str]) -> (bool, String, Option<i32>) {
    let o = Command::new(bin()).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into(), o.status.code())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A valid LoRA adapter for `model` (B zero, as freshly initialised).
fn adapter_for(model: &Path, out: &Path) {
    let g = GgufModel::open(model).unwrap();
    let m = Model::load(&g).unwrap();
    let lora = init_lora(&m, &[Target::Q, Target::V], 2, 4.0, 1);
    write_adapter(out, &BaseInfo::from_gguf(g.main()), &lora, GgmlType::F32).unwrap();
}

#[test]
fn wrong_adapter_and_checkpoint_files_are_clear_errors() {
    let dir = tmpdir("bad-inputs");
    let smol = common::smollm();
    let gemma = common::gemma();
    let garbage = dir.join("garbage.gguf");
    let mut bytes = b"GGUF".to_vec();
    bytes.extend((0..3000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(&garbage, &bytes).unwrap();
    let noise = dir.join("noise.gguf");
    std::fs::write(&noise, (0..4096u32).map(|i| (i.wrapping_mul(40503) >> 7) as u8).collect::<Vec<_>>()).unwrap();
    let gemma_adapter = dir.join("gemma-adapter.gguf");
    adapter_for(&gemma, &gemma_adapter);
    let smol_adapter = dir.join("smol-adapter.gguf");
    adapter_for(&smol, &smol_adapter);
    let text = dir.join("t.txt");
    std::fs::write(&text, "The quick brown fox jumps over the lazy dog. ".repeat(40)).unwrap();
    let data = common::root().join("examples/style_degozaru.jsonl");
    let out = dir.join("out.gguf");
    let lms = dir.join("lmstudio-models");
    let ckdir = dir.join("empty-dir");
    std::fs::create_dir_all(&ckdir).unwrap();

    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        // Garbage where an adapter goes.
        (vec!["merge", "--model", s(&smol), "--lora", s(&noise), "--out", s(&out)], vec![s(&noise), "not a GGUF file"]),
        (vec!["merge", "--model", s(&smol), "--lora", s(&garbage), "--out", s(&out)], vec![s(&garbage)]),
        (
            vec!["perplexity", "--model", s(&smol), "--file", s(&text), "--ctx", "64", "--lora", s(&noise)],
            vec![s(&noise), "not a GGUF file"],
        ),
        (vec!["generate", "--model", s(&smol), "--prompt", "Hi", "-n", "2", "--lora", s(&garbage)], vec![s(&garbage)]),
        // A model file where an adapter goes.
        (vec!["merge", "--model", s(&smol), "--lora", s(&smol), "--out", s(&out)], vec!["expected \"adapter\" (is this a model file?)"]),
        (
            vec!["perplexity", "--model", s(&smol), "--file", s(&text), "--ctx", "64", "--lora", s(&gemma)],
            vec![s(&gemma), "is this a model file?"],
        ),
        // An adapter of another architecture.
        (
            vec!["merge", "--model", s(&smol), "--lora", s(&gemma_adapter), "--out", s(&out)],
            vec![s(&gemma_adapter), "adapter is for architecture 'gemma3', the model is 'llama'"],
        ),
        (
            vec!["generate", "--model", s(&gemma), "--prompt", "Hi", "-n", "2", "--lora", s(&smol_adapter)],
            vec![s(&smol_adapter), "architecture 'llama', the model is 'gemma3'"],
        ),
        // A bad merge type (refused before anything is read or written).
        (vec!["merge", "--model", s(&smol), "--lora", s(&smol_adapter), "--out", s(&out), "--type", "Q3_X"], vec!["--type Q3_X"]),
        // Wrong things to --resume.
        (
            vec!["--model", s(&smol), "--data", s(&data), "--steps", "1", "--out", s(&out), "--resume", s(&noise)],
            vec![s(&noise), "not a GGUF file"],
        ),
        (
            vec!["--model", s(&smol), "--data", s(&data), "--steps", "1", "--out", s(&out), "--resume", s(&smol_adapter)],
            vec![s(&smol_adapter), "not a finetune checkpoint"],
        ),
        (
            vec!["--model", s(&smol), "--data", s(&data), "--steps", "1", "--out", s(&out), "--resume", s(&ckdir)],
            vec![s(&ckdir), "no checkpoint"],
        ),
        // Bad values for the newer training and inference options.
        (
            vec!["--model", s(&smol), "--data", s(&data), "--steps", "1", "--out", s(&out), "--keep-activations", "lots"],
            vec!["'lots' is not a size"],
        ),
        (
            vec!["--model", s(&smol), "--data", s(&data), "--steps", "1", "--out", s(&out), "--dropout", "nan"],
            vec!["--dropout NaN is outside [0, 1)"],
        ),
        (vec!["perplexity", "--model", s(&smol), "--file", s(&text), "--numerics", "int4"], vec!["--numerics int4: use ggml or f32"]),
        // No CUDA backend in this build: a clear error, before any work.
        (
            vec!["generate", "--model", s(&smol), "--prompt", "Hi", "-n", "2", "--device", "cuda"],
            vec!["--device cuda:0", "built without the CUDA backend"],
        ),
        // The GPU memory plan is printed before the device is checked; a run that cannot fit is refused.
        (
            vec!["--model", s(&smol), "--data", s(&data), "--steps", "1", "--out", s(&out), "--device", "cuda", "--gpu-mem", "4G"],
            vec!["gpu plan: all 30 blocks resident", "--device cuda:0", "built without the CUDA backend"],
        ),
        (
            vec!["--model", s(&smol), "--data", s(&data), "--steps", "1", "--out", s(&out), "--device", "cuda", "--gpu-mem", "300M"],
            vec!["--gpu-mem 300.0 MiB: the run cannot fit even with every block streamed", "raise --gpu-mem"],
        ),
        (
            vec!["--model", s(&smol), "--data", s(&data), "--steps", "1", "--out", s(&out), "--gpu-mem", "4G"],
            vec!["--gpu-mem needs --device cuda[:N]"],
        ),
        // Gemma-3-270M: its tied 170 MiB Q8_0 embedding/output is streamed in pieces at 800M; 700M cannot fit.
        (
            vec!["--model", s(&gemma), "--data", s(&data), "--steps", "1", "--out", s(&out), "--device", "cuda", "--gpu-mem", "800M"],
            vec![
                "gpu plan: streaming — 17 of 18 blocks resident",
                "output projection streamed in 45 pieces",
                "built without the CUDA backend",
            ],
        ),
        (
            vec!["--model", s(&gemma), "--data", s(&data), "--steps", "1", "--out", s(&out), "--device", "cuda", "--gpu-mem", "700M"],
            vec!["--gpu-mem 700.0 MiB: the run cannot fit even with every block streamed"],
        ),
        (
            vec!["perplexity", "--model", s(&smol), "--file", s(&text), "--device", "tpu"],
            vec!["--device 'tpu': expected cpu, cuda or cuda:N"],
        ),
        (vec!["bench", "--train", "--model", s(&smol), "--reps", "1", "--peft-python", "/nonexistent/python"], vec!["/nonexistent/python"]),
        // export --lmstudio: garbage where the adapter goes, names that are not one folder.
        (vec!["export", "--lmstudio", s(&lms), "--model", s(&smol), "--lora", s(&noise)], vec![s(&noise), "not a GGUF file"]),
        (vec!["export", "--lmstudio", s(&lms), "--model", s(&smol), "--lora", s(&gemma_adapter)], vec![s(&gemma_adapter)]),
        (
            vec!["export", "--lmstudio", s(&lms), "--model", s(&smol), "--lora", s(&smol_adapter), "--name", "../up"],
            vec!["--name \"../up\" cannot be a folder name"],
        ),
        (
            vec!["export", "--lmstudio", s(&lms), "--model", s(&smol), "--lora", s(&smol_adapter), "--publisher", ""],
            vec!["--publisher \"\" cannot be a folder name"],
        ),
    ];
    for (args, wants) in &cases {
        let (ok, err, code) = run(args);
        assert!(!ok, "{args:?} succeeded");
        assert_eq!(code, Some(1), "{args:?}: exit code {code:?} (101 would be a panic):\n{err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        for w in wants {
            assert!(err.contains(w), "{args:?}: wanted {w:?} in:\n{err}");
        }
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
        assert!(!err.contains("step 1/"), "{args:?} started training before refusing:\n{err}");
        assert!(!lms.exists(), "{args:?} created {}", lms.display());
    }
}
