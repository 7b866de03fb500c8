//! Upload stage: streams one object to the store.
//!
//! An object smaller than one part goes up with a single PUT when it is finished. A larger one
//! becomes a multipart upload as soon as its first part is ready, so an open file holds about one
//! part in memory, not the whole file. A multipart upload that fails, or whose file is abandoned
//! (revocation past its deadline, a fatal error elsewhere), is aborted: it never becomes visible.
//!
//! Request-level retries (5xx, timeouts, connection resets, with backoff) are object_store's
//! `RetryConfig`; an error that reaches this module is final for the object.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::memory::Budget;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("uploading {key}: {source}")]
    Store {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("upload of {key} was abandoned before it finished")]
    Abandoned { key: String },
    #[error("upload task of {key} panicked or was cancelled: {source}")]
    Task {
        key: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl UploadError {
    fn store(key: &Path, source: object_store::Error) -> UploadError {
        UploadError::Store {
            key: key.to_string(),
            source,
        }
    }
}

/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

enum Part {
    Data(Bytes),
    Finish,
}

/// A task that stores one object.
pub(crate) type UploadTask = JoinHandle<Result<(), UploadError>>;

/// The upload side of one open file.
pub(crate) struct ObjectUpload {
    key: Path,
    streaming: Option<(mpsc::Sender<Part>, UploadTask)>,
    parts: usize,
}

impl ObjectUpload {
    pub(crate) fn new(key: Path) -> ObjectUpload {
        ObjectUpload {
            key,
            streaming: None,
            parts: 0,
        }
    }

    pub(crate) fn key(&self) -> &Path {
        &self.key
    }

    /// Sends one full part, starting the multipart upload on the first. Blocks the calling
    /// (non-async) thread while the upload is [`PARTS_IN_FLIGHT`] parts behind: backpressure.
    /// `budget` was charged for `data` by the caller and is credited when the part is stored.
    pub(crate) fn send_part(
        &mut self,
        rt: &Handle,
        store: &Arc<dyn ObjectStore>,
        budget: &Arc<Budget>,
        data: Vec<u8>,
    ) {
        let (tx, _) = self.streaming.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel(1);
            let task = rt.spawn(multipart(
                store.clone(),
                self.key.clone(),
                rx,
                budget.clone(),
            ));
            (tx, task)
        });
        self.parts += 1;
        let len = data.len();
        if tx.blocking_send(Part::Data(Bytes::from(data))).is_err() {
            budget.release(len);
        }
    }

    /// Ends the object with its last bytes; the returned task resolves once it is stored.
    pub(crate) fn finish(
        self,
        rt: &Handle,
        store: &Arc<dyn ObjectStore>,
        budget: &Arc<Budget>,
        tail: Vec<u8>,
    ) -> UploadTask {
        let key = self.key;
        match self.streaming {
            None => {
                let store = store.clone();
                let budget = budget.clone();
                rt.spawn(async move {
                    let len = tail.len();
                    let r = store.put(&key, PutPayload::from(tail)).await;
                    budget.release(len);
                    r.map(|_| ()).map_err(|e| UploadError::store(&key, e))
                })
            }
            Some((tx, task)) => {
                let budget = budget.clone();
                rt.spawn(async move {
                    if !tail.is_empty() {
                        let len = tail.len();
                        if tx.send(Part::Data(Bytes::from(tail))).await.is_err() {
                            // The task already ended; nobody else will credit these bytes.
                            budget.release(len);
                        }
                    }
                    let _ = tx.send(Part::Finish).await;
                    drop(tx);
                    match task.await {
                        Ok(r) => r,
                        Err(source) => Err(UploadError::Task {
                            key: key.to_string(),
                            source,
                        }),
                    }
                })
            }
        }
    }

    /// Parts sent so far.
    pub(crate) fn parts(&self) -> usize {
        self.parts
    }
}

