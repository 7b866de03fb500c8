//! `kind = "webhook"`: one `POST` per new partition, with a JSON document describing it.
//!
//! ```json
//! {"table": "cloudtrail", "catalog_table": "cloudtrail",
//!  "columns": ["date", "hour"], "values": ["2024-01-02", "01"],
//!  "path": "date=2024-01-02/hour=01",
//!  "location": "s3://lake/logs/cloudtrail/date=2024-01-02/hour=01/",
//!  "files": [{"key": "…", "records": 812, "bytes": 90311,
//!             "min_event_time": "2024-01-02T01:00:03.120Z", "max_event_time": "…"}]}
//! ```
//! Headers: `Idempotency-Key` (hex SHA-256 of `{table}/{path}`, the same for every retry and
//! replay of that partition) and, with `secret`, `X-Lakesink-Signature: sha256=<hex
//! HMAC-SHA256 of the body>`. A 2xx answer is success; 5xx, 408, 429 and connection failures
//! are retried; any other status stops the daemon.

use aws_lc_rs::{digest, hmac};
use futures::future::BoxFuture;
use serde_json::json;

use crate::units::hex;

use super::{
    http_error, transport_error, Catalog, CatalogError, CatalogTable, NewPartition, SealedPartition,
};
use crate::config::WebhookPlan;

const KIND: &str = "webhook";
pub const SIGNATURE_HEADER: &str = "x-lakesink-signature";

pub struct Webhook {
    http: reqwest::Client,
    url: url::Url,
    key: Option<hmac::Key>,
}

impl Webhook {
    pub fn new(plan: &WebhookPlan) -> Result<Webhook, CatalogError> {
        Ok(Webhook {
            http: reqwest::Client::builder()
                .timeout(plan.timeout)
                .build()
                .map_err(|e| CatalogError::Refused {
                    catalog: KIND,
                    what: "the configuration".into(),
                    message: e.to_string(),
                })?,
            url: plan.url.clone(),
            key: plan
                .secret
                .as_ref()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.as_bytes())),
        })
    }

    async fn post(
        &self,
        document: &serde_json::Value,
        what: String,
        idempotency: String,
    ) -> Result<(), CatalogError> {
        let body = serde_json::to_vec(document).expect("JSON");
        let what = format!("POST {} for {what}", self.url);
        let mut req = self
            .http
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("idempotency-key", idempotency);
        if let Some(key) = &self.key {
            req = req.header(SIGNATURE_HEADER, signature(key, &body));
        }
        let response = req
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(KIND, &what, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        Err(http_error(KIND, &what, Some(status.as_u16()), text))
    }
}

/// The JSON document for one new partition.
pub fn document(t: &CatalogTable, p: &NewPartition) -> serde_json::Value {
    let time = |micros: i64| {
        chrono::DateTime::from_timestamp_micros(micros)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    };
    json!({
        "table": t.name,
        "catalog_table": t.table,
        "columns": t.partition_columns,
        "values": p.values(),
        "path": p.path,
        "location": p.location,
        "files": p.files.iter().map(|f| json!({
            "key": f.key,
            "records": f.records,
            "bytes": f.bytes,
            "min_event_time": time(f.min_event_micros),
            "max_event_time": time(f.max_event_micros),
        })).collect::<Vec<_>>(),
    })
}

pub fn idempotency_key(table: &str, path: &str) -> String {
    hex(digest::digest(&digest::SHA256, format!("{table}/{path}").as_bytes()).as_ref())
}

pub fn signature(key: &hmac::Key, body: &[u8]) -> String {
    format!("sha256={}", hex(hmac::sign(key, body).as_ref()))
}

impl Catalog for Webhook {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn load<'a>(
        &'a self,
        _: &'a CatalogTable,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, CatalogError>> {
        // A webhook cannot be asked what it has; the receiver dedupes by Idempotency-Key.
        Box::pin(async { Ok(None) })
    }

    fn register<'a>(
        &'a self,
        t: &'a CatalogTable,
        partitions: &'a [&'a NewPartition],
    ) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async move {
            for p in partitions {
                let what = format!("{}/{}", t.name, p.path);
                self.post(&document(t, p), what, idempotency_key(&t.name, &p.path))
                    .await?;
            }
            Ok(())
        })
    }

    fn seal<'a>(
        &'a self,
        t: &'a CatalogTable,
        s: &'a SealedPartition,
    ) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async move {
            let what = format!(
                "the seal of {}/{} (generation {})",
                t.name, s.path, s.generation
            );
            let key = idempotency_key(&t.name, &format!("{}#sealed/{}", s.path, s.generation));
            self.post(&sealed_document(t, s), what, key).await
        })
    }
}

/// The JSON document of a sealed partition: `"event": "sealed"`, its generation, records,
/// watermark and manifest (every object with its offsets).
pub fn sealed_document(t: &CatalogTable, s: &SealedPartition) -> serde_json::Value {
    json!({
        "event": "sealed",
        "table": t.name,
        "catalog_table": t.table,
        "path": s.path,
        "location": s.location,
        "generation": s.generation,
        "records": s.records,
        "bytes": s.bytes,
        "files": s.files,
        "watermark": s.watermark,
        "manifest_key": s.manifest_key,
        "manifest": s.manifest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        assert_eq!(
            signature(&key, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn idempotency_key_is_stable_and_distinct() {
        assert_eq!(
            idempotency_key("t", "date=1"),
            idempotency_key("t", "date=1")
        );
        assert_ne!(
            idempotency_key("t", "date=1"),
            idempotency_key("t", "date=2")
        );
        assert_eq!(idempotency_key("t", "date=1").len(), 64);
    }
}
