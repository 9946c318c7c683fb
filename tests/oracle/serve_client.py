"""Drive `finetune serve` with the official OpenAI Python client (PyPI `openai`) and raw HTTP.

Usage: serve_client.py URL PID SPEC.json
SPEC: {"base": id, "prompts": [...], "combos": ["", "a", ...], "max_tokens": N,
       "lora_list": [...], "completion_prompt": str, "stream_prompt": str, "stream_max_tokens": N,
       "long_prompt": str, "max_body": bytes, "load": {"requests": N, "clients": K, "seed": S}}
Prints one JSON object with what the server answered; tests/serve.rs compares it with
`finetune generate`. It only observes: every check is in the Rust test. Sends SIGTERM to PID at
the end (during a streamed answer) to observe the shutdown.
"""
import http.client
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.parse

import openai


def model_id(base, combo):
    return base if combo == "" else base + "+" + combo


def raw(url, path, body, headers=None):
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request("POST", path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = {"unparsed": data.decode("utf-8", "replace")}
    return {"status": r.status, "body": parsed}


def main():
    url, pid, spec = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3]))
    base, n = spec["base"], spec["max_tokens"]
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
    out = {"openai_version": openai.__version__}

    out["models"] = [m.id for m in client.models.list().data]

    def chat(combo, prompt, **kw):
        return client.chat.completions.create(
            model=model_id(base, combo), messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=n, **kw
        )

    # Per-request adapter switch: every combo on every prompt, interleaved.
    out["chat"] = {}
    for i, p in enumerate(spec["prompts"]):
        for c in spec["combos"]:
            r = chat(c, p)
            out["chat"][f"{c}|{i}"] = r.choices[0].message.content
            if i == 0 and c == spec["combos"][-1]:
                out["chat_meta"] = {
                    "object": r.object,
                    "model": r.model,
                    "finish_reason": r.choices[0].finish_reason,
                    "role": r.choices[0].message.role,
                    "usage": r.usage.model_dump(),
                }

    # Streaming (the last combo, a stack, on prompt 0).
    chunks, text, finish, usage = 0, "", None, None
    for ch in client.chat.completions.create(
        model=model_id(base, spec["combos"][-1]),
        messages=[{"role": "user", "content": spec["prompts"][0]}],
        temperature=0,
        max_tokens=n,
        stream=True,
        stream_options={"include_usage": True},
    ):
        chunks += 1
        if ch.usage is not None:
            usage = ch.usage.model_dump()
        for c in ch.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    out["stream"] = {"text": text, "chunks": chunks, "finish_reason": finish, "usage": usage}

    # llama-server's per-request `lora` list, with scales.
    r = client.chat.completions.create(
        model=base,
        messages=[{"role": "user", "content": spec["prompts"][0]}],
        temperature=0,
        max_tokens=n,
        extra_body={"lora": spec["lora_list"]},
    )
    out["lora_list"] = r.choices[0].message.content

    # /v1/completions (raw text prompt) with an adapter.
    r = client.completions.create(model=model_id(base, "a"), prompt=spec["completion_prompt"], temperature=0, max_tokens=n)
    out["completion"] = {"text": r.choices[0].text, "object": r.object, "usage": r.usage.model_dump()}

    # Errors, through the client (status and message as it parses them) and raw HTTP.
    errors = {}
    for name, call in [
        ("unknown_adapter_in_model", lambda: chat("nope", "Hi")),
        ("unknown_base", lambda: client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "Hi"}])),
        ("unknown_lora_name", lambda: chat("", "Hi", extra_body={"lora": [{"name": "nope", "scale": 1}]})),
        ("prompt_beyond_context", lambda: chat("a", spec["long_prompt"])),
    ]:
        try:
            call()
            errors[name] = {"status": None}
        except openai.APIStatusError as e:
            errors[name] = {"status": e.status_code, "class": type(e).__name__, "body": e.response.json()}
    errors["malformed_json"] = raw(url, "/v1/chat/completions", b'{"model": "x", "messages": [')
    errors["not_an_object"] = raw(url, "/v1/completions", b"[1, 2]")
    big = json.dumps({"model": base, "prompt": "x" * (spec["max_body"] + 100)}).encode()
    errors["oversize_body"] = raw(url, "/v1/completions", big)
    out["errors"] = errors

    # Load: concurrent clients, adapters mixed, retry after each 503 (the documented answer
    # when the queue is full); record every answer and every other error.
    load = spec["load"]
    rng = random.Random(load["seed"])
    work = [(rng.choice(spec["combos"]), rng.randrange(len(spec["prompts"]))) for _ in range(load["requests"])]
    lock = threading.Lock()
    results, other_errors, busy = [], [], []

    def worker(k):
        cl = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)
        for j in range(k, len(work), load["clients"]):
            c, i = work[j]
            while True:
                try:
                    r = cl.chat.completions.create(
                        model=model_id(base, c),
                        messages=[{"role": "user", "content": spec["prompts"][i]}],
                        temperature=0,
                        max_tokens=n,
                    )
                    with lock:
                        results.append([c, i, r.choices[0].message.content])
                    break
                except openai.APIStatusError as e:
                    with lock:
                        if e.status_code == 503:
                            busy.append(e.response.json()["error"].get("code"))
                        else:
                            other_errors.append([e.status_code, e.response.text])
                    if e.status_code != 503:
                        break
                    time.sleep(0.2)
                except Exception as e:  # noqa: BLE001 (any transport error is recorded)
                    with lock:
                        other_errors.append([None, repr(e)])
                    break

    t0 = time.time()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(load["clients"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["load"] = {"results": results, "other_errors": other_errors, "busy_codes": busy, "secs": time.time() - t0}

    # Shutdown: SIGTERM while a streamed answer is in flight; the answer must complete, a new
    # request must be refused.
    stream = client.completions.create(
        model=base, prompt=spec["completion_prompt"], temperature=0, max_tokens=spec["stream_max_tokens"], stream=True
    )
    it = iter(stream)
    first = next(it)
    text = first.choices[0].text if first.choices else ""
    os.kill(pid, signal.SIGTERM)
    time.sleep(0.3)
    try:
        r = raw(url, "/v1/completions", json.dumps({"prompt": "Hi", "max_tokens": 1}).encode())
        after = {"status": r["status"], "body": r["body"]}
    except OSError as e:
        after = {"refused": repr(e)}
    for ch in it:
        for c in ch.choices:
            text += c.text or ""
    out["shutdown"] = {"inflight_text": text, "new_request": after}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
