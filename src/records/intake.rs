//! Taking a document in, streamed: sniff, hash and seal each chunk as it arrives, write the
//! sealed bytes to the object store, and commit the row only once the object is durable.
//!
//! Crash safety: (1) an intent naming the object key is committed, (2) the object is written
//! and synced, (3) the row, the intent's removal and the audit entry commit together. A crash
//! before (3) leaves an intent and maybe an object, which
//! [`super::maintenance::sweep_abandoned`] deletes; a crash after
//! leaves a complete document. No row ever points to a missing object.
//!
//! The intent commits while the body arrives and is sealed (nothing reaches the store before
//! it is durable: a body under one part is held in memory until then, a larger one waits for it
//! before its first part goes up), so an intake waits for one commit fewer in a row.

use std::sync::Arc;

use uuid::Uuid;

use super::Vault;
use super::{DocumentView, attest, entry, refuse, require_role, view};
use crate::audit::{AuditAction, Entry};
use crate::auth::Caller;
use crate::blob::{BlobStore, BlobWriter};
use crate::config::FaultPoint;
use crate::crypto::envelope::{self, Binding, BodySealer, DataKey, WrapFormat};
use crate::crypto::keyring::Keyring;
use crate::crypto::{CitizenIndex, Sha256};
use crate::db::documents::{self, DocumentRow};
use crate::db::{self, Constraint, Tx, now_ms};
use crate::domain::{CardCheck, DocStatus, IntakeMetadata, MediaType, NationalId, Role};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// An intake in progress. Create with [`Intake::start`], feed the file with [`Intake::push`],
/// end with [`Intake::finish`] or [`Intake::abort`].
pub struct Intake<'a> {
    vault: &'a Vault,
    caller: Caller,
    keys: std::sync::Arc<Keyring>,
    citizen: CitizenIndex,
    document_id: Uuid,
    object_key: String,
    data_key: DataKey,
    kek_version: u32,
    sealer: BodySealer,
    writer: BlobWriter,
    sha: Sha256,
    size: u64,
    head: Vec<u8>,
    media: Option<MediaType>,
    sealed: Vec<u8>,
    /// The intent's commit, running while the body arrives; taken once it is durable.
    intent: Option<tokio::task::JoinHandle<Result<(), ApiError>>>,
    /// Set by a test fault: a dead process cleans nothing up.
    crashed: bool,
    /// The citizen served, to compare with a CCCD's QR (in memory only).
    national_id: NationalId,
    /// A copy of a CCCD scan, kept to read its QR at the end (see [`Intake::keep_for_card`]).
    card_copy: Option<Vec<u8>>,
}

pub enum IntakeResult {
    Created(DocumentView),
    Existing(DocumentView),
}

impl<'a> Intake<'a> {
    pub async fn start(
        vault: &'a Vault,
        caller: Caller,
        national_id: &NationalId,
    ) -> Result<Self, ApiError> {
        let keys = vault.keys();
        let citizen = keys.citizen_index(national_id)?;
        let mut e = entry(&caller, AuditAction::DocumentIntake);
        e.citizen_idx = Some(citizen);
        require_role(vault, &e, &caller, &[Role::Clerk]).await?;

        let keys = newest_keys(vault, keys).await?;
        let kek_version = keys.current_kek().version;
        let document_id = Uuid::now_v7();
        let object_key = BlobStore::key_for(document_id);
        let intent = commit_intent(vault, keys.clone(), object_key.clone(), kek_version);
        let data_key = DataKey::generate();
        let binding = Binding {
            document_id,
            citizen,
        };
        Ok(Self {
            sealer: BodySealer::new(&data_key, &binding),
            writer: vault.blobs.writer(&object_key),
            vault,
            caller,
            keys,
            citizen,
            document_id,
            object_key,
            data_key,
            kek_version,
            sha: Sha256::default(),
            size: 0,
            head: Vec::with_capacity(MediaType::SNIFF_LEN),
            media: None,
            sealed: Vec::with_capacity(256 * 1024),
            intent: Some(intent),
            crashed: false,
            national_id: national_id.clone(),
            card_copy: None,
        })
    }

