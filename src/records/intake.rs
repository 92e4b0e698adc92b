//! Taking a document in, streamed: sniff, hash and seal each chunk as it arrives, write the
//! sealed bytes to the object store, and commit the row only once the object is durable.
//!
//! Crash safety: (1) an intent naming the object key is committed, (2) the object is written
//! and synced, (3) the row, the intent's removal and the audit entry commit together. A crash
//! before (3) leaves an intent and maybe an object, which
//! [`super::maintenance::sweep_abandoned`] deletes; a crash after
//! leaves a complete document. No row ever points to a missing object.

use uuid::Uuid;

use super::{DocumentView, entry, refuse, require_role, sign_attestation, view};
use crate::app::{App, Metrics};
use crate::audit::{self, Entry};
use crate::auth::Caller;
use crate::blob::{BlobStore, BlobWriter};
use crate::config::FaultPoint;
use crate::crypto::envelope::{self, Binding, BodySealer, DataKey};
use crate::crypto::keyring::Keyring;
use crate::crypto::{CitizenIndex, Sha256};
use crate::db::documents::{self, DocumentRow};
use crate::db::{self, now_ms};
use crate::domain::{DocStatus, IntakeMetadata, MediaType, NationalId, Role};
use crate::error::ApiError;

/// An intake in progress. Create with [`Intake::start`], feed the file with [`Intake::push`],
/// end with [`Intake::finish`] or [`Intake::abort`].
pub struct Intake<'a> {
    app: &'a App,
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
    /// Set by a test fault: a dead process cleans nothing up.
    crashed: bool,
}

pub enum IntakeResult {
    Created(DocumentView),
    Existing(DocumentView),
}

impl<'a> Intake<'a> {
    pub async fn start(
        app: &'a App,
        caller: Caller,
        national_id: &NationalId,
    ) -> Result<Self, ApiError> {
        let mut keys = app.keys();
        let citizen = keys.citizen_index(national_id);
        let mut e = entry(&keys, &caller, "document.intake");
        e.citizen_idx = Some(citizen.to_hex());
        require_role(app, &e, &caller, &[Role::Clerk]).await?;

        // Another process may have rotated the master key: pick up the new version.
        let newest = db::keys::newest_version(&app.db.pool).await?;
        if newest > i64::from(keys.current_kek().version) {
            keys = app
                .reload_keys()
                .map_err(|e| ApiError::internal("reload keys", e))?;
        }
        let kek_version = keys.current_kek().version;
        let document_id = Uuid::now_v7();
        let object_key = BlobStore::key_for(document_id);
        let mut tx = app.db.begin().await?;
        if !db::keys::count_wrap(&mut tx, i64::from(kek_version)).await? {
            return Err(ApiError::Unavailable(format!(
                "master key version {kek_version} may wrap no more data keys; run `hoso keys rotate`"
            )));
        }
        documents::insert_intent(&mut tx, &object_key, i64::from(kek_version), now_ms()).await?;
        tx.commit().await.map_err(db::db_err("commit intent"))?;

        let data_key = DataKey::generate();
        let binding = Binding {
            document_id,
            citizen,
        };
        Ok(Self {
            sealer: BodySealer::new(&data_key, &binding),
            writer: app.blobs.writer(&object_key),
            app,
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
            crashed: false,
        })
    }

