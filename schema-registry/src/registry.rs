//! A client of Confluent-compatible schema registries (Confluent, Redpanda, Apicurio's ccompat
//! API, Karapace): a subject's latest schema, and schemas by id, each id fetched once and
//! cached for the life of the process (ids are immutable).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::source::{convert, Resolved, SchemaKind, SourceError};

/// Where the registry is and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryConfig {
    /// `http://host:8081` or `https://…` (a path prefix is kept).
    pub url: String,
    /// HTTP basic auth.
    pub username: Option<String>,
    pub password: Option<String>,
    /// A PEM file of CA certificates to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Worth retrying: connection refused or reset, timeout, 5xx.
    #[error("schema registry {url} unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// The subject or id does not exist.
    #[error("schema registry {url}: {what} not found")]
    NotFound { url: String, what: String },
    /// Any other refusal (401, 403, 422…) or an answer that is not a schema.
    #[error("schema registry {url} refused {what}: {message}")]
    Refused {
        url: String,
        what: String,
        message: String,
    },
    #[error(transparent)]
    Schema(#[from] SourceError),
}

impl RegistryError {
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Unreachable { .. })
    }
}

/// A registry client with a cache of schemas by id.
pub struct Registry {
    cfg: RegistryConfig,
    http: reqwest::Client,
    by_id: Mutex<HashMap<u32, Arc<Resolved>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.cfg.url)
            .finish()
    }
}

impl Registry {
    pub fn new(cfg: RegistryConfig) -> Result<Registry, RegistryError> {
        let refused = |message: String| RegistryError::Refused {
            url: cfg.url.clone(),
            what: "the client settings".into(),
            message,
        };
        let mut b = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)));
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| refused(format!("reading ca_file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| refused(format!("ca_file {}: {e}", path.display())))?;
            b = b.tls_certs_merge(certs);
        }
        let http = b.build().map_err(|e| refused(e.to_string()))?;
        Ok(Registry {
            cfg,
            http,
            by_id: Mutex::new(HashMap::new()),
        })
    }

    pub fn url(&self) -> &str {
        &self.cfg.url
    }

    async fn get(&self, path: &str, what: &str) -> Result<Value, RegistryError> {
        let url = format!("{}/{path}", self.cfg.url.trim_end_matches('/'));
        let mut req = self.http.get(&url).header(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        if let Some(user) = &self.cfg.username {
            req = req.basic_auth(user, self.cfg.password.as_deref());
        }
        let unreachable = |message: String| RegistryError::Unreachable {
            url: self.cfg.url.clone(),
            message,
        };
        let resp = req.send().await.map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| unreachable(e.to_string()))?;
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            return Err(unreachable(format!("{status}: {body}")));
        }
        if status.as_u16() == 404 {
            return Err(RegistryError::NotFound {
                url: self.cfg.url.clone(),
                what: what.to_string(),
            });
        }
        let refused = |message: String| RegistryError::Refused {
            url: self.cfg.url.clone(),
            what: what.to_string(),
            message,
        };
        if !status.is_success() {
            return Err(refused(format!("{status}: {body}")));
        }
        serde_json::from_str(&body).map_err(|e| refused(format!("not JSON: {e}")))
    }

    fn resolve(&self, v: &Value, origin: String) -> Result<Arc<Resolved>, RegistryError> {
        let text = v["schema"].as_str().ok_or_else(|| RegistryError::Refused {
            url: self.cfg.url.clone(),
            what: origin.clone(),
            message: "the answer has no `schema`".into(),
        })?;
        let kind = match v["schemaType"].as_str().unwrap_or("AVRO") {
            "AVRO" => SchemaKind::Avro,
            "JSON" => SchemaKind::JsonSchema,
            other => {
                return Err(RegistryError::Refused {
                    url: self.cfg.url.clone(),
                    what: origin,
                    message: format!("schema type {other} is not supported (AVRO or JSON)"),
                })
            }
        };
        let schema = convert(kind, text, &origin)?;
        Ok(Arc::new(Resolved {
            schema,
            kind,
            origin,
            text: text.to_string(),
        }))
    }

    /// The latest version of `subject`: its id and schema (also cached by id).
    pub async fn latest(&self, subject: &str) -> Result<(u32, Arc<Resolved>), RegistryError> {
        let what = format!("subject `{subject}`");
        let v = self
            .get(
                &format!("subjects/{}/versions/latest", encode(subject)),
                &what,
            )
            .await?;
        let id = v["id"].as_u64().ok_or_else(|| RegistryError::Refused {
            url: self.cfg.url.clone(),
            what: what.clone(),
            message: "the answer has no `id`".into(),
        })? as u32;
        let origin = format!(
            "{} subject {subject} version {} (id {id})",
            self.cfg.url, v["version"]
        );
        let r = self.resolve(&v, origin)?;
        self.by_id.lock().expect("cache").insert(id, r.clone());
        Ok((id, r))
    }

    /// The schema with this id, from the cache or the registry.
    pub async fn by_id(&self, id: u32) -> Result<Arc<Resolved>, RegistryError> {
        if let Some(r) = self.cached(id) {
            return Ok(r);
        }
        let v = self
            .get(&format!("schemas/ids/{id}"), &format!("schema id {id}"))
            .await?;
        let r = self.resolve(&v, format!("{} schema id {id}", self.cfg.url))?;
        self.by_id.lock().expect("cache").insert(id, r.clone());
        Ok(r)
    }

    pub fn cached(&self, id: u32) -> Option<Arc<Resolved>> {
        self.by_id.lock().expect("cache").get(&id).cloned()
    }
}

/// Percent-encodes a subject name for a URL path segment.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
