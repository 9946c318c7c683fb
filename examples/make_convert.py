#!/usr/bin/env python3
"""Generate the structured-conversion example (deterministic; rerun to reproduce the files).

    python3 examples/make_convert.py

Writes, next to this script, 400 {"prompt","response","task"} pairs, 80 per task, of which 16 per
task are held out:
  convert_train.jsonl                 320 pairs, the five tasks mixed
  convert_test_json_to_yaml.jsonl     16 held-out pairs (score with --metric yaml)
  convert_test_yaml_to_json.jsonl     16 (--metric json)
  convert_test_csv_to_json.jsonl      16 (--metric json)
  convert_test_json_to_xml.jsonl      16 (--metric xml)
  convert_test_toml_to_json.jsonl     16 (--metric json)
The prompt is an instruction, a blank line, then the source document; the response is the
converted document alone (no code fence). Values are made by make_examples.py's generator (nested
objects and lists, numbers, booleans, null, strings that need quoting); CSV and XML add commas,
quotes, embedded newlines and markup characters. Every source and answer is parsed back with
Python's json / csv / tomllib / xml.etree (and PyYAML when installed) and checked against the
value it was made from. Everything here is written for this project.
"""

import csv
import io
import json
import os
import random
import sys
import tomllib
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_examples import FIRST, CITIES, ITEMS, gen_object, write_jsonl, yaml_lines  # noqa: E402

PER_TASK, HELD_OUT = 80, 16

CSV_TEXT = ["plain", "with, comma", 'say "hi"', "two\nlines", " padded ", "", "50%", "café", "東京", "a;b"]


def drop_nulls(v):
    if isinstance(v, dict):
        return {k: drop_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [drop_nulls(x) for x in v if x is not None]
    return v


def toml_value(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"


def to_toml(obj):
    """Top-level scalars and lists first, then one [table] per nested object (its own nested
    objects inline)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in obj.items() if not isinstance(v, dict)]
    for k, v in obj.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines).strip("\n")


def xml_elems(key, v, indent):
    pad = "  " * indent
    if v is None:
        return [f"{pad}<{key}/>"]
    if isinstance(v, bool):
        return [f"{pad}<{key}>{'true' if v else 'false'}</{key}>"]
    if isinstance(v, (int, float, str)):
        return [f"{pad}<{key}>{escape(str(v))}</{key}>"]
    if isinstance(v, list):
        if not v:
            return [f"{pad}<{key}/>"]
        out = [f"{pad}<{key}>"]
        for x in v:
            out += xml_elems("item", x, indent + 1)
        return out + [f"{pad}</{key}>"]
    if not v:
        return [f"{pad}<{key}/>"]
    out = [f"{pad}<{key}>"]
    for k, x in v.items():
        out += xml_elems(k, x, indent + 1)
    return out + [f"{pad}</{key}>"]


def xml_back(e):
    """The value an element holds, read back for the check (as strings, as written)."""
    kids = list(e)
    if not kids:
        return (e.text or "").strip()
    if all(k.tag == "item" for k in kids) and e.tag not in ("record",):
        return [xml_back(k) for k in kids]
    return {k.tag: xml_back(k) for k in kids}


def as_xml_strings(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str)):
        return str(v).strip()
    if isinstance(v, list):
        return [as_xml_strings(x) for x in v] if v else ""
    return {k: as_xml_strings(x) for k, x in v.items()} if v else ""


def csv_table(rng):
    cols = rng.sample(["name", "city", "age", "item", "note", "qty", "price", "comment"], rng.randint(2, 4))
    rows = []
    for _ in range(rng.randint(1, 4)):
        row = {}
        for c in cols:
            row[c] = {
                "name": lambda: rng.choice(FIRST),
                "city": lambda: rng.choice(CITIES),
                "age": lambda: str(rng.randint(1, 95)),
                "item": lambda: rng.choice(ITEMS),
                "qty": lambda: str(rng.randint(0, 40)),
                "price": lambda: f"{rng.uniform(0.5, 99):.2f}",
            }.get(c, lambda: rng.choice(CSV_TEXT))()
        rows.append(row)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().rstrip("\n"), rows


INSTR = {
    "json_to_yaml": ["Convert this JSON to YAML.", "Rewrite the following JSON as YAML."],
    "yaml_to_json": ["Convert this YAML to JSON.", "Give me this YAML as JSON."],
    "csv_to_json": ["Convert this CSV to a JSON array with one object per row (keys from the header, values as strings).",
                    "Turn the CSV below into a JSON array of row objects; keep every value a string."],
    "json_to_xml": ["Convert this JSON to XML: a <record> root, one element per key, list entries as <item>, null as an empty element.",
                    "Express this JSON as XML (root <record>, a child element per key, <item> for list entries, empty element for null)."],
    "toml_to_json": ["Convert this TOML to JSON.", "Rewrite the following TOML document as JSON."],
}


def make_task(rng, task):
    try:
        import yaml
    except ImportError:
        yaml = None
    if task == "csv_to_json":
        src, rows = csv_table(rng)
        assert list(csv.DictReader(io.StringIO(src))) == rows
        ans = json.dumps(rows, ensure_ascii=False, indent=2)
        return src, ans
    obj = gen_object(rng, 0, 2, 5)
    if task == "toml_to_json":
        obj = drop_nulls(obj)
        src = to_toml(obj)
        assert tomllib.loads(src) == obj, src
        return src, json.dumps(obj, ensure_ascii=False, indent=2)
    j = json.dumps(obj, ensure_ascii=False, indent=rng.choice([None, 2]))
    if task == "json_to_yaml":
        ans = "\n".join(yaml_lines(obj))
        if yaml is not None:
            assert yaml.safe_load(ans) == obj
        return j, ans
    if task == "yaml_to_json":
        src = "\n".join(yaml_lines(obj))
        if yaml is not None:
            assert yaml.safe_load(src) == obj
        return src, json.dumps(obj, ensure_ascii=False, indent=2)
    ans = "\n".join(xml_elems("record", obj, 0))
    assert xml_back(ET.fromstring(ans)) == as_xml_strings(obj) or not obj, ans
    return j, ans


def main():
    rng = random.Random(20261206)
    train, tests = [], {}
    for task in INSTR:
        seen, recs = set(), []
        while len(recs) < PER_TASK:
            src, ans = make_task(rng, task)
            if src in seen:
                continue
            seen.add(src)
            recs.append({"prompt": f"{rng.choice(INSTR[task])}\n\n{src}", "response": ans, "task": task})
        tests[task] = recs[:HELD_OUT]
        train += recs[HELD_OUT:]
    rng.shuffle(train)
    write_jsonl("convert_train.jsonl", train)
    for task, recs in tests.items():
        write_jsonl(f"convert_test_{task}.jsonl", recs)


if __name__ == "__main__":
    main()
