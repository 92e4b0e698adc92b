//! Reading documents (list, metadata, content) and changing their status (verify, revoke).

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use uuid::Uuid;

use super::{DocumentView, data_key, entry, refuse, require_role, sign_attestation, view};
use crate::app::{App, Metrics};
use crate::audit::{self, Entry, Outcome};
use crate::auth::Caller;
use crate::crypto::envelope::BodyOpener;
use crate::db::documents::{self, DocumentRow};
use crate::db::grants::{self as grant_store, GrantRow};
use crate::db::{self, now_ms};
use crate::domain::{DocStatus, NationalId, Role};
use crate::error::ApiError;

/// Bodies up to this size are decrypted once, into memory, and sent; larger ones are
/// authenticated in a first pass and decrypted again while streaming, so memory stays flat.
/// Either way not one byte is sent before every segment has authenticated.
const IN_MEMORY_LIMIT: i64 = 8 * 1024 * 1024;

/// The grant behind an officer's token, if it is still in force.
async fn live_grant(app: &App, caller: &Caller) -> Result<GrantRow, ApiError> {
    let grant_id = caller.grant.ok_or_else(|| {
        ApiError::Forbidden("officers read documents only through a grant".into())
    })?;
    let grant = grant_store::get(&app.db.pool, grant_id)
        .await?
        .ok_or(ApiError::GrantRevoked)?;
    if Some(grant.grantee.as_str()) != caller.staff_id() {
        return Err(ApiError::Forbidden(
            "this grant was made for another officer".into(),
        ));
    }
    grant_state(&grant, now_ms())?;
    Ok(grant)
}

/// Why a grant refuses, checked in the order a person would ask: revoked, expired, used up.
fn grant_state(grant: &GrantRow, now: i64) -> Result<(), ApiError> {
    if grant.revoked_at.is_some() {
        Err(ApiError::GrantRevoked)
    } else if grant.expires_at <= now {
        Err(ApiError::GrantExpired)
    } else {
        Ok(())
    }
}

fn grant_covers(grant: &GrantRow, doc: &DocumentRow) -> bool {
    grant.citizen_idx == doc.citizen_idx
        && grant.doc_types.contains(&doc.doc_type)
        && doc.status.is_current()
}

/// Loads a document the caller may see, or refuses (404 for anything out of scope, so existence
/// does not leak). Returns the document and, for officers, their grant.
async fn scoped_document(
    app: &App,
    caller: &Caller,
    id: Uuid,
    e: &mut Entry,
) -> Result<(DocumentRow, Option<GrantRow>), ApiError> {
    let keys = app.keys();
    require_role(app, e, caller, &[Role::Clerk, Role::Officer, Role::Citizen]).await?;
    let grant = if caller.role == Role::Officer {
        match live_grant(app, caller).await {
            Ok(g) => {
                e.case_ref = Some(g.case_ref.clone());
                Some(g)
            }
            Err(err) => return Err(refuse(app, e.clone(), err).await),
        }
    } else {
        None
    };
    let doc = documents::get(&app.db.pool, id).await?;
    let visible = match (&doc, caller.role) {
        (None, _) => false,
        (Some(_), Role::Clerk) => true,
        (Some(d), Role::Officer) => grant.as_ref().is_some_and(|g| grant_covers(g, d)),
        (Some(d), Role::Citizen) => caller
            .citizen()
            .is_some_and(|nid| keys.citizen_index(&nid).to_hex() == d.citizen_idx),
        _ => false,
    };
    if let Some(d) = &doc {
        e.citizen_idx = Some(d.citizen_idx.clone());
    }
    match doc {
        Some(d) if visible => Ok((d, grant)),
        _ => {
            e.reason = Some("out of scope".into());
            Err(refuse(app, e.clone(), ApiError::NotFound).await)
        }
    }
}

pub async fn list(
    app: &App,
    caller: &Caller,
    national_id: &NationalId,
    include_all: bool,
) -> Result<Vec<DocumentView>, ApiError> {
    let keys = app.keys();
    let citizen = keys.citizen_index(national_id).to_hex();
    let mut e = entry(&keys, caller, "document.list");
    e.citizen_idx = Some(citizen.clone());
    require_role(
        app,
        &e,
        caller,
        &[Role::Clerk, Role::Officer, Role::Citizen],
    )
    .await?;
    let allowed_types = match caller.role {
        Role::Officer => {
            let grant = match live_grant(app, caller).await {
                Ok(g) if g.citizen_idx == citizen => g,
                Ok(_) => return Err(refuse(app, e, ApiError::ScopeDenied).await),
                Err(err) => return Err(refuse(app, e, err).await),
            };
            e.case_ref = Some(grant.case_ref.clone());
            Some(grant.doc_types)
        }
        Role::Citizen if caller.citizen().as_ref() != Some(national_id) => {
            return Err(refuse(
                app,
                e,
                ApiError::Forbidden("citizens see only their own records".into()),
            )
            .await);
        }
        _ => None,
    };
    // Officers see current documents of granted types only, whatever they ask for.
    let include_all = include_all && caller.role != Role::Officer;
    let rows = documents::list_for_citizen(&app.db.pool, &citizen, include_all).await?;
    audit::record(&app.db, &keys, e).await?;
    rows.iter()
        .filter(|r| {
            allowed_types
                .as_ref()
                .is_none_or(|t| t.contains(&r.doc_type))
        })
        .map(|r| view(app, r))
        .collect()
}

