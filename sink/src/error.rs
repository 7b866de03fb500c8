//! The crate's top-level error, gathering each stage's error type. (Background threads and
//! tasks report the error that must stop the daemon through [`crate::fatal::Fatal`], which
//! knows no stage; [`Error::from_fatal`] gives it its type back.)

use crate::commit::CommitError;
use crate::config::ConfigError;
use crate::consume::ConsumeError;
use crate::writer::WriteError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Consume(#[from] ConsumeError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("object store {url}: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("object store {url} does not refuse a second create-only write ({found}): segment claims could not stop a writer that lost its partition from overwriting another's records. Use a store that enforces If-None-Match (S3, MinIO, SeaweedFS, GCS, Azure, a local disk; for S3 clients set storage.options.conditional_put = \"etag\"), or set storage.unfenced = \"at_least_once\" to run anyway, with duplicates possible but no record overwritten")]
    Unfenced { url: String, found: &'static str },
    #[error("shutdown did not finish within {secs}s: {pending} segment(s) not uploaded or not committed; their records will be read again")]
    DrainTimeout { secs: u64, pending: usize },
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The error a background thread or task reported through [`crate::fatal::Fatal`], as
    /// the stage error it is.
    pub fn from_fatal(e: crate::fatal::BoxError) -> Error {
        let e = match e.downcast::<WriteError>() {
            Ok(e) => return Error::Write(*e),
            Err(e) => e,
        };
        let e = match e.downcast::<ConsumeError>() {
            Ok(e) => return Error::Consume(*e),
            Err(e) => e,
        };
        let e = match e.downcast::<CommitError>() {
            Ok(e) => return Error::Commit(*e),
            Err(e) => e,
        };
        let e = match e.downcast::<crate::catalog::CatalogError>() {
            Ok(e) => return Error::Catalog(*e),
            Err(e) => e,
        };
        match e.downcast::<Error>() {
            Ok(e) => *e,
            Err(e) => Error::Other(e.to_string()),
        }
    }

    /// Whether retrying the same operation later may succeed (used for logging and exit codes).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Store { source, .. } => !matches!(
                source,
                object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::NotFound { .. }
            ),
            Error::Consume(_) | Error::DrainTimeout { .. } => true,
            _ => false,
        }
    }
}
