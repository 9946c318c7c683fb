//! Chat templates against the references, byte for byte:
//!
//! * jinja2 as Hugging Face transformers sets it up (`tests/oracle/template_oracle.py jinja`) for
//!   SmolLM2's own GGUF template and for real-world templates written here as fixtures (Qwen2.5,
//!   Llama 3, Llama 2 with `raise_exception`, Gemma 3, Qwen3 with `namespace`/`loop.last`/
//!   `strip`, a `{% generation %}` template, Python printing of values), over conversations with
//!   and without a system prompt, Japanese/emoji text, padded contents, a single user turn, tool
//!   messages, roles that do not alternate, each with and without the generation prompt;
//! * llama.cpp's `llama_chat_apply_template` (`template_oracle.py llama`) on the real models:
//!   SmolLM2's GGUF template (llama.cpp detects ChatML) and Gemma 3 (no template in the GGUF:
//!   llama.cpp's built-in "gemma" vs ours), and our built-in `chatml`/`llama3` vs llama.cpp's.
//!
//! Plus the errors: syntax errors with jinja2's line, `raise_exception` messages, and templates
//! that print or loop forever stopped by the output cap / instruction budget.
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use finetune::chat::{encode_prompt, ChatError, ChatTemplate, Message};
use finetune::gguf::GgufFile;
use finetune::tokenizer::Tokenizer;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Fixtures: real-world templates (as published with the models' tokenizer_config.json).

/// Qwen2.5-Instruct: default system prompt, tools via `tojson`, tool responses grouped.
const QWEN25: &str = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

/// Meta-Llama-3-8B-Instruct: `bos_token` in the template, contents `| trim`med.
const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/// Llama-2-chat: `raise_exception` when roles do not alternate, `<<SYS>>` folded into the first
/// user turn, `.strip()`, slicing, `!= false`.
const LLAMA2: &str = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/// Gemma 3 (instruction-tuned): `{{ bos_token }}`, system folded into the first user turn,
/// `is string`, `loop.first`, `raise_exception`, `| trim`.
const GEMMA3: &str = r#"{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"#;

/// Qwen3: `namespace()` found by walking `messages[::-1]`, `loop.last`, `startswith`/`endswith`,
/// `split`/`strip`/`lstrip`/`rstrip` on `<think>` blocks, `enable_thinking is false`.
const QWEN3: &str = r##"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"##;

/// SmolLM3-style assistant masking: `{% generation %}` blocks (transformers' extension tag),
/// indented block tags (lstrip_blocks/trim_blocks), `loop.last`, `{% break %}`/`{% continue %}`.
const GENERATION: &str = r#"{% for message in messages %}
    {% if message.role == 'tool' %}{% continue %}{% endif %}
    {% if message.role == 'assistant' %}
<|assistant|>
    {% generation %}
{{ message.content | trim }}<|end|>
    {% endgeneration %}
    {% else %}
<|{{ message.role }}|>
{{ message.content }}<|end|>
    {% endif %}
    {% if loop.index > 6 %}{% break %}{% endif %}
{% endfor %}
{% if add_generation_prompt %}
<|assistant|>
{% endif %}"#;

/// How values print in transformers' environment (Python's `str()`), and common filters/methods.
const PYTHONISMS: &str = r#"{{ messages[0] }}|{{ messages | length }}|{{ add_generation_prompt }}|{{ tools }}
{{ messages | map(attribute='role') | join(', ') }}|{{ messages | selectattr('role', 'equalto', 'user') | list | length }}
{{ (messages | last).content | upper }}|{{ messages[0].content.split(' ')[:2] }}|{{ [1, 'x', none, true, 1.5] }}
{% for k, v in messages[0].items() %}{{ k }}={{ v | tojson }};{% endfor %}
{{ messages | tojson }}
{{ messages[-1] | tojson(indent=2) }}
{{ 7 // 2 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 10 % 3 }} {{ 'ab' * 3 }} {{ 'x' in 'xyz' }} {{ range(3) | list }}
{{ 'Hello World'.replace('o', '0').lower() }}|{{ '  pad  '.lstrip() }}|{{ 'a-b-c'.rsplit('-', 1) }}|{{ 'abc'.title() }}
{{ messages[0].content | length }}|{{ messages[0]['content'][:5] }}|{{ messages | first | attr('role') if false else 'no' }}|{{ 'a' ~ true ~ none ~ 2.50 }}|{{ messages[0].get('nope', 'dflt') }}
{%- if add_generation_prompt %}{{ eos_token }}{% endif %}"#;

/// strftime_now as Llama 3.2's template uses it (TZ=UTC for the oracle; ours reads UTC).
const STRFTIME: &str = r#"{%- if strftime_now is defined %}{%- set date_string = strftime_now("%d %b %Y") %}{%- else %}{%- set date_string = "26 Jul 2024" %}{%- endif %}Today Date: {{ date_string }}
{% for m in messages %}{{ m.role }}: {{ m.content }}
{% endfor %}"#;

// ---------------------------------------------------------------------------------------------
// Conversations.

fn m(role: &str, content: &str) -> Message {
    Message::new(role, content)
}

fn conversations() -> Vec<(&'static str, Vec<Message>)> {
    vec![
        (
            "system_multi_turn",
            vec![
                m("system", "You are a helpful assistant."),
                m("user", "Hello!"),
                m("assistant", "Hi! How can I help you today?"),
                m("user", "What is 2+2?"),
            ],
        ),
        ("no_system", vec![m("user", "Hi"), m("assistant", "Hello there."), m("user", "Tell me a joke.")]),
        ("single_user", vec![m("user", "What is the capital of France?")]),
        (
            "unicode",
            vec![
                m("system", "あなたは親切なアシスタントです。"),
                m("user", "こんにちは！日本の首都はどこですか？ 🌸🗾"),
                m("assistant", "日本の首都は東京です。😊 Ça va — «très bien»."),
                m("user", "家族の絵文字: 👩‍👩‍👧‍👦 ありがとう"),
            ],
        ),
        (
            "padded",
            vec![
                m("system", "  You answer briefly.\n\u{1f}"),
                m("user", "\n\t  leading and trailing whitespace \t\n"),
                m("assistant", "   spaced answer   "),
                m("user", "\u{3000}ideographic spaces\u{3000}\r\n"),
            ],
        ),
        (
            "special_text",
            vec![
                m("system", "Quote \"this\" and 'that' \\ back\\slash"),
                m("user", "Literal {{ braces }} and {% tags %} and <|im_end|> text"),
                m("assistant", "<think>\nLet me think.\n</think>\n\nThe answer."),
                m("user", "Thanks\n\nSecond paragraph."),
            ],
        ),
        (
            "tools",
            vec![
                m("system", "You can call tools."),
                m("user", "Weather in Paris and Tōkyō?"),
                m("assistant", "Calling the tools."),
                m("tool", "{\"city\": \"Paris\", \"temp\": 21}"),
                m("tool", "{\"city\": \"東京\", \"temp\": 25}"),
                m("assistant", "Paris 21 °C, Tōkyō 25 °C."),
                m("user", "<tool_response>x</tool_response>"),
            ],
        ),
        ("not_alternating", vec![m("user", "First"), m("user", "Second"), m("assistant", "Reply")]),
        ("empty_contents", vec![m("system", ""), m("user", ""), m("assistant", "")]),
    ]
}

fn fixtures() -> Vec<(&'static str, &'static str)> {
    vec![
        ("qwen2.5", QWEN25),
        ("llama3", LLAMA3),
        ("llama2", LLAMA2),
        ("gemma3", GEMMA3),
        ("qwen3", QWEN3),
        ("generation", GENERATION),
        ("pythonisms", PYTHONISMS),
        ("strftime", STRFTIME),
    ]
}

// ---------------------------------------------------------------------------------------------
// Oracle plumbing.

fn run_oracle(args: &[&str]) -> Value {
    let out = Command::new(common::python())
        .arg(common::root().join("tests/oracle/template_oracle.py"))
        .args(args)
        .env("TZ", "UTC")
        .output()
        .expect("run the template oracle");
    assert!(out.status.success(), "template_oracle.py {args:?} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("template_oracle.py {args:?} printed non-JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)))
}

fn messages_json(msgs: &[Message]) -> Value {
    Value::Array(msgs.iter().map(|m| json!({"role": m.role, "content": m.content})).collect())
}

/// One rendering to compare.
struct Case {
    label: String,
    ours: Result<String, ChatError>,
    oracle_input: Value,
}

/// Compare our outcome with jinja2's: equal text, or both errors (a `raise_exception` must be
/// [`ChatError::Raised`] with the same message). Returns a description of each mismatch.
fn compare(cases: &[Case], oracle: &[Value]) -> Vec<String> {
    assert_eq!(cases.len(), oracle.len(), "oracle answered {} of {} cases", oracle.len(), cases.len());
    let mut bad = Vec::new();
    for (c, o) in cases.iter().zip(oracle) {
        match (&c.ours, o.get("text").and_then(Value::as_str)) {
            (Ok(ours), Some(want)) if ours == want => {}
            (Ok(ours), Some(want)) => bad.push(format!("{}:\n  jinja2: {want:?}\n  ours:   {ours:?}", c.label)),
            (Ok(ours), None) => bad.push(format!("{}: jinja2 failed ({o}) but we rendered {ours:?}", c.label)),
            (Err(e), Some(want)) => bad.push(format!("{}: jinja2 rendered {want:?} but we failed: {e}", c.label)),
            (Err(e), None) => {
                let class = o["error"].as_str().unwrap_or_default();
                let msg = o["message"].as_str().unwrap_or_default();
                if class == "TemplateError" {
                    match e {
                        ChatError::Raised { message, .. } if message == msg => {}
                        _ => bad.push(format!("{}: jinja2 raised {msg:?}, ours: {e:?}", c.label)),
                    }
                }
            }
        }
    }
    bad
}

fn assert_no_mismatch(what: &str, n: usize, bad: Vec<String>) {
    let shown: Vec<&str> = bad.iter().take(6).map(String::as_str).collect();
    assert!(bad.is_empty(), "{} of {n} {what} renderings differ (first {}):\n{}", bad.len(), shown.len(), shown.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// (a) jinja2, transformers' environment.

#[test]
fn fixtures_render_like_transformers_jinja2() {
    let dir = common::tmpdir("chat-jinja");
    let mut cases = Vec::new();
    for (tname, src) in fixtures() {
        let t = ChatTemplate::from_source(src, "<s>", "</s>").unwrap_or_else(|e| panic!("fixture {tname} does not compile: {e}"));
        for (cname, msgs) in conversations() {
            for agp in [true, false] {
                cases.push(Case {
                    label: format!("{tname} / {cname} / add_generation_prompt={agp}"),
                    ours: t.render(&msgs, agp),
                    oracle_input: json!({"template": src, "messages": messages_json(&msgs),
                        "add_generation_prompt": agp, "bos_token": "<s>", "eos_token": "</s>"}),
                });
            }
        }
    }
    // Keyword arguments: tools (key order kept, non-ASCII unescaped), enable_thinking, and a
    // kwarg overriding bos_token.
    let tools: Value = serde_json::from_str(
        r#"[{"type": "function", "function": {"name": "get_weather", "description": "Météo — 天気",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
            "required": ["city"]}}}]"#,
    )
    .unwrap();
    let kw_cases: Vec<(&str, &str, Value)> = vec![
        ("qwen2.5", QWEN25, json!({"tools": tools})),
        ("qwen3", QWEN3, json!({"tools": tools})),
        ("qwen3", QWEN3, json!({"enable_thinking": false})),
        ("qwen3", QWEN3, json!({"enable_thinking": true})),
        ("llama3", LLAMA3, json!({"bos_token": "<|begin_of_text|>"})),
        ("pythonisms", PYTHONISMS, json!({"tools": [{"b": 1, "a": [true, null, 0.1]}]})),
    ];
    for (tname, src, kw) in kw_cases {
        let t = ChatTemplate::from_source(src, "<s>", "</s>").unwrap();
        for (cname, msgs) in conversations().into_iter().filter(|(c, _)| ["system_multi_turn", "tools"].contains(c)) {
            cases.push(Case {
                label: format!("{tname} / {cname} / kwargs {kw}"),
                ours: t.render_with(&msgs, true, kw.as_object().unwrap()),
                oracle_input: json!({"template": src, "messages": messages_json(&msgs), "add_generation_prompt": true,
                    "bos_token": "<s>", "eos_token": "</s>", "kwargs": kw}),
            });
        }
    }
    let input = dir.join("cases.json");
    std::fs::write(&input, serde_json::to_vec(&cases.iter().map(|c| &c.oracle_input).collect::<Vec<_>>()).unwrap()).unwrap();
    let oracle = run_oracle(&["jinja", input.to_str().unwrap()]);
    let oracle = oracle.as_array().expect("a list");
    // The comparison must exercise both outcomes: rendered text and raise_exception.
    let raised = oracle.iter().filter(|o| o["error"] == "TemplateError").count();
    let rendered = oracle.iter().filter(|o| o.get("text").is_some()).count();
    assert!(raised >= 4 && rendered >= cases.len() - raised - 4, "raised {raised}, rendered {rendered}: {oracle:?}");
    assert_no_mismatch("fixture", cases.len(), compare(&cases, oracle));
}