pub async fn metadata(app: &App, caller: &Caller, id: Uuid) -> Result<DocumentView, ApiError> {
    let keys = app.keys();
    let mut e = entry(&keys, caller, "document.read");
    e.document_id = Some(id.to_string());
    let (doc, _) = scoped_document(app, caller, id, &mut e).await?;
    audit::record(&app.db, &keys, e).await?;
    view(app, &doc)
}

/// A verified copy on its way out: metadata for the headers and the plaintext stream.
pub struct Content {
    pub document: DocumentRow,
    pub body: BoxStream<'static, Result<Bytes, ApiError>>,
}

pub async fn content(app: &App, caller: &Caller, id: Uuid) -> Result<Content, ApiError> {
    let keys = app.keys();
    let mut e = entry(&keys, caller, "document.content");
    e.document_id = Some(id.to_string());
    if caller.role == Role::Citizen {
        return Err(refuse(
            app,
            e,
            ApiError::Forbidden("citizens see metadata, not content".into()),
        )
        .await);
    }
    let (doc, grant) = scoped_document(app, caller, id, &mut e).await?;
    if doc.status == DocStatus::Revoked {
        return Err(refuse(
            app,
            e,
            ApiError::Conflict("the document has been revoked".into()),
        )
        .await);
    }

    // One transaction: take the audit lock, spend the grant use (checked and counted in one
    // statement), write the entry, commit. Only then is the object read.
    let mut tx = audit::begin(&app.db)
        .await
        .inspect_err(|_| Metrics::inc(&app.metrics.audit_failures))?;
    if let Some(grant) = &grant
        && !grant_store::consume_use(&mut tx, grant.id, now_ms()).await?
    {
        let current = grant_store::get(&mut *tx, grant.id)
            .await?
            .ok_or(ApiError::GrantRevoked)?;
        let err = match grant_state(&current, now_ms()) {
            Err(err) => err,
            Ok(()) => ApiError::GrantExhausted,
        };
        e.outcome = Some(Outcome::Denied);
        e.reason = Some(err.code().to_owned());
        audit::append(&mut tx, &keys, e).await?;
        tx.commit().await.map_err(db::db_err("commit refusal"))?;
        return Err(err);
    }
    audit::append(&mut tx, &keys, e.clone())
        .await
        .inspect_err(|_| Metrics::inc(&app.metrics.audit_failures))?;
    tx.commit().await.map_err(|err| {
        Metrics::inc(&app.metrics.audit_failures);
        ApiError::unavailable("audit log unavailable (commit)", err)
    })?;

    match open_body(app, &doc).await {
        Ok(body) => {
            Metrics::inc(&app.metrics.copies_served);
            Ok(Content {
                document: doc,
                body,
            })
        }
        Err(err) => {
            if matches!(err, ApiError::Integrity(_)) {
                Metrics::inc(&app.metrics.integrity_errors);
            }
            e.outcome = Some(Outcome::Error);
            e.reason = Some(err.code().to_owned());
            // Best effort: the read was already logged as allowed; this adds why it failed.
            if let Err(audit_err) = audit::record(&app.db, &keys, e).await {
                tracing::error!(error = ?audit_err, "could not log a failed read");
            }
            Err(err)
        }
    }
}

/// Reads a stored body once, authenticating every segment, and hands each authenticated piece
/// of plaintext to `sink`. Fails unless the whole body authenticates and its size matches the
/// row (the row's size becomes `Content-Length`).
pub async fn authenticate_body(
    app: &App,
    doc: &DocumentRow,
    mut sink: impl FnMut(&[u8]),
) -> Result<(), ApiError> {
    let integrity = |e: crate::crypto::envelope::IntegrityError| {
        ApiError::Integrity(format!("document {}: {e}", doc.id))
    };
    let mut opener = BodyOpener::new(data_key(app, doc)?, super::binding(doc)?);
    let mut piece = Vec::new();
    let mut produced = 0usize;
    let mut stored = app.blobs.get(&doc.object_key).await?;
    while let Some(chunk) = stored.next().await {
        opener.push(&chunk?, &mut piece).map_err(integrity)?;
        produced += piece.len();
        sink(&piece);
        piece.clear();
    }
    opener.finish(&mut piece).map_err(integrity)?;
    produced += piece.len();
    sink(&piece);
    if produced as i64 != doc.size_bytes {
        return Err(ApiError::Integrity(format!(
            "document {}: size differs from the record",
            doc.id
        )));
    }
    Ok(())
}

