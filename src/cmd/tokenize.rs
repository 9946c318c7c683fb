//! `finetune tokenize`.

use std::path::PathBuf;

use std::io::Write;

use finetune::{Error, Result};

/// Print the token ids of the text (one line), or JSON with pieces.
pub fn run(model: PathBuf, text: Option<String>, file: Option<PathBuf>, json: bool, no_special: bool, parse_special: bool) -> Result<()> {
    let g = super::open(&model)?;
    let tok = super::tokenizer(&g)?;
    let text = super::text_arg(text, file.as_deref())?;
    let ids = tok.encode(&text, !no_special, parse_special);
    if json {
        let pieces: Vec<String> = ids.iter().map(|&i| String::from_utf8_lossy(&tok.token_to_piece(i)).into_owned()).collect();
        println!("{}", serde_json::json!({ "ids": ids, "pieces": pieces, "n": ids.len() }));
    } else {
        // Streamed: a long text's ids are not first built into one big string.
        let out = std::io::stdout();
        let mut w = std::io::BufWriter::new(out.lock());
        for (k, i) in ids.iter().enumerate() {
            write!(w, "{}{i}", if k == 0 { "" } else { " " }).map_err(|e| Error::io("<stdout>", e))?;
        }
        writeln!(w).and_then(|()| w.flush()).map_err(|e| Error::io("<stdout>", e))?;
    }
    Ok(())
}
