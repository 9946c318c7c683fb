//! The OpenAI-compatible request format: parsing a JSON body into what the worker needs, the
//! adapter selection (`"model": "base+a+b"` or llama-server's `"lora": [{"id"|"name", "scale"}]`),
//! and OpenAI-style errors (`{"error": {"message", "type", "code"}}`).

use serde_json::{json, Value};

use finetune::chat::Message;
use finetune::generate::SamplerConfig;

/// An error answered to the client with an HTTP status.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// OpenAI error type (`invalid_request_error`, `server_error`).
    pub kind: &'static str,
    /// Machine-readable code (`model_not_found`, `context_length_exceeded`, `queue_full`, …).
    pub code: Option<&'static str>,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// 400 invalid_request_error.
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError { status: 400, kind: "invalid_request_error", code: None, message: message.into() }
    }
    /// Same error with a code.
    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
    /// 404 model_not_found.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError { status: 404, kind: "invalid_request_error", code: Some("model_not_found"), message: message.into() }
    }
    /// 503: the queue is full or the server is stopping.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status: 503, kind: "server_error", code: Some(code), message: message.into() }
    }
    /// 500: the model failed.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError { status: 500, kind: "server_error", code: None, message: message.into() }
    }
    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": null, "code": self.code}})
    }
}

/// The adapters loaded at start: names (`--lora name=…`) and default scales, in order (the
/// index is the `id` of a `lora` list entry).
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The base model's id (`--alias`, else the model file's stem).
    pub base: String,
    /// Adapter names and their default scales.
    pub adapters: Vec<(String, f32)>,
}

impl Catalog {
    /// Every model id `/v1/models` lists: the base, then `base+name` per adapter.
    pub fn ids(&self) -> Vec<String> {
        std::iter::once(self.base.clone()).chain(self.adapters.iter().map(|(n, _)| format!("{}+{n}", self.base))).collect()
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.adapters.iter().position(|(n, _)| n == name)
    }

    fn loaded(&self) -> String {
        if self.adapters.is_empty() {
            "none".into()
        } else {
            self.adapters.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
        }
    }

    /// The adapter stack of a request: `(index, scale)` in application order, from the `model`
    /// field (`base`, `base+a`, `base+a+b`) or a `lora` list (with `model` the base); an empty
    /// stack is the base alone. Unknown names, duplicates and both forms at once are errors.
    pub fn select(&self, model: Option<&str>, lora: Option<&Value>) -> Result<Vec<(usize, f32)>, ApiError> {
        let mut stack = Vec::new();
        if let Some(m) = model.filter(|m| *m != self.base) {
            let Some(rest) = m.strip_prefix(&self.base).and_then(|r| r.strip_prefix('+')) else {
                return Err(ApiError::not_found(format!(
                    "the model '{m}' does not exist; this server has '{}' and '{}+ADAPTER[+ADAPTER…]' with the adapters: {}",
                    self.base,
                    self.base,
                    self.loaded()
                )));
            };
            for name in rest.split('+') {
                let i = self.index(name).ok_or_else(|| {
                    ApiError::not_found(format!(
                        "the model '{m}' names the adapter '{name}', which is not loaded (loaded: {})",
                        self.loaded()
                    ))
                })?;
                stack.push((i, self.adapters[i].1));
            }
        }
        match lora {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                if !stack.is_empty() && !list.is_empty() {
                    return Err(
                        ApiError::bad("give the adapters either in 'model' (base+name) or in 'lora', not both").code("invalid_lora")
                    );
                }
                for (k, e) in list.iter().enumerate() {
                    stack.extend(self.lora_entry(k, e)?);
                }
            }
            Some(_) => return Err(ApiError::bad("'lora' must be a list of {\"id\": N | \"name\": S, \"scale\": X}").code("invalid_lora")),
        }
        for (k, (i, _)) in stack.iter().enumerate() {
            if stack[..k].iter().any(|(j, _)| j == i) {
                return Err(ApiError::bad(format!("the adapter '{}' is named twice", self.adapters[*i].0)).code("invalid_lora"));
            }
        }
        Ok(stack)
    }

    /// One `lora` entry; scale 0 leaves the adapter out (as llama-server).
    fn lora_entry(&self, k: usize, e: &Value) -> Result<Option<(usize, f32)>, ApiError> {
        let bad = |m: String| ApiError::bad(format!("lora[{k}]: {m}")).code("invalid_lora");
        let Some(o) = e.as_object() else {
            return Err(bad("must be an object {\"id\": N | \"name\": S, \"scale\": X}".into()));
        };
        let i = match (o.get("id"), o.get("name")) {
            (Some(id), None) => {
                let id = id.as_u64().ok_or_else(|| bad(format!("'id' must be a non-negative integer, got {id}")))?;
                usize::try_from(id)
                    .ok()
                    .filter(|&i| i < self.adapters.len())
                    .ok_or_else(|| bad(format!("no adapter with id {id} ({} loaded: {})", self.adapters.len(), self.loaded())))?
            }
            (None, Some(Value::String(n))) => {
                self.index(n).ok_or_else(|| bad(format!("no adapter named '{n}' (loaded: {})", self.loaded())))?
            }
            _ => return Err(bad("give exactly one of 'id' (an integer) or 'name' (a string)".into())),
        };
        let scale = match o.get("scale") {
            None | Some(Value::Null) => self.adapters[i].1,
            Some(s) => s.as_f64().filter(|s| s.is_finite()).ok_or_else(|| bad(format!("'scale' must be a number, got {s}")))? as f32,
        };
        Ok((scale != 0.0).then_some((i, scale)))
    }
}

