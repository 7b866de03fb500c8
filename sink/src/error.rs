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
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Verify(Box<crate::verify::VerifyError>),
    #[error(transparent)]
    Offsets(Box<crate::kafka::OffsetsError>),
    #[error(transparent)]
    Compact(Box<crate::compact::CompactError>),
    #[error("starting {what}: {source}")]
    Thread {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} ended abnormally: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("creating the dead-letter producer: {source}")]
    DeadLetterProducer {
        #[source]
        source: rdkafka::error::KafkaError,
    },
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
    #[error(transparent)]
    Ddl(#[from] crate::ddl::DdlError),
    /// A background task's error of a type no stage above names (kept whole as its source).
    #[error("a background task failed")]
    Background {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The pipeline stopped for a fatal error that was taken before it could be returned.
    #[error("stopped after a fatal error whose cause was already reported")]
    FatalWithoutCause,
}

impl From<crate::kafka::OffsetsError> for Error {
    fn from(e: crate::kafka::OffsetsError) -> Self {
        Error::Offsets(Box::new(e))
    }
}

impl From<crate::verify::VerifyError> for Error {
    fn from(e: crate::verify::VerifyError) -> Self {
        Error::Verify(Box::new(e))
    }
}

impl From<crate::compact::CompactError> for Error {
    fn from(e: crate::compact::CompactError) -> Self {
        Error::Compact(Box::new(e))
    }
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
            Err(source) => Error::Background { source },
        }
    }

    /// How a run that failed with this error exits, so that a supervisor can tell "fix the
    /// configuration" from "try again later" (the codes are in `docs/OPERATING.md`).
    pub fn exit_kind(&self) -> ExitKind {
        use crate::catalog::CatalogError;
        use crate::claim::ClaimError;
        use crate::upload::UploadError;
        fn store(e: &object_store::Error) -> ExitKind {
            match e {
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
                | object_store::Error::NotFound { .. } => ExitKind::Refused,
                _ => ExitKind::Transient,
            }
        }
        fn catalog(e: &CatalogError) -> ExitKind {
            match e {
                CatalogError::Unreachable { .. } => ExitKind::Transient,
                CatalogError::Refused { .. } => ExitKind::Refused,
            }
        }
        match self {
            Error::Config(_) | Error::Http(_) | Error::Storage(_) => ExitKind::Config,
            Error::DeadLetterProducer { .. } => ExitKind::Config,
            Error::Thread { .. } | Error::Task { .. } => ExitKind::Failure,
            Error::Consume(e) => match e {
                ConsumeError::Create { .. }
                | ConsumeError::Subscribe { .. }
                | ConsumeError::NoTopic { .. } => ExitKind::Config,
                ConsumeError::Fatal { .. } | ConsumeError::CommitRefused { .. } => {
                    ExitKind::Refused
                }
                _ => ExitKind::Transient,
            },
            Error::Write(e) => match e {
                WriteError::BadRecord { .. } => ExitKind::BadRecord,
                WriteError::Upload(UploadError::Store { source, .. })
                | WriteError::Claim(ClaimError::Store { source, .. }) => store(source),
                WriteError::Catalog(e) => catalog(e),
                WriteError::Registry { .. } => ExitKind::Transient,
                _ => ExitKind::Failure,
            },
            Error::Catalog(e) => catalog(e),
            Error::Compact(e) => {
                use crate::compact::CompactError;
                match e.as_ref() {
                    CompactError::NoSuchTable(_) | CompactError::Storage(_) => ExitKind::Config,
                    CompactError::Open(source) => catalog(source),
                    CompactError::Store { source, .. } => store(source),
                    CompactError::Catalog { source, .. } => catalog(source),
                    _ => ExitKind::Failure,
                }
            }
            Error::Offsets(e) => match e.as_ref() {
                crate::kafka::OffsetsError::Create { .. } => ExitKind::Config,
                _ => ExitKind::Transient,
            },
            Error::Verify(e) => {
                use crate::verify::VerifyError;
                match e.as_ref() {
                    VerifyError::NoSuchTable(_) => ExitKind::Config,
                    VerifyError::List { source, .. }
                    | VerifyError::Read { source, .. }
                    | VerifyError::Claims(ClaimError::Store { source, .. }) => store(source),
                    VerifyError::Claims(ClaimError::Corrupt { .. }) | VerifyError::Task { .. } => {
                        ExitKind::Failure
                    }
                    VerifyError::Kafka { .. }
                    | VerifyError::KafkaStalled { .. }
                    | VerifyError::Committed { .. } => ExitKind::Transient,
                    VerifyError::Route { .. } => ExitKind::Config,
                    VerifyError::Offsets(crate::kafka::OffsetsError::Create { .. })
                    | VerifyError::Storage(_) => ExitKind::Config,
                    VerifyError::Offsets(_) => ExitKind::Transient,
                }
            }
            Error::Store { source, .. } => store(source),
            Error::Unfenced { .. } => ExitKind::Refused,
            Error::DrainTimeout { .. } => ExitKind::DrainTimeout,
            Error::Ddl(_) => ExitKind::Config,
            Error::Commit(_) | Error::Background { .. } | Error::FatalWithoutCause => {
                ExitKind::Failure
            }
        }
    }
}

/// The exit status of a failed run, by what a supervisor should do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// 1: anything else (a bug: please report it).
    Failure = 1,
    /// 2: the configuration is wrong (also for command-line mistakes): fix it.
    Config = 2,
    /// 3: the store, the catalog or the broker refused for good (permissions, a missing
    /// bucket or table, a store without create-only writes, a fenced member): fix access.
    Refused = 3,
    /// 4: a transient error lasted past its retry window (`storage.retry_timeout`,
    /// `pipeline.commit_timeout`, an unreachable registry): try again later.
    Transient = 4,
    /// 5: a bad record with `on_bad_record = "fail"`: fix or skip the record, or use `dlq`.
    BadRecord = 5,
    /// 6: the drain after SIGTERM passed `pipeline.drain_timeout`; nothing is lost, what was
    /// not committed is read again.
    DrainTimeout = 6,
}

impl ExitKind {
    pub fn code(self) -> u8 {
        self as u8
    }
}