async fn multipart(
    store: Arc<dyn ObjectStore>,
    key: Path,
    mut rx: mpsc::Receiver<Part>,
    budget: Arc<Budget>,
) -> Result<(), UploadError> {
    let mut upload = match store.put_multipart(&key).await {
        Ok(u) => u,
        Err(e) => {
            // Credit what is queued; nobody will store it.
            rx.close();
            while let Some(p) = rx.recv().await {
                if let Part::Data(b) = p {
                    budget.release(b.len());
                }
            }
            return Err(UploadError::store(&key, e));
        }
    };
    let mut in_flight = FuturesUnordered::new();
    let outcome: Result<(), UploadError> = async {
        loop {
            match rx.recv().await {
                Some(Part::Data(bytes)) => {
                    while in_flight.len() >= PARTS_IN_FLIGHT {
                        if let Some(r) = in_flight.next().await {
                            r?;
                        }
                    }
                    let len = bytes.len();
                    let fut = upload.put_part(PutPayload::from(bytes));
                    let budget = budget.clone();
                    let key = key.clone();
                    in_flight.push(async move {
                        let r = fut.await;
                        budget.release(len);
                        r.map_err(|e| UploadError::store(&key, e))
                    });
                }
                Some(Part::Finish) => {
                    while let Some(r) = in_flight.next().await {
                        r?;
                    }
                    upload
                        .complete()
                        .await
                        .map_err(|e| UploadError::store(&key, e))?;
                    return Ok(());
                }
                None => {
                    return Err(UploadError::Abandoned {
                        key: key.to_string(),
                    })
                }
            }
        }
    }
    .await;
    if outcome.is_err() {
        // Let parts still in flight settle (crediting the budget), then abort: a failed or
        // abandoned multipart upload never becomes a visible object.
        while in_flight.next().await.is_some() {}
        rx.close();
        while let Some(p) = rx.recv().await {
            if let Part::Data(b) = p {
                budget.release(b.len());
            }
        }
        if let Err(e) = upload.abort().await {
            tracing::warn!(key = %key, error = %e, "aborting a failed multipart upload failed");
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[test]
    fn small_and_multipart_objects_arrive_whole() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let budget = Arc::new(Budget::new(1 << 30));

        let small = ObjectUpload::new(Path::from("t/small"));
        budget.charge(3);
        rt.block_on(small.finish(rt.handle(), &store, &budget, b"abc".to_vec()))
            .unwrap()
            .unwrap();

        let mut big = ObjectUpload::new(Path::from("t/big"));
        let mut expected = Vec::new();
        for i in 0..5u8 {
            let part = vec![i; 1000];
            expected.extend_from_slice(&part);
            budget.charge(part.len());
            big.send_part(rt.handle(), &store, &budget, part);
        }
        expected.extend_from_slice(b"tail");
        budget.charge(4);
        rt.block_on(big.finish(rt.handle(), &store, &budget, b"tail".to_vec()))
            .unwrap()
            .unwrap();

        let get = |k: &str| {
            rt.block_on(async {
                store
                    .get(&Path::from(k))
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
            })
        };
        assert_eq!(&get("t/small")[..], b"abc");
        assert_eq!(&get("t/big")[..], &expected[..]);
        assert_eq!(budget.used(), 0, "every byte charged was credited");
    }

    #[test]
    fn abandoned_multipart_leaves_no_object() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let budget = Arc::new(Budget::new(1 << 30));
        let mut up = ObjectUpload::new(Path::from("t/gone"));
        budget.charge(100);
        up.send_part(rt.handle(), &store, &budget, vec![1; 100]);
        let (_, task) = up.streaming.take().unwrap();
        let r = rt.block_on(task).unwrap();
        assert!(matches!(r, Err(UploadError::Abandoned { .. })));
        assert!(rt.block_on(store.head(&Path::from("t/gone"))).is_err());
        assert_eq!(budget.used(), 0);
    }
}
