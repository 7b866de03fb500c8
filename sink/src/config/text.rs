//! The config file as text, before serde reads it: `${VAR}` and `${VAR:-default}` in string
//! values, secrets read from `…_file = "/path"` keys, and error positions turned into a line,
//! a column and the key they belong to.
//!
//! Substitution edits the text in place (each replaced string literal is written again as one
//! TOML basic string on the same line), so line numbers in later errors stay those of the file.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// Where a value came from, for the messages.
struct Entry {
    path: String,
    /// The last key of `path`, unquoted, and the path of the table that holds it.
    name: String,
    parent: String,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    /// The value, when it is a string.
    string: Option<String>,
}

/// Every key of the document with its dotted path and spans, depth first.
fn entries(doc: &ImDocument<&str>) -> Vec<Entry> {
    fn table(t: &Table, path: &str, out: &mut Vec<Entry>) {
        for (k, item) in t.iter() {
            let key = t.key(k).and_then(|k| k.span());
            item_entries(item, path, k, key, out);
        }
    }
    fn item_entries(
        item: &Item,
        parent: &str,
        name: &str,
        key: Option<Range<usize>>,
        out: &mut Vec<Entry>,
    ) {
        let p = &join(parent, name);
        match item {
            Item::None => {}
            Item::Value(v) => value(v, parent, name, key, out),
            Item::Table(t) => {
                out.push(Entry {
                    path: p.to_string(),
                    name: name.to_string(),
                    parent: parent.to_string(),
                    key,
                    value: None,
                    string: None,
                });
                table(t, p, out)
            }
            Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    table(t, &format!("{p}[{i}]"), out)
                }
            }
        }
    }
    fn value(v: &Value, parent: &str, name: &str, key: Option<Range<usize>>, out: &mut Vec<Entry>) {
        let p = &join(parent, name);
        out.push(Entry {
            path: p.to_string(),
            name: name.to_string(),
            parent: parent.to_string(),
            key,
            value: v.span(),
            string: v.as_str().map(str::to_string),
        });
        match v {
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    value(v, parent, &format!("{name}[{i}]"), None, out)
                }
            }
            Value::InlineTable(t) => {
                for (k, v) in t.iter() {
                    let key = t.key(k).and_then(|k| k.span());
                    value(v, p, k, key, out)
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    table(doc.as_table(), "", &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    let simple = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if simple {
        key.to_string()
    } else {
        format!("\"{key}\"")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// `line L, column C` of a byte offset.
pub(super) fn position(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    format!("line {line}, column {col}")
}

/// The dotted key whose key or value holds `offset` (the innermost one).
pub(super) fn key_at(text: &str, offset: usize) -> Option<String> {
    let doc = ImDocument::parse(text).ok()?;
    entries(&doc)
        .into_iter()
        .filter(|e| {
            [&e.key, &e.value]
                .into_iter()
                .flatten()
                .any(|r| r.contains(&offset) || (r.start == offset && r.is_empty()))
        })
        .max_by_key(|e| e.path.len())
        .map(|e| e.path)
}

/// toml's message with the line, column and key up front.
pub(super) fn describe(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim().to_string();
    match e.span().map(|s| s.start) {
        Some(start) => match key_at(text, start) {
            Some(key) if !message.contains(&key) => {
                format!("{}: {key}: {message}", position(text, start))
            }
            _ => format!("{}: {message}", position(text, start)),
        },
        None => message,
    }
}

/// Why substitution failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum TextError {
    #[error("{position}: {key}: environment variable `{var}` is not set (write `${{{var}:-default}}` for a default)")]
    Undefined {
        position: String,
        key: String,
        var: String,
    },
    #[error("{position}: {key}: `{text}` is not a variable reference (use `${{NAME}}` or `${{NAME:-default}}`; `$${{` is a literal `${{`)")]
    BadReference {
        position: String,
        key: String,
        text: String,
    },
    #[error("{position}: {key}: cannot read the secret file `{file}`: {source}")]
    SecretFile {
        position: String,
        key: String,
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{position}: {key} and {key}_file are both set; keep one")]
    Both { position: String, key: String },
    #[error("{0}")]
    Syntax(String),
}

/// Where substitution looks things up: the process environment and the file system, or a
/// test's own.
pub(super) trait Lookup {
    fn var(&self, name: &str) -> Option<String>;
    fn read(&self, path: &str) -> std::io::Result<String>;
}

/// The process environment and the file system.
pub(super) struct Process;

impl Lookup for Process {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn read(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// The text with every `${VAR}` replaced and every secret `…_file` key read.
pub(super) fn substitute(text: &str, env: &dyn Lookup) -> Result<String, TextError> {
    if !text.contains('$') && !text.contains("_file") {
        return Ok(text.to_string());
    }
    let doc = ImDocument::parse(text).map_err(|e| {
        TextError::Syntax(match e.span() {
            Some(s) => format!("{}: {}", position(text, s.start), e.message().trim()),
            None => e.message().trim().to_string(),
        })
    })?;
    let all = entries(&doc);
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    for e in &all {
        let Some(span) = e.value.clone() else {
            continue;
        };
        let Some(current) = e.string.clone() else {
            continue; // not a string
        };
        let pos = || position(text, span.start);
        let base = e.name.strip_suffix("_file");
        if let (Some(base), Some(key_span)) = (base, e.key.clone()) {
            if crate::config::is_secret_key(base) {
                let base_path = join(&e.parent, base);
                if all.iter().any(|o| o.path == base_path) {
                    return Err(TextError::Both {
                        position: pos(),
                        key: base_path,
                    });
                }
                let file = expand(&current, env, &e.path, pos)?;
                let secret = env.read(&file).map_err(|source| TextError::SecretFile {
                    position: pos(),
                    key: e.path.clone(),
                    file: file.clone(),
                    source,
                })?;
                let secret = secret.trim_end_matches(['\n', '\r']);
                edits.push((key_span, join("", base)));
                edits.push((span, quote(secret)));
                continue;
            }
        }
        if current.contains('$') {
            let expanded = expand(&current, env, &e.path, pos)?;
            if expanded != current {
                edits.push((span, quote(&expanded)));
            }
        }
    }
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = text.to_string();
    for (range, with) in edits {
        out.replace_range(range, &with);
    }
    Ok(out)
}

/// `${NAME}`, `${NAME:-default}` and `$${` (a literal `${`) in one string.
fn expand(
    s: &str,
    env: &dyn Lookup,
    key: &str,
    pos: impl Fn() -> String,
) -> Result<String, TextError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(body) = tail.strip_prefix("${") {
            let end = body.find('}').ok_or_else(|| TextError::BadReference {
                position: pos(),
                key: key.to_string(),
                text: tail.to_string(),
            })?;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(TextError::BadReference {
                    position: pos(),
                    key: key.to_string(),
                    text: format!("${{{inner}}}"),
                });
            }
            match (env.var(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(TextError::Undefined {
                        position: pos(),
                        key: key.to_string(),
                        var: name.to_string(),
                    })
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A TOML basic string on one line.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake {
        vars: HashMap<&'static str, &'static str>,
        files: HashMap<&'static str, &'static str>,
    }

    impl Lookup for Fake {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.get(name).map(|s| s.to_string())
        }
        fn read(&self, path: &str) -> std::io::Result<String> {
            self.files
                .get(path)
                .map(|s| s.to_string())
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    }

    fn fake() -> Fake {
        Fake {
            vars: HashMap::from([("POD_NAME", "lakesink-7"), ("QUOTE", "a\"b\\c")]),
            files: HashMap::from([("/run/secrets/s3", "s3cr3t\n")]),
        }
    }

    #[test]
    fn variables_defaults_and_escapes() {
        let text = "[kafka]\nbrokers = \"${BROKERS:-localhost:9092}\"\n[kafka.properties]\n\"group.instance.id\" = \"${POD_NAME}\"\nx = 'lit ${QUOTE}'\ny = [\"$${NOT}\", \"$5\"]\n";
        let out = substitute(text, &fake()).unwrap();
        let v: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(v["kafka"]["brokers"].as_str(), Some("localhost:9092"));
        let p = &v["kafka"]["properties"];
        assert_eq!(p["group.instance.id"].as_str(), Some("lakesink-7"));
        assert_eq!(p["x"].as_str(), Some("lit a\"b\\c"));
        assert_eq!(p["y"][0].as_str(), Some("${NOT}"));
        assert_eq!(p["y"][1].as_str(), Some("$5"));
        assert_eq!(out.lines().count(), text.lines().count());
    }

    #[test]
    fn an_undefined_variable_names_key_and_line() {
        let text = "[storage]\nurl = \"s3://b\"\n[storage.options]\nregion = \"${REGION}\"\n";
        let e = substitute(text, &fake()).unwrap_err().to_string();
        assert!(e.contains("line 4, column 10"), "{e}");
        assert!(e.contains("storage.options.region"), "{e}");
        assert!(e.contains("`REGION` is not set"), "{e}");
        let e = substitute("a = \"${1X}\"", &fake())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a variable reference"), "{e}");
        let e = substitute("a = \"${X\"", &fake()).unwrap_err().to_string();
        assert!(e.contains("not a variable reference"), "{e}");
    }

    #[test]
    fn secrets_come_from_files() {
        let text = "[storage.options]\naws_secret_access_key_file = \"/run/secrets/s3\"\nca_file = \"/etc/ca.pem\"\n";
        let out = substitute(text, &fake()).unwrap();
        let v: toml::Table = toml::from_str(&out).unwrap();
        let o = &v["storage"]["options"];
        assert_eq!(o["aws_secret_access_key"].as_str(), Some("s3cr3t"));
        assert!(o.get("aws_secret_access_key_file").is_none());
        assert_eq!(
            o["ca_file"].as_str(),
            Some("/etc/ca.pem"),
            "not a secret key"
        );
        let missing = text.replace("/run/secrets/s3", "/nope");
        let e = substitute(&missing, &fake()).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("/nope"), "{e}");
        let both = format!("{text}aws_secret_access_key = \"x\"\n");
        let e = substitute(&both, &fake()).unwrap_err().to_string();
        assert!(e.contains("both set"), "{e}");
    }

    #[test]
    fn errors_name_the_key_at_their_offset() {
        let text = "[tables.rotate]\nmax_bytes = \"64 lots\"\n";
        let at = text.find("\"64").unwrap();
        assert_eq!(key_at(text, at).as_deref(), Some("tables.rotate.max_bytes"));
        assert_eq!(position(text, at), "line 2, column 13");
    }
}
