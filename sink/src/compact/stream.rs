//! A group of Parquet files joined as a stream: footers first (to choose the outputs), then one
//! input at a time read whole and appended, the output sent to the store in parts as it grows.
//! A join holds one input, the parts in flight and the output's footer, not the group.

use std::io::Write;
use std::sync::Arc;

use ::parquet::file::properties::WriterProperties;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::runtime::Handle;

use super::parquet::{self, Input, JoinError, Run};
use super::{CompactError, PART};
use crate::encode::parquet::ParquetOptions;
use crate::seal::manifest::ManifestFile;

/// A multipart upload written through [`std::io::Write`] from a blocking thread: at most two
/// parts in flight and one filling.
struct Upload {
    handle: Handle,
    w: Option<WriteMultipart>,
    crc: crc32fast::Hasher,
    bytes: u64,
    /// Bytes written since the last wait for capacity.
    since: usize,
}

impl Write for Upload {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let w = self.w.as_mut().expect("an upload in progress");
        if self.since >= PART {
            self.handle
                .block_on(w.wait_for_capacity(2))
                .map_err(std::io::Error::other)?;
            self.since = 0;
        }
        w.write(data);
        self.crc.update(data);
        self.bytes += data.len() as u64;
        self.since += data.len();
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Upload {
    fn finish(&mut self) -> Result<(u64, u32), object_store::Error> {
        let w = self.w.take().expect("an upload in progress");
        self.handle.block_on(w.finish())?;
        Ok((self.bytes, self.crc.clone().finalize()))
    }

    fn abort(&mut self) {
        if let Some(w) = self.w.take() {
            let _ = self.handle.block_on(w.abort());
        }
    }
}

/// What a Parquet group's join needs besides the store.
pub(super) struct Group<'a> {
    pub table: &'a str,
    pub path: &'a str,
    pub files: &'a [&'a ManifestFile],
    /// The outputs' keys: `{prefix}{n:05}.parquet`, `n` from `first`.
    pub prefix: String,
    pub first: usize,
    /// The table's Parquet options: how inputs of another schema are encoded again.
    pub options: Option<Arc<ParquetOptions>>,
}

/// Joins a group of Parquet files into one or more objects (see [`parquet::runs`]).
pub(super) async fn join(
    store: &Arc<dyn ObjectStore>,
    g: Group<'_>,
) -> Result<Vec<ManifestFile>, CompactError> {
    let err = |key: &str, source| CompactError::Store {
        table: g.table.to_string(),
        path: g.path.to_string(),
        key: key.to_string(),
        source,
    };
    let mut inputs = Vec::with_capacity(g.files.len());
    for f in g.files {
        let location = Path::from(f.key.as_str());
        let tail = store
            .get_range(&location, f.bytes.saturating_sub(8)..f.bytes)
            .await
            .map_err(|e| err(&f.key, e))?;
        let len = parquet::footer_len(&f.key, &tail)? as u64;
        let end = f.bytes - 8;
        let bytes = store
            .get_range(&location, end.saturating_sub(len)..end)
            .await
            .map_err(|e| err(&f.key, e))?;
        inputs.push(Input {
            key: f.key.clone(),
            meta: parquet::footer(&f.key, &bytes)?,
        });
    }
    let runs = parquet::runs(&inputs)?;
    let inputs = Arc::new(inputs);
    let mut out = Vec::with_capacity(runs.len());
    for run in runs {
        let key = format!("{}{:05}.parquet", g.prefix, g.first + out.len());
        let upload = store
            .put_multipart(&Path::from(key.as_str()))
            .await
            .map_err(|e| err(&key, e))?;
        let props = reencoding(g.options.as_deref(), &inputs[run.target]);
        let (store, inputs, run2, key2) = (store.clone(), inputs.clone(), run.clone(), key.clone());
        let written = tokio::task::spawn_blocking(move || {
            write(store, &inputs, &run2, upload, &props, &key2)
        })
        .await
        .expect("joining does not panic");
        let (size, crc) = written.map_err(|e| match e {
            Failed::Join(e) => CompactError::Join(e),
            Failed::Store(k, e) => err(&k, e),
        })?;
        out.push(super::facts(key, &g.files[run.inputs], size, crc));
    }
    Ok(out)
}

enum Failed {
    Join(JoinError),
    Store(String, object_store::Error),
}

/// One output, on a blocking thread: its inputs fetched one at a time, its bytes uploaded.
fn write(
    store: Arc<dyn ObjectStore>,
    inputs: &[Input],
    run: &Run,
    upload: Box<dyn object_store::MultipartUpload>,
    props: &WriterProperties,
    key: &str,
) -> Result<(u64, u32), Failed> {
    let handle = Handle::current();
    let mut sink = Upload {
        handle: handle.clone(),
        w: Some(WriteMultipart::new_with_chunk_size(upload, PART)),
        crc: crc32fast::Hasher::new(),
        bytes: 0,
        since: 0,
    };
    let mut fetch_error = None;
    let mut fetch = |i: usize| -> Result<Bytes, JoinError> {
        let k = inputs[i].key.as_str();
        let got = handle.block_on(async { store.get(&Path::from(k)).await?.bytes().await });
        got.map_err(|e| {
            let message = e.to_string();
            fetch_error = Some((k.to_string(), e));
            JoinError::new(
                k,
                "reading it",
                ::parquet::errors::ParquetError::General(message),
            )
        })
    };
    let written = parquet::write_run(inputs, run, &mut fetch, &mut sink, props, key);
    if let Err(e) = written {
        sink.abort();
        return Err(match fetch_error {
            Some((k, e)) => Failed::Store(k, e),
            None => Failed::Join(e),
        });
    }
    sink.finish().map_err(|e| Failed::Store(key.to_string(), e))
}

/// The writer properties for inputs encoded again: the table's, for the target's schema (no
/// bloom filters where a configured column is not in it).
fn reencoding(options: Option<&ParquetOptions>, target: &Input) -> WriterProperties {
    let Some(options) = options else {
        return WriterProperties::builder()
            .set_compression(::parquet::basic::Compression::ZSTD(Default::default()))
            .build();
    };
    let m = target.meta.file_metadata();
    let arrow = ::parquet::arrow::parquet_to_arrow_schema(m.schema_descr(), m.key_value_metadata())
        .map(Arc::new);
    let plan = |o: &ParquetOptions| {
        arrow
            .as_ref()
            .ok()
            .and_then(|a| crate::encode::parquet::plan(o, a, "compaction").ok())
    };
    plan(options)
        .or_else(|| {
            plan(&ParquetOptions {
                bloom_filters: Vec::new(),
                ..options.clone()
            })
        })
        .map(|p| p.props)
        .unwrap_or_default()
}
