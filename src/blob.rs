//! Object storage for sealed bodies, chosen by URL: a local directory or any S3-compatible store. Object keys are made only from document ids
//! the vault generated (`bodies/{first 4 hex}/{uuid}`), never from user input.
//!
//! object_store's local backend writes a staging file and links it into place but never fsyncs;
//! an acknowledged intake must survive power loss, so [`BlobStore`] syncs the file and its
//! directories itself before the row that points to it is committed.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    GetResultPayload, MultipartUpload, ObjectStore, PutMode, PutOptions, PutPayload,
};
use uuid::Uuid;

use crate::config::StorageUrl;

/// What went wrong in the object store, in the terms the layers above decide on.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// A body a row points to is not in the store: the store lost or someone removed it.
    #[error("object {0} is missing")]
    Missing(String),
    /// The filesystem under a local store is full: nothing more can be written until space
    /// is freed.
    #[error("{context}: the disk under the store is full: {cause}")]
    DiskFull {
        context: &'static str,
        cause: String,
    },
    /// The store did not answer, or failed the operation: try again later.
    #[error("{context}: the object store is unavailable: {cause}")]
    Unavailable {
        context: &'static str,
        cause: String,
    },
    /// The store cannot be set up as configured (`HOSO_STORAGE_URL`, `HOSO_S3_*`, `AWS_*`).
    #[error("the object store at {url}: {cause}")]
    Setting { url: String, cause: String },
}

impl BlobError {
    fn failed(context: &'static str, err: impl std::error::Error + 'static) -> Self {
        let cause = err.to_string();
        if is_disk_full(&err) {
            Self::DiskFull { context, cause }
        } else {
            Self::Unavailable { context, cause }
        }
    }
}

/// `ENOSPC` anywhere in the error's chain of causes.
fn is_disk_full(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && (io.raw_os_error() == Some(28) || io.kind() == std::io::ErrorKind::StorageFull)
        {
            return true;
        }
        next = e.source();
    }
    // object_store's local backend keeps some causes only as text.
    err.to_string().contains("No space left on device")
}

/// Bodies up to this size are written with one put; larger ones as a multipart upload, so
/// memory stays bounded whatever the size.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// How long S3 requests may take and how often they are retried (the `HOSO_S3_*` settings).
/// Retries stop once `retry_timeout` has passed since the first try, so a request costs at most
/// about `timeout` plus `retry_timeout`.
#[derive(Clone, Copy, Debug)]
pub struct S3Limits {
    pub timeout: std::time::Duration,
    pub connect_timeout: std::time::Duration,
    pub retries: usize,
    pub retry_timeout: std::time::Duration,
}

#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    local_root: Option<PathBuf>,
    /// Local directories whose own name is already durable in their parent (fsynced once since
    /// this process saw them): a new object then costs two fsyncs (file, directory), not one
    /// per level up to the root. Nothing removes a directory under `bodies/`, so a name once
    /// durable stays so.
    durable_dirs: Arc<std::sync::Mutex<std::collections::HashSet<PathBuf>>>,
}

impl BlobStore {
    /// `file://DIR` (relative or absolute), or `s3://BUCKET[/PREFIX]` with endpoint, region and
    /// credentials from the usual `AWS_*` variables, each overridable by `HOSO_S3_*`
    /// (`ENDPOINT`, `REGION`, `ACCESS_KEY_ID`, `SECRET_ACCESS_KEY`, `ALLOW_HTTP`).
    pub fn from_url(url: &StorageUrl, limits: &S3Limits) -> Result<Self, BlobError> {
        match url {
            StorageUrl::Local(root) => Self::local(root.clone()),
            StorageUrl::S3 { bucket, prefix } => Self::s3(url, bucket, prefix, limits),
        }
    }