/// What a request asks of the model, before tokenization.
#[derive(Debug, Clone)]
pub struct Request {
    /// The `model` field as given (echoed in the response), or the base id.
    pub model: String,
    /// The adapter stack.
    pub adapters: Vec<(usize, f32)>,
    /// Chat messages (`/v1/chat/completions`) or a prompt (`/v1/completions`).
    pub input: Input,
    /// Most tokens to generate (None: until the context is full).
    pub max_tokens: Option<usize>,
    /// Sampling settings (temperature 0 is greedy).
    pub sampler: SamplerConfig,
    /// Stop strings (not included in the answer).
    pub stop: Vec<String>,
    /// Stream server-sent events.
    pub stream: bool,
    /// With `stream`, send a last chunk with the usage (`stream_options.include_usage`).
    pub stream_usage: bool,
}

/// The prompt of a request.
#[derive(Debug, Clone)]
pub enum Input {
    /// A conversation, rendered with the model's chat template.
    Chat(Vec<Message>),
    /// Raw text, tokenized as `finetune generate --prompt` does.
    Text(String),
}

fn number(o: &serde_json::Map<String, Value>, key: &str) -> Result<Option<f64>, ApiError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            v.as_f64().filter(|x| x.is_finite()).map(Some).ok_or_else(|| ApiError::bad(format!("'{key}' must be a number, got {v}")))
        }
    }
}

fn count(o: &serde_json::Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| ApiError::bad(format!("'{key}' must be a non-negative integer, got {v}"))),
    }
}

fn flag(o: &serde_json::Map<String, Value>, key: &str) -> Result<bool, ApiError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(ApiError::bad(format!("'{key}' must be true or false, got {v}"))),
    }
}

/// Message content: a string, or a list of `{"type": "text", "text": …}` parts (joined).
fn content(i: usize, v: Option<&Value>) -> Result<String, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut s = String::new();
            for (k, p) in parts.iter().enumerate() {
                match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => s += t,
                    _ => {
                        return Err(ApiError::bad(format!(
                            "messages[{i}].content[{k}]: only {{\"type\": \"text\", \"text\": …}} parts are supported"
                        )))
                    }
                }
            }
            Ok(s)
        }
        Some(v) => Err(ApiError::bad(format!("messages[{i}].content must be a string or a list of text parts, got {v}"))),
    }
}

fn messages(o: &serde_json::Map<String, Value>) -> Result<Vec<Message>, ApiError> {
    let Some(Value::Array(list)) = o.get("messages") else {
        return Err(ApiError::bad("'messages' is required: a list of {\"role\", \"content\"}"));
    };
    if list.is_empty() {
        return Err(ApiError::bad("'messages' is empty"));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let role =
                m.get("role").and_then(Value::as_str).ok_or_else(|| ApiError::bad(format!("messages[{i}].role must be a string")))?;
            Ok(Message::new(role, content(i, m.get("content"))?))
        })
        .collect()
}

fn prompt(o: &serde_json::Map<String, Value>) -> Result<String, ApiError> {
    match o.get("prompt") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(v)) if v.len() == 1 && v[0].is_string() => Ok(v[0].as_str().unwrap_or_default().to_string()),
        Some(Value::Array(_)) => Err(ApiError::bad("'prompt' as a list must hold exactly one string (one prompt per request)")),
        _ => Err(ApiError::bad("'prompt' is required: a string")),
    }
}

fn stops(o: &serde_json::Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let v = match o.get("stop") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) && a.len() <= 16 => {
            a.iter().filter_map(Value::as_str).map(str::to_string).collect()
        }
        Some(v) => return Err(ApiError::bad(format!("'stop' must be a string or a list of at most 16 strings, got {v}"))),
    };
    Ok(v.into_iter().filter(|s| !s.is_empty()).collect())
}