/// Authenticates the whole body before returning anything that could reach the client.
async fn open_body(
    app: &App,
    doc: &DocumentRow,
) -> Result<BoxStream<'static, Result<Bytes, ApiError>>, ApiError> {
    // Pass 1: authenticate every segment (and keep the plaintext if it is small).
    let keep = doc.size_bytes <= IN_MEMORY_LIMIT;
    let mut plaintext = Vec::with_capacity(if keep { doc.size_bytes as usize } else { 0 });
    authenticate_body(app, doc, |piece| {
        if keep {
            plaintext.extend_from_slice(piece);
        }
    })
    .await?;
    if keep {
        return Ok(futures_util::stream::once(async move { Ok(Bytes::from(plaintext)) }).boxed());
    }

    // Pass 2: decrypt again while sending. The object is write-once, so this pass sees the
    // bytes pass 1 authenticated; if it ever did not, the stream ends with an error.
    let mut opener = Some(BodyOpener::new(data_key(app, doc)?, super::binding(doc)?));
    let stored = app.blobs.get(&doc.object_key).await?;
    let id = doc.id;
    let body = stored
        .map(Some)
        .chain(futures_util::stream::once(async { None }))
        .map(move |item| {
            let mut out = Vec::new();
            let result = match item {
                Some(Ok(chunk)) => opener.as_mut().map(|o| o.push(&chunk, &mut out)),
                Some(Err(e)) => return Err(e),
                None => opener.take().map(|o| o.finish(&mut out)),
            };
            match result {
                Some(Err(e)) => Err(ApiError::Integrity(format!("document {id}: {e}"))),
                _ => Ok(Bytes::from(out)),
            }
        })
        .boxed();
    Ok(body)
}

pub async fn verify(app: &App, caller: &Caller, id: Uuid) -> Result<DocumentView, ApiError> {
    let keys = app.keys();
    let mut e = entry(&keys, caller, "document.verify");
    e.document_id = Some(id.to_string());
    require_role(app, &e, caller, &[Role::Clerk]).await?;
    let Some(mut doc) = documents::get(&app.db.pool, id).await? else {
        return Err(refuse(app, e, ApiError::NotFound).await);
    };
    e.citizen_idx = Some(doc.citizen_idx.clone());
    match doc.status {
        DocStatus::Verified => return view(app, &doc),
        DocStatus::Pending => {}
        other => {
            return Err(refuse(
                app,
                e,
                ApiError::Conflict(format!("a {other} document cannot be verified")),
            )
            .await);
        }
    }
    let clerk = caller.staff_id().unwrap_or("-").to_owned();
    let now = now_ms();
    let attestation = sign_attestation(
        &keys,
        &app.settings.token_issuer,
        &doc,
        &clerk,
        &caller.office,
        now,
    )?;
    let mut tx = audit::begin(&app.db).await?;
    if !documents::mark_verified(&mut tx, id, &clerk, &caller.office, now, &attestation).await? {
        return Err(ApiError::Conflict(
            "the document changed meanwhile; retry".into(),
        ));
    }
    audit::append(&mut tx, &keys, e).await?;
    tx.commit().await.map_err(db::db_err("commit verify"))?;
    doc.status = DocStatus::Verified;
    doc.verified_by = Some(clerk);
    doc.verified_office = Some(caller.office.clone());
    doc.verified_at = Some(now);
    doc.attestation = Some(attestation);
    view(app, &doc)
}

pub async fn revoke(app: &App, caller: &Caller, id: Uuid) -> Result<DocumentView, ApiError> {
    let keys = app.keys();
    let mut e = entry(&keys, caller, "document.revoke");
    e.document_id = Some(id.to_string());
    require_role(app, &e, caller, &[Role::Clerk, Role::Admin]).await?;
    let Some(mut doc) = documents::get(&app.db.pool, id).await? else {
        return Err(refuse(app, e, ApiError::NotFound).await);
    };
    e.citizen_idx = Some(doc.citizen_idx.clone());
    if doc.status == DocStatus::Revoked {
        return view(app, &doc);
    }
    let by = caller.staff_id().unwrap_or("-").to_owned();
    let now = now_ms();
    let mut tx = audit::begin(&app.db).await?;
    let from = [
        DocStatus::Pending,
        DocStatus::Verified,
        DocStatus::Superseded,
    ];
    if !documents::change_status(&mut tx, id, &from, DocStatus::Revoked, &by, now).await? {
        return Err(ApiError::Conflict(
            "the document changed meanwhile; retry".into(),
        ));
    }
    audit::append(&mut tx, &keys, e).await?;
    tx.commit().await.map_err(db::db_err("commit revoke"))?;
    doc.status = DocStatus::Revoked;
    doc.status_changed_by = Some(by);
    doc.status_changed_at = Some(now);
    view(app, &doc)
}