    /// Takes the next piece of the file.
    pub async fn push(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        self.size += chunk.len() as u64;
        if self.size > self.app.settings.max_upload_bytes {
            return Err(ApiError::PayloadTooLarge(
                self.app.settings.max_upload_bytes,
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
        self.sha.update(chunk);
        self.sealed.clear();
        self.sealer.push(chunk, &mut self.sealed);
        self.writer.write(&self.sealed).await?;
        if self.writer.is_multipart() {
            self.fault(FaultPoint::MidObject)?;
        }
        Ok(())
    }

    /// A test fault here also makes [`Intake::abort`] do nothing, as a dead process would.
    fn fault(&mut self, point: FaultPoint) -> Result<(), ApiError> {
        let result = super::fault(self.app, point);
        self.crashed = result.is_err();
        result
    }

    /// Ends the intake: makes the object durable, then commits row, audit entry and supersede.
    pub async fn finish(mut self, metadata: IntakeMetadata) -> Result<IntakeResult, ApiError> {
        let media = match self.media {
            Some(m) => m,
            // Shorter than any magic number we know: sniff what there is.
            None => MediaType::sniff(&self.head).ok_or(ApiError::UnsupportedMediaType)?,
        };
        self.fault(FaultPoint::BeforeObject)?;
        self.sealed.clear();
        self.sealer.finish(&mut self.sealed);
        self.writer.write(&self.sealed).await?;
        self.writer.finish().await?;
        super::fault(self.app, FaultPoint::AfterObject)?;

        let app = self.app;
        let keys = self.keys;
        let sha256 = hex::encode(self.sha.finish());
        let citizen_hex = self.citizen.to_hex();
        let mut audit_entry = entry(&keys, &self.caller, "document.intake");
        audit_entry.citizen_idx = Some(citizen_hex.clone());

        if let Some(existing) =
            documents::find_current_scan(&app.db.pool, &citizen_hex, metadata.doc_type, &sha256)
                .await?
        {
            return answer_duplicate(app, &keys, &self.object_key, existing, audit_entry).await;
        }

        let now = now_ms();
        let clerk = self.caller.staff_id().unwrap_or("-").to_owned();
        let binding = Binding {
            document_id: self.document_id,
            citizen: self.citizen,
        };
        let fields_json = serde_json::to_vec(&metadata.fields)
            .map_err(|e| ApiError::internal("encode fields", e))?;
        let kek = keys
            .kek(self.kek_version)
            .ok_or_else(|| ApiError::Internal("current KEK vanished".into()))?;
        let mut row = DocumentRow {
            id: self.document_id,
            citizen_idx: citizen_hex.clone(),
            doc_type: metadata.doc_type,
            status: DocStatus::Pending,
            content_type: media.as_mime().to_owned(),
            size_bytes: i64::try_from(self.size).map_err(|e| ApiError::internal("size", e))?,
            sha256,
            object_key: self.object_key.clone(),
            format_version: i64::from(envelope::FORMAT_VERSION),
            wrapped_key: kek.wrap(&self.data_key, &binding),
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
        };
        // A clerk who checked the scan against the original at the desk verifies it at once.
        if metadata.verified_against_original {
            row.status = DocStatus::Verified;
            row.attestation = Some(sign_attestation(
                &keys,
                &app.settings.token_issuer,
                &row,
                &clerk,
                &self.caller.office,
                now,
            )?);
            row.verified_by = Some(clerk.clone());
            row.verified_office = Some(self.caller.office.clone());
            row.verified_at = Some(now);
        }

        let mut tx = audit::begin(&app.db).await?;
        if let Some(old_id) = metadata.supersedes {
            let old = documents::get(&mut *tx, old_id).await?;
            let same_record = old.as_ref().is_some_and(|o| o.citizen_idx == citizen_hex);
            if !same_record {
                drop(tx);
                discard(app, &self.object_key).await;
                audit_entry.document_id = Some(old_id.to_string());
                return Err(refuse(app, audit_entry, ApiError::NotFound).await);
            }
            let superseded = documents::change_status(
                &mut tx,
                old_id,
                &[DocStatus::Pending, DocStatus::Verified],
                DocStatus::Superseded,
                &clerk,
                now,
            )
            .await?;
            if !superseded {
                drop(tx);
                discard(app, &self.object_key).await;
                return Err(ApiError::Conflict(
                    "the document to supersede is not current (already superseded or revoked)"
                        .into(),
                ));
            }
        }
        match documents::insert(&mut tx, &row).await {
            Ok(()) => {}
            Err(e) if db::is_unique_violation(&e) => {
                // Another intake of the same scan committed between our check and our insert.
                drop(tx);
                let existing = documents::find_current_scan(
                    &app.db.pool,
                    &citizen_hex,
                    row.doc_type,
                    &row.sha256,
                )
                .await?
                .ok_or_else(|| {
                    ApiError::Conflict("a concurrent intake changed this record; retry".into())
                })?;
                return answer_duplicate(app, &keys, &self.object_key, existing, audit_entry).await;
            }
            Err(e) => return Err(db::db_err("insert document")(e)),
        }
        documents::delete_intent(&mut *tx, &self.object_key).await?;
        audit_entry.document_id = Some(row.id.to_string());
        audit::append(&mut tx, &keys, audit_entry).await?;
        super::fault(app, FaultPoint::BeforeCommit)?;
        tx.commit().await.map_err(db::db_err("commit intake"))?;
        super::fault(app, FaultPoint::AfterCommit)?;
        Metrics::inc(&app.metrics.documents_taken_in);
        Ok(IntakeResult::Created(view(app, &row)?))
    }

    /// Gives up on the intake: the object (if any) and its intent are removed.
    pub async fn abort(self) {
        if self.crashed {
            return;
        }
        let app = self.app;
        let key = self.object_key.clone();
        self.writer.abort().await;
        discard(app, &key).await;
    }
}

/// The same scan is already current for this citizen and type: drop ours, answer with theirs.
async fn answer_duplicate(
    app: &App,
    keys: &Keyring,
    object_key: &str,
    existing: DocumentRow,
    mut audit_entry: Entry,
) -> Result<IntakeResult, ApiError> {
    discard(app, object_key).await;
    audit_entry.document_id = Some(existing.id.to_string());
    audit_entry.reason = Some("duplicate".into());
    audit::record(&app.db, keys, audit_entry).await?;
    Ok(IntakeResult::Existing(view(app, &existing)?))
}

/// Deletes an uncommitted object and its intent. A failure here is left for the sweeper.
async fn discard(app: &App, object_key: &str) {
    if let Err(e) = app.blobs.delete(object_key).await {
        tracing::warn!(error = ?e, "could not delete an uncommitted object; the sweeper will");
        return;
    }
    if let Err(e) = documents::delete_intent(&app.db.pool, object_key).await {
        tracing::warn!(error = ?e, "could not clear an intake intent; the sweeper will");
    }
}