#[test]
fn smollm2_gguf_template_renders_like_transformers_jinja2() {
    let path = common::smollm();
    let dir = common::tmpdir("chat-smollm-jinja");
    let g = GgufFile::open(&path).unwrap();
    let t = ChatTemplate::from_gguf_file(&g).unwrap();
    assert_eq!(t.name(), "gguf");
    let mut cases = Vec::new();
    for (cname, msgs) in conversations() {
        for agp in [true, false] {
            cases.push(Case {
                label: format!("SmolLM2 / {cname} / add_generation_prompt={agp}"),
                ours: t.render(&msgs, agp),
                oracle_input: json!({"gguf": path.to_str().unwrap(), "messages": messages_json(&msgs),
                    "add_generation_prompt": agp}),
            });
        }
    }
    let input = dir.join("cases.json");
    std::fs::write(&input, serde_json::to_vec(&cases.iter().map(|c| &c.oracle_input).collect::<Vec<_>>()).unwrap()).unwrap();
    let oracle = run_oracle(&["jinja", input.to_str().unwrap()]);
    let oracle = oracle.as_array().expect("a list");
    assert!(oracle.iter().all(|o| o.get("text").is_some()), "jinja2 failed on SmolLM2's template: {oracle:?}");
    assert_no_mismatch("SmolLM2", cases.len(), compare(&cases, oracle));
}

