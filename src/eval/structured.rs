//! Structured-output comparison for the `json`, `yaml`, `toml`, `xml` and `csv` metrics: parse
//! both texts into one value tree and compare the trees.
//!
//! Rules (also in `finetune eval --help`):
//! - **Payload**: when the text has a ``` fenced block, its first block's body (the info string
//!   after the opening ``` is ignored); else the whole text. Leading blank lines and trailing
//!   whitespace are dropped.
//! - **Numbers** (JSON, YAML, TOML): compared by value: `1`, `1.0` and `1e0` are equal; integers
//!   exactly, other numbers as f64 (NaN equals NaN). Strings never equal numbers (`"1"` ≠ `1`).
//! - **Maps** (JSON objects, YAML mappings, TOML tables): key order does not matter. Lists keep
//!   their order.
//! - **YAML**: anchors and aliases are resolved, `<<` merge keys applied; a tagged value equals
//!   another only with the same tag. One document.
//! - **TOML**: date-times compare as their TOML text.
//! - **XML**: element names by namespace URI + local name (the prefix does not matter);
//!   attributes as a set (order does not matter); child elements and text in order; text is
//!   trimmed and whitespace-only text dropped; comments, processing instructions and the XML
//!   declaration are ignored.
//! - **CSV**: rows and fields in order (a header is a row); fields compare as their unquoted
//!   text (`"a"` = `a`); every row must have the same number of fields; `\r\n` = `\n`.

use std::fmt;

/// The structured formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Structured {
    /// JSON (serde_json).
    Json,
    /// YAML (serde_yaml_ng).
    Yaml,
    /// TOML (toml).
    Toml,
    /// XML (roxmltree).
    Xml,
    /// CSV (csv).
    Csv,
}

impl Structured {
    /// From a metric name.
    pub fn from_name(s: &str) -> Option<Structured> {
        Some(match s {
            "json" => Structured::Json,
            "yaml" => Structured::Yaml,
            "toml" => Structured::Toml,
            "xml" => Structured::Xml,
            "csv" => Structured::Csv,
            _ => return None,
        })
    }

    /// Parse `text` (its payload, see [`payload`]) into a comparable tree.
    pub fn parse(self, text: &str) -> Result<Node, String> {
        let p = payload(text);
        match self {
            Structured::Json => serde_json::from_str::<serde_json::Value>(p).map(|v| from_json(&v)).map_err(|e| e.to_string()),
            Structured::Yaml => {
                let mut v: serde_yaml_ng::Value = serde_yaml_ng::from_str(p).map_err(|e| e.to_string())?;
                v.apply_merge().map_err(|e| e.to_string())?;
                Ok(from_yaml(&v))
            }
            Structured::Toml => p.parse::<toml::Table>().map(|t| from_toml(&toml::Value::Table(t))).map_err(|e| e.to_string()),
            Structured::Xml => {
                let doc = roxmltree::Document::parse(p).map_err(|e| e.to_string())?;
                Ok(from_xml(doc.root_element()))
            }
            Structured::Csv => parse_csv(p),
        }
    }
}

impl fmt::Display for Structured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Structured::Json => "json",
            Structured::Yaml => "yaml",
            Structured::Toml => "toml",
            Structured::Xml => "xml",
            Structured::Csv => "csv",
        })
    }
}

/// The body of the first ``` fenced block of `text`, else `text`; without leading blank lines
/// and trailing whitespace.
pub fn payload(text: &str) -> &str {
    let body = match text.find("```") {
        Some(start) => {
            let after = &text[start + 3..];
            let body = &after[after.find('\n').map_or(after.len(), |i| i + 1)..];
            &body[..body.find("```").unwrap_or(body.len())]
        }
        None => text,
    };
    let body = body.trim_end();
    // Drop leading blank lines but keep the first line's indentation (YAML may be indented).
    let mut start = 0;
    for line in body.split_inclusive('\n') {
        if !line.trim().is_empty() {
            break;
        }
        start += line.len();
    }
    &body[start..]
}

/// A parsed value of any of the formats.
#[derive(Clone, Debug)]
pub enum Node {
    /// null / `~`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A non-integer number (or one too large for an integer).
    Float(f64),
    /// A string (also a TOML date-time, as its text).
    Str(String),
    /// A list, ordered.
    List(Vec<Node>),
    /// A map; order does not matter for equality.
    Map(Vec<(Node, Node)>),
    /// A YAML tagged value.
    Tagged(String, Box<Node>),
    /// An XML element: (namespace, local name), attributes (a set), children in order.
    Element {
        /// (namespace URI or "", local name).
        name: (String, String),
        /// (namespace URI or "", local name, value), compared as a set.
        attrs: Vec<(String, String, String)>,
        /// Child elements and text runs, in order.
        children: Vec<Node>,
    },
}

