//! The process's log writer (group commit): entries that need only the log (reads, listings, refusals) are appended by one
//! writer task per process, many to a transaction, and each request waits for the commit that
//! carries its entry. Nothing is weakened: the entry (and a read's grant use) is durable before
//! the request is answered — `synchronous=FULL` on SQLite, a committed transaction on
//! PostgreSQL — but one fsync now carries as many entries as arrived while the last one ran.
//!
//! A batch is one transaction: if any of it fails (a full disk, a lost database), every request
//! in it gets the failure and none is answered as logged. Across processes the log's lock
//! ([`super::begin`]) still orders the writers.
//!
//! The writer counts its own failures: each request whose entry could not be committed (the
//! request failed closed) adds one to `hoso_audit_failures_total`.

use std::any::Any;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::append::{Appended, Appender};
use super::checkpoints::{Mark, Publisher};
use super::{Entry, Outcome};
use crate::blob::BlobStore;
use crate::crypto::keyring::Keyring;
use crate::db::grants::{self, GrantRow};
use crate::db::{Db, DbError, Tx, now_ms};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Most entries one transaction carries.
const MAX_BATCH: usize = 512;

/// A content read's use of a grant, spent in the batch's transaction with the entry.
pub struct GrantUse {
    pub grant: Uuid,
    /// Why the grant refuses when no use could be spent (revoked, expired, used up), from its
    /// row as it is in the batch's transaction (`None`: the row is gone).
    pub refusal: Refusal,
}

/// Why a grant refuses, from its row (see [`GrantUse::refusal`]).
pub type Refusal = fn(Option<&GrantRow>, i64) -> ApiError;

/// What a change run in the writer's transaction hands back: the entry it logs (if any) and
/// its answer, which reaches the caller only once the transaction carrying it has committed.
pub type Changed<T> = Result<(Option<Entry>, T), ApiError>;

type Answer = Box<dyn Any + Send>;
type ChangeFn =
    Box<dyn for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Changed<Answer>> + Send + 'static>;

// Reads, the common job, carry their entry inline; boxing it would allocate once per read to
// save bytes on the rarer change.
#[allow(clippy::large_enum_variant)]
enum Work {
    /// An entry, and for a content read the grant use it spends.
    Entry {
        entry: Entry,
        grant_use: Option<GrantUse>,
    },
    /// A write of its own (an intake's intent, its row), in a savepoint: if it fails, it alone
    /// is rolled back and refused; the rest of the batch commits.
    Change(ChangeFn),
}

struct Job {
    keys: Arc<Keyring>,
    work: Work,
    reply: oneshot::Sender<Result<Done, ApiError>>,
}

/// A job's result, sent after the commit.
struct Done {
    appended: Option<Appended>,
    answer: Option<Answer>,
}

/// The process's log writer.
#[derive(Clone)]
pub struct LogWriter {
    jobs: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
}

/// Where the writer writes: the database, and where checkpoints of what it commits go.
pub struct Sink {
    pub db: Db,
    pub metrics: Arc<Metrics>,
    pub checkpoints: Arc<Publisher>,
    pub blobs: BlobStore,
}

impl LogWriter {
    /// Starts the writer task on the current runtime.
    pub fn start(sink: Sink) -> Self {
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        let metrics = sink.metrics.clone();
        tokio::spawn(writer(sink, queue));
        Self { jobs, metrics }
    }

    /// Appends `entry` and waits until it is committed.
    pub async fn record(&self, keys: Arc<Keyring>, entry: Entry) -> Result<Appended, ApiError> {
        self.record_read(keys, entry, None).await
    }

    /// Spends one use of a grant and appends the read's entry, in one commit. When no use can be
    /// spent the entry is logged as denied, with the reason, and the refusal is returned.
    pub async fn record_read(
        &self,
        keys: Arc<Keyring>,
        entry: Entry,
        grant_use: Option<GrantUse>,
    ) -> Result<Appended, ApiError> {
        let done = self.submit(keys, Work::Entry { entry, grant_use }).await?;
        done.appended
            .ok_or_else(|| ApiError::Internal("an entry was not appended".into()))
    }