// ---------------------------------------------------------------------------------------------
// (b) llama.cpp's llama_chat_apply_template.

/// llama.cpp's renderings of every conversation (with and without the generation prompt) with
/// `tmpl` (None = the model's own template); also returns the model's template as llama.cpp
/// reads it.
type Rendering = (String, Vec<Message>, bool, String);

fn llama_renderings(model: &Path, tmpl: Option<&str>, tag: &str) -> (Option<String>, Vec<Rendering>) {
    let dir = common::tmpdir(tag);
    let mut meta = Vec::new();
    let mut input = Vec::new();
    for (cname, msgs) in conversations() {
        for agp in [true, false] {
            input.push(json!({"tmpl": tmpl, "messages": messages_json(&msgs), "add_generation_prompt": agp}));
            meta.push((format!("{cname} / add_generation_prompt={agp}"), msgs.clone(), agp));
        }
    }
    let f = dir.join("cases.json");
    std::fs::write(&f, serde_json::to_vec(&input).unwrap()).unwrap();
    let o = run_oracle(&["llama", model.to_str().unwrap(), f.to_str().unwrap()]);
    let results = o["results"].as_array().expect("results");
    assert_eq!(results.len(), meta.len());
    let out = meta
        .into_iter()
        .zip(results)
        .map(|((label, msgs, agp), r)| {
            let text = r["text"].as_str().unwrap_or_else(|| panic!("llama.cpp failed on {label}: {r}"));
            (label, msgs, agp, text.to_string())
        })
        .collect();
    (o["model_template"].as_str().map(str::to_string), out)
}

