//! YAML documents as a small owned tree.
//!
//! Rules, mappings and placeholder files are parsed with `saphyr` (pure Rust,
//! YAML 1.2, maintained; `serde_yaml` is unmaintained) and converted to [`Y`]
//! so the rest of the module never sees the parser's types. Mapping order is
//! kept: search identifiers and field lists are reported in file order.

use saphyr::{LoadableYamlNode, ScalarOwned, YamlOwned};

/// A YAML node.
#[derive(Clone, Debug, PartialEq)]
pub enum Y {
    /// `null`, `~` or an empty value.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string (quoted or plain).
    Str(String),
    /// A sequence.
    Seq(Vec<Y>),
    /// A mapping in document order; keys rendered as strings.
    Map(Vec<(String, Y)>),
}

impl Y {
    /// The value under `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Y> {
        match self {
            Y::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A scalar rendered as text (`None` for null, sequences and mappings).
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Y::Bool(b) => Some(b.to_string()),
            Y::Int(i) => Some(i.to_string()),
            Y::Float(f) => Some(f.to_string()),
            Y::Str(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// A string value, or a scalar rendered as one.
    pub fn as_text(&self) -> Option<String> {
        self.scalar_text()
    }

    /// A list of strings: a sequence of scalars, or one scalar.
    pub fn text_list(&self) -> Vec<String> {
        match self {
            Y::Seq(v) => v.iter().filter_map(Y::scalar_text).collect(),
            other => other.scalar_text().into_iter().collect(),
        }
    }
}

fn convert(n: &YamlOwned) -> Y {
    match n {
        YamlOwned::Value(s) => match s {
            ScalarOwned::Null => Y::Null,
            ScalarOwned::Boolean(b) => Y::Bool(*b),
            ScalarOwned::Integer(i) => Y::Int(*i),
            ScalarOwned::FloatingPoint(f) => Y::Float(f.into_inner()),
            ScalarOwned::String(s) => Y::Str(s.clone()),
        },
        YamlOwned::Representation(s, _, _) => Y::Str(s.clone()),
        YamlOwned::Sequence(v) => Y::Seq(v.iter().map(convert).collect()),
        YamlOwned::Mapping(m) => Y::Map(
            m.iter()
                .map(|(k, v)| {
                    let key = match convert(k) {
                        Y::Null => String::new(),
                        other => other.scalar_text().unwrap_or_default(),
                    };
                    (key, convert(v))
                })
                .collect(),
        ),
        YamlOwned::Tagged(_, inner) => convert(inner),
        YamlOwned::Alias(_) | YamlOwned::BadValue => Y::Null,
    }
}

/// One document of a (possibly multi-document) YAML text.
#[derive(Debug)]
pub struct Doc {
    /// 1-based line where the document starts.
    pub line: usize,
    /// The parsed document, or the parser's message.
    pub parsed: Result<Y, String>,
    /// The `id:` (or `name:`/`title:`) seen in the raw text, for error
    /// messages about documents that do not parse.
    pub raw_id: Option<String>,
}

/// Splits a YAML text on `---` lines and parses each document on its own,
/// so one broken rule does not hide the others in the same file.
pub fn documents(text: &str) -> Vec<Doc> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut start = 1;
    let flush = |cur: &mut String, start: usize, docs: &mut Vec<Doc>| {
        if cur.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#')
        }) {
            cur.clear();
            return;
        }
        let raw_id = raw_key(cur, "id")
            .or_else(|| raw_key(cur, "name"))
            .or_else(|| raw_key(cur, "title"));
        let parsed = match YamlOwned::load_from_str(cur) {
            Ok(v) => match v.first() {
                Some(n) => Ok(convert(n)),
                None => Ok(Y::Null),
            },
            Err(e) => {
                let m = e.marker();
                Err(format!(
                    "YAML error at line {}, column {}: {}",
                    m.line() + start - 1,
                    m.col() + 1,
                    e.info()
                ))
            }
        };
        docs.push(Doc {
            line: start,
            parsed,
            raw_id,
        });
        cur.clear();
    };
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- ") || t == "..." {
            flush(&mut cur, start, &mut docs);
            start = i + 2;
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    flush(&mut cur, start, &mut docs);
    docs
}

/// The value of a top-level `key: value` line in raw YAML text.
fn raw_key(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let v = rest.trim().trim_matches(|c| c == '\'' || c == '"');
        (!v.is_empty()).then(|| v.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_with_a_broken_one() {
        let docs = documents(
            "title: a\nid: 1\nx: [1, 'two', null, true]\n---\nid: broken\nx: [unclosed\n---\n# only a comment\n---\ntitle: c\n",
        );
        assert_eq!(docs.len(), 3);
        let a = docs[0].parsed.as_ref().unwrap();
        assert_eq!(a.get("title"), Some(&Y::Str("a".into())));
        assert_eq!(
            a.get("x"),
            Some(&Y::Seq(vec![
                Y::Int(1),
                Y::Str("two".into()),
                Y::Null,
                Y::Bool(true)
            ]))
        );
        assert!(docs[1].parsed.is_err());
        assert_eq!(docs[1].raw_id.as_deref(), Some("broken"));
        assert_eq!(docs[1].line, 5);
        assert_eq!(docs[2].line, 10);
    }

    #[test]
    fn quoted_numbers_stay_strings() {
        let d = documents("a: '0'\nb: 0\nc: ''\nd:\n");
        let y = d[0].parsed.as_ref().unwrap();
        assert_eq!(y.get("a"), Some(&Y::Str("0".into())));
        assert_eq!(y.get("b"), Some(&Y::Int(0)));
        assert_eq!(y.get("c"), Some(&Y::Str(String::new())));
        assert_eq!(y.get("d"), Some(&Y::Null));
    }
}