fn int_eq_float(i: i128, f: f64) -> bool {
    f.is_finite() && f.fract() == 0.0 && f.abs() < 1.7e38 && f as i128 == i
}

impl PartialEq for Node {
    fn eq(&self, other: &Node) -> bool {
        use Node::*;
        match (self, other) {
            (Null, Null) => true,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (Float(a), Float(b)) => a == b || (a.is_nan() && b.is_nan()),
            (Int(i), Float(f)) | (Float(f), Int(i)) => int_eq_float(*i, *f),
            (Str(a), Str(b)) => a == b,
            (List(a), List(b)) => a == b,
            (Map(a), Map(b)) => {
                a.len() == b.len()
                    && a.iter().all(|(k, v)| b.iter().any(|(k2, v2)| k == k2 && v == v2))
                    && b.iter().all(|(k, v)| a.iter().any(|(k2, v2)| k == k2 && v == v2))
            }
            (Tagged(t, v), Tagged(t2, v2)) => t == t2 && v == v2,
            (Element { name, attrs, children }, Element { name: n2, attrs: a2, children: c2 }) => {
                name == n2 && attrs.len() == a2.len() && attrs.iter().all(|a| a2.contains(a)) && children == c2
            }
            _ => false,
        }
    }
}

fn from_json(v: &serde_json::Value) -> Node {
    use serde_json::Value as V;
    match v {
        V::Null => Node::Null,
        V::Bool(b) => Node::Bool(*b),
        V::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Node::Int(i.into()),
            (None, Some(u)) => Node::Int(u.into()),
            _ => Node::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        V::String(s) => Node::Str(s.clone()),
        V::Array(a) => Node::List(a.iter().map(from_json).collect()),
        V::Object(o) => Node::Map(o.iter().map(|(k, v)| (Node::Str(k.clone()), from_json(v))).collect()),
    }
}

fn from_yaml(v: &serde_yaml_ng::Value) -> Node {
    use serde_yaml_ng::Value as V;
    match v {
        V::Null => Node::Null,
        V::Bool(b) => Node::Bool(*b),
        V::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Node::Int(i.into()),
            (None, Some(u)) => Node::Int(u.into()),
            _ => Node::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        V::String(s) => Node::Str(s.clone()),
        V::Sequence(a) => Node::List(a.iter().map(from_yaml).collect()),
        V::Mapping(m) => Node::Map(m.iter().map(|(k, v)| (from_yaml(k), from_yaml(v))).collect()),
        V::Tagged(t) => Node::Tagged(t.tag.to_string(), Box::new(from_yaml(&t.value))),
    }
}

fn from_toml(v: &toml::Value) -> Node {
    use toml::Value as V;
    match v {
        V::String(s) => Node::Str(s.clone()),
        V::Integer(i) => Node::Int((*i).into()),
        V::Float(f) => Node::Float(*f),
        V::Boolean(b) => Node::Bool(*b),
        V::Datetime(d) => Node::Str(d.to_string()),
        V::Array(a) => Node::List(a.iter().map(from_toml).collect()),
        V::Table(t) => Node::Map(t.iter().map(|(k, v)| (Node::Str(k.clone()), from_toml(v))).collect()),
    }
}

fn from_xml(e: roxmltree::Node) -> Node {
    let name = (e.tag_name().namespace().unwrap_or("").to_string(), e.tag_name().name().to_string());
    let attrs = e.attributes().map(|a| (a.namespace().unwrap_or("").to_string(), a.name().to_string(), a.value().to_string())).collect();
    let mut children = Vec::new();
    for c in e.children() {
        if c.is_element() {
            children.push(from_xml(c));
        } else if c.is_text() {
            let t = c.text().unwrap_or("").trim();
            if !t.is_empty() {
                // Adjacent text (e.g. text then CDATA) is one run.
                if let Some(Node::Str(prev)) = children.last_mut() {
                    prev.push_str(t);
                } else {
                    children.push(Node::Str(t.to_string()));
                }
            }
        }
    }
    Node::Element { name, attrs, children }
}

