//! Reading the audit log: the auditor's query and verification, the citizen's access log.

use serde::{Deserialize, Serialize};

use super::Vault;
use super::{entry, refuse, require_own_records, require_role};
use crate::audit::merkle::Hash;
use crate::audit::receipt::Receipt;
use crate::audit::{self, AuditAction, Entry, Outcome, Report};
use crate::auth::Caller;
use crate::crypto::CitizenIndex;
use crate::crypto::keyring::Keyring;
use crate::db::audit::{self as store, EntryRow, Filter};
use crate::db::grants as grant_store;
use crate::domain::format_rfc3339 as rfc3339;
use crate::domain::{NationalId, Role};
use crate::error::ApiError;

pub const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub national_id: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// `allowed`, `denied` or `error`.
    pub outcome: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<i64>,
    /// The `next` value of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct EntryView {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub role: Role,
    pub office: String,
    pub action: AuditAction,
    pub outcome: Outcome,
    pub document_id: Option<String>,
    pub grant_id: Option<String>,
    pub case_ref: Option<String>,
    pub reason: Option<String>,
}

impl From<EntryRow> for EntryView {
    fn from(r: EntryRow) -> Self {
        Self {
            seq: r.seq,
            at: rfc3339(r.at),
            actor: r.actor,
            role: r.role,
            office: r.office,
            action: r.action,
            outcome: r.outcome,
            document_id: r.document_id,
            grant_id: r.grant_id,
            case_ref: r.case_ref,
            reason: r.reason,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Page {
    pub entries: Vec<EntryView>,
    pub next: Option<String>,
}

fn page(rows: Vec<EntryRow>, limit: i64) -> Page {
    let next = if rows.len() as i64 == limit {
        rows.last().map(|r| r.seq.to_string())
    } else {
        None
    };
    Page {
        entries: rows.into_iter().map(EntryView::from).collect(),
        next,
    }
}

/// A word of the log's vocabulary given as a filter; the answer to a typo names the words.
fn parse_word<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T, ApiError> {
    text.parse().map_err(ApiError::InvalidRequest)
}

fn parse_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(100),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::InvalidRequest(format!(
            "limit must be 1 to {MAX_LIMIT}"
        ))),
    }
}

fn parse_cursor(cursor: Option<&str>) -> Result<i64, ApiError> {
    match cursor {
        None => Ok(0),
        Some(text) => text.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::InvalidRequest("cursor is not one this vault gave out".into())
        }),
    }
}

pub async fn query(vault: &Vault, caller: &Caller, q: AuditQuery) -> Result<Page, ApiError> {
    let keys = vault.keys();
    let mut e = entry(caller, AuditAction::AuditQuery);
    require_role(vault, &e, caller, &[Role::Auditor]).await?;
    let citizen_idx = match &q.national_id {
        Some(id) => Some(keys.citizen_index(&NationalId::parse(id)?)?),
        None => None,
    };
    let filter = Filter {
        citizen_idx,
        actor: q.actor,
        action: q
            .action
            .as_deref()
            .map(parse_word::<AuditAction>)
            .transpose()?,
        outcome: q
            .outcome
            .as_deref()
            .map(parse_word::<Outcome>)
            .transpose()?,
        since: q
            .since
            .as_deref()
            .map(|s| crate::domain::parse_rfc3339(s, "since"))
            .transpose()?,
        until: q
            .until
            .as_deref()
            .map(|s| crate::domain::parse_rfc3339(s, "until"))
            .transpose()?,
        after_seq: parse_cursor(q.cursor.as_deref())?,
        limit: parse_limit(q.limit)?,
        access_log: false,
    };
    e.citizen_idx = citizen_idx;
    // Log the query before answering it, like any other read.
    vault.record(e).await?;
    let rows = store::query(&vault.db.pool, &filter).await?;
    Ok(page(rows, filter.limit))
}