    /// Keeps a copy of the file as it arrives, up to `HOSO_CARD_MAX_BYTES`, so a CCCD's QR can
    /// be read against the typed fields at the end. Only when the metadata came first and
    /// names a CCCD; a larger file goes unchecked.
    pub fn keep_for_card(&mut self) {
        if self.size == 0 {
            self.card_copy = Some(Vec::new());
        }
    }

    /// Waits until the intent is committed; every write to the store comes after this.
    async fn intent_durable(&mut self) -> Result<(), ApiError> {
        match self.intent.take() {
            Some(commit) => commit
                .await
                .map_err(|e| ApiError::internal("intake intent task", e))?,
            None => Ok(()),
        }
    }

    /// Takes the next piece of the file.
    pub async fn push(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        self.size += chunk.len() as u64;
        if self.size > self.vault.limits.max_upload_bytes {
            return Err(ApiError::PayloadTooLarge(
                self.vault.limits.max_upload_bytes,
            ));
        }
        if self.media.is_none() {
            let need = MediaType::SNIFF_LEN - self.head.len();
            self.head.extend_from_slice(&chunk[..need.min(chunk.len())]);
            if self.head.len() == MediaType::SNIFF_LEN {
                self.media =
                    Some(MediaType::sniff(&self.head).ok_or(ApiError::UnsupportedMediaType)?);
            }
        }
        if let Some(copy) = &mut self.card_copy {
            if copy.len() + chunk.len() <= self.vault.limits.card_max_bytes as usize {
                copy.extend_from_slice(chunk);
            } else {
                self.card_copy = None;
            }
        }
        self.sha.update(chunk);
        self.sealed.clear();
        self.sealer.push(chunk, &mut self.sealed);
        if self.writer.stores_with(self.sealed.len()) {
            self.intent_durable().await?;
        }
        self.writer.write(&self.sealed).await?;
        if self.writer.is_multipart() {
            self.fault(FaultPoint::MidObject)?;
        }
        Ok(())
    }

    /// A test fault here also makes [`Intake::abort`] do nothing, as a dead process would.
    fn fault(&mut self, point: FaultPoint) -> Result<(), ApiError> {
        let result = self.vault.fault(point);
        self.crashed = result.is_err();
        result
    }

    /// Ends the intake: checks a CCCD's fields against its QR, makes the object durable, then
    /// commits row, audit entry and supersede.
    pub async fn finish(mut self, mut metadata: IntakeMetadata) -> Result<IntakeResult, ApiError> {
        if let Err(err) = self.check_card(&mut metadata).await {
            let e = {
                let mut e = entry(&self.caller, AuditAction::DocumentIntake);
                e.citizen_idx = Some(self.citizen);
                e
            };
            let vault = self.vault;
            self.abort().await;
            return Err(refuse(vault, e, err).await);
        }
        self.store_object().await?.commit(metadata).await
    }

    /// A CCCD scan whose QR reads as a chip CCCD's: the typed number, name, issue and expiry
    /// dates and the citizen served must agree with it, or the clerk keeps them with a reason
    /// (logged with the intake). Recorded in the sealed fields either way; a scan without a
    /// readable QR, or too large to keep, is simply not checked.
    async fn check_card(&mut self, metadata: &mut IntakeMetadata) -> Result<(), ApiError> {
        // A reason is kept only where it overrode something, with what it overrode.
        let reason = metadata.card_override.take();
        let Some(copy) = self.card_copy.take() else {
            return Ok(());
        };
        // The reader reads images: anything else (a PDF, a file too short to tell) would take
        // a reader's slot only to be found not one.
        let image = self.media.is_some_and(MediaType::is_image);
        if metadata.doc_type != crate::domain::DocType::Cccd || !image {
            return Ok(());
        }
        let Some(card) = super::card::card_in(self.vault, copy).await? else {
            return Ok(());
        };
        let differs = card_differences(&card, &metadata.fields, &self.national_id);
        if differs.is_empty() {
            metadata.fields.card_check = Some(CardCheck::Matched);
            return Ok(());
        }
        // Another citizen's card is never filed under this one, whatever the reason.
        match reason {
            Some(reason) if !differs.contains(&"national_id") => {
                metadata.fields.card_check = Some(CardCheck::Overridden);
                metadata.card_override =
                    Some(format!("card override ({}): {reason}", differs.join(", ")));
                Ok(())
            }
            _ => Err(ApiError::CardMismatch(differs)),
        }
    }

