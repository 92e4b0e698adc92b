//! Reading documents: list, metadata, content. Status changes are in [`super::status`].

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use uuid::Uuid;

use super::Vault;
use super::{DocumentView, data_key, entry, refuse, require_role, view};
use crate::audit::writer::GrantUse;
use crate::audit::{self, AuditAction, Entry, Outcome};
use crate::auth::Caller;
use crate::crypto::envelope::BodyOpener;
use crate::db::documents::{self, DocumentRow};
use crate::db::grants::{self as grant_store, GrantRow, StoredGrant};
use crate::db::now_ms;
use crate::domain::{DocStatus, GrantState, NationalId, Role};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Bodies up to this size are decrypted once, into memory, and sent, while the vault's budget
/// for copies in memory ([`Vault::copy_buffers`]) has room; larger ones, and any beyond the
/// budget, are authenticated in a first pass and decrypted again while streaming, so memory
/// stays flat. Either way not one byte is sent before every segment has authenticated.
const IN_MEMORY_LIMIT: i64 = 8 * 1024 * 1024;

/// The grant behind an officer's token, if it is still in force. The entry `e` gains the
/// grant's dossier and office as soon as the grant is found, so a refusal is logged with them.
async fn live_grant(vault: &Vault, caller: &Caller, e: &mut Entry) -> Result<GrantRow, ApiError> {
    let grant = grant_store::get(&vault.db.pool, token_grant(caller)?).await?;
    let grant = grant_in_force(vault, grant, caller, e)?;
    super::requests::unrestricted(vault, &grant.citizen_idx).await?;
    Ok(grant)
}

/// The grant an officer's token was issued for.
fn token_grant(caller: &Caller) -> Result<Uuid, ApiError> {
    caller
        .grant
        .ok_or_else(|| ApiError::Forbidden("officers read documents only through a grant".into()))
}

/// The checks of [`live_grant`] on a grant row already read (`None`: it is gone).
fn grant_in_force(
    vault: &Vault,
    grant: Option<StoredGrant>,
    caller: &Caller,
    e: &mut Entry,
) -> Result<GrantRow, ApiError> {
    let grant = super::grants::open(vault, grant.ok_or(ApiError::GrantRevoked)?)?;
    e.case_ref = Some(grant.case_ref.clone());
    e.citizen_idx.get_or_insert(grant.citizen_idx);
    super::grants::made_for(&grant, caller)?;
    e.office = grant.grantee_office.clone();
    grant_state(&grant, now_ms())?;
    Ok(grant)
}

/// Why a grant refuses ([`GrantState`]). A used-up grant reads nothing more, metadata and
/// listings included: the officer has had the copies the citizen agreed to, and the refusal
/// itself tells their screen why.
fn grant_state(grant: &GrantRow, now: i64) -> Result<(), ApiError> {
    match grant.state(now) {
        GrantState::Active => Ok(()),
        GrantState::Revoked => Err(ApiError::GrantRevoked),
        GrantState::Expired => Err(ApiError::GrantExpired),
        GrantState::UsedUp => Err(ApiError::GrantExhausted),
    }
}