pub async fn verify_log(vault: &Vault, caller: &Caller) -> Result<Report, ApiError> {
    let e = entry(caller, AuditAction::AuditVerify);
    require_role(vault, &e, caller, &[Role::Auditor]).await?;
    // Verify first, then log: the report describes the log as it was when asked.
    let report = verify_all(vault, None).await?;
    vault.record(e).await?;
    Ok(report)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The entry of a look at a citizen's access log, once the caller may: the citizen themself or
/// an auditor (a refusal is logged).
async fn access_log_entry(
    vault: &Vault,
    caller: &Caller,
    national_id: &NationalId,
    action: AuditAction,
) -> Result<(Entry, CitizenIndex), ApiError> {
    let keys = vault.keys();
    let citizen = keys.citizen_index(national_id)?;
    let mut e = entry(caller, action);
    e.citizen_idx = Some(citizen);
    require_role(vault, &e, caller, &[Role::Citizen, Role::Auditor]).await?;
    require_own_records(vault, &e, caller, national_id, "access log").await?;
    Ok((e, citizen))
}

/// Who read this citizen's records: every allowed list, metadata or content read by someone
/// other than the citizen, with office and case; and every erasure of their documents, whose
/// receipt ([`access_proof`]) proves to the citizen that the vault logged it.
pub async fn access_log(
    vault: &Vault,
    caller: &Caller,
    national_id: &NationalId,
    q: AccessLogQuery,
) -> Result<Page, ApiError> {
    let (e, citizen) =
        access_log_entry(vault, caller, national_id, AuditAction::AccessLogRead).await?;
    let filter = Filter {
        citizen_idx: Some(citizen),
        after_seq: parse_cursor(q.cursor.as_deref())?,
        limit: parse_limit(q.limit)?,
        access_log: true,
        ..Filter::default()
    };
    vault.record(e).await?;
    let rows = store::query(&vault.db.pool, &filter).await?;
    Ok(page(rows, filter.limit))
}

/// Every entry of a citizen's access log (as [`access_log`] lists them), for their export.
pub async fn access_log_all(
    vault: &Vault,
    citizen: CitizenIndex,
) -> Result<Vec<EntryView>, ApiError> {
    let mut all = Vec::new();
    let mut filter = Filter {
        citizen_idx: Some(citizen),
        limit: MAX_LIMIT,
        access_log: true,
        ..Filter::default()
    };
    loop {
        let rows = store::query(&vault.db.pool, &filter).await?;
        let full = rows.len() as i64 == filter.limit;
        if let Some(last) = rows.last() {
            filter.after_seq = last.seq;
        }
        all.extend(rows.into_iter().map(EntryView::from));
        if !full {
            return Ok(all);
        }
    }
}

/// Verifies the log against everything outside the database that vouches for it: every
/// checkpoint in the object store and, when given, a witness's last checkpoint. Those are read
/// first, then the database in one snapshot (see [`audit::verify_log`]).
pub async fn verify_all(
    vault: &Vault,
    witness: Option<audit::checkpoints::Trusted>,
) -> Result<Report, ApiError> {
    let keys = vault.keys();
    let mut trusted =
        match audit::checkpoints::published(&vault.blobs, &keys, &vault.checkpoints.policy.origin)
            .await?
        {
            Ok(t) => t,
            Err(problem) => {
                return Ok(Report {
                    ok: false,
                    entries: 0,
                    head: String::new(),
                    first_bad_seq: Some(0),
                    problem: Some(problem),
                    grants: Vec::new(),
                });
            }
        };
    trusted.extend(witness);
    let mut snapshot = vault.db.snapshot().await?;
    let report = verify_in(vault, &keys, &trusted, &mut snapshot).await;
    snapshot.rollback().await?;
    report
}

/// [`verify_all`]'s reads of the database, all in `snapshot`: every grant's id, then the log's
/// walk, which counts the content reads through each grant, while every grant row is checked
/// against the vault's seal of its scope beside it. Each sealed row's count of uses spent must
/// then be the count of reads (each read spends its use in the transaction that logs it, so the
/// two agree unless someone edited the row).
async fn verify_in(
    vault: &Vault,
    keys: &Keyring,
    trusted: &[audit::checkpoints::Trusted],
    snapshot: &mut crate::db::Tx,
) -> Result<Report, ApiError> {
    let mut tally = audit::GrantTally::default();
    let mut after = String::new();
    loop {
        let ids = grant_store::ids_page(&mut **snapshot, &after, GRANT_PAGE).await?;
        for id in &ids {
            tally.watch(id);
        }
        let Some(last) = ids.into_iter().next_back() else {
            break;
        };
        after = last;
    }
    let beside = async |snapshot: &mut crate::db::Tx| grant_rows(snapshot, keys).await;
    let (verified, (sealed, mut problems)) =
        audit::verify_log(&vault.db, snapshot, keys, trusted, tally, beside).await?;
    // A walk that stopped early counted only part of the reads: its report says why.
    if let Some(counted) = verified.grants {
        problems.extend(sealed.iter().filter_map(|g| {
            grant_reads_problem(g, &counted.reads(g.id)).map(|problem| {
                audit::verify::GrantProblem {
                    grant_id: g.id.to_string(),
                    problem,
                }
            })
        }));
    }
    problems.sort_by(|a, b| a.grant_id.cmp(&b.grant_id));
    let mut report = verified.report;
    report.ok &= problems.is_empty();
    report.grants = problems;
    Ok(report)
}

/// Grant rows read a page at a time by `hoso audit verify`.
const GRANT_PAGE: i64 = 1000;

/// What a sealed grant row says of its uses: all the check keeps of it while the log is walked.
struct Uses {
    id: uuid::Uuid,
    spent: i64,
    max: i64,
    expires_at: i64,
}

/// Every grant row, a page at a time: the sealed ones' uses, and a problem for each row whose
/// seal does not check.
async fn grant_rows(
    snapshot: &mut crate::db::Tx,
    keys: &Keyring,
) -> Result<(Vec<Uses>, Vec<audit::verify::GrantProblem>), ApiError> {
    let (mut sealed, mut problems) = (Vec::new(), Vec::new());
    let mut after = String::new();
    loop {
        let (page, last) = grant_store::page(&mut **snapshot, &after, GRANT_PAGE).await?;
        let Some(last) = last else {
            return Ok((sealed, problems));
        };
        after = last;
        for stored in page {
            let id = stored.id();
            match stored.open(keys) {
                Ok(g) => sealed.push(Uses {
                    id,
                    spent: g.uses,
                    max: g.max_uses,
                    expires_at: g.expires_at,
                }),
                Err(_) => problems.push(audit::verify::GrantProblem {
                    grant_id: id.to_string(),
                    problem: "its row was altered outside the vault: the seal does not check"
                        .into(),
                }),
            }
        }
    }
}

/// What is wrong with a (sealed) grant's reads as the log holds them, if anything: a count of
/// uses that is not the count of reads, or reads the grant never allowed (more than its limit,
/// after its expiry, after its revocation), which only an edited row could have let through.
fn grant_reads_problem(g: &Uses, logged: &audit::verify::GrantReads) -> Option<String> {
    let edited = "its row was edited outside the vault";
    if g.spent != logged.count {
        Some(format!(
            "{} uses spent, but the log holds {} content reads through it: {edited}",
            g.spent, logged.count
        ))
    } else if logged.count > g.max {
        Some(format!(
            "{} content reads logged, over its limit of {}: {edited}",
            logged.count, g.max
        ))
    } else if logged.count > 0 && logged.last_at > g.expires_at {
        Some(format!("content reads logged after it expired: {edited}"))
    } else if logged.after_revocation > 0 {
        Some(format!(
            "{} content reads logged after it was revoked: {edited}",
            logged.after_revocation
        ))
    } else {
        None
    }
}

// ---- Checkpoints, proofs and receipts: public, like a transparency log's (hashes only).

/// The latest published checkpoint, as the note's text, with the log's verifier key. A read:
/// checkpoints are published by `hoso serve`'s checkpointer, never by a request.
pub async fn checkpoint(vault: &Vault) -> Result<(String, String), ApiError> {
    let latest = store::latest_note(&vault.db.pool)
        .await?
        .ok_or_else(|| ApiError::Conflict("the audit log is empty: no checkpoint yet".into()))?;
    Ok((latest.note, verifier_key(vault)))
}

pub fn verifier_key(vault: &Vault) -> String {
    audit::note::verifier_key(
        &vault.checkpoints.policy.origin,
        vault.keys().audit.public_key(),
    )
}

#[derive(Debug, Serialize)]
pub struct InclusionProof {
    pub seq: i64,
    pub size: i64,
    /// Base64 of the entry's leaf hash, computed from the entry as it is stored now.
    pub leaf_hash: String,
    /// Base64 hashes, nearest the leaf first (RFC 9162 §2.1.3).
    pub hashes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ConsistencyProof {
    pub from: i64,
    pub to: i64,
    pub hashes: Vec<String>,
}

fn b64(h: &Hash) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(h)
}

/// The log's size in `snapshot`, and a check that `n` is within it.
async fn within(snapshot: &mut crate::db::Tx, what: &str, n: i64) -> Result<(), ApiError> {
    let size = store::head(&mut **snapshot).await?.seq;
    if n < 1 || n > size {
        return Err(ApiError::InvalidRequest(format!(
            "{what} must be 1 to the log's size ({size})"
        )));
    }
    Ok(())
}

pub async fn inclusion(vault: &Vault, seq: i64, size: i64) -> Result<InclusionProof, ApiError> {
    let (leaf, hashes) = inclusion_hashes(vault, seq, size).await?;
    Ok(InclusionProof {
        seq,
        size,
        leaf_hash: b64(&leaf),
        hashes: hashes.iter().map(b64).collect(),
    })
}

/// Entry `seq`'s leaf hash as it is stored now, and its inclusion proof in the tree of `size`.
async fn inclusion_hashes(
    vault: &Vault,
    seq: i64,
    size: i64,
) -> Result<(Hash, Vec<Hash>), ApiError> {
    if seq > size {
        return Err(ApiError::InvalidRequest("seq must be at most size".into()));
    }
    let mut snapshot = vault.db.snapshot().await?;
    within(&mut snapshot, "size", size).await?;
    within(&mut snapshot, "seq", seq).await?;
    let entry = store::entry(&mut *snapshot, seq)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("audit entry {seq} is missing")))?;
    let leaf = audit::entry_leaf(&entry).map_err(|e| ApiError::Internal(e.to_owned()))?;
    let hashes = audit::tree::inclusion_proof(&mut snapshot, (seq - 1) as u64, size as u64).await?;
    snapshot.rollback().await?;
    Ok((leaf, hashes))
}

