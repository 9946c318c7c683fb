#!/usr/bin/env python3
"""Unicode facts and reference normalisations for tests/eval.rs, from Python's `unicodedata`.

  unicode_oracle.py props CHARS.json
      For each code point (an int) of CHARS.json: {"cp", "name", "category", "decomposition"}.
      Prints a JSON list.

  unicode_oracle.py normalize SPEC IN.jsonl OUT.jsonl
      Rewrite every string value of every JSON-lines record with the normalisation SPEC
      (steps joined by '+': nfkc, arabic, yaa, haa), written from the Unicode data rather than
      from finetune's tables:
        nfkc   unicodedata.normalize("NFKC", s)
        arabic delete the combining marks (category Mn) of the Arabic block whose names are the
               tashkeel FATHATAN..SUKUN and ARABIC LETTER SUPERSCRIPT ALEF, and ARABIC TATWEEL;
               map every letter whose canonical decomposition starts with ALEF (U+0627), and
               ALEF WASLA, to ALEF
        yaa    ALEF MAKSURA -> YEH;   haa    TEH MARBUTA -> HEH
"""
import json
import sys
import unicodedata


def props(path):
    cps = json.load(open(path, encoding="utf-8"))
    out = []
    for cp in cps:
        c = chr(cp)
        out.append({"cp": cp, "name": unicodedata.name(c, ""), "category": unicodedata.category(c),
                    "decomposition": unicodedata.decomposition(c)})
    print(json.dumps(out))


def arabic_tables():
    fathatan = unicodedata.lookup("ARABIC FATHATAN")
    sukun = unicodedata.lookup("ARABIC SUKUN")
    strip = {chr(cp) for cp in range(ord(fathatan), ord(sukun) + 1) if unicodedata.category(chr(cp)) == "Mn"}
    strip.add(unicodedata.lookup("ARABIC LETTER SUPERSCRIPT ALEF"))
    strip.add(unicodedata.lookup("ARABIC TATWEEL"))
    alef = unicodedata.lookup("ARABIC LETTER ALEF")
    alefs = {chr(cp) for cp in range(0x0600, 0x0700)
             if unicodedata.decomposition(chr(cp)).split(" ")[0] == "%04X" % ord(alef)}
    alefs.add(unicodedata.lookup("ARABIC LETTER ALEF WASLA"))
    return strip, alefs, alef


def normalizer(spec):
    steps = spec.split("+")
    strip, alefs, alef = arabic_tables()
    yaa = (unicodedata.lookup("ARABIC LETTER ALEF MAKSURA"), unicodedata.lookup("ARABIC LETTER YEH"))
    haa = (unicodedata.lookup("ARABIC LETTER TEH MARBUTA"), unicodedata.lookup("ARABIC LETTER HEH"))

    def f(s):
        if "nfkc" in steps:
            s = unicodedata.normalize("NFKC", s)
        if "arabic" in steps:
            s = "".join(alef if c in alefs else c for c in s if c not in strip)
            if "yaa" in steps:
                s = s.replace(*yaa)
            if "haa" in steps:
                s = s.replace(*haa)
        return s
    return f


def walk(v, f):
    if isinstance(v, str):
        return f(v)
    if isinstance(v, list):
        return [walk(x, f) for x in v]
    if isinstance(v, dict):
        return {k: walk(x, f) for k, x in v.items()}
    return v


def normalize(spec, src, dst):
    f = normalizer(spec)
    with open(src, encoding="utf-8") as i, open(dst, "w", encoding="utf-8") as o:
        for line in i:
            if line.strip():
                o.write(json.dumps(walk(json.loads(line), f), ensure_ascii=False) + "\n")
    strip, alefs, _ = arabic_tables()
    print(json.dumps({"strip": sorted(ord(c) for c in strip), "alefs": sorted(ord(c) for c in alefs)}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "props":
        props(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "normalize":
        normalize(*sys.argv[2:])
    else:
        sys.exit(__doc__)
