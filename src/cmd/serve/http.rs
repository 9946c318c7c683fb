//! The HTTP side (axum on tokio): routes, request checks that need the tokenizer (template,
//! context), the bounded queue hand-off, JSON answers and server-sent events.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as Sse, Sse as SseBody};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use finetune::chat::ChatTemplate;
use finetune::tokenizer::Tokenizer;

use super::api::{parse, ApiError, Catalog, Input, Request};
use super::worker::{Event, Finish, Job};

/// What every handler shares.
pub struct Shared {
    /// Model ids and adapters.
    pub catalog: Catalog,
    /// The base's tokenizer.
    pub tok: Tokenizer,
    /// The base's chat template.
    pub template: ChatTemplate,
    /// Context size of each request.
    pub ctx: usize,
    /// The worker's queue (bounded: `--queue`).
    pub queue: mpsc::Sender<Job>,
    /// Its capacity, for the 503 message.
    pub queue_cap: usize,
    /// The body limit, for the 413 message.
    pub max_body: usize,
    /// Set when SIGTERM/SIGINT arrived: new requests get 503.
    pub stopping: AtomicBool,
    /// Request counter (ids, default seeds).
    pub counter: AtomicU64,
}

type S = Arc<Shared>;

/// The routes.
pub fn router(shared: S) -> Router {
    let limit = shared.max_body;
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .fallback(|| async {
            error(ApiError {
                status: 404,
                kind: "invalid_request_error",
                code: Some("not_found"),
                message: "no such endpoint; this server has GET /health, GET /v1/models, POST /v1/chat/completions, POST /v1/completions"
                    .into(),
            })
        })
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(shared)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e.body())).into_response()
}

async fn health(State(s): State<S>) -> Response {
    if s.stopping.load(Ordering::SeqCst) {
        return error(ApiError::unavailable("shutting_down", "the server is shutting down"));
    }
    Json(json!({"status": "ok"})).into_response()
}

async fn models(State(s): State<S>) -> Response {
    let created = now();
    let data: Vec<Value> =
        s.catalog.ids().into_iter().map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "finetune"})).collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

async fn chat(State(s): State<S>, body: Result<Bytes, BytesRejection>) -> Response {
    complete(s, body, true).await.unwrap_or_else(error)
}

async fn completions(State(s): State<S>, body: Result<Bytes, BytesRejection>) -> Response {
    complete(s, body, false).await.unwrap_or_else(error)
}

/// Parse, render and tokenize; check the context.
fn prepare(s: &Shared, body: &[u8], chat: bool, seed: u64) -> Result<(Request, Vec<u32>), ApiError> {
    let req = parse(body, chat, &s.catalog, seed)?;
    let ids = match &req.input {
        Input::Chat(msgs) => {
            let text = s.template.render(msgs, true).map_err(|e| ApiError::bad(format!("the model's chat template: {e}")))?;
            finetune::chat::encode_prompt(&s.tok, &text)
        }
        Input::Text(t) => s.tok.encode(t, true, true),
    };
    if ids.is_empty() {
        return Err(ApiError::bad("the prompt tokenizes to nothing"));
    }
    if ids.len() >= s.ctx {
        return Err(ApiError::bad(format!(
            "the prompt has {} tokens; the context holds {} (--ctx), so at most {} prompt tokens fit",
            ids.len(),
            s.ctx,
            s.ctx - 1
        ))
        .code("context_length_exceeded"));
    }
    Ok((req, ids))
}

async fn complete(s: S, body: Result<Bytes, BytesRejection>, chat: bool) -> Result<Response, ApiError> {
    if s.stopping.load(Ordering::SeqCst) {
        return Err(ApiError::unavailable("shutting_down", "the server is shutting down"));
    }
    let body = body.map_err(|r| {
        let status = r.status().as_u16();
        let message = if status == 413 {
            format!("the request body is larger than the limit of {} bytes (--max-body)", s.max_body)
        } else {
            format!("cannot read the request body: {}", r.body_text())
        };
        ApiError { status, kind: "invalid_request_error", code: (status == 413).then_some("body_too_large"), message }
    })?;
    let n = s.counter.fetch_add(1, Ordering::Relaxed);
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64) ^ n.rotate_left(32);
    let s2 = s.clone();
    let (req, ids) = tokio::task::spawn_blocking(move || prepare(&s2, &body, chat, seed))
        .await
        .map_err(|e| ApiError::internal(format!("request preparation failed: {e}")))??;
    let room = s.ctx - ids.len();
    let max_tokens = req.max_tokens.map_or(room, |m| m.min(room));
    let prompt_tokens = ids.len();
    let (tx, rx) = mpsc::unbounded_channel();
    let job = Job { ids, adapters: req.adapters.clone(), max_tokens, sampler: req.sampler.clone(), stop: req.stop.clone(), reply: tx };
    s.queue.try_send(job).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => ApiError::unavailable(
            "queue_full",
            format!("the server is busy: {} requests are already waiting (--queue); retry later", s.queue_cap),
        ),
        mpsc::error::TrySendError::Closed(_) => ApiError::unavailable("shutting_down", "the server is shutting down"),
    })?;
    let head = Head { id: format!("{}-{n}", if chat { "chatcmpl" } else { "cmpl" }), created: now(), model: req.model.clone(), chat };
    if req.stream {
        return Ok(stream(head, rx, req.stream_usage));
    }
    collect(head, rx, prompt_tokens).await
}