    /// A local directory (created if missing).
    pub fn local(root: PathBuf) -> Result<Self, BlobError> {
        let setting = |cause: String| BlobError::Setting {
            url: StorageUrl::Local(root.clone()).to_string(),
            cause,
        };
        std::fs::create_dir_all(&root)
            .map_err(|e| setting(format!("cannot create the directory: {e}")))?;
        let root = root.canonicalize().map_err(|e| setting(e.to_string()))?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| setting(e.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            local_root: Some(root),
            durable_dirs: Arc::default(),
        })
    }

    fn s3(
        url: &StorageUrl,
        bucket: &str,
        prefix: &str,
        limits: &S3Limits,
    ) -> Result<Self, BlobError> {
        use object_store::ClientConfigKey::{ConnectTimeout, Timeout};
        use object_store::aws::AmazonS3ConfigKey::Client;
        let retry = object_store::RetryConfig {
            max_retries: limits.retries,
            retry_timeout: limits.retry_timeout,
            ..Default::default()
        };
        // Set one key at a time: replacing the client options would drop what `from_env` read
        // (AWS_ALLOW_HTTP, proxies).
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_config(Client(Timeout), format!("{}ms", limits.timeout.as_millis()))
            .with_config(
                Client(ConnectTimeout),
                format!("{}ms", limits.connect_timeout.as_millis()),
            )
            .with_retry(retry);
        let var = |name: &str| std::env::var(format!("HOSO_S3_{name}")).ok();
        if let Some(v) = var("ENDPOINT") {
            builder = builder.with_endpoint(v);
        }
        if let Some(v) = var("REGION") {
            builder = builder.with_region(v);
        }
        if let Some(v) = var("ACCESS_KEY_ID") {
            builder = builder.with_access_key_id(v);
        }
        if let Some(v) = var("SECRET_ACCESS_KEY") {
            builder = builder.with_secret_access_key(v);
        }
        if let Some(v) = var("ALLOW_HTTP") {
            builder = builder.with_allow_http(v == "true" || v == "1");
        }
        let store = builder.build().map_err(|e| BlobError::Setting {
            url: url.to_string(),
            cause: e.to_string(),
        })?;
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(store)
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        };
        Ok(Self {
            store,
            local_root: None,
            durable_dirs: Arc::default(),
        })
    }

    pub fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }

    /// Where a document's body lives.
    pub fn key_for(document_id: Uuid) -> String {
        let simple = document_id.simple().to_string();
        format!("bodies/{}/{}", &simple[..4], document_id)
    }

    pub fn writer(&self, key: &str) -> BlobWriter {
        BlobWriter {
            store: self.clone(),
            path: Path::from(key),
            buffer: Vec::new(),
            upload: None,
        }
    }

    /// The stored bytes under `key`, as a stream. From a remote store they come in ranged
    /// requests of at most [`PART_SIZE`] (the first also tells the size), so each request is
    /// small enough for `HOSO_S3_TIMEOUT_SECONDS` to bound it, whatever the object's size.
    pub async fn get(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        let path = Path::from(key);
        let missing = |e: object_store::Error| match e {
            object_store::Error::NotFound { .. } => BlobError::Missing(key.to_owned()),
            other => BlobError::failed("object store read", other),
        };
        if self.local_root.is_some() {
            let result = self.store.get(&path).await.map_err(missing)?;
            return match result.payload {
                // object_store reads local files 8 KiB per blocking task; 1 MiB reads take a
                // hundredth of the hops and still keep memory flat.
                GetResultPayload::File(file, _) => Ok(read_file_chunks(file)),
                GetResultPayload::Stream(stream) => Ok(stream
                    .map_err(|e| BlobError::failed("object store read", e))
                    .boxed()),
            };
        }
        let part = PART_SIZE as u64;
        let options = object_store::GetOptions {
            range: Some((0..part).into()),
            ..Default::default()
        };
        let first = match self.store.get_opts(&path, options).await {
            Ok(first) => first,
            // A range of an empty object is not satisfiable (416); an empty object is no body
            // at all, which the opener refuses as an integrity error.
            Err(e) if !matches!(e, object_store::Error::NotFound { .. }) => {
                match self.store.head(&path).await {
                    Ok(meta) if meta.size == 0 => {
                        return Ok(futures_util::stream::empty().boxed());
                    }
                    _ => return Err(missing(e)),
                }
            }
            Err(e) => return Err(missing(e)),
        };
        let size = first.meta.size;
        let head = first
            .into_stream()
            .map_err(|e| BlobError::failed("object store read", e));
        let store = self.store.clone();
        let rest = futures_util::stream::try_unfold(part, move |offset| {
            let (store, path) = (store.clone(), path.clone());
            async move {
                if offset >= size {
                    return Ok(None);
                }
                let end = (offset + part).min(size);
                let bytes = store
                    .get_range(&path, offset..end)
                    .await
                    .map_err(|e| BlobError::failed("object store read", e))?;
                Ok(Some((bytes, end)))
            }
        });
        Ok(head.chain(rest).boxed())
    }

    /// Whether an object is stored under `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        match self.store.head(&Path::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(BlobError::failed("object store head", e)),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(BlobError::failed("object store delete", e)),
        }
    }

    /// An object's bytes, read into `buffer` (emptied first; a copy opened in place, up to a
    /// few MiB, in a buffer kept from copy to copy: `records::copy_buffers`). A local file is
    /// read straight into it on a blocking thread, in one pass. The caller sizes the buffer: it
    /// grows only if the object is longer than expected.
    pub async fn read_all(&self, key: &str, mut buffer: Vec<u8>) -> Result<Vec<u8>, BlobError> {
        buffer.clear();
        if let Some(root) = &self.local_root {
            // The key is ours (`bodies/…`), never user input; object_store's layout is root/key.
            let path = root.join(key);
            let owned = key.to_owned();
            return tokio::task::spawn_blocking(move || {
                std::io::Read::read_to_end(&mut std::fs::File::open(&path)?, &mut buffer)?;
                Ok::<_, std::io::Error>(buffer)
            })
            .await
            .map_err(|e| BlobError::failed("object store read", e))?
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => BlobError::Missing(owned),
                _ => BlobError::failed("object store read", e),
            });
        }
        // S3: the chunks go straight into the one buffer.
        self.collect(key, buffer).await
    }

    /// A small object's bytes, whole (audit checkpoints).
    pub async fn get_all(&self, key: &str) -> Result<Bytes, BlobError> {
        Ok(Bytes::from(self.collect(key, Vec::new()).await?))
    }

    /// An object's chunks appended to `out`.
    async fn collect(&self, key: &str, mut out: Vec<u8>) -> Result<Vec<u8>, BlobError> {
        let mut stream = self.get(key).await?;
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    /// Stores a small object durably, as one write.
    pub async fn put_all(&self, key: &str, bytes: Bytes) -> Result<(), BlobError> {
        let mut writer = self.writer(key);
        writer.write(&bytes).await?;
        writer.finish().await
    }

    /// The keys of every object under `prefix`, in no particular order.
    pub async fn list_under(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        self.store
            .list(Some(&Path::from(prefix)))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(|e| BlobError::failed("object store list", e))
    }

    /// The keys under `prefix` that sort after `after`, in no particular order.
    pub async fn list_under_after(
        &self,
        prefix: &str,
        after: &str,
    ) -> Result<Vec<String>, BlobError> {
        self.store
            .list_with_offset(Some(&Path::from(prefix)), &Path::from(after))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(|e| BlobError::failed("object store list", e))
    }

    /// Every document body with its last-modified time (ms since the epoch). Audit checkpoints,
    /// under their own prefix, are never listed here (and so never swept).
    pub async fn list(&self) -> Result<Vec<(String, i64)>, BlobError> {
        self.store
            .list(Some(&Path::from("bodies")))
            .map_ok(|meta| {
                (
                    meta.location.to_string(),
                    meta.last_modified.timestamp_millis(),
                )
            })
            .try_collect()
            .await
            .map_err(|e| BlobError::failed("object store list", e))
    }

    /// Staging files the local store leaves when a write is cut off (`name#N`), with their age
    /// in ms. They are not objects, so listing never shows them.
    pub fn local_staging_files(&self) -> Vec<(PathBuf, i64)> {
        let Some(root) = &self.local_root else {
            return Vec::new();
        };
        // An unreadable directory hides no staging file we could delete anyway.
        let files = files_under(root).unwrap_or_default();
        files
            .into_iter()
            .filter(|path| {
                path.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains('#'))
            })
            .map(|path| {
                let age = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                (path, age)
            })
            .collect()
    }

    /// The store underneath, for tests that tamper with stored objects as an intruder would.
    /// The vault itself only goes through the methods above.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Bytes free to this process under a local store (`None` for S3).
    pub fn free_bytes(&self) -> Option<u64> {
        free_bytes(self.local_root.as_deref()?)
    }

    /// Whether the store answers within a second (`/readyz` must answer fast even when the
    /// store does not).
    pub async fn ready(&self) -> bool {
        let key = Path::from("readyz-probe");
        let probe = self.store.head(&key);
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(1), probe).await,
            Ok(Ok(_) | Err(object_store::Error::NotFound { .. }))
        )
    }

    /// Makes a just-written local object durable: the file, then the directories that name it.
    async fn sync(&self, path: &Path) -> Result<(), BlobError> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        let file = root.join(path.as_ref());
        let durable = self.durable_dirs.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            // A directory's fsync makes the names in it durable: the file's first, then each
            // directory's in its parent, up to the root or the first whose name already is.
            let mut child: Option<PathBuf> = None;
            let mut dir = file.parent();
            while let Some(d) = dir {
                std::fs::File::open(d)?.sync_all()?;
                let mut known = durable.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(c) = child.take() {
                    known.insert(c);
                }
                if d == root || known.contains(d) {
                    break;
                }
                child = Some(d.to_path_buf());
                dir = d.parent();
            }
            Ok(())
        })
        .await
        .map_err(|e| BlobError::failed("fsync task", e))?
        .map_err(|e| BlobError::failed("object store fsync", e))
    }
}