/// Parse a request body of `/v1/chat/completions` (`chat`) or `/v1/completions`.
pub fn parse(body: &[u8], chat: bool, catalog: &Catalog, default_seed: u64) -> Result<Request, ApiError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("the request body is not valid JSON: {e}")).code("invalid_json"))?;
    let Some(o) = v.as_object() else {
        return Err(ApiError::bad("the request body must be a JSON object").code("invalid_json"));
    };
    let model = match o.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(m) => return Err(ApiError::bad(format!("'model' must be a string, got {m}"))),
    };
    let adapters = catalog.select(model, o.get("lora"))?;
    let input = if chat { Input::Chat(messages(o)?) } else { Input::Text(prompt(o)?) };
    if let Some(n) = count(o, "n")? {
        if n != 1 {
            return Err(ApiError::bad(format!("'n' = {n}: this server returns one choice per request")));
        }
    }
    let max_tokens = count(o, "max_completion_tokens")?.or(count(o, "max_tokens")?).map(|n| n.min(usize::MAX as u64) as usize);
    let temp = number(o, "temperature")?.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temp) {
        return Err(ApiError::bad(format!("'temperature' = {temp} is outside [0, 2]")));
    }
    let top_p = number(o, "top_p")?.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::bad(format!("'top_p' = {top_p} is outside (0, 1]")));
    }
    let top_k = count(o, "top_k")?.unwrap_or(0) as usize;
    let seed = match o.get("seed") {
        None | Some(Value::Null) => default_seed,
        Some(s) => {
            s.as_i64().map(|x| x as u64).or(s.as_u64()).ok_or_else(|| ApiError::bad(format!("'seed' must be an integer, got {s}")))?
        }
    };
    let stream = flag(o, "stream")?;
    let stream_usage = match o.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(so)) => flag(so, "include_usage")?,
        Some(v) => return Err(ApiError::bad(format!("'stream_options' must be an object, got {v}"))),
    };
    Ok(Request {
        model: model.unwrap_or(&catalog.base).to_string(),
        adapters,
        input,
        max_tokens,
        sampler: SamplerConfig { temp: temp as f32, top_k, top_p: top_p as f32, seed },
        stop: stops(o)?,
        stream,
        stream_usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog { base: "smol".into(), adapters: vec![("a".into(), 1.0), ("b".into(), 0.5)] }
    }

    #[test]
    fn model_names_select_stacks() {
        let c = catalog();
        assert_eq!(c.select(Some("smol"), None).unwrap(), vec![]);
        assert_eq!(c.select(None, None).unwrap(), vec![]);
        assert_eq!(c.select(Some("smol+b"), None).unwrap(), vec![(1, 0.5)]);
        assert_eq!(c.select(Some("smol+b+a"), None).unwrap(), vec![(1, 0.5), (0, 1.0)]);
        assert_eq!(c.select(Some("smol+x"), None).unwrap_err().status, 404);
        assert_eq!(c.select(Some("other"), None).unwrap_err().status, 404);
        assert_eq!(c.select(Some("smol+a+a"), None).unwrap_err().status, 400);
    }

    #[test]
    fn lora_lists_as_llama_server() {
        let c = catalog();
        let l = json!([{"id": 1, "scale": 0.25}, {"name": "a"}, {"id": 0, "scale": 0}]);
        assert_eq!(c.select(Some("smol"), Some(&l)).unwrap(), vec![(1, 0.25), (0, 1.0)]);
        for bad in [
            json!([{"id": 2}]),
            json!([{"name": "z"}]),
            json!([{"id": 0, "name": "a"}]),
            json!({"id": 0}),
            json!([{"id": 0, "scale": "x"}]),
        ] {
            let e = c.select(Some("smol"), Some(&bad)).unwrap_err();
            assert_eq!((e.status, e.code), (400, Some("invalid_lora")), "{bad}: {e:?}");
        }
        assert_eq!(c.select(Some("smol+a"), Some(&json!([{"id": 1}]))).unwrap_err().status, 400);
    }

    #[test]
    fn bodies_parse_or_give_clear_errors() {
        let c = catalog();
        let r = parse(
            br#"{"model":"smol+a","messages":[{"role":"user","content":"Hi"}],"temperature":0,"max_tokens":5,"stop":"x"}"#,
            true,
            &c,
            7,
        )
        .unwrap();
        assert_eq!(
            (r.adapters, r.max_tokens, r.sampler.temp, r.sampler.seed, r.stop),
            (vec![(0, 1.0)], Some(5), 0.0, 7, vec!["x".to_string()])
        );
        let e = parse(b"{not json", true, &c, 0).unwrap_err();
        assert!(e.status == 400 && e.message.contains("not valid JSON"), "{e:?}");
        for (body, want) in [
            (r#"{"messages":[]}"#, "empty"),
            (r#"{"messages":[{"role":"user","content":"x"}],"temperature":3}"#, "temperature"),
            (r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#, "one choice"),
            (r#"{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#, "text"),
            (r#"{"prompt":["a","b"]}"#, "messages"),
        ] {
            let e = parse(body.as_bytes(), true, &c, 0).unwrap_err();
            assert!(e.status == 400 && e.message.contains(want), "{body}: {e:?}");
        }
        let r = parse(br#"{"prompt":["Once"],"max_tokens":3}"#, false, &c, 0).unwrap();
        assert!(matches!(r.input, Input::Text(ref t) if t == "Once"));
    }
}