/// The fields every response object repeats.
struct Head {
    id: String,
    created: u64,
    model: String,
    chat: bool,
}

impl Head {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.chat, chunk) {
            (true, false) => "chat.completion",
            (true, true) => "chat.completion.chunk",
            (false, _) => "text_completion",
        }
    }

    fn wrap(&self, chunk: bool, choices: Value) -> Value {
        json!({"id": self.id, "object": self.object(chunk), "created": self.created, "model": self.model, "choices": choices})
    }

    /// One choice: the whole message (`chunk` false) or a delta.
    fn choice(&self, chunk: bool, text: Option<&str>, first: bool, finish: Option<&str>) -> Value {
        if !self.chat {
            return json!([{"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish}]);
        }
        let body = match (chunk, text) {
            (false, t) => json!({"role": "assistant", "content": t.unwrap_or("")}),
            (true, Some(t)) if first => json!({"role": "assistant", "content": t}),
            (true, Some(t)) => json!({"content": t}),
            (true, None) => json!({}),
        };
        let key = if chunk { "delta" } else { "message" };
        json!([{"index": 0, key: body, "logprobs": null, "finish_reason": finish}])
    }
}

fn usage(f: &Finish) -> Value {
    json!({"prompt_tokens": f.prompt_tokens, "completion_tokens": f.completion_tokens, "total_tokens": f.prompt_tokens + f.completion_tokens})
}

async fn collect(head: Head, mut rx: mpsc::UnboundedReceiver<Event>, prompt_tokens: usize) -> Result<Response, ApiError> {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Text(t) => text += &t,
            Event::Failed(m) => return Err(ApiError::internal(m)),
            Event::Done(f) => {
                let mut v = head.wrap(false, head.choice(false, Some(&text), true, Some(f.reason)));
                v["usage"] = usage(&f);
                return Ok(Json(v).into_response());
            }
        }
    }
    Err(ApiError::internal(format!("the model thread ended without an answer ({prompt_tokens} prompt tokens)")))
}

/// Server-sent events: a first chunk with the role (chat), one chunk per text piece, a last chunk
/// with the finish reason, the usage chunk when asked, then `[DONE]`. When the client goes away
/// the receiver is dropped and the worker stops generating.
fn stream(head: Head, mut rx: mpsc::UnboundedReceiver<Event>, with_usage: bool) -> Response {
    let (out, events) = mpsc::unbounded_channel::<Result<Sse, Infallible>>();
    tokio::spawn(async move {
        let send = |v: Value| out.send(Ok(Sse::default().data(v.to_string()))).is_ok();
        if head.chat && !send(head.wrap(true, head.choice(true, Some(""), true, None))) {
            return;
        }
        while let Some(ev) = rx.recv().await {
            let ok = match ev {
                Event::Text(t) => send(head.wrap(true, head.choice(true, Some(&t), false, None))),
                Event::Failed(m) => {
                    send(ApiError::internal(m).body());
                    false
                }
                Event::Done(f) => {
                    let _ = send(head.wrap(true, head.choice(true, None, false, Some(f.reason))))
                        && (!with_usage
                            || send({
                                let mut u = head.wrap(true, json!([]));
                                u["usage"] = usage(&f);
                                u
                            }))
                        && out.send(Ok(Sse::default().data("[DONE]"))).is_ok();
                    false
                }
            };
            if !ok {
                return;
            }
        }
    });
    SseBody::new(UnboundedReceiverStream::new(events)).into_response()
}
