//! `[catalog]` validated into a [`CatalogPlan`]: which catalog, where, with what credentials.

use std::fmt;
use std::time::Duration;

use super::{CatalogKind, CatalogSection, ConfigError};

/// The validated `[catalog]`.
#[derive(Clone, Debug)]
pub enum CatalogPlan {
    None,
    Glue(GluePlan),
    Hive(HivePlan),
    Webhook(WebhookPlan),
}

impl CatalogPlan {
    pub fn kind(&self) -> &'static str {
        match self {
            CatalogPlan::None => "none",
            CatalogPlan::Glue(_) => "glue",
            CatalogPlan::Hive(_) => "hive",
            CatalogPlan::Webhook(_) => "webhook",
        }
    }
}

#[derive(Clone)]
pub struct GluePlan {
    pub database: String,
    pub region: String,
    pub endpoint: Option<url::Url>,
    pub create_table: bool,
    /// (access key id, secret, session token); `None`: the standard credential chain.
    pub credentials: Option<(String, String, Option<String>)>,
    pub timeout: Duration,
}

impl fmt::Debug for GluePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GluePlan")
            .field("database", &self.database)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint.as_ref().map(url::Url::as_str))
            .field("create_table", &self.create_table)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(id, _, _)| format!("{id}:***")),
            )
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct HivePlan {
    /// `host:port` of the metastore's Thrift endpoint.
    pub address: String,
    pub database: String,
    pub create_table: bool,
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct WebhookPlan {
    pub url: url::Url,
    pub secret: Option<String>,
    pub timeout: Duration,
}

impl fmt::Debug for WebhookPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookPlan")
            .field("url", &self.url.as_str())
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish()
    }
}

pub(super) fn catalog_plan(c: &CatalogSection, origin: &str) -> Result<CatalogPlan, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: origin.to_string(),
        message,
    };
    let kind = c.kind.name();
    let timeout = c.timeout.0;
    // Keys that belong to another kind are a mistake worth naming.
    let foreign: &[(&str, bool)] = &[
        ("database", c.database.is_some()),
        ("create_table", c.create_table),
        ("region", c.region.is_some()),
        ("endpoint", c.endpoint.is_some()),
        ("access_key_id", c.access_key_id.is_some()),
        ("secret_access_key", c.secret_access_key.is_some()),
        ("session_token", c.session_token.is_some()),
        ("uri", c.uri.is_some()),
        ("url", c.url.is_some()),
        ("secret", c.secret.is_some()),
    ];
    let allowed: &[&str] = match c.kind {
        CatalogKind::None => &[],
        CatalogKind::Glue => &[
            "database",
            "create_table",
            "region",
            "endpoint",
            "access_key_id",
            "secret_access_key",
            "session_token",
        ],
        CatalogKind::Hive => &["database", "create_table", "uri"],
        CatalogKind::Webhook => &["url", "secret"],
    };
    if let Some((key, _)) = foreign.iter().find(|(k, set)| *set && !allowed.contains(k)) {
        return Err(invalid(format!(
            "catalog.{key} does not apply to catalog.kind = \"{kind}\""
        )));
    }
    let database = || {
        c.database
            .clone()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| invalid(format!("catalog.kind = \"{kind}\" needs catalog.database")))
    };
    let parse_url = |key: &str, v: &str| {
        url::Url::parse(v).map_err(|e| invalid(format!("catalog.{key} = \"{v}\": {e}")))
    };
    Ok(match c.kind {
        CatalogKind::None => CatalogPlan::None,
        CatalogKind::Glue => {
            let credentials = match (&c.access_key_id, &c.secret_access_key) {
                (Some(id), Some(secret)) => {
                    Some((id.clone(), secret.clone(), c.session_token.clone()))
                }
                (None, None) => None,
                _ => {
                    return Err(invalid(
                        "catalog.access_key_id and catalog.secret_access_key go together".into(),
                    ))
                }
            };
            CatalogPlan::Glue(GluePlan {
                database: database()?,
                region: c
                    .region
                    .clone()
                    .or_else(|| std::env::var("AWS_REGION").ok())
                    .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                    .unwrap_or_else(|| "us-east-1".into()),
                endpoint: c
                    .endpoint
                    .as_deref()
                    .map(|e| parse_url("endpoint", e))
                    .transpose()?,
                create_table: c.create_table,
                credentials,
                timeout,
            })
        }
        CatalogKind::Hive => {
            let uri = c.uri.as_deref().ok_or_else(|| {
                invalid("catalog.kind = \"hive\" needs catalog.uri = \"thrift://host:9083\"".into())
            })?;
            let u = parse_url("uri", uri)?;
            if u.scheme() != "thrift" || u.host_str().is_none() {
                return Err(invalid(format!(
                    "catalog.uri = \"{uri}\": use thrift://host:port"
                )));
            }
            CatalogPlan::Hive(HivePlan {
                address: format!(
                    "{}:{}",
                    u.host_str().unwrap_or_default(),
                    u.port().unwrap_or(9083)
                ),
                database: database()?,
                create_table: c.create_table,
                timeout,
            })
        }
        CatalogKind::Webhook => {
            let url = c
                .url
                .as_deref()
                .ok_or_else(|| invalid("catalog.kind = \"webhook\" needs catalog.url".into()))?;
            let url = parse_url("url", url)?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid(format!(
                    "catalog.url = \"{url}\": use http:// or https://"
                )));
            }
            CatalogPlan::Webhook(WebhookPlan {
                url,
                secret: c.secret.clone(),
                timeout,
            })
        }
    })
}