    /// Seals the last segment and makes the object durable.
    async fn store_object(mut self) -> Result<Stored<'a>, ApiError> {
        self.intent_durable().await?;
        // Shorter than any magic number we know: sniff what there is.
        let media = self.media.or_else(|| MediaType::sniff(&self.head));
        let Some(media) = media else {
            // Not a scan at all: end the intake now rather than leave its intent to the sweeper.
            self.abort().await;
            return Err(ApiError::UnsupportedMediaType);
        };
        self.fault(FaultPoint::BeforeObject)?;
        self.sealed.clear();
        self.sealer.finish(&mut self.sealed);
        self.writer.write(&self.sealed).await?;
        self.writer.finish().await?;
        self.vault.fault(FaultPoint::AfterObject)?;
        Ok(Stored {
            vault: self.vault,
            caller: self.caller,
            keys: self.keys,
            citizen: self.citizen,
            document_id: self.document_id,
            object_key: self.object_key,
            data_key: self.data_key,
            kek_version: self.kek_version,
            size: self.size,
            media,
            sha256: hex::encode(self.sha.finish()),
        })
    }

    /// Gives up on the intake: the object (if any) and its intent are removed.
    pub async fn abort(mut self) {
        if self.crashed {
            return;
        }
        // Removed only once it is there to remove (its own failure leaves nothing).
        let _ = self.intent_durable().await;
        let vault = self.vault;
        let key = self.object_key.clone();
        self.writer.abort().await;
        discard(vault, &key).await;
    }
}

/// An intake whose object is durable; what is left is its row.
struct Stored<'a> {
    vault: &'a Vault,
    caller: Caller,
    keys: std::sync::Arc<Keyring>,
    citizen: CitizenIndex,
    document_id: Uuid,
    object_key: String,
    data_key: DataKey,
    kek_version: u32,
    size: u64,
    media: MediaType,
    sha256: String,
}

/// How the commit of an intake ended, when it did not fail.
enum Committed {
    Created(Box<DocumentRow>),
    /// The same scan is already current for this citizen and type.
    Existing(Box<DocumentRow>),
    /// The supersede was refused and nothing was written; a refusal to log comes with its
    /// entry (logged through [`refuse`], which also limits how many a caller can make).
    Refused(ApiError, Option<Box<Entry>>),
}