    /// Runs `change` in the writer's next transaction, appends the entry it returns, and waits
    /// until both are committed. A change that fails is rolled back alone (to its savepoint);
    /// its error is the answer.
    pub async fn change<T, F>(&self, keys: Arc<Keyring>, change: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Changed<T>> + Send + 'static,
    {
        let erased: ChangeFn = Box::new(move |tx| {
            Box::pin(async move {
                let (entry, answer) = change(tx).await?;
                Ok((entry, Box::new(answer) as Answer))
            })
        });
        let done = self.submit(keys, Work::Change(erased)).await?;
        done.answer
            .and_then(|a| a.downcast::<T>().ok())
            .map(|a| *a)
            .ok_or_else(|| ApiError::Internal("a change gave no answer".into()))
    }

    async fn submit(&self, keys: Arc<Keyring>, work: Work) -> Result<Done, ApiError> {
        let (reply, answer) = oneshot::channel();
        let job = Job { keys, work, reply };
        let stopped = || ApiError::Unavailable("the audit log writer has stopped".into());
        let done = match self.jobs.send(job).await {
            Ok(()) => answer.await.unwrap_or_else(|_| Err(stopped())),
            Err(_) => Err(stopped()),
        };
        // A refusal (a grant used up, a change's own conflict) is an answer, not a failure of
        // the log; a server error means the request failed closed.
        if let Err(e) = &done
            && e.status().is_server_error()
        {
            Metrics::inc(&self.metrics.audit_failures);
        }
        done
    }
}

async fn writer(sink: Sink, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // The work goes into the transaction; the replies wait here for its outcome.
        let (work, replies): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .map(|job| ((job.keys, job.work), job.reply))
            .unzip();
        match write(&sink, work).await {
            Ok((results, None)) => answer(replies, results),
            // Strict: nothing is answered (no byte leaves) before a checkpoint covering every
            // entry of the batch is in the object store. The entries are committed either way;
            // if the checkpoint cannot be written, the requests fail closed. Published beside
            // the writer, which goes on with the next batch meanwhile (a slow store slows the
            // answers, not the log).
            Ok((results, Some((mark, keys)))) => {
                let (checkpoints, blobs) = (sink.checkpoints.clone(), sink.blobs.clone());
                tokio::spawn(async move {
                    match checkpoints.publish_covering(&blobs, &keys, mark).await {
                        Ok(()) => answer(replies, results),
                        Err(e) => answer(replies, results.into_iter().map(|_| Err(e.clone()))),
                    }
                });
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
                // The database just failed (gone, full): what queued while this batch waited on
                // it is answered with the same failure now, not after a wait of its own. Else a
                // request could wait out two timeouts, and an intake (two changes) four.
                if e.status().is_server_error() {
                    while let Ok(job) = queue.try_recv() {
                        let _ = job.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

fn answer(
    replies: Vec<oneshot::Sender<Result<Done, ApiError>>>,
    results: impl IntoIterator<Item = Result<Done, ApiError>>,
) {
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}

/// What a batch committed: each job's result, and in strict mode the checkpoint still to
/// publish before any of them is answered (with the keys to sign it).
type Written = (Vec<Result<Done, ApiError>>, Option<(Mark, Arc<Keyring>)>);

/// One transaction for the whole batch. The per-job results are only sent after the commit.
///
/// On SQLite a batch of reads is three hand-offs to the database's thread: one script begins the
/// transaction, takes the log's lock and reads its head and the tree's right edge; one spends
/// the grants' uses; one stores the entries, the tree's nodes and the signed head, and commits.
/// A grant read twice in the batch, a refusal, a change, or another process's appends each add
/// their own.
async fn write(sink: &Sink, batch: Vec<(Arc<Keyring>, Work)>) -> Result<Written, ApiError> {
    Metrics::inc(&sink.metrics.audit_batches);
    // Every job of a batch carries the same audit and grant keys (they do not rotate); sign and
    // check with the last.
    let Some(signer) = batch.last().map(|(keys, _)| keys.clone()) else {
        return Ok((Vec::new(), None));
    };
    // Failures are counted per request (in `submit`), not here per batch.
    let mut script = sink.db.script_begin();
    let expected = sink.checkpoints.mark().map_or(0, |m| m.size);
    let opening = Appender::push_open(&mut script, expected);
    let (mut tx, rows) = sink
        .db
        .begin_with(
            script,
            DbError::unavailable("audit log unavailable (begin)"),
        )
        .await?;
    // The batch's instant, taken under the log's lock: each grant use is checked at it and each
    // entry carries it, so a read is never logged after the expiry it was checked against, and
    // times follow the order of the log across processes.
    let now = now_ms();
    let mut appender = Appender::opened(&mut tx, opening, &rows, now).await?;
    // A log behind, or different from, what this process committed was rolled back or
    // rewritten: appending would fork it.
    sink.checkpoints
        .check_log(&mut tx, appender.started_at(), appender.start_root())
        .await?;
    // The grant each job reads through (the jobs themselves stay out of the awaits there).
    let uses = batch
        .iter()
        .map(|(_, work)| match work {
            Work::Entry {
                grant_use: Some(g), ..
            } => Some((g.grant, g.refusal)),
            _ => None,
        })
        .collect();
    let refusals = spend_uses(&mut tx, &signer, uses, now).await?;
    let results = run_all(&mut tx, &mut appender, batch, refusals).await?;
    let publish = match appender.finish(tx, &signer).await? {
        Some(mark) => {
            sink.checkpoints.advance(mark);
            sink.checkpoints.policy.strict.then_some((mark, signer))
        }
        None => None,
    };
    Ok((results, publish))
}

/// Runs every job of a batch: the reads' entries first, then the changes. Every read's use was
/// spent before any change ran (one may revoke a grant a read of this batch spent a use of); in
/// batch order instead, such a read would be logged after the revocation, which verify names
/// as an edited grant row. The jobs of a batch are concurrent requests: any order is theirs.
/// The results come back in batch order.
async fn run_all(
    tx: &mut Tx,
    appender: &mut Appender,
    batch: Vec<(Arc<Keyring>, Work)>,
    refusals: Vec<Option<ApiError>>,
) -> Result<Vec<Result<Done, ApiError>>, ApiError> {
    let (reads, changes): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .zip(refusals)
        .enumerate()
        .partition(|(_, ((_, work), _))| matches!(work, Work::Entry { .. }));
    let mut results: Vec<Option<Result<Done, ApiError>>> = Vec::new();
    results.resize_with(reads.len() + changes.len(), || None);
    for (i, ((keys, work), refused)) in reads.into_iter().chain(changes) {
        results[i] = Some(run(tx, appender, &keys, work, refused).await?);
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every job of the batch ran"))
        .collect())
}

/// One job of a batch: its entry appended (as denied, with the reason, when its grant use was
/// `refused`), or its change run and its entry appended. The outer error fails the batch.
async fn run(
    tx: &mut Tx,
    appender: &mut Appender,
    keys: &Keyring,
    work: Work,
    refused: Option<ApiError>,
) -> Result<Result<Done, ApiError>, ApiError> {
    Ok(match work {
        Work::Entry { mut entry, .. } => {
            if let Some(err) = &refused {
                entry.outcome = Outcome::Denied;
                entry.reason = Some(err.code().to_owned());
            }
            let appended = appender.append(keys, entry)?;
            match refused {
                Some(err) => Err(err),
                None => Ok(Done {
                    appended: Some(appended),
                    answer: None,
                }),
            }
        }
        Work::Change(change) => match isolated(tx, change).await? {
            Ok((entry, answer)) => Ok(Done {
                appended: entry.map(|e| appender.append(keys, e)).transpose()?,
                answer: Some(answer),
            }),
            Err(err) => Err(err),
        },
    })
}

/// Runs a change inside a savepoint: its failure rolls back its own writes only. The outer
/// error is the savepoint's own failure (the database is gone), which fails the batch.
async fn isolated(tx: &mut Tx, change: ChangeFn) -> Result<Changed<Answer>, ApiError> {
    savepoint(tx, "SAVEPOINT hoso_change").await?;
    let result = change(tx).await;
    savepoint(
        tx,
        if result.is_ok() {
            "RELEASE SAVEPOINT hoso_change"
        } else {
            "ROLLBACK TO SAVEPOINT hoso_change"
        },
    )
    .await?;
    Ok(result)
}

async fn savepoint(tx: &mut Tx, statement: &'static str) -> Result<(), ApiError> {
    sqlx::query(statement)
        .execute(&mut **tx)
        .await
        .map_err(DbError::unavailable("audit log unavailable (savepoint)"))?;
    Ok(())
}

/// Spends one grant use for each job that reads through a grant, in the batch's transaction;
/// returns, per job, why no use could be spent (`None`: spent, or no grant involved).
///
/// Each use is still checked on its own (`uses < max_uses`, not revoked, not expired at `now`),
/// in rounds: round k spends the k-th use of every grant with at least k reads in the batch,
/// one statement for all of them. A grant that refuses refuses every later read of the batch
/// too (uses only grow; revocation and expiry do not undo), so its row is read once, for the
/// reason.
async fn spend_uses(
    tx: &mut Tx,
    keys: &Keyring,
    uses: Vec<Option<(Uuid, Refusal)>>,
    now: i64,
) -> Result<Vec<Option<ApiError>>, ApiError> {
    let mut refusals: Vec<Option<ApiError>> = vec![None; uses.len()];
    // Per grant, the jobs that read through it, in batch order.
    let mut waiting: HashMap<Uuid, VecDeque<usize>> = HashMap::new();
    for (i, grant) in uses.iter().enumerate() {
        if let Some((id, _)) = grant {
            waiting.entry(*id).or_default().push_back(i);
        }
    }
    while !waiting.is_empty() {
        let ids: Vec<Uuid> = waiting.keys().copied().collect();
        let spent: HashSet<Uuid> = grants::consume_uses(tx, &ids, now)
            .await?
            .into_iter()
            .collect();
        for id in ids {
            let jobs = waiting.get_mut(&id).expect("a grant of this round");
            if spent.contains(&id) {
                jobs.pop_front();
            } else {
                // Why, from the row as it is now: a row altered outside the vault says nothing.
                let current = grants::get(&mut **tx, id)
                    .await?
                    .map(|g| g.open(keys))
                    .transpose()
                    .map_err(ApiError::from);
                for i in jobs.drain(..) {
                    if let Some((_, refusal)) = uses[i] {
                        refusals[i] = Some(match &current {
                            Ok(current) => refusal(current.as_ref(), now),
                            Err(e) => e.clone(),
                        });
                    }
                }
            }
            if jobs.is_empty() {
                waiting.remove(&id);
            }
        }
    }
    Ok(refusals)
}
