//! Object storage for sealed bodies, chosen by URL. Object keys are made only from document ids
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
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    GetResultPayload, MultipartUpload, ObjectStore, PutMode, PutOptions, PutPayload,
};
use uuid::Uuid;

use crate::error::ApiError;

/// Bodies up to this size are written with one put; larger ones as a multipart upload, so
/// memory stays bounded whatever the size.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    local_root: Option<PathBuf>,
}

impl BlobStore {
    pub fn from_url(url: &str) -> Result<Self, String> {
        if let Some(dir) = url.strip_prefix("file://") {
            let root = PathBuf::from(dir);
            std::fs::create_dir_all(&root)
                .map_err(|e| format!("cannot create storage directory {}: {e}", root.display()))?;
            let root = root
                .canonicalize()
                .map_err(|e| format!("storage directory {}: {e}", root.display()))?;
            let store = LocalFileSystem::new_with_prefix(&root)
                .map_err(|e| format!("storage directory {}: {e}", root.display()))?;
            Ok(Self {
                store: Arc::new(store),
                local_root: Some(root),
            })
        } else {
            Err(format!(
                "HOSO_STORAGE_URL {url:?} is not supported; use file://DIR"
            ))
        }
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

    pub async fn get(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, ApiError>>, ApiError> {
        let result = self
            .store
            .get(&Path::from(key))
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => {
                    ApiError::Integrity(format!("object {key} is missing"))
                }
                other => ApiError::unavailable("object store read", other),
            })?;
        match result.payload {
            // object_store reads local files 8 KiB per blocking task; 1 MiB reads take a
            // hundredth of the hops and still keep memory flat.
            GetResultPayload::File(file, _) => Ok(read_file_chunks(file)),
            GetResultPayload::Stream(stream) => Ok(stream
                .map_err(|e| ApiError::unavailable("object store read", e))
                .boxed()),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), ApiError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(ApiError::unavailable("object store delete", e)),
        }
    }

    pub async fn ready(&self) -> bool {
        match self.store.head(&Path::from("readyz-probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => true,
            Err(_) => false,
        }
    }

    /// Makes a just-written local object durable: the file, then the directories that name it.
    async fn sync(&self, path: &Path) -> Result<(), ApiError> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        let file = root.join(path.as_ref());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            let mut dir = file.parent();
            while let Some(d) = dir {
                std::fs::File::open(d)?.sync_all()?;
                if d == root {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
        .map_err(|e| ApiError::internal("fsync task", e))?
        .map_err(|e| ApiError::unavailable("object store fsync", e))
    }
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
    pub async fn write(&mut self, data: &[u8]) -> Result<(), ApiError> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= PART_SIZE {
            if self.upload.is_none() {
                let upload = self
                    .store
                    .store
                    .put_multipart(&self.path)
                    .await
                    .map_err(|e| ApiError::unavailable("object store upload", e))?;
                self.upload = Some(upload);
            }
            let part = std::mem::take(&mut self.buffer);
            let upload = self.upload.as_mut().expect("just set");
            upload
                .put_part(PutPayload::from(part))
                .await
                .map_err(|e| ApiError::unavailable("object store upload", e))?;
        }
        Ok(())
    }

    pub async fn finish(mut self) -> Result<(), ApiError> {
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
                    .map_err(|e| ApiError::unavailable("object store put", e))?;
            }
            Some(mut upload) => {
                if !rest.is_empty() {
                    upload
                        .put_part(PutPayload::from(rest))
                        .await
                        .map_err(|e| ApiError::unavailable("object store upload", e))?;
                }
                upload
                    .complete()
                    .await
                    .map_err(|e| ApiError::unavailable("object store upload", e))?;
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

const READ_CHUNK: usize = 1024 * 1024;

fn read_file_chunks(file: std::fs::File) -> BoxStream<'static, Result<Bytes, ApiError>> {
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
        .map_err(|e| ApiError::internal("read task", e))?
        .map_err(|e| ApiError::unavailable("object store read", e))?;
        if chunk.is_empty() {
            Ok(None)
        } else {
            Ok(Some((Bytes::from(chunk), Some(file))))
        }
    })
    .boxed()
}
