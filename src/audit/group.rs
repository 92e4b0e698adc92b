//! Group commit: entries that need only the log (reads, listings, refusals) are appended by one
//! writer task per process, many to a transaction, and each request waits for the commit that
//! carries its entry. Nothing is weakened: the entry (and a read's grant use) is durable before
//! the request is answered — `synchronous=FULL` on SQLite, a committed transaction on
//! PostgreSQL — but one fsync now carries as many entries as arrived while the last one ran.
//!
//! A batch is one transaction: if any of it fails (a full disk, a lost database), every request
//! in it gets the failure and none is answered as logged. Across processes the log's lock
//! ([`super::begin`]) still orders the writers.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{Appended, Entry, Outcome};
use crate::crypto::keyring::Keyring;
use crate::db::grants::{self, GrantRow};
use crate::db::{Db, now_ms};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Most entries one transaction carries.
const MAX_BATCH: usize = 512;

/// A content read's use of a grant, spent in the batch's transaction with the entry.
pub struct GrantUse {
    pub grant: Uuid,
    /// Why the grant refuses when no use could be spent (revoked, expired, used up), from its
    /// row as it is in the batch's transaction (`None`: the row is gone).
    pub refusal: fn(Option<&GrantRow>, i64) -> ApiError,
}

struct Job {
    keys: Arc<Keyring>,
    entry: Entry,
    grant_use: Option<GrantUse>,
    reply: oneshot::Sender<Result<Appended, ApiError>>,
}

/// The process's log writer.
#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the writer task on the current runtime.
    pub fn start(db: Db, metrics: Arc<Metrics>) -> Self {
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(writer(db, metrics, queue));
        Self { jobs }
    }

    /// Appends `entry` and waits until it is committed.
    pub async fn record(&self, keys: Arc<Keyring>, entry: Entry) -> Result<Appended, ApiError> {
        self.submit(keys, entry, None).await
    }

    /// Spends one use of a grant and appends the read's entry, in one commit. When no use can be
    /// spent the entry is logged as denied, with the reason, and the refusal is returned.
    pub async fn record_read(
        &self,
        keys: Arc<Keyring>,
        entry: Entry,
        grant_use: Option<GrantUse>,
    ) -> Result<Appended, ApiError> {
        self.submit(keys, entry, grant_use).await
    }

    async fn submit(
        &self,
        keys: Arc<Keyring>,
        entry: Entry,
        grant_use: Option<GrantUse>,
    ) -> Result<Appended, ApiError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            keys,
            entry,
            grant_use,
            reply,
        };
        let stopped = || ApiError::Unavailable("the audit log writer has stopped".into());
        self.jobs.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn writer(db: Db, metrics: Arc<Metrics>, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let results = write(&db, &metrics, &mut batch).await;
        match results {
            Ok(results) => {
                for (job, result) in batch.drain(..).zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One transaction for the whole batch. The per-job results are only sent after the commit.
async fn write(
    db: &Db,
    metrics: &Metrics,
    batch: &mut [Job],
) -> Result<Vec<Result<Appended, ApiError>>, ApiError> {
    Metrics::inc(&metrics.audit_batches);
    // Failures are counted per request by the callers (each request that failed closed), not
    // here per batch: these steps count into a scratch set.
    let scratch = Metrics::default();
    let metrics = &scratch;
    let mut tx = super::begin(db, metrics).await?;
    let mut appender = super::Appender::start(&mut tx).await?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch.iter_mut() {
        let mut entry = std::mem::take(&mut job.entry);
        let mut refused = None;
        if let Some(grant_use) = &job.grant_use {
            let now = now_ms();
            if !grants::consume_use(&mut tx, grant_use.grant, now)
                .await
                .map_err(ApiError::from)?
            {
                let current = grants::get(&mut *tx, grant_use.grant)
                    .await
                    .map_err(ApiError::from)?;
                let err = (grant_use.refusal)(current.as_ref(), now);
                entry.outcome = Some(Outcome::Denied);
                entry.reason = Some(err.code().to_owned());
                refused = Some(err);
            }
        }
        let appended = appender.append(&mut tx, &job.keys, entry).await?;
        results.push(match refused {
            Some(err) => Err(err),
            None => Ok(appended),
        });
    }
    // Every job of a batch carries the same audit key (it does not rotate); sign with the last.
    if let Some(last) = batch.last() {
        appender.finish(&mut tx, &last.keys).await?;
    }
    super::commit(tx, metrics).await?;
    Ok(results)
}
