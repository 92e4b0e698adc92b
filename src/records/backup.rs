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
use crate::audit::checkpoints;
use crate::blob::BlobStore;
use crate::config::{DatabaseUrl, StorageUrl};
use crate::db::{Backend, Db, documents};
use crate::domain::DocStatus;
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
        for doc in page.into_iter().filter(|d| d.status != DocStatus::Erased) {
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
    copy_checkpoints(vault, &copy, &store).await?;
    copy_ledger(vault, &store).await?;
    copy.pool.close().await;
    Ok(done)
}

/// Copies the published checkpoints that the snapshot's log covers (those published after the
/// snapshot was taken would, restored, make its log look rolled back), so a restored vault
/// still detects a wiped or rolled-back log.
async fn copy_checkpoints(vault: &Vault, snapshot: &Db, store: &BlobStore) -> Result<(), ApiError> {
    let size = crate::db::audit::head(&snapshot.pool).await?.seq as u64;
    for key in vault.blobs.list_under(checkpoints::PREFIX).await? {
        if checkpoints::size_of_key(&key).is_some_and(|s| s <= size) {
            store
                .put_all(&key, vault.blobs.get_all(&key).await?)
                .await?;
        }
    }
    Ok(())
}

/// Copies the erasure ledger as it is now (every record is at least as old as the snapshot's
/// erasures, so a restore re-erases at least what the snapshot had erased), and its key's
/// check value.
async fn copy_ledger(vault: &Vault, store: &BlobStore) -> Result<(), ApiError> {
    for key in vault.blobs.list_under(super::ledger::ROOT).await? {
        store
            .put_all(&key, vault.blobs.get_all(&key).await?)
            .await?;
    }
    Ok(())
}

/// Puts a backup in place for the settings' database file and storage directory, both of which
/// must be empty or absent: a restore never overwrites a vault. What is restored is then opened
/// as the vault would be and refused (and removed) unless its schema is hoso's own.
///
/// A backup is data from elsewhere, and its directory may be changed while this runs: every
/// file is opened without following a link (`O_NOFOLLOW`, relative to its directory's open
/// handle), checked on that handle to be a regular file or a directory, and copied from it.
/// A link, a device or a pipe anywhere in it refuses the whole restore.
pub async fn restore(
    dir: &Path,
    database_url: &DatabaseUrl,
    storage_url: &StorageUrl,
) -> Result<u64, String> {
    let (database, storage) = restore_targets(database_url, storage_url)?;
    let copied = copy_backup(dir, database, storage);
    let checked = match copied {
        Ok(n) => check_restored(database_url).await.map(|()| n),
        Err(e) => Err(e),
    };
    if checked.is_err() {
        discard(database, storage);
    }
    checked
}

/// Removes what a restore put in place (both were absent or empty before it).
fn discard(database: &Path, storage: &Path) {
    for f in [
        database.to_owned(),
        with_suffix(database, "-wal"),
        with_suffix(database, "-shm"),
    ] {
        let _ = std::fs::remove_file(f);
    }
    let _ = std::fs::remove_dir_all(storage);
}

/// Removes a restore that could not be finished (its erasure ledger could not be re-applied),
/// so that nothing serves it.
pub fn discard_restored(database_url: &DatabaseUrl, storage_url: &StorageUrl) {
    if let (DatabaseUrl::Sqlite { file, .. }, StorageUrl::Local(dir)) = (database_url, storage_url)
    {
        discard(file, dir);
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The database file and storage directory a restore writes, which must not hold a vault.
fn restore_targets<'u>(
    database_url: &'u DatabaseUrl,
    storage_url: &'u StorageUrl,
) -> Result<(&'u Path, &'u Path), String> {
    let DatabaseUrl::Sqlite { file: database, .. } = database_url else {
        return Err(
            "restore covers the embedded default: HOSO_DATABASE_URL must be sqlite://".into(),
        );
    };
    let StorageUrl::Local(storage) = storage_url else {
        return Err("restore covers the embedded default: HOSO_STORAGE_URL must be file://".into());
    };
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
    Ok((database, storage))
}

/// Copies `dir/hoso.db` to `database` and the tree `dir/storage` into `storage`, every file
/// from a handle opened without following links. Returns how many bodies it held.
fn copy_backup(dir: &Path, database: &Path, storage: &Path) -> Result<u64, String> {
    use rustix::fs::{Mode, OFlags};
    let source = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("{}: {e}", dir.display()))?;
    let snapshot = open_entry(&source, dir, std::ffi::OsStr::new("hoso.db")).map_err(|e| {
        if e.contains("No such file") {
            format!("{} holds no hoso.db: not a backup", dir.display())
        } else {
            e
        }
    })?;
    let Entry::File(snapshot) = snapshot else {
        return Err(format!(
            "{}/hoso.db is a directory: not a backup",
            dir.display()
        ));
    };
    if let Some(parent) = database.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    copy_file(snapshot, database)?;
    let from = dir.join("storage");
    let Entry::Dir(bodies) = open_entry(&source, dir, std::ffi::OsStr::new("storage"))? else {
        return Err(format!(
            "{} is not a directory: not a backup",
            from.display()
        ));
    };
    std::fs::create_dir_all(storage).map_err(|e| format!("{}: {e}", storage.display()))?;
    copy_tree(&bodies, &from, storage)?;
    sync_dir(storage)?;
    // The bodies, as a backup counts them (its published checkpoints are not documents).
    let bodies = storage.join("bodies");
    Ok(crate::blob::files_under(&bodies).map_or(0, |f| f.len() as u64))
}

