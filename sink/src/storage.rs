//! Opens the object store named by `storage.url`, with credentials from the environment (the
//! standard chains of each cloud) overridden by `[storage.options]`.

use std::str::FromStr;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreScheme, RetryConfig};

use crate::config::StoragePlan;

/// The key of `rel` below the store root `root` (given without slashes around it; may be
/// empty).
pub fn under_root(root: &str, rel: &str) -> String {
    if root.is_empty() {
        rel.to_string()
    } else {
        format!("{root}/{rel}")
    }
}

/// An opened store and the path prefix every table lives under.
pub struct Lake {
    pub store: Arc<dyn ObjectStore>,
    pub root: Path,
    /// `storage.url` without a trailing slash.
    pub url: String,
}

/// Why the store could not be opened (before any request).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage.url {url}: {source}")]
    Url {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("storage.url {url}: not a local path")]
    NotLocal { url: String },
    #[error("storage.url {url}: {scheme} stores are not supported")]
    Unsupported { url: String, scheme: String },
    #[error("storage.options.{key}: not an option of the {scheme} store (see object_store's config keys)")]
    Option { key: String, scheme: String },
    #[error("object store {url}: {source}")]
    Build {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("creating {dir}: {source}")]
    Directory {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

pub fn open(plan: &StoragePlan) -> Result<Lake, StorageError> {
    let url = &plan.url;
    let err = |source: object_store::Error| StorageError::Build {
        url: url.to_string(),
        source,
    };
    let (scheme, path) = ObjectStoreScheme::parse(url).map_err(|e| StorageError::Url {
        url: url.to_string(),
        source: e.into(),
    })?;
    let bad_option = |k: &str| StorageError::Option {
        key: k.to_string(),
        scheme: url.scheme().to_string(),
    };
    // object_store retries each request on 5xx, 429, timeouts and resets, within our window,
    // by our one policy (crate::retry).
    let retry = RetryConfig {
        max_retries: 1_000,
        retry_timeout: plan.retry_timeout,
        backoff: crate::retry::Backoff::STORE.for_object_store(),
    };
    let (store, root): (Arc<dyn ObjectStore>, Path) = match scheme {
        ObjectStoreScheme::Local => {
            let dir = url.to_file_path().map_err(|_| StorageError::NotLocal {
                url: url.to_string(),
            })?;
            std::fs::create_dir_all(&dir).map_err(|source| StorageError::Directory {
                dir: dir.display().to_string(),
                source,
            })?;
            (
                Arc::new(LocalFileSystem::new_with_prefix(&dir).map_err(err)?),
                Path::default(),
            )
        }
        ObjectStoreScheme::Memory => (Arc::new(InMemory::new()), path),
        ObjectStoreScheme::AmazonS3 => {
            let mut b = AmazonS3Builder::from_env()
                .with_url(url.as_str())
                .with_retry(retry.clone());
            for (k, v) in &plan.options {
                b = b.with_config(
                    AmazonS3ConfigKey::from_str(k).map_err(|_| bad_option(k))?,
                    v,
                );
            }
            (Arc::new(b.build().map_err(err)?), path)
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry.clone());
            for (k, v) in &plan.options {
                b = b.with_config(GoogleConfigKey::from_str(k).map_err(|_| bad_option(k))?, v);
            }
            (Arc::new(b.build().map_err(err)?), path)
        }
        ObjectStoreScheme::MicrosoftAzure => {
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry.clone());
            for (k, v) in &plan.options {
                b = b.with_config(AzureConfigKey::from_str(k).map_err(|_| bad_option(k))?, v);
            }
            (Arc::new(b.build().map_err(err)?), path)
        }
        other => {
            return Err(StorageError::Unsupported {
                url: url.to_string(),
                scheme: format!("{other:?}"),
            })
        }
    };
    Ok(Lake {
        store,
        root,
        url: url.as_str().trim_end_matches('/').to_string(),
    })
}
