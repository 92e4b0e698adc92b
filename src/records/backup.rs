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
use crate::config::{DatabaseUrl, StorageUrl};
use crate::db::{Backend, Db, documents};
use crate::error::ApiError;

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

    let snapshot_url = DatabaseUrl::parse(&format!("sqlite://{}", snapshot.display()))
        .map_err(ApiError::Internal)?;
    let copy = Db::connect(&snapshot_url, std::time::Duration::from_secs(10))
        .await
        .map_err(|e| ApiError::Internal(format!("open snapshot: {e}")))?;
    let store = BlobStore::local(dir.join("storage"))?;
    let mut done = 0u64;
    let mut pages = documents::AllDocuments::new(&copy.pool);
    while let Some(page) = pages.next_page().await? {
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
pub fn restore(
    dir: &Path,
    database_url: &DatabaseUrl,
    storage_url: &StorageUrl,
) -> Result<u64, String> {
    let DatabaseUrl::Sqlite { file: database, .. } = database_url else {
        return Err(
            "restore covers the embedded default: HOSO_DATABASE_URL must be sqlite://".into(),
        );
    };
    let StorageUrl::Local(storage) = storage_url else {
        return Err("restore covers the embedded default: HOSO_STORAGE_URL must be file://".into());
    };
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
    if !empty_or_absent(storage) {
        return Err(format!(
            "{} is not empty; restore only into an empty place",
            storage.display()
        ));
    }
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| format!("{what}: {e}")
    };
    let from = dir.join("storage");
    let files = crate::blob::files_under(&from).map_err(io(&from))?;
    // A backup is data from elsewhere: it holds regular files only, and a restore never follows
    // a link out of it (onto a key file, say, or over the live database).
    for path in std::iter::once(&snapshot)
        .chain(std::iter::once(&from))
        .chain(&files)
    {
        let kind = std::fs::symlink_metadata(path)
            .map_err(io(path))?
            .file_type();
        let expected = if *path == from {
            kind.is_dir()
        } else {
            kind.is_file()
        };
        if !expected {
            return Err(format!(
                "{} is not a regular {} (a link, a device?): refusing to restore this backup",
                path.display(),
                if *path == from { "directory" } else { "file" }
            ));
        }
    }
    if let Some(parent) = database.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    copy_synced(&snapshot, database).map_err(io(database))?;
    let mut synced_dirs = std::collections::BTreeSet::new();
    for path in &files {
        let rel = path.strip_prefix(&from).unwrap_or(path);
        let to = storage.join(rel);
        let to_dir = to.parent().unwrap_or(storage).to_owned();
        std::fs::create_dir_all(&to_dir).map_err(io(&to_dir))?;
        copy_synced(path, &to).map_err(io(path))?;
        // The new directory entries, up to the storage root, must reach the disk too.
        let mut d = Some(to_dir.as_path());
        while let Some(dir) = d.filter(|d| d.starts_with(storage)) {
            synced_dirs.insert(dir.to_owned());
            d = dir.parent();
        }
    }
    for d in synced_dirs.iter().rev() {
        std::fs::File::open(d)
            .and_then(|d| d.sync_all())
            .map_err(io(d))?;
    }
    let copied = files.len() as u64;
    Ok(copied)
}

fn copy_synced(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to)?;
    std::fs::File::open(to)?.sync_all()
}
