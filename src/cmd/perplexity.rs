//! `finetune perplexity`.

use std::io::Write;
use std::path::PathBuf;

use finetune::Result;

/// Compute and print `PPL = <value>` (llama.cpp's method).
pub fn run(model: PathBuf, file: PathBuf, ctx: usize, lora: Vec<String>) -> Result<()> {
    let g = super::open(&model)?;
    let tok = super::tokenizer(&g)?;
    let m = super::load_model(&g, &lora)?;
    let text = super::read_text(&file)?;
    let ids = tok.encode(&text, true, false);
    let bos = if tok.add_bos() { tok.bos() } else { None };
    eprintln!("{}: {} tokens, {} chunks of {ctx}", file.display(), ids.len(), ids.len() / ctx.max(1));
    let t0 = std::time::Instant::now();
    let r = finetune::perplexity::perplexity(&m, &ids, ctx, bos, |i, n, running| {
        eprint!("[{i}/{n}]{running:.4} ");
        let _ = std::io::stderr().flush();
    })?;
    eprintln!();
    println!("PPL = {:.4} ({} tokens scored, ctx {ctx}, {:.1} s)", r.ppl, r.scored, t0.elapsed().as_secs_f64());
    Ok(())
}
