//! `finetune serve --model M [--lora name=A.gguf[:scale]]…`: an OpenAI-compatible HTTP server
//! with the adapters chosen per request.
//!
//! [`api`] parses requests and errors, [`worker`] owns the model (one request at a time from a
//! bounded queue), [`http`] is the axum side. Shutdown on SIGTERM/SIGINT: new requests get 503,
//! the listener closes, requests already accepted (running or queued) finish, then the process
//! exits.

pub mod api;
pub mod http;
pub mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use finetune::{Error, Result};

use api::Catalog;

/// Options of `finetune serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The base GGUF model.
    #[arg(long)]
    pub model: PathBuf,
    /// An adapter to load, `NAME=A.gguf` or `NAME=A.gguf:SCALE` (default scale of that adapter;
    /// repeatable). `A.gguf` alone is named after its file stem. Requests select it with
    /// `"model": "BASE+NAME"` or `"lora": [{"name": "NAME", "scale": S}]`.
    #[arg(long, value_name = "NAME=A.gguf[:SCALE]")]
    pub lora: Vec<String>,
    /// The base model's id in requests and /v1/models (default: the model file's stem).
    #[arg(long)]
    pub alias: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Context size of each request (prompt + answer).
    #[arg(long, default_value_t = 4096)]
    pub ctx: usize,
    /// Requests that may wait while one runs; more get HTTP 503 (`queue_full`).
    #[arg(long, default_value_t = 16)]
    pub queue: usize,
    /// Largest request body (`65536`, `1M`, `2MiB`); larger bodies get HTTP 413.
    #[arg(long, default_value = "1MiB")]
    pub max_body: String,
}

/// A name usable in `BASE+NAME`.
fn check_name(what: &str, n: &str) -> Result<()> {
    if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/')) {
        return Err(Error::usage(format!("{what} {n:?}: use letters, digits, '-', '_', '.', ':' or '/' (no '+')")));
    }
    Ok(())
}

/// `NAME=PATH[:SCALE]` → (name, path, scale).
fn parse_lora(spec: &str) -> Result<(String, PathBuf, f32)> {
    let (name, rest) = match spec.split_once('=') {
        Some((n, r)) => (n.to_string(), r),
        None => (String::new(), spec),
    };
    let (path, scale) = match rest.rsplit_once(':') {
        Some((p, s)) if !p.is_empty() && s.parse::<f32>().is_ok_and(f32::is_finite) => (p, s.parse::<f32>().unwrap_or(1.0)),
        _ => (rest, 1.0),
    };
    if path.is_empty() {
        return Err(Error::usage(format!("--lora {spec:?}: give NAME=A.gguf[:SCALE]")));
    }
    let path = PathBuf::from(path);
    let name = if name.is_empty() { path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default() } else { name };
    check_name(&format!("--lora {spec:?}: the name"), &name)?;
    Ok((name, path, scale))
}

/// Load, listen, serve until SIGTERM/SIGINT.
pub fn run(a: ServeArgs) -> Result<()> {
    if a.queue == 0 {
        return Err(Error::usage("--queue must be at least 1"));
    }
    if a.ctx < 2 {
        return Err(Error::usage("--ctx must be at least 2"));
    }
    let max_body = usize::try_from(finetune::train::plan::parse_bytes(&a.max_body)?).unwrap_or(usize::MAX);
    let mut adapters = Vec::new();
    for spec in &a.lora {
        let (name, path, scale) = parse_lora(spec)?;
        if adapters.iter().any(|(n, _, _): &(String, PathBuf, f32)| *n == name) {
            return Err(Error::usage(format!("--lora: the name '{name}' is given twice")));
        }
        adapters.push((name, path, scale));
    }
    let base = match &a.alias {
        Some(n) => n.clone(),
        None => a.model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into()),
    };
    check_name("the base model's id (--alias or the file stem)", &base)?;
    let g = super::open(&a.model)?;
    let tok = super::tokenizer(&g)?;
    let template = super::chat_template(&g, &tok, None)?;
    let catalog = Catalog { base, adapters: adapters.iter().map(|(n, _, s)| (n.clone(), *s)).collect() };
    let (queue, jobs) = tokio::sync::mpsc::channel(a.queue);
    let setup = worker::Setup {
        tok: super::tokenizer(&g)?,
        gguf: g,
        adapters: adapters.iter().map(|(n, p, _)| (n.clone(), p.clone())).collect(),
        ctx: a.ctx,
    };
    let t0 = std::time::Instant::now();
    let worker = worker::spawn(setup, jobs)?;
    let shared = Arc::new(http::Shared {
        catalog,
        tok,
        template,
        ctx: a.ctx,
        queue,
        queue_cap: a.queue,
        max_body,
        stopping: AtomicBool::new(false),
        counter: AtomicU64::new(0),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("finetune-serve-http")
        .enable_all()
        .build()
        .map_err(|e| Error::Msg(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
            .await
            .map_err(|e| Error::usage(format!("cannot listen on {}:{}: {e}", a.host, a.port)))?;
        let addr = listener.local_addr().map_err(|e| Error::Msg(e.to_string()))?;
        eprintln!(
            "loaded in {:.1} s; models: {}\nlistening on http://{addr}  (POST /v1/chat/completions, /v1/completions; GET /v1/models, /health)",
            t0.elapsed().as_secs_f64(),
            shared.catalog.ids().join(", ")
        );
        let stop = shared.clone();
        axum::serve(listener, http::router(shared.clone()))
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                stop.stopping.store(true, Ordering::SeqCst);
                eprintln!("stopping: finishing the requests already accepted, refusing new ones (a second signal exits now)");
                tokio::spawn(async {
                    shutdown_signal().await;
                    eprintln!("second signal: exiting now");
                    std::process::exit(130);
                });
            })
            .await
            .map_err(|e| Error::Msg(format!("server error: {e}")))
    })?;
    drop(shared); // closes the queue: the worker ends after the last job
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    let _ = worker.join();
    eprintln!("stopped");
    Ok(())
}

/// SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_specs() {
        assert_eq!(parse_lora("med=a/med.gguf:0.5").unwrap(), ("med".into(), PathBuf::from("a/med.gguf"), 0.5));
        assert_eq!(parse_lora("x/legal.gguf").unwrap(), ("legal".into(), PathBuf::from("x/legal.gguf"), 1.0));
        assert!(parse_lora("a+b=x.gguf").is_err());
        assert!(parse_lora("a=").is_err());
    }
}