impl Stored<'_> {
    /// Commits row, supersede and audit entry together (in the log writer's next transaction),
    /// or answers with the existing document when the same scan is already current.
    async fn commit(self, metadata: IntakeMetadata) -> Result<IntakeResult, ApiError> {
        let vault = self.vault;
        let mut audit_entry = entry(&self.caller, AuditAction::DocumentIntake);
        audit_entry.citizen_idx = Some(self.citizen);
        audit_entry.reason = metadata.card_override.clone();
        let row = self.new_row(&metadata)?;
        let change = RowChange {
            row,
            supersedes: metadata.supersedes,
            clerk: self.caller.staff_or_none().to_owned(),
            entry: audit_entry,
            // A test fault: the process "dies" with its transaction uncommitted.
            crash: vault.fault(FaultPoint::BeforeCommit).err(),
        };
        let committed = vault
            .log
            .change(self.keys.clone(), move |tx| Box::pin(change.apply(tx)))
            .await?;
        match committed {
            Committed::Created(row) => {
                vault.fault(FaultPoint::AfterCommit)?;
                Metrics::inc(&vault.metrics.documents_taken_in);
                Ok(IntakeResult::Created(view(vault, &row)?))
            }
            Committed::Existing(existing) => {
                discard(vault, &self.object_key).await;
                Ok(IntakeResult::Existing(view(vault, &existing)?))
            }
            Committed::Refused(err, entry) => {
                discard(vault, &self.object_key).await;
                Err(match entry {
                    Some(entry) => refuse(vault, *entry, err).await,
                    None => err,
                })
            }
        }
    }

    /// The document row: data key wrapped, personal fields sealed, and, when the clerk checked
    /// the scan against the original at the desk, verified and attested at once.
    fn new_row(&self, metadata: &IntakeMetadata) -> Result<DocumentRow, ApiError> {
        let now = now_ms();
        let clerk = self.caller.staff_or_none().to_owned();
        let binding = Binding {
            document_id: self.document_id,
            citizen: self.citizen,
        };
        let fields_json = serde_json::to_vec(&metadata.fields)
            .map_err(|e| ApiError::internal("encode fields", e))?;
        let kek = self
            .keys
            .kek(self.kek_version)
            .ok_or_else(|| ApiError::Internal("current KEK vanished".into()))?;
        let mut row = DocumentRow {
            id: self.document_id,
            citizen_idx: self.citizen,
            doc_type: metadata.doc_type,
            status: DocStatus::Pending,
            content_type: self.media.as_mime().to_owned(),
            size_bytes: i64::try_from(self.size).map_err(|e| ApiError::internal("size", e))?,
            sha256: self.sha256.clone(),
            object_key: self.object_key.clone(),
            format_version: i64::from(envelope::FORMAT_VERSION),
            wrapped_key: kek.wrap(
                &self.data_key,
                &binding,
                WrapFormat::V2 {
                    doc_type: metadata.doc_type,
                },
            )?,
            kek_version: i64::from(self.kek_version),
            sealed_fields: envelope::seal_fields(&self.data_key, &binding, &fields_json),
            verified_against_original: metadata.verified_against_original,
            intake_by: clerk.clone(),
            intake_office: self.caller.office.clone(),
            intake_at: now,
            verified_by: None,
            verified_office: None,
            verified_at: None,
            attestation: None,
            supersedes: metadata.supersedes,
            status_changed_by: None,
            status_changed_at: None,
            erased_at: None,
            erased_by: None,
            erase_reason: None,
        };
        if metadata.verified_against_original {
            self.verify_at_intake(&mut row, clerk, now, metadata.fields.card_check)?;
        }
        Ok(row)
    }

    /// The clerk checked the scan against the original at the desk: verified and attested at
    /// once.
    fn verify_at_intake(
        &self,
        row: &mut DocumentRow,
        clerk: String,
        now: i64,
        card_check: Option<CardCheck>,
    ) -> Result<(), ApiError> {
        row.status = DocStatus::Verified;
        row.attestation = Some(attest(
            &self.keys,
            &self.vault.token_policy.issuer,
            row,
            &clerk,
            &self.caller.office,
            now,
            card_check,
        )?);
        row.verified_by = Some(clerk);
        row.verified_office = Some(self.caller.office.clone());
        row.verified_at = Some(now);
        Ok(())
    }
}

/// An intake's row, committed in the log writer's transaction, under the log's lock: no other
/// writer of documents runs between the duplicate check and the insert.
struct RowChange {
    row: DocumentRow,
    supersedes: Option<Uuid>,
    clerk: String,
    entry: Entry,
    crash: Option<ApiError>,
}

