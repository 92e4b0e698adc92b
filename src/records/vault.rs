//! What the records service works with, and nothing more: the database, the blob store, the
//! keys, the token issuer, the limits it enforces and the counters it keeps. Built by
//! [`crate::app`]; the service never sees HTTP state or the raw settings.

use std::sync::Arc;

use crate::audit::Entry;
use crate::audit::writer::{Changed, LogWriter};
use crate::auth::TokenPolicy;
use crate::blob::BlobStore;
use crate::config::FaultPoint;
use crate::crypto::keyring::{KeyCache, Keyring};
use crate::db::Db;
use crate::db::Tx;
use crate::error::ApiError;
use crate::metrics::Metrics;
use futures_util::future::BoxFuture;

pub struct Vault {
    /// Metadata: documents, grants, audit log.
    pub db: Db,
    /// Sealed bodies.
    pub blobs: BlobStore,
    /// The key files, reloaded when another process rotates the master key.
    pub keys: KeyCache,
    /// `iss`/`aud` of the tokens this vault issues (grants) and accepts; `iss` also names the
    /// vault in attestations.
    pub token_policy: TokenPolicy,
    /// Tokens whose signature has been checked already (see [`crate::auth::VerifiedTokens`]).
    pub verified_tokens: crate::auth::VerifiedTokens,
    pub limits: Limits,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The process's group-committed log writer (reads, listings, refusals).
    pub log: LogWriter,
    /// The buffers copies are decrypted in, within `HOSO_READ_MEMORY_BYTES` in all; a copy
    /// that does not fit streams instead.
    pub copy_buffers: Arc<super::copy_buffers::CopyBuffers>,
    /// Each actor's refusals this minute (see [`super::access::refuse`]).
    pub refusals: super::RefusalLimiter,
    /// The audit log's checkpoints: its name, how often they are made, this process's
    /// high-water mark and the rollback alarm.
    pub checkpoints: Arc<crate::audit::checkpoints::Publisher>,
    /// Where the console is (`HOSO_PUBLIC_URL`), for the sign-in links grants hand out and the
    /// identity providers' redirects.
    pub console_url: String,
    /// Signing in through identity providers (none configured: links only).
    pub sign_in: super::sign_in::SignIn,
    /// How long each type of document is kept (`HOSO_RETENTION_FILE`).
    pub retention: Arc<super::retention::Rules>,
    /// The legal deadlines of citizens' requests, in working days.
    pub deadlines: super::requests::Deadlines,
    /// Card QR reads allowed at once (one per core; see `records::card`).
    pub card_reads: Arc<tokio::sync::Semaphore>,
    /// Test-only crash simulation (`HOSO_TEST_FAULT`); refused outside debug builds.
    pub test_fault: Option<FaultPoint>,
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest accepted scan, in bytes.
    pub max_upload_bytes: u64,
    /// Largest scan a card's QR is read from, in bytes.
    pub card_max_bytes: u64,
    /// The bounds of one card QR read.
    pub card: crate::card::CardLimits,
    /// How long one card QR read may take.
    pub card_read: std::time::Duration,
}

impl Vault {
    /// The keys as last loaded (see [`KeyCache`]).
    pub fn keys(&self) -> Arc<Keyring> {
        self.keys.get()
    }

    /// Logs an act that changes nothing but the log: appended by the process's log writer and
    /// committed before this returns. A failure is counted by the writer and is the answer
    /// (fail closed). Reads through a grant and changes with their own writes go through
    /// [`LogWriter::record_read`] and [`LogWriter::change`], which count the same way.
    pub async fn record(&self, entry: Entry) -> Result<(), ApiError> {
        self.log.record(self.keys(), entry).await.map(|_| ())
    }

    /// Makes a change and logs it in one transaction (the log writer's next): `change` runs
    /// in it and returns the entry to append and its answer, which is returned once both are
    /// committed. A change that fails is rolled back alone and its error is the answer.
    pub async fn change<T, F>(&self, change: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Changed<T>> + Send + 'static,
    {
        self.log.change(self.keys(), change).await
    }

    /// Test-only crash simulation: stops the operation dead at `point`, with an error that
    /// skips every clean-up a normal failure would do.
    pub(crate) fn fault(&self, point: FaultPoint) -> Result<(), ApiError> {
        if self.test_fault == Some(point) {
            return Err(ApiError::Internal(format!("test fault {point:?}")));
        }
        Ok(())
    }
}