#[test]
fn smollm2_matches_llama_cpp_chatml() {
    let path = common::smollm();
    let g = GgufFile::open(&path).unwrap();
    let t = ChatTemplate::from_gguf_file(&g).unwrap();
    let (model_tmpl, renderings) = llama_renderings(&path, None, "chat-llama-smollm");
    assert_eq!(model_tmpl.as_deref(), Some(t.source()), "llama.cpp reads another template from the GGUF");
    // SmolLM2's Jinja template adds a default system turn when the conversation has none;
    // llama.cpp's built-in ChatML (which it substitutes for the detected template) does not.
    let default_system = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";
    assert!(t.source().contains("You are a helpful AI assistant named SmolLM"), "{}", t.source());
    let mut bad = Vec::new();
    let (mut same, mut with_default) = (0, 0);
    for (label, msgs, agp, want) in &renderings {
        let ours = t.render(msgs, *agp).unwrap();
        if msgs[0].role == "system" {
            same += 1;
            if &ours != want {
                bad.push(format!("{label}:\n  llama.cpp: {want:?}\n  ours:      {ours:?}"));
            }
        } else {
            with_default += 1;
            if ours != format!("{default_system}{want}") {
                bad.push(format!("{label} (no system turn):\n  llama.cpp: {want:?}\n  ours:      {ours:?}"));
            }
        }
    }
    assert!(same >= 8 && with_default >= 4, "{same} / {with_default}");
    assert_no_mismatch("SmolLM2 vs llama.cpp", renderings.len(), bad);
}