/// Why no use of a grant could be spent at the moment of a read (the refusal is logged).
fn why_no_use(current: Option<&GrantRow>, now: i64) -> ApiError {
    match current.map(|g| grant_state(g, now)) {
        None => ApiError::GrantRevoked,
        Some(Err(err)) => err,
        Some(Ok(())) => ApiError::GrantExhausted,
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
    vault: &Vault,
    caller: &Caller,
    id: Uuid,
    e: &mut Entry,
) -> Result<(DocumentRow, Option<GrantRow>), ApiError> {
    require_role(
        vault,
        e,
        caller,
        &[Role::Clerk, Role::Officer, Role::Citizen],
    )
    .await?;
    // An officer's grant, the document and any restriction on the citizen are read in one
    // statement.
    let (grant, doc) = if caller.role == Role::Officer {
        let found = match token_grant(caller) {
            Ok(grant_id) => grant_store::get_with_document(&vault.db.pool, grant_id, id).await?,
            Err(err) => return Err(refuse(vault, e.clone(), err).await),
        };
        let (grant, doc, restriction) = match found {
            Some(f) => (Some(f.grant), f.document, f.restriction),
            None => (None, None, None),
        };
        let in_force = match (grant_in_force(vault, grant, caller, e), restriction) {
            (Ok(_), Some(r)) => Err(super::requests::restricted(&r)),
            (in_force, _) => in_force,
        };
        match in_force {
            Ok(g) => (Some(g), doc),
            Err(err) => return Err(refuse(vault, e.clone(), err).await),
        }
    } else {
        (None, documents::get(&vault.db.pool, id).await?)
    };
    let visible = match (&doc, caller.role) {
        (None, _) => false,
        (Some(_), Role::Clerk) => true,
        (Some(d), Role::Officer) => grant.as_ref().is_some_and(|g| grant_covers(g, d)),
        (Some(d), Role::Citizen) => caller
            .citizen_index()
            .is_some_and(|idx| *idx == d.citizen_idx),
        _ => false,
    };
    if let Some(d) = &doc {
        e.citizen_idx = Some(d.citizen_idx);
    }
    match doc {
        Some(d) if visible => Ok((d, grant)),
        _ => {
            e.reason = Some("out of scope".into());
            Err(refuse(vault, e.clone(), ApiError::NotFound).await)
        }
    }
}

pub async fn list(
    vault: &Vault,
    caller: &Caller,
    national_id: &NationalId,
    include_all: bool,
) -> Result<Vec<DocumentView>, ApiError> {
    let keys = vault.keys();
    let citizen = keys.citizen_index(national_id)?;
    let mut e = entry(caller, AuditAction::DocumentList);
    e.citizen_idx = Some(citizen);
    require_role(
        vault,
        &e,
        caller,
        &[Role::Clerk, Role::Officer, Role::Citizen],
    )
    .await?;
    let allowed_types = match caller.role {
        Role::Officer => {
            let grant = match live_grant(vault, caller, &mut e).await {
                Ok(g) if g.citizen_idx == citizen => g,
                Ok(_) => return Err(refuse(vault, e, ApiError::ScopeDenied).await),
                Err(err) => return Err(refuse(vault, e, err).await),
            };
            Some(grant.doc_types)
        }
        Role::Citizen if caller.citizen().as_ref() != Some(national_id) => {
            return Err(refuse(
                vault,
                e,
                ApiError::Forbidden("citizens see only their own records".into()),
            )
            .await);
        }
        _ => None,
    };
    // Officers see current documents of granted types only, whatever they ask for.
    let include_all = include_all && caller.role != Role::Officer;
    let rows = documents::list_for_citizen(&vault.db.pool, &citizen, include_all).await?;
    vault.record(e).await?;
    rows.iter()
        .filter(|r| {
            allowed_types
                .as_ref()
                .is_none_or(|t| t.contains(&r.doc_type))
        })
        .map(|r| view(vault, r))
        .collect()
}

/// The documents an officer's grant covers (current ones, of the granted types), for the
/// officer holding grant `id`: the officer's screen knows the grant, not the citizen's number.
/// Logged like any listing, with the dossier.
pub async fn list_granted(
    vault: &Vault,
    caller: &Caller,
    id: Uuid,
) -> Result<Vec<DocumentView>, ApiError> {
    let mut e = entry(caller, AuditAction::DocumentList);
    e.grant_id = Some(id.to_string());
    require_role(vault, &e, caller, &[Role::Officer]).await?;
    if caller.grant != Some(id) {
        return Err(refuse(vault, e, ApiError::ScopeDenied).await);
    }
    let grant = match live_grant(vault, caller, &mut e).await {
        Ok(g) => g,
        Err(err) => return Err(refuse(vault, e, err).await),
    };
    e.citizen_idx = Some(grant.citizen_idx);
    let rows = documents::list_for_citizen(&vault.db.pool, &grant.citizen_idx, false).await?;
    vault.record(e).await?;
    rows.iter()
        .filter(|r| grant.doc_types.contains(&r.doc_type))
        .map(|r| view(vault, r))
        .collect()
}

pub async fn metadata(vault: &Vault, caller: &Caller, id: Uuid) -> Result<DocumentView, ApiError> {
    let mut e = entry(caller, AuditAction::DocumentRead);
    e.document_id = Some(id.to_string());
    let (doc, _) = scoped_document(vault, caller, id, &mut e).await?;
    vault.record(e).await?;
    view(vault, &doc)
}

/// A verified copy on its way out: metadata for the headers and the plaintext stream.
pub struct Content {
    pub document: DocumentRow,
    /// Where this read's audit entry sits in the log (the response's receipt).
    pub receipt: audit::Appended,
    pub body: BoxStream<'static, Result<Bytes, ApiError>>,
}

pub async fn content(vault: &Vault, caller: &Caller, id: Uuid) -> Result<Content, ApiError> {
    let keys = vault.keys();
    let mut e = entry(caller, AuditAction::DocumentContent);
    e.document_id = Some(id.to_string());
    if caller.role == Role::Citizen {
        return Err(refuse(
            vault,
            e,
            ApiError::Forbidden("citizens see metadata, not content".into()),
        )
        .await);
    }
    let (doc, grant) = scoped_document(vault, caller, id, &mut e).await?;
    if doc.status == DocStatus::Erased {
        return Err(refuse(vault, e, ApiError::Erased).await);
    }
    if doc.status == DocStatus::Revoked {
        return Err(refuse(
            vault,
            e,
            ApiError::Conflict("the document has been revoked".into()),
        )
        .await);
    }

    // The grant use (checked and counted in one statement) and the entry are committed
    // together, in the log writer's next transaction; only then is the object read.
    let grant_use = grant.as_ref().map(|g| GrantUse {
        grant: g.id,
        refusal: why_no_use,
    });
    let receipt = vault
        .log
        .record_read(keys.clone(), e.clone(), grant_use)
        .await?;

    match open_body(vault, &doc).await {
        Ok(body) => {
            Metrics::inc(&vault.metrics.copies_served);
            Ok(Content {
                document: doc,
                receipt,
                body,
            })
        }
        Err(err) => {
            if matches!(err, ApiError::Integrity(_)) {
                Metrics::inc(&vault.metrics.integrity_errors);
            }
            e.outcome = Outcome::Error;
            e.reason = Some(err.code().to_owned());
            // Best effort: the read was already logged as allowed; this adds why it failed.
            if let Err(audit_err) = vault.record(e).await {
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
    vault: &Vault,
    doc: &DocumentRow,
    mut sink: impl FnMut(&[u8]),
) -> Result<(), ApiError> {
    let integrity = |e: crate::crypto::envelope::IntegrityError| {
        ApiError::Integrity(format!("document {}: {e}", doc.id))
    };
    let mut opener = BodyOpener::new(data_key(vault, doc)?, super::binding(doc)?);
    let mut piece = Vec::new();
    let mut produced = 0usize;
    let mut stored = vault.blobs.get(&doc.object_key).await?;
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

/// At least the stored size of a body of `plaintext` bytes (header, a tag per segment, and one
/// byte more so that reading to the end needs no second allocation): the read buffer's size.
fn sealed_len_bound(plaintext: i64) -> usize {
    use crate::crypto::envelope::{HEADER_LEN, SEGMENT_LEN, TAG_LEN};
    let n = usize::try_from(plaintext).unwrap_or(0);
    HEADER_LEN + n + TAG_LEN * (n / SEGMENT_LEN + 2) + 1
}

/// Authenticates the whole body before returning anything that could reach the client.
pub(super) async fn open_body(
    vault: &Vault,
    doc: &DocumentRow,
) -> Result<BoxStream<'static, Result<Bytes, ApiError>>, ApiError> {
    // Pass 1: authenticate every segment, and keep the plaintext if it is small and the
    // memory budget for copies in flight has room for it (else it streams, in flat memory).
    let buffer = (doc.size_bytes <= IN_MEMORY_LIMIT)
        .then(|| vault.copy_buffers.take(sealed_len_bound(doc.size_bytes)))
        .flatten();
    if let Some(mut buffer) = buffer {
        // Read once into one buffer, every segment authenticated and decrypted in place, then
        // sent as slices of that buffer: no copy of the plaintext is made.
        let bytes = std::mem::take(&mut buffer.bytes);
        buffer.bytes = vault.blobs.read_all(&doc.object_key, bytes).await?;
        let ranges = crate::crypto::envelope::open_in_place(
            &data_key(vault, doc)?,
            &super::binding(doc)?,
            &mut buffer.bytes,
        )
        .map_err(|e| ApiError::Integrity(format!("document {}: {e}", doc.id)))?;
        if ranges.iter().map(|r| r.len()).sum::<usize>() as i64 != doc.size_bytes {
            return Err(ApiError::Integrity(format!(
                "document {}: size differs from the record",
                doc.id
            )));
        }
        // The buffer goes back to be kept when the bytes are dropped, after they were sent.
        let owner = Bytes::from_owner(buffer);
        let pieces: Vec<Result<Bytes, ApiError>> =
            ranges.into_iter().map(|r| Ok(owner.slice(r))).collect();
        return Ok(futures_util::stream::iter(pieces).boxed());
    }
    authenticate_body(vault, doc, |_| {}).await?;

    // Pass 2: decrypt again while sending. The object is write-once, so this pass sees the
    // bytes pass 1 authenticated; if it ever did not, the stream ends with an error.
    let mut opener = Some(BodyOpener::new(data_key(vault, doc)?, super::binding(doc)?));
    let stored = vault.blobs.get(&doc.object_key).await?;
    let id = doc.id;
    let body = stored
        .map(Some)
        .chain(futures_util::stream::once(async { None }))
        .map(move |item| {
            let mut out = Vec::new();
            let result = match item {
                Some(Ok(chunk)) => opener.as_mut().map(|o| o.push(&chunk, &mut out)),
                Some(Err(e)) => return Err(ApiError::from(e)),
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
