//! The crate's top-level error, gathering each stage's error type, and [`Fatal`], where a
//! background task reports the error that must stop the daemon.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

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

/// The first fatal error any background task hit; once set, the daemon stops without
/// committing anything more.
#[derive(Debug, Default)]
pub struct Fatal {
    set: AtomicBool,
    error: Mutex<Option<Error>>,
}

impl Fatal {
    pub fn set(&self, e: Error) {
        let mut slot = self.error.lock().expect("fatal lock");
        if slot.is_none() {
            tracing::error!(error = %e, "fatal");
            *slot = Some(e);
        }
        self.set.store(true, Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    pub fn take(&self) -> Option<Error> {
        self.error.lock().expect("fatal lock").take()
    }
}