#[test]
fn gemma_builtin_matches_llama_cpp_gemma() {
    let path = common::gemma();
    let g = GgufFile::open(&path).unwrap();
    let t = ChatTemplate::from_gguf_file(&g).unwrap();
    assert_eq!(t.name(), "gemma", "Gemma 3 270M has no template in its GGUF: the built-in one is used");
    let (model_tmpl, renderings) = llama_renderings(&path, Some("gemma"), "chat-llama-gemma");
    assert_eq!(model_tmpl, None, "llama.cpp finds a template in the Gemma GGUF");
    let mut bad = Vec::new();
    for (label, msgs, agp, want) in &renderings {
        match t.render(msgs, *agp) {
            Ok(ours) if &ours == want => {}
            r => bad.push(format!("{label}:\n  llama.cpp: {want:?}\n  ours:      {r:?}")),
        }
    }
    assert_no_mismatch("Gemma vs llama.cpp", renderings.len(), bad);
}

#[test]
fn chatml_and_llama3_builtins_match_llama_cpp() {
    let path = common::smollm();
    for name in ["chatml", "llama3"] {
        let t = ChatTemplate::builtin(name, "<s>", "</s>").unwrap();
        let (_, renderings) = llama_renderings(&path, Some(name), &format!("chat-llama-{name}"));
        let mut bad = Vec::new();
        for (label, msgs, agp, want) in &renderings {
            match t.render(msgs, *agp) {
                Ok(ours) if &ours == want => {}
                r => bad.push(format!("{label}:\n  llama.cpp: {want:?}\n  ours:      {r:?}")),
            }
        }
        assert_no_mismatch(&format!("built-in {name} vs llama.cpp"), renderings.len(), bad);
    }
}