pub async fn consistency(vault: &Vault, from: i64, to: i64) -> Result<ConsistencyProof, ApiError> {
    if from > to {
        return Err(ApiError::InvalidRequest("from must be at most to".into()));
    }
    let mut snapshot = vault.db.snapshot().await?;
    within(&mut snapshot, "to", to).await?;
    within(&mut snapshot, "from", from).await?;
    let hashes = audit::tree::consistency_proof(&mut snapshot, from as u64, to as u64).await?;
    snapshot.rollback().await?;
    Ok(ConsistencyProof {
        from,
        to,
        hashes: hashes.iter().map(b64).collect(),
    })
}

/// A proof, in C2SP `tlog-proof` form, that entry `seq` of this citizen's access log is in the
/// log: the index, the inclusion proof in the smallest kept checkpoint covering it, the
/// checkpoint itself, and as `extra` the entry's leaf hash as the entry stands now. `hoso audit
/// verify-receipt` checks it offline against the audit key.
pub async fn access_proof(
    vault: &Vault,
    caller: &Caller,
    national_id: &NationalId,
    seq: i64,
) -> Result<String, ApiError> {
    let (e, citizen) =
        access_log_entry(vault, caller, national_id, AuditAction::AccessLogProof).await?;
    let row = store::entry(&vault.db.pool, seq).await?;
    if row.as_ref().and_then(|r| r.citizen_idx) != Some(citizen) {
        return Err(refuse(vault, e, ApiError::NotFound).await);
    }
    let receipt = receipt_for(vault, seq).await?;
    // Logged like the access log it proves a line of (it was not, before).
    vault.record(e).await?;
    receipt.ok_or_else(|| {
        ApiError::Unavailable(format!(
            "no published checkpoint covers entry {seq} yet; one is published within \
             HOSO_CHECKPOINT_SECONDS ({} s)",
            vault.checkpoints.policy.seconds
        ))
    })
}

/// The receipt of entry `seq` (C2SP `tlog-proof`: index, inclusion proof in the smallest kept
/// checkpoint covering it, the checkpoint), or None while no published checkpoint covers it.
pub async fn receipt_for(vault: &Vault, seq: i64) -> Result<Option<String>, ApiError> {
    let Some(note) = store::note_covering(&vault.db.pool, seq).await? else {
        return Ok(None);
    };
    let (leaf, hashes) = inclusion_hashes(vault, seq, note.size).await?;
    let receipt = Receipt {
        index: (seq - 1) as u64,
        leaf,
        hashes,
        checkpoint: note.note,
    };
    Ok(Some(receipt.write()))
}
