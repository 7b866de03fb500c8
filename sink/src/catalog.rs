//! Catalog stage: tells the table catalog about new partitions, after their objects are uploaded
//! and before the offsets that cover them are committed.
//!
//! This version ships the `none` catalog: query engines find partitions through partition
//! projection or a crawler. Glue, Hive Metastore and webhook catalogs implement [`Catalog`].

use futures::future::BoxFuture;

/// A partition that now holds at least one uploaded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPartition {
    pub table: String,
    /// The Hive path below the table, e.g. `date=2024-01-02/hour=01`.
    pub path: String,
    /// Full location, e.g. `s3://bucket/prefix/cloudtrail/date=2024-01-02/hour=01/`.
    pub location: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("registering partition {path} of table {table}: {message}")]
    Register {
        table: String,
        path: String,
        message: String,
    },
}

/// Registers partitions; "already exists" is success.
pub trait Catalog: Send + Sync {
    fn register<'a>(
        &'a self,
        partitions: &'a [NewPartition],
    ) -> BoxFuture<'a, Result<(), CatalogError>>;
    fn kind(&self) -> &'static str;
}

/// `kind = "none"`: nothing to tell.
#[derive(Debug, Default)]
pub struct NoCatalog;

impl Catalog for NoCatalog {
    fn register<'a>(&'a self, _: &'a [NewPartition]) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async { Ok(()) })
    }
    fn kind(&self) -> &'static str {
        "none"
    }
}