/// Prompt tokens: our `encode_prompt` of our rendering equals llama.cpp's tokenization
/// (`add_special`, `parse_special`) of the same text, with a leading BOS text removed when the
/// model adds BOS — what llama.cpp's chat layer does (common/chat.cpp) to avoid a double BOS.
#[test]
fn prompt_tokens_match_llama_cpp() {
    let gemma_bos_fixture = (common::gemma(), Some(GEMMA3));
    for (path, fixture) in [(common::smollm(), None), (common::gemma(), None), gemma_bos_fixture] {
        let g = GgufFile::open(&path).unwrap();
        let tok = Tokenizer::from_gguf(&g).unwrap();
        let bos_text = tok.bos().map(|b| tok.token_text(b).to_string()).unwrap_or_default();
        let t = match fixture {
            Some(src) => {
                let eos_text = tok.eos().map_or("", |e| tok.token_text(e));
                ChatTemplate::from_source(src, &bos_text, eos_text).unwrap()
            }
            None => ChatTemplate::from_gguf_file(&g).unwrap(),
        };
        let mut texts = Vec::new();
        let mut ours = Vec::new();
        let mut raw_with_bos = None;
        for (_, msgs) in conversations() {
            for agp in [true, false] {
                let Ok(text) = t.render(&msgs, agp) else { continue };
                let stripped = match text.strip_prefix(bos_text.as_str()) {
                    Some(rest) if tok.add_bos() && !bos_text.is_empty() => {
                        raw_with_bos.get_or_insert_with(|| text.clone());
                        rest.to_string()
                    }
                    _ => text.clone(),
                };
                ours.push(encode_prompt(&tok, &text));
                texts.push(stripped);
            }
        }
        let n = texts.len();
        assert!(n >= 12, "{}: only {n} renderings", path.display());
        if let Some(raw) = &raw_with_bos {
            texts.push(raw.clone());
        }
        let dir = common::tmpdir("chat-tokens");
        let f = dir.join("texts.json");
        std::fs::write(&f, serde_json::to_vec(&texts).unwrap()).unwrap();
        let o = run_oracle(&["tokenize", path.to_str().unwrap(), f.to_str().unwrap()]);
        assert_eq!(o["bos_text"].as_str(), Some(bos_text.as_str()));
        assert_eq!(o["add_bos"].as_bool(), Some(tok.add_bos()));
        let want: Vec<Vec<u32>> = serde_json::from_value(o["ids"].clone()).unwrap();
        for i in 0..n {
            assert_eq!(ours[i], want[i], "{} / {:?}: prompt tokens differ from llama.cpp's", path.display(), texts[i]);
        }
        if fixture.is_some() {
            // The template writes {{ bos_token }}: tokenizing its text as is would give two BOS.
            let bos = tok.bos().unwrap();
            let raw = &want[n];
            assert_eq!(&raw[..2], &[bos, bos], "llama_tokenize of the raw text should double BOS");
            assert!(ours.iter().all(|ids| ids[0] == bos && ids[1] != bos), "double BOS in ours");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors.

#[test]
fn syntax_errors_name_jinja2s_line() {
    let dir = common::tmpdir("chat-syntax");
    let bad = [
        "line one\n{% for m in messages %}\n{{ m.content }}\n", // unclosed for
        "a\nb\n{{ messages[0] }\n",                             // unclosed expression
        "{% if x %}\n{% else %}\n{% else %}\n{% endif %}",      // two else
        "ok\n\n\n{% endfor %}",                                 // stray endfor
        "{{ 'unterminated }}",                                  // unterminated string
    ];
    let input: Vec<Value> = bad.iter().map(|src| json!({"template": src, "messages": [], "add_generation_prompt": false})).collect();
    let f = dir.join("cases.json");
    std::fs::write(&f, serde_json::to_vec(&input).unwrap()).unwrap();
    let oracle = run_oracle(&["jinja", f.to_str().unwrap()]);
    for (src, o) in bad.iter().zip(oracle.as_array().unwrap()) {
        assert_eq!(o["error"], "TemplateSyntaxError", "jinja2 on {src:?}: {o}");
        let want_line = o["line"].as_u64().unwrap_or_else(|| panic!("no line from jinja2: {o}")) as usize;
        match ChatTemplate::from_source(src, "", "") {
            Err(ChatError::Syntax { line, message }) => {
                assert_eq!(line, Some(want_line), "{src:?}: ours {message:?} at {line:?}, jinja2 {o}");
                let shown = ChatTemplate::from_source(src, "", "").unwrap_err().to_string();
                assert!(shown.contains(&format!("line {want_line}")), "{shown}");
            }
            other => panic!("{src:?}: expected a syntax error, got {other:?}"),
        }
    }
}

#[test]
fn raise_exception_gives_the_templates_message() {
    let t = ChatTemplate::from_source(LLAMA2, "<s>", "</s>").unwrap();
    let e = t.render(&[m("user", "a"), m("user", "b")], true).unwrap_err();
    match &e {
        ChatError::Raised { message, line } => {
            assert_eq!(message, "Conversation roles must alternate user/assistant/user/assistant/...");
            assert_eq!(*line, Some(1));
        }
        other => panic!("expected Raised, got {other:?}"),
    }
    assert!(e.to_string().contains("Conversation roles must alternate"), "{e}");
    let t = ChatTemplate::from_source("x\n{{ raise_exception('Système: ' ~ messages[0].role) }}", "", "").unwrap();
    match t.render(&[m("tool", "c")], false) {
        Err(ChatError::Raised { message, line }) => {
            assert_eq!(message, "Système: tool");
            assert_eq!(line, Some(2));
        }
        other => panic!("expected Raised, got {other:?}"),
    }
    // Other render failures are Render errors, not Raised.
    let t = ChatTemplate::from_source("{{ messages[0].content + 1 }}", "", "").unwrap();
    assert!(matches!(t.render(&[m("user", "x")], false), Err(ChatError::Render { .. })));
}

fn assert_stops(src: &str, what: &str) {
    let t = ChatTemplate::from_source(src, "", "").unwrap();
    let t0 = Instant::now();
    let r = t.render(&[m("user", "hi")], true);
    let took = t0.elapsed();
    match r {
        Err(ChatError::Render { message, .. }) => {
            assert!(message.contains(what), "{src:?}: {message}");
        }
        other => panic!("{src:?}: expected a render error, got {:?}", other.map(|s| s.len())),
    }
    assert!(took < Duration::from_secs(30), "{src:?} took {took:?}");
}

#[test]
fn endless_templates_are_cut_short() {
    // Printing expressions forever: 10^10 × 1 kB.
    assert_stops("{% for a in range(100000) %}{% for b in range(100000) %}{{ 'x' * 1000 }}{% endfor %}{% endfor %}", "output exceeds");
    // Printing template text forever.
    let text = "y".repeat(1000);
    assert_stops(
        &format!("{{% for a in range(100000) %}}{{% for b in range(100000) %}}{text}{{% endfor %}}{{% endfor %}}"),
        "output exceeds",
    );
    // Looping forever without printing.
    assert_stops(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}{% endfor %}{% endfor %}{% endfor %}",
        "too long",
    );
    // Runaway recursion.
    let t = ChatTemplate::from_source("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "", "").unwrap();
    assert!(matches!(t.render(&[], false), Err(ChatError::Render { .. })));
}