/// An entry of a backup, opened.
enum Entry {
    File(std::fs::File),
    Dir(rustix::fd::OwnedFd),
}

/// Opens `name` in the directory `parent` (named `parent_path` in messages) without following
/// a link, and says from the open handle what it is; anything but a regular file or a
/// directory is refused.
fn open_entry(
    parent: &rustix::fd::OwnedFd,
    parent_path: &Path,
    name: &std::ffi::OsStr,
) -> Result<Entry, String> {
    use rustix::fs::{FileType, Mode, OFlags};
    let path = parent_path.join(name);
    // NONBLOCK: opening a named pipe must not wait for a writer; it is refused just below.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = rustix::fs::openat(parent, name, flags, Mode::empty()).map_err(|e| {
        if e == rustix::io::Errno::LOOP {
            format!(
                "{} is a link: refusing to restore this backup",
                path.display()
            )
        } else {
            format!("{}: {e}", path.display())
        }
    })?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| format!("{}: {e}", path.display()))?;
    match FileType::from_raw_mode(stat.st_mode) {
        // Another name for the same file (a hard link) could be a key file's.
        FileType::RegularFile if stat.st_nlink > 1 => Err(format!(
            "{} has other names (a hard link): refusing to restore this backup",
            path.display()
        )),
        FileType::RegularFile => Ok(Entry::File(std::fs::File::from(fd))),
        FileType::Directory => Ok(Entry::Dir(fd)),
        other => Err(format!(
            "{} is not a regular file or directory ({other:?}): refusing to restore this backup",
            path.display()
        )),
    }
}

/// Copies every entry of the open directory `from` (named `from_path`) into `to`, recursively.
fn copy_tree(from: &rustix::fd::OwnedFd, from_path: &Path, to: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let listing = |e: rustix::io::Errno| format!("{}: {e}", from_path.display());
    for entry in rustix::fs::Dir::read_from(from).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let name = std::ffi::OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let target = to.join(name);
        match open_entry(from, from_path, name)? {
            Entry::File(file) => copy_file(file, &target)?,
            Entry::Dir(dir) => {
                std::fs::create_dir(&target).map_err(|e| format!("{}: {e}", target.display()))?;
                copy_tree(&dir, &from_path.join(name), &target)?;
                sync_dir(&target)?;
            }
        }
    }
    Ok(())
}

/// Copies an open file to a new file `to` (0600, never over an existing one), synced.
fn copy_file(mut from: std::fs::File, to: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |e: std::io::Error| format!("{}: {e}", to.display());
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(fail)?;
    std::io::copy(&mut from, &mut out).map_err(fail)?;
    out.sync_all().map_err(fail)
}

/// A directory's new entries reach the disk.
fn sync_dir(dir: &Path) -> Result<(), String> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// Opens the restored database as the vault would (migrating it) and refuses it unless its
/// schema is hoso's own: a backup may carry a trigger that acts behind the vault's back.
async fn check_restored(database_url: &DatabaseUrl) -> Result<(), String> {
    let db = Db::connect(database_url, std::time::Duration::from_secs(10))
        .await
        .map_err(|e| format!("the restored database: {e}"))?;
    let foreign = crate::db::schema::differences(&db).await;
    db.pool.close().await;
    let foreign = foreign.map_err(|e| format!("the restored database: {e}"))?;
    if foreign.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the backup's database holds what hoso did not make, so it may act behind hoso's \
             back: {}; nothing was restored",
            foreign.join("; ")
        ))
    }
}