fn parse_csv(text: &str) -> Result<Node, String> {
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| e.to_string())?;
        rows.push(Node::List(rec.iter().map(|f| Node::Str(f.to_string())).collect()));
    }
    if rows.is_empty() {
        return Err("no rows".into());
    }
    Ok(Node::List(rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Structured::*;

    fn same(f: Structured, a: &str, b: &str) -> bool {
        f.parse(a).unwrap() == f.parse(b).unwrap()
    }

    #[test]
    fn json_numbers_and_key_order() {
        assert!(same(Json, r#"{"a": 1, "b": [1.0, 2]}"#, r#"{"b": [1e0, 2.0], "a": 1.0}"#));
        assert!(same(Json, "100", "1e2"));
        assert!(!same(Json, r#"{"a": 1}"#, r#"{"a": "1"}"#));
        assert!(!same(Json, "[1, 2]", "[2, 1]"));
        assert!(!same(Json, "0.1", "0.10000001"));
        assert!(same(Json, "18446744073709551615", "18446744073709551615"));
        assert!(!same(Json, r#"{"a": 1}"#, r#"{"a": 1, "b": null}"#));
        assert!(Json.parse("{'a': 1}").is_err());
    }

    #[test]
    fn fenced_payload() {
        assert_eq!(payload("Here it is:\n```json\n{\"a\": 1}\n```\nDone."), "{\"a\": 1}");
        assert_eq!(payload("\n\n  a: 1\n  b: 2\n\n"), "  a: 1\n  b: 2");
        assert_eq!(payload("```\nx\n"), "x");
        assert!(same(Json, "```json\n{\"a\": [1]}\n```", "{\"a\":[1.0]}"));
        assert!(same(Yaml, "```yaml\n  a: 1\n  b: 2\n```", "b: 2\na: 1"));
    }

    #[test]
    fn yaml_anchors_merges_and_tags() {
        let a = "base: &b {x: 1, y: 2}\nitem:\n  <<: *b\n  y: 3\nlist: [*b]\n";
        let b = "base: {y: 2, x: 1}\nitem: {x: 1, y: 3}\nlist:\n  - {x: 1, y: 2}\n";
        assert!(same(Yaml, a, b));
        assert!(same(Yaml, "a: 1.0", "a: 1"));
        assert!(!same(Yaml, "a: '1'", "a: 1"));
        assert!(!same(Yaml, "a: !foo 1", "a: 1"));
        assert!(same(Yaml, "a: !foo 1", "a: !foo 1"));
        assert!(same(Yaml, "a: ~", "a: null"));
        assert!(same(Yaml, "{\"a\": [1, 2]}", "a:\n  - 1\n  - 2"), "JSON is YAML");
        assert!(Yaml.parse("a: [1, 2").is_err());
        assert!(Yaml.parse("a: *nope").is_err());
    }

    #[test]
    fn toml_tables() {
        let a = "title = \"x\"\n[owner]\nname = \"Tom\"\ndob = 1979-05-27T07:32:00-08:00\n[[items]]\nn = 1\n";
        let b = "items = [{n = 1.0}]\ntitle = 'x'\nowner = {dob = 1979-05-27T07:32:00-08:00, name = \"Tom\"}\n";
        assert!(same(Toml, a, b));
        assert!(!same(Toml, "a = 1", "a = \"1\""));
        assert!(Toml.parse("a = ").is_err());
        assert!(Toml.parse("a = 1\na = 2").is_err(), "duplicate key");
    }

    #[test]
    fn xml_attribute_order_and_whitespace() {
        assert!(same(
            Xml,
            r#"<a x="1" y="2"><b>t</b></a>"#,
            "<?xml version=\"1.0\"?>\n<a y=\"2\" x=\"1\">\n  <b> t </b>\n  <!-- c -->\n</a>"
        ));
        assert!(!same(Xml, "<a><b/><c/></a>", "<a><c/><b/></a>"), "child order matters");
        assert!(!same(Xml, r#"<a x="1"/>"#, r#"<a x="2"/>"#));
        assert!(same(Xml, r#"<p:a xmlns:p="urn:x"/>"#, r#"<q:a xmlns:q="urn:x"/>"#), "prefix does not matter");
        assert!(!same(Xml, r#"<p:a xmlns:p="urn:x"/>"#, r#"<p:a xmlns:p="urn:y"/>"#));
        assert!(same(Xml, "<a>x &amp; <![CDATA[y]]></a>", "<a>x &amp; y</a>"));
        assert!(Xml.parse("<a><b></a>").is_err());
        assert!(Xml.parse("<a/><b/>").is_err());
    }

    #[test]
    fn csv_quoting_and_newlines() {
        let a = "name,note\r\n\"Smith, J\",\"line1\nline2\"\r\nbob,\"say \"\"hi\"\"\"\r\n";
        // Same table with \n line ends, a quoted header field and no final newline.
        let b = "\"name\",note\n\"Smith, J\",\"line1\nline2\"\nbob,\"say \"\"hi\"\"\"";
        assert!(same(Csv, a, b));
        assert!(!same(Csv, a, "name,note\n\"Smith, J\",\"line1 line2\"\nbob,\"say \"\"hi\"\"\""), "the embedded newline counts");
        let Node::List(rows) = Csv.parse(a).unwrap() else { panic!() };
        assert_eq!(rows[1], Node::List(vec![Node::Str("Smith, J".into()), Node::Str("line1\nline2".into())]));
        assert_eq!(rows[2], Node::List(vec![Node::Str("bob".into()), Node::Str("say \"hi\"".into())]));
        assert!(!same(Csv, "a,b\n1,2", "b,a\n2,1"), "column order matters");
        assert!(Csv.parse("a,b\n1,2,3").is_err(), "ragged rows");
        assert!(Csv.parse("").is_err());
    }
}
