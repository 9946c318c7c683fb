//! Built-in chat templates for models whose GGUF carries none, written as Jinja from the
//! documented turn formats. Each reproduces llama.cpp's built-in format of the same name
//! (`llama_chat_apply_template` with `tmpl = "chatml" | "gemma" | "llama3"`) character for
//! character, including its quirks:
//!
//! * `gemma`: `assistant` is spelled `model`; system messages are not turns — their trimmed
//!   contents are concatenated and prepended, followed by a blank line, to the next turn whose
//!   role is not `model`; every content is trimmed of ASCII whitespace (C `isspace`).
//! * `llama3`: contents trimmed of ASCII whitespace; no `<|begin_of_text|>` (the tokenizer adds
//!   BOS, as in llama.cpp).
//! * `chatml`: contents verbatim.

/// Names of the built-in templates.
pub const BUILTIN_NAMES: [&str; 3] = ["chatml", "gemma", "llama3"];

/// ChatML: `<|im_start|>{role}\n{content}<|im_end|>\n`, generation prompt `<|im_start|>assistant\n`.
const CHATML: &str = r#"{%- for message in messages -%}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- endif -%}
"#;

/// Gemma: `<start_of_turn>{user|model}\n{content}<end_of_turn>\n`, system folded into a user turn.
const GEMMA: &str = r#"{%- set ws = ' \t\n\r\x0b\x0c' -%}
{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
{%- if message['role'] == 'system' -%}
{%- set ns.system = ns.system + message['content'] | trim(ws) -%}
{%- else -%}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
{{- '<start_of_turn>' + role + '\n' -}}
{%- if ns.system and role != 'model' -%}
{{- ns.system + '\n\n' -}}
{%- set ns.system = '' -%}
{%- endif -%}
{{- message['content'] | trim(ws) + '<end_of_turn>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<start_of_turn>model\n' -}}
{%- endif -%}
"#;

/// Llama 3: `<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>`.
const LLAMA3: &str = r#"{%- set ws = ' \t\n\r\x0b\x0c' -%}
{%- for message in messages -%}
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim(ws) + '<|eot_id|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
{%- endif -%}
"#;

/// The Jinja source of built-in template `name`, if there is one.
pub fn source(name: &str) -> Option<&'static str> {
    match name {
        "chatml" => Some(CHATML),
        "gemma" => Some(GEMMA),
        "llama3" => Some(LLAMA3),
        _ => None,
    }
}

/// The built-in template for a model without one: by architecture, then by telltale tokens.
///
/// gemma, gemma2, gemma3, gemma3n → `gemma`; qwen2, qwen2moe, qwen3, qwen3moe → `chatml`; a
/// vocabulary with `<|eot_id|>` and `<|start_header_id|>` → `llama3`; one with `<|im_start|>` and
/// `<|im_end|>` → `chatml`.
pub fn for_model(arch: Option<&str>, has_token: impl Fn(&str) -> bool) -> Option<&'static str> {
    match arch {
        Some("gemma" | "gemma2" | "gemma3" | "gemma3n") => return Some("gemma"),
        Some("qwen2" | "qwen2moe" | "qwen3" | "qwen3moe") => return Some("chatml"),
        _ => {}
    }
    if has_token("<|eot_id|>") && has_token("<|start_header_id|>") {
        Some("llama3")
    } else if has_token("<|im_start|>") && has_token("<|im_end|>") {
        Some("chatml")
    } else {
        None
    }
}
