#!/usr/bin/env python3
"""llama.cpp's tokenizer (through llama-cpp-python) as the reference for tests/tokenizer.rs.

  tokenize_oracle.py MODEL CORPUS

CORPUS holds one JSON string literal per line; empty lines and lines starting with '#' are
skipped. Two long cases are appended: every case joined with "\\n", and every case glued
together with no separator, twice.

Prints one JSON object on stdout:
  n_vocab, bos, eos, eot          llama_vocab_* (-1 for none)
  eog                             every id with llama_vocab_is_eog
  pieces                          hex of llama_token_to_piece(id, lstrip=0, special=true), every id
  cases: [{text, modes: [{add_special, parse_special, ids,
                          detok_plain,    hex of llama_detokenize(ids, remove_special=true,  unparse_special=false)
                          detok_special   hex of llama_detokenize(ids, remove_special=false, unparse_special=true)
                         }]}]
for (add_special, parse_special) in (true, false) and (false, true).

llama.cpp can crash on bad input, so this always runs as its own process.
"""
import ctypes
import json
import os
import sys

MODES = [(True, False), (False, True)]


def read_corpus(path):
    cases = []
    with open(path, "rb") as f:
        for raw in f.read().split(b"\n"):
            line = raw.decode("utf-8").rstrip("\r")
            if not line or line.startswith("#"):
                continue
            text = json.loads(line)
            assert isinstance(text, str), line
            cases.append(text)
    return cases


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model, corpus = sys.argv[1], sys.argv[2]
    cases = read_corpus(corpus)
    joined = "\n".join(cases)
    cases.append(joined)
    cases.append("".join(cases[:-1]) * 2)

    # llama.cpp and llama-cpp-python log to stdout/stderr from C; keep our stdout for JSON only.
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=model, vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)

    buf_len = 1 << 16
    buf = ctypes.create_string_buffer(buf_len)

    def piece(tok):
        n = llama_cpp.llama_token_to_piece(vocab, tok, buf, buf_len, 0, True)
        assert 0 <= n <= buf_len, (tok, n)
        return buf.raw[:n]

    def detok(ids, remove_special, unparse_special):
        arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
        cap = 64 + 8 * len(ids)
        while True:
            out = ctypes.create_string_buffer(cap)
            n = llama_cpp.llama_detokenize(vocab, arr, len(ids), out, cap, remove_special, unparse_special)
            if n >= 0:
                return out.raw[:n]
            cap = -n + 16

    def tokenize(text, add_special, parse_special):
        data = text.encode("utf-8")
        cap = len(data) + 16
        while True:
            arr = (llama_cpp.llama_token * cap)()
            n = llama_cpp.llama_tokenize(vocab, data, len(data), arr, cap, add_special, parse_special)
            if n >= 0:
                return list(arr[:n])
            cap = -n + 16

    out_cases = []
    for text in cases:
        modes = []
        for add_special, parse_special in MODES:
            ids = tokenize(text, add_special, parse_special)
            # the high-level wrapper must agree with the raw C call
            assert ids == llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)
            modes.append({
                "add_special": add_special,
                "parse_special": parse_special,
                "ids": ids,
                "detok_plain": detok(ids, True, False).hex(),
                "detok_special": detok(ids, False, True).hex(),
            })
        out_cases.append({"text": text, "modes": modes})

    def tok_or_none(t):
        return -1 if t is None or t < 0 else int(t)

    result = {
        "n_vocab": n_vocab,
        "bos": tok_or_none(llama_cpp.llama_vocab_bos(vocab)),
        "eos": tok_or_none(llama_cpp.llama_vocab_eos(vocab)),
        "eot": tok_or_none(llama_cpp.llama_vocab_eot(vocab)),
        "eog": [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)],
        "pieces": [piece(i).hex() for i in range(n_vocab)],
        "cases": out_cases,
    }
    data = json.dumps(result, ensure_ascii=True).encode()
    sys.stdout.flush()
    os.write(real_stdout, data)
    os.close(real_stdout)


if __name__ == "__main__":
    main()