/// Bytes an unprivileged writer can still use on the filesystem holding `dir`.
pub fn free_bytes(dir: &FsPath) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Every entry under `root` that is not a directory, at any depth. Symbolic links are listed,
/// never followed, so a walk cannot leave `root`. The one directory walk: the sweep looks for
/// cut-off local writes with it, a restore copies with it.
pub fn files_under(root: &FsPath) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                found.push(entry.path());
            }
        }
    }
    Ok(found)
}

/// Writes one object: buffered up to [`PART_SIZE`], then streamed as a multipart upload. Nothing
/// is visible under the key until [`BlobWriter::finish`] succeeds.
pub struct BlobWriter {
    store: BlobStore,
    path: Path,
    buffer: Vec<u8>,
    upload: Option<Box<dyn MultipartUpload>>,
}

impl BlobWriter {
    pub async fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= PART_SIZE {
            if self.upload.is_none() {
                let upload = self
                    .store
                    .store
                    .put_multipart(&self.path)
                    .await
                    .map_err(|e| BlobError::failed("object store upload", e))?;
                self.upload = Some(upload);
            }
            let part = std::mem::take(&mut self.buffer);
            let upload = self.upload.as_mut().expect("just set");
            upload
                .put_part(PutPayload::from(part))
                .await
                .map_err(|e| BlobError::failed("object store upload", e))?;
        }
        Ok(())
    }

    /// Whether writing `len` more bytes sends anything to the store (a part), rather than only
    /// holding them in memory.
    pub fn stores_with(&self, len: usize) -> bool {
        self.buffer.len() + len >= PART_SIZE
    }

    /// Whether parts have gone up already (the body outgrew one put).
    pub fn is_multipart(&self) -> bool {
        self.upload.is_some()
    }

    pub async fn finish(mut self) -> Result<(), BlobError> {
        let rest = std::mem::take(&mut self.buffer);
        match self.upload.take() {
            None => {
                let options = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                self.store
                    .store
                    .put_opts(&self.path, PutPayload::from(rest), options)
                    .await
                    .map_err(|e| BlobError::failed("object store put", e))?;
            }
            Some(mut upload) => {
                if !rest.is_empty() {
                    upload
                        .put_part(PutPayload::from(rest))
                        .await
                        .map_err(|e| BlobError::failed("object store upload", e))?;
                }
                upload
                    .complete()
                    .await
                    .map_err(|e| BlobError::failed("object store upload", e))?;
            }
        }
        self.store.sync(&self.path).await
    }

    /// Gives up: a multipart upload is aborted so no part lingers.
    pub async fn abort(mut self) {
        if let Some(mut upload) = self.upload.take()
            && let Err(e) = upload.abort().await
        {
            tracing::warn!(error = %e, "aborting an upload failed; the sweeper will remove it");
        }
    }
}

/// A streamed body is read this much at a time. Each reader beyond the in-memory budget holds
/// about two chunks (one read, one decrypted on its way out), so this sets their memory: 1 MiB
/// chunks held more under 64 readers, 128 KiB saved nothing more and cost a good part of their
/// rate (`HOSO_BENCH_ONLY=memory`; the runs are in docs/benchmarks.md).
const READ_CHUNK: usize = 256 * 1024;

fn read_file_chunks(file: std::fs::File) -> BoxStream<'static, Result<Bytes, BlobError>> {
    futures_util::stream::try_unfold(Some(file), |file| async move {
        let Some(mut file) = file else {
            return Ok(None);
        };
        let (file, chunk) = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut chunk = Vec::with_capacity(READ_CHUNK);
            (&mut file)
                .take(READ_CHUNK as u64)
                .read_to_end(&mut chunk)
                .map(|_| (file, chunk))
        })
        .await
        .map_err(|e| BlobError::failed("read task", e))?
        .map_err(|e| BlobError::failed("object store read", e))?;
        if chunk.is_empty() {
            Ok(None)
        } else {
            Ok(Some((Bytes::from(chunk), Some(file))))
        }
    })
    .boxed()
}
