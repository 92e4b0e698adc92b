//! Backup and restore of the embedded default (SQLite + local directory), while the vault keeps
//! serving. At scale, back up PostgreSQL and the bucket with their own tools (README).
//!
//! A backup directory holds `hoso.db` (a transactionally consistent SQLite snapshot made with
//! `VACUUM INTO`) and `storage/` (the sealed body of every document in that snapshot). Bodies are
//! write-once, so copying them after the snapshot copies exactly what the snapshot points to.
//! Keys are never part of a backup: they are backed up separately, or the backup is worthless
//! to a thief and to you alike.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;

use super::Vault;
use crate::blob::BlobStore;
use crate::db::{Backend, Db, documents};
use crate::error::ApiError;

/// The file of a `sqlite://` database URL.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://")?;
    Some(PathBuf::from(rest.split('?').next().unwrap_or(rest)))
}

fn embedded_only(vault: &Vault) -> Result<PathBuf, ApiError> {
    let not_embedded = || {
        ApiError::InvalidRequest(
            "backup and restore cover the embedded default (sqlite:// and file://); at scale, back up \
             PostgreSQL (pg_dump or archiving) and the bucket (versioning or replication)"
                .into(),
        )
    };
    if vault.db.backend != Backend::Sqlite || vault.blobs.local_root().is_none() {
        return Err(not_embedded());
    }
    vault
        .blobs
        .local_root()
        .map(Path::to_owned)
        .ok_or_else(not_embedded)
}

fn empty_or_absent(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut entries| entries.next().is_none())
}

/// Snapshots the database into `dir/hoso.db` and copies every body it references into
/// `dir/storage`. Returns how many bodies were copied; `progress(done)` is called as it goes.
pub async fn backup(
    vault: &Vault,
    dir: &Path,
    mut progress: impl FnMut(u64),
) -> Result<u64, ApiError> {
    embedded_only(vault)?;
    if !empty_or_absent(dir) {
        return Err(ApiError::Conflict(format!(
            "{} is not empty",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| ApiError::unavailable("create backup directory", e))?;
    let snapshot = dir.join("hoso.db");
    let target = snapshot
        .to_str()
        .ok_or_else(|| ApiError::InvalidRequest("the backup path must be UTF-8".into()))?
        .replace('\'', "''");
    sqlx::query(&format!("VACUUM INTO '{target}'"))
        .execute(&vault.db.pool)
        .await
        .map_err(crate::db::db_err("snapshot database"))?;

    let copy = Db::connect(&format!("sqlite://{}", snapshot.display()))
        .await
        .map_err(|e| ApiError::Internal(format!("open snapshot: {e}")))?;
    let store = BlobStore::from_url(&format!("file://{}", dir.join("storage").display()))
        .map_err(ApiError::Internal)?;
    let mut done = 0u64;
    let mut last = String::new();
    loop {
        let page = documents::page_after(&copy.pool, &last, 200).await?;
        let Some(tail) = page.last() else { break };
        last = tail.id.to_string();
        for doc in page {
            let mut source = vault.blobs.get(&doc.object_key).await?;
            let mut writer = store.writer(&doc.object_key);
            while let Some(chunk) = source.next().await {
                writer.write(&chunk?).await?;
            }
            writer.finish().await?;
            done += 1;
        }
        progress(done);
    }
    copy.pool.close().await;
    Ok(done)
}

/// Puts a backup in place for the settings' database file and storage directory, both of which
/// must be empty or absent: a restore never overwrites a vault.
pub fn restore(dir: &Path, database_url: &str, storage_url: &str) -> Result<u64, String> {
    let database = sqlite_file(database_url)
        .ok_or("restore covers the embedded default: HOSO_DATABASE_URL must be sqlite://")?;
    let storage = storage_url
        .strip_prefix("file://")
        .map(PathBuf::from)
        .ok_or("restore covers the embedded default: HOSO_STORAGE_URL must be file://")?;
    let snapshot = dir.join("hoso.db");
    if !snapshot.exists() {
        return Err(format!("{} holds no hoso.db: not a backup", dir.display()));
    }
    if database.exists() {
        return Err(format!(
            "{} exists; restore only into an empty place",
            database.display()
        ));
    }
    if !empty_or_absent(&storage) {
        return Err(format!(
            "{} is not empty; restore only into an empty place",
            storage.display()
        ));
    }
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| format!("{what}: {e}")
    };
    if let Some(parent) = database.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    copy_synced(&snapshot, &database).map_err(io(&database))?;
    let mut copied = 0;
    let mut stack = vec![dir.join("storage")];
    while let Some(from_dir) = stack.pop() {
        let rel = from_dir
            .strip_prefix(dir.join("storage"))
            .unwrap_or(Path::new(""));
        let to_dir = storage.join(rel);
        std::fs::create_dir_all(&to_dir).map_err(io(&to_dir))?;
        for entry in std::fs::read_dir(&from_dir).map_err(io(&from_dir))? {
            let path = entry.map_err(io(&from_dir))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path.file_name() {
                copy_synced(&path, &to_dir.join(name)).map_err(io(&path))?;
                copied += 1;
            }
        }
        std::fs::File::open(&to_dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&to_dir))?;
    }
    Ok(copied)
}

fn copy_synced(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to)?;
    std::fs::File::open(to)?.sync_all()
}