impl RowChange {
    async fn apply(self, tx: &mut Tx) -> crate::audit::writer::Changed<Committed> {
        let Self {
            row,
            supersedes,
            clerk,
            mut entry,
            crash,
        } = self;
        if let Some(existing) =
            documents::find_current_scan(&mut **tx, &row.citizen_idx, row.doc_type, &row.sha256)
                .await?
        {
            entry.document_id = Some(existing.id.to_string());
            entry.reason = Some("duplicate".into());
            return Ok((Some(entry), Committed::Existing(Box::new(existing))));
        }
        if let Some(old_id) = supersedes {
            match supersede(tx, &row, old_id, &clerk).await? {
                Ok(()) => {}
                Err(err) => {
                    // Not found (or not this citizen's) is logged, as a refusal; a wrong or
                    // stale target is the clerk's error to fix, answered as it is.
                    let logged = matches!(err, ApiError::NotFound).then(|| {
                        entry.document_id = Some(old_id.to_string());
                        Box::new(entry)
                    });
                    return Ok((None, Committed::Refused(err, logged)));
                }
            }
        }
        match documents::insert(tx, &row).await {
            Ok(()) => {}
            Err(e) if e.is_constraint(Constraint::DocumentsOneCurrentScan) => {
                return Err(ApiError::Conflict(
                    "a concurrent intake changed this record; retry".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        documents::delete_intent(&mut **tx, &row.object_key).await?;
        if let Some(err) = crash {
            return Err(err);
        }
        entry.document_id = Some(row.id.to_string());
        Ok((Some(entry), Committed::Created(Box::new(row))))
    }
}

/// The typed fields (and the citizen served) that a CCCD's QR says otherwise, by name. Names
/// compare in NFC, with spaces and case folded.
fn card_differences(
    card: &crate::card::CardFields,
    typed: &crate::domain::PersonalFields,
    served: &NationalId,
) -> Vec<&'static str> {
    use crate::card::fields::comparable;
    use crate::domain::format_date;
    let mut differs = Vec::new();
    if &card.number != served {
        differs.push("national_id");
    }
    if typed.doc_number.trim() != card.number.expose() {
        differs.push("doc_number");
    }
    if comparable(&typed.holder_name) != comparable(&card.name) {
        differs.push("holder_name");
    }
    if typed.issued_on != format_date(card.issued_on) {
        differs.push("issued_on");
    }
    if let Some(expires) = card.expires_on
        && typed.expires_on.as_deref() != Some(format_date(expires).as_str())
    {
        differs.push("expires_on");
    }
    differs
}

/// Marks `old_id` superseded by `row`, if it is a current document of the same citizen and type.
/// The inner error is a refusal (nothing written); the outer one a failure.
async fn supersede(
    tx: &mut Tx,
    row: &DocumentRow,
    old_id: Uuid,
    clerk: &str,
) -> Result<Result<(), ApiError>, ApiError> {
    let old = documents::get(&mut **tx, old_id).await?;
    let Some(old) = old.filter(|o| o.citizen_idx == row.citizen_idx) else {
        return Ok(Err(ApiError::NotFound));
    };
    // A diploma does not replace a CCCD: grants are scoped by type, and a cross-type
    // supersede would silently take the old document out of every grant for its type.
    if old.doc_type != row.doc_type {
        return Ok(Err(ApiError::Conflict(
            "a document can only be superseded by one of the same type".into(),
        )));
    }
    let superseded = documents::change_status(
        tx,
        old_id,
        &[DocStatus::Pending, DocStatus::Verified],
        DocStatus::Superseded,
        clerk,
        now_ms(),
    )
    .await?;
    if !superseded {
        return Ok(Err(ApiError::Conflict(
            "the document to supersede is not current (already superseded or revoked)".into(),
        )));
    }
    Ok(Ok(()))
}

/// `keys`, or newer ones if another process has rotated the master key since they were read.
async fn newest_keys(vault: &Vault, keys: Arc<Keyring>) -> Result<Arc<Keyring>, ApiError> {
    let newest = db::kek_usage::newest_version(&vault.db.pool).await?;
    if newest <= i64::from(keys.current_kek().version) {
        return Ok(keys);
    }
    let newest = u32::try_from(newest)
        .map_err(|_| ApiError::Internal("stored KEK version out of range".into()))?;
    vault
        .keys
        .at_least(newest)
        .map_err(|e| ApiError::internal("reload keys", e))
}

/// Commits the intake's intent (its object key, the KEK version that will wrap its data key)
/// through the log writer with whatever else is waiting (one fsync for many), on a task of its
/// own so the body can arrive meanwhile; awaited in `intent_durable`.
fn commit_intent(
    vault: &Vault,
    keys: Arc<Keyring>,
    object_key: String,
    kek_version: u32,
) -> tokio::task::JoinHandle<Result<(), ApiError>> {
    let log = vault.log.clone();
    tokio::spawn(async move {
        log.change(keys, move |tx| {
            Box::pin(async move {
                let version = i64::from(kek_version);
                if !db::kek_usage::count_wrap(tx, version).await? {
                    return Err(ApiError::Unavailable(format!(
                        "master key version {kek_version} may wrap no more data keys; run \
                         `hoso keys rotate`"
                    )));
                }
                documents::insert_intent(tx, &object_key, version, now_ms()).await?;
                Ok((None, ()))
            })
        })
        .await
    })
}

/// Deletes an uncommitted object and its intent. A failure here is left for the sweeper.
async fn discard(vault: &Vault, object_key: &str) {
    if let Err(e) = vault.blobs.delete(object_key).await {
        tracing::warn!(error = ?e, "could not delete an uncommitted object; the sweeper will");
        return;
    }
    if let Err(e) = documents::delete_intent(&vault.db.pool, object_key).await {
        tracing::warn!(error = ?e, "could not clear an intake intent; the sweeper will");
    }
}
