#!/usr/bin/env python3
"""Reference chat-template renderings for tests/chat_template.rs.

  template_oracle.py jinja CASES.json
      Render each case with jinja2 the way Hugging Face transformers' apply_chat_template does
      (`_compile_jinja_template`): ImmutableSandboxedEnvironment(trim_blocks=True,
      lstrip_blocks=True) with the loopcontrols extension and a `{% generation %}` block tag,
      the `tojson` filter = json.dumps(x, ensure_ascii=False, indent, separators, sort_keys),
      globals raise_exception(msg) (raises TemplateError) and strftime_now(fmt); rendered with
      messages, tools, documents, add_generation_prompt and the keyword arguments (bos_token,
      eos_token, extra variables).
      A case is {"template": SOURCE} or {"gguf": FILE} (then the template is the file's
      tokenizer.chat_template and bos/eos the texts of its bos/eos token ids, read with the
      `gguf` package), plus "messages", "add_generation_prompt", optional "bos_token",
      "eos_token", "kwargs".
      Prints a JSON list, one entry per case: {"text": ...} or {"error": CLASS, "message": ...,
      "line": LINE-or-null}.

  template_oracle.py llama MODEL CASES.json
      llama.cpp's llama_chat_apply_template (through llama-cpp-python's low-level bindings) for
      each case {"tmpl": NAME-or-null, "messages", "add_generation_prompt"}; a null tmpl means
      the model's own template (llama_model_chat_template(model, NULL)), which llama.cpp
      matches against its built-in formats.
      Prints {"model_template": str|null, "results": [{"text": ...} | {"error": ...}]}.

  template_oracle.py tokenize MODEL TEXTS.json
      llama_tokenize(vocab, text, add_special=true, parse_special=true) for each string of
      TEXTS.json, plus the model's BOS text and add_bos flag.
      Prints {"bos_text": str|null, "add_bos": bool, "ids": [[...], ...]}.

  template_oracle.py greedy MODEL CASES.json
      llama.cpp's greedy answer for each case {"messages", "n"}: the conversation rendered by
      llama_chat_apply_template with the model's template ("gemma" when it has none) and the
      generation prompt, a leading BOS text dropped when the model adds BOS (as llama.cpp's
      common/chat.cpp), tokenized with add_special and parse_special, then the most likely
      token at each step until an end-of-generation token or n tokens.
      Prints [{"prompt": TEXT, "prompt_ids": [...], "ids": [...], "text": ANSWER, "eog": bool}].
"""
import ctypes
import json
import os
import sys
from datetime import datetime


def hf_environment():
    import jinja2
    import jinja2.ext
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(jinja2.ext.Extension):
        # transformers' AssistantTracker: `{% generation %}...{% endgeneration %}` renders its body
        # unchanged (it only records where assistant text is).
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_support"), [], [], body).set_lineno(lineno)

        def _support(self, caller):
            return caller()

    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


_GGUF = {}


def gguf_template(path):
    if path not in _GGUF:
        _GGUF[path] = _read_gguf_template(path)
    return _GGUF[path]


def _read_gguf_template(path):
    import gguf
    r = gguf.GGUFReader(path)

    def field(key):
        f = r.get_field(key)
        return None if f is None else f.contents()

    tokens = field("tokenizer.ggml.tokens")
    specials = {}
    for var, key in (("bos_token", "tokenizer.ggml.bos_token_id"), ("eos_token", "tokenizer.ggml.eos_token_id")):
        i = field(key)
        specials[var] = tokens[i] if i is not None else ""
    return field("tokenizer.chat_template"), specials


def cmd_jinja(cases_path):
    env = hf_environment()
    cases = json.load(open(cases_path, encoding="utf-8"))
    out = []
    for c in cases:
        try:
            if "gguf" in c:
                source, specials = gguf_template(c["gguf"])
            else:
                source = c["template"]
                specials = {"bos_token": c.get("bos_token", ""), "eos_token": c.get("eos_token", "")}
            kwargs = dict(specials)
            kwargs.update(c.get("kwargs", {}))
            for k in ("messages", "add_generation_prompt", "tools", "documents"):
                kwargs.pop(k, None)
            extra = c.get("kwargs", {})
            text = env.from_string(source).render(
                messages=c["messages"], tools=extra.get("tools"), documents=extra.get("documents"),
                add_generation_prompt=c["add_generation_prompt"], **kwargs)
            out.append({"text": text})
        except Exception as e:  # noqa: BLE001  (the test compares the error)
            out.append({"error": type(e).__name__, "message": getattr(e, "message", None) or str(e),
                        "line": getattr(e, "lineno", None)})
    print(json.dumps(out, ensure_ascii=False))


class ChatMessage(ctypes.Structure):
    _fields_ = [("role", ctypes.c_char_p), ("content", ctypes.c_char_p)]


