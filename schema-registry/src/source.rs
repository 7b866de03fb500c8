//! Where a table's schema comes from: a file in `schema-registry/schemas/` (Avro `.avsc` or
//! JSON Schema `.json`), or one of the schemas built into the binary (the same files, so
//! `lakesink demo` and a container without the repository find them too).

use std::path::{Path, PathBuf};

use arrow_schema::Schema;

/// The schemas shipped in `schema-registry/schemas/`, compiled in.
pub const BUILTIN: &[(&str, &str)] = &[(
    "cloudtrail.avsc",
    include_str!("../schemas/cloudtrail.avsc"),
)];

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("schema file `{name}` not found (looked in {})", looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound { name: String, looked: Vec<PathBuf> },
    #[error("reading schema file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("schema file `{name}`: the name must end in .avsc (Avro) or .json (JSON Schema)")]
    Kind { name: String },
    #[error("schema {origin}: {message}")]
    Convert { origin: String, message: String },
}

/// The language of a schema text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaKind {
    Avro,
    JsonSchema,
}

impl SchemaKind {
    pub fn of_file(name: &str) -> Option<SchemaKind> {
        if name.ends_with(".avsc") {
            Some(SchemaKind::Avro)
        } else if name.ends_with(".json") {
            Some(SchemaKind::JsonSchema)
        } else {
            None
        }
    }
}

/// A schema resolved to Arrow, with where it came from (for messages and `check`).
#[derive(Clone, Debug)]
pub struct Resolved {
    pub schema: Schema,
    pub kind: SchemaKind,
    pub origin: String,
    pub text: String,
}

/// Converts a schema text of the given kind to Arrow.
pub fn convert(kind: SchemaKind, text: &str, origin: &str) -> Result<Schema, SourceError> {
    let r = match kind {
        SchemaKind::Avro => crate::avro::to_arrow(text).map_err(|e| e.to_string()),
        SchemaKind::JsonSchema => crate::json_schema::to_arrow(text).map_err(|e| e.to_string()),
    };
    r.map_err(|message| SourceError::Convert {
        origin: origin.to_string(),
        message,
    })
}

/// Finds `name` in each of `dirs` in turn (an absolute `name` is read as is), then among the
/// built-in schemas, and converts it.
pub fn resolve_file(name: &str, dirs: &[PathBuf]) -> Result<Resolved, SourceError> {
    let kind = SchemaKind::of_file(name).ok_or_else(|| SourceError::Kind {
        name: name.to_string(),
    })?;
    let mut looked = Vec::new();
    let candidates: Vec<PathBuf> = if Path::new(name).is_absolute() {
        vec![PathBuf::from(name)]
    } else {
        dirs.iter().map(|d| d.join(name)).collect()
    };
    for path in candidates {
        if path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(|source| SourceError::Read {
                path: path.clone(),
                source,
            })?;
            let origin = path.display().to_string();
            let schema = convert(kind, &text, &origin)?;
            return Ok(Resolved {
                schema,
                kind,
                origin,
                text,
            });
        }
        looked.push(path);
    }
    if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name) {
        let origin = format!("{name} (built in)");
        let schema = convert(kind, text, &origin)?;
        return Ok(Resolved {
            schema,
            kind,
            origin,
            text: text.to_string(),
        });
    }
    Err(SourceError::NotFound {
        name: name.to_string(),
        looked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_cloudtrail_schema_is_the_shipped_file() {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/cloudtrail.avsc"),
        )
        .unwrap();
        assert_eq!(BUILTIN[0].1, shipped);
        let r = resolve_file("cloudtrail.avsc", &[PathBuf::from("/nonexistent")]).unwrap();
        assert!(r.origin.contains("built in"));
        assert!(r.schema.field_with_name("eventTime").is_ok());
    }

    #[test]
    fn a_file_in_a_search_dir_wins_and_a_missing_one_names_where_it_looked() {
        let dir = std::env::temp_dir().join(format!("lakesink-schema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("t.json"),
            r#"{"type":"object","properties":{"a":{"type":"integer"}}}"#,
        )
        .unwrap();
        let r = resolve_file("t.json", std::slice::from_ref(&dir)).unwrap();
        assert_eq!(r.kind, SchemaKind::JsonSchema);
        assert_eq!(r.schema.fields().len(), 1);
        let e = resolve_file("nope.avsc", std::slice::from_ref(&dir)).unwrap_err();
        assert!(e.to_string().contains("nope.avsc"), "{e}");
        assert!(e.to_string().contains(&dir.display().to_string()), "{e}");
        assert!(matches!(
            resolve_file("x.txt", &[]),
            Err(SourceError::Kind { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