def cmd_llama(model_path, cases_path):
    cases = json.load(open(cases_path, encoding="utf-8"))
    # llama.cpp logs from C; keep our stdout for JSON only.
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(model_path.encode(), params)
    if not model:
        sys.exit(f"llama.cpp could not load {model_path}")
    model_tmpl = llama_cpp.llama_model_chat_template(model, None)
    results = []
    for c in cases:
        tmpl = c["tmpl"].encode() if c["tmpl"] is not None else model_tmpl
        if tmpl is None:
            results.append({"error": "the model has no chat template"})
            continue
        msgs = c["messages"]
        keep = [(m["role"].encode(), m["content"].encode()) for m in msgs]
        arr = (llama_cpp.llama_chat_message * len(keep))()
        for i, (r, t) in enumerate(keep):
            arr[i].role = r
            arr[i].content = t
        size = 256
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_chat_apply_template(tmpl, arr, len(keep), c["add_generation_prompt"], buf, size)
            if n < 0:
                results.append({"error": f"llama_chat_apply_template returned {n}"})
                break
            if n <= size:
                results.append({"text": buf.raw[:n].decode("utf-8")})
                break
            size = n
    llama_cpp.llama_model_free(model)
    os.dup2(real_stdout, 1)
    print(json.dumps({"model_template": model_tmpl.decode("utf-8") if model_tmpl is not None else None,
                      "results": results}, ensure_ascii=False))


def cmd_tokenize(model_path, texts_path):
    texts = json.load(open(texts_path, encoding="utf-8"))
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(model_path.encode(), params)
    if not model:
        sys.exit(f"llama.cpp could not load {model_path}")
    vocab = llama_cpp.llama_model_get_vocab(model)
    bos = llama_cpp.llama_vocab_bos(vocab)
    bos_text = llama_cpp.llama_vocab_get_text(vocab, bos).decode("utf-8") if bos >= 0 else None
    out = []
    for t in texts:
        b = t.encode("utf-8")
        cap = len(b) + 16
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(vocab, b, len(b), buf, cap, True, True)
        if n < 0:
            sys.exit(f"llama_tokenize needs {-n} tokens, more than {cap}")
        out.append([int(buf[i]) for i in range(n)])
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    llama_cpp.llama_model_free(model)
    os.dup2(real_stdout, 1)
    print(json.dumps({"bos_text": bos_text, "add_bos": add_bos, "ids": out}, ensure_ascii=False))


def render_llama(model_ptr, messages, add_generation_prompt, tmpl=None):
    import llama_cpp
    if tmpl is None:
        tmpl = llama_cpp.llama_model_chat_template(model_ptr, None) or b"gemma"
    keep = [(m["role"].encode(), m["content"].encode()) for m in messages]
    arr = (llama_cpp.llama_chat_message * len(keep))()
    for i, (r, t) in enumerate(keep):
        arr[i].role = r
        arr[i].content = t
    size = 256
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_chat_apply_template(tmpl, arr, len(keep), add_generation_prompt, buf, size)
        if n < 0:
            sys.exit(f"llama_chat_apply_template returned {n}")
        if n <= size:
            return buf.raw[:n].decode("utf-8")
        size = n


def cmd_greedy(model_path, cases_path):
    import numpy as np
    cases = json.load(open(cases_path, encoding="utf-8"))
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=model_path, n_ctx=1024, n_threads=2, logits_all=True, verbose=False)
    model = llm._model
    vocab = model.vocab
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    bos = llama_cpp.llama_vocab_bos(vocab)
    bos_text = llama_cpp.llama_vocab_get_text(vocab, bos).decode("utf-8") if bos >= 0 else ""
    out = []
    for c in cases:
        prompt = render_llama(model.model, c["messages"], True)
        text = prompt[len(bos_text):] if add_bos and bos_text and prompt.startswith(bos_text) else prompt
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        llm.reset()
        llm.eval(ids)
        gen, eog = [], False
        for _ in range(int(c["n"])):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            if llama_cpp.llama_vocab_is_eog(vocab, nxt):
                eog = True
                break
            gen.append(nxt)
            llm.eval([nxt])
        out.append({"prompt": prompt, "prompt_ids": [int(i) for i in ids], "ids": gen,
                    "text": llm.detokenize(gen).decode("utf-8", "replace"), "eog": eog})
    os.dup2(real_stdout, 1)
    print(json.dumps(out, ensure_ascii=False))


def main(argv):
    if len(argv) == 3 and argv[1] == "jinja":
        cmd_jinja(argv[2])
    elif len(argv) == 4 and argv[1] == "llama":
        cmd_llama(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "tokenize":
        cmd_tokenize(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "greedy":
        cmd_greedy(argv[2], argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
