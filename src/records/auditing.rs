//! Reading the audit log: the auditor's query and verification, the citizen's access log.

use serde::{Deserialize, Serialize};

use super::Vault;
use super::{entry, refuse, require_role};
use crate::audit::{self, Report};
use crate::auth::Caller;
use crate::db::audit::{self as store, EntryRow, Filter};
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
    pub role: String,
    pub office: String,
    pub action: String,
    pub outcome: String,
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
    let mut e = entry(&keys, caller, "audit.query");
    require_role(vault, &e, caller, &[Role::Auditor]).await?;
    let citizen_idx = match &q.national_id {
        Some(id) => Some(keys.citizen_index(&NationalId::parse(id)?).to_hex()),
        None => None,
    };
    let filter = Filter {
        citizen_idx: citizen_idx.clone(),
        actor: q.actor,
        action: q.action,
        outcome: match q.outcome.as_deref() {
            None => None,
            Some(o @ ("allowed" | "denied" | "error")) => Some(o.to_owned()),
            Some(_) => {
                return Err(ApiError::InvalidRequest(
                    "outcome is allowed, denied or error".into(),
                ));
            }
        },
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
        reads_by_others: false,
    };
    e.citizen_idx = citizen_idx;
    // Log the query before answering it, like any other read.
    audit::record(&vault.db, &keys, &vault.metrics, e).await?;
    let rows = store::query(&vault.db.pool, &filter).await?;
    Ok(page(rows, filter.limit))
}

pub async fn verify_log(vault: &Vault, caller: &Caller) -> Result<Report, ApiError> {
    let keys = vault.keys();
    let e = entry(&keys, caller, "audit.verify");
    require_role(vault, &e, caller, &[Role::Auditor]).await?;
    // Verify first, then log: the report describes the log as it was when asked.
    let report = audit::verify_log(&vault.db, &keys).await?;
    audit::record(&vault.db, &keys, &vault.metrics, e).await?;
    Ok(report)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Who read this citizen's records: every allowed list, metadata or content read by someone
/// other than the citizen, with office and case.
pub async fn access_log(
    vault: &Vault,
    caller: &Caller,
    national_id: &NationalId,
    q: AccessLogQuery,
) -> Result<Page, ApiError> {
    let keys = vault.keys();
    let citizen = keys.citizen_index(national_id).to_hex();
    let mut e = entry(&keys, caller, "access_log.read");
    e.citizen_idx = Some(citizen.clone());
    require_role(vault, &e, caller, &[Role::Citizen, Role::Auditor]).await?;
    if caller.role == Role::Citizen && caller.citizen().as_ref() != Some(national_id) {
        return Err(refuse(
            vault,
            e,
            ApiError::Forbidden("citizens see only their own access log".into()),
        )
        .await);
    }
    let filter = Filter {
        citizen_idx: Some(citizen),
        after_seq: parse_cursor(q.cursor.as_deref())?,
        limit: parse_limit(q.limit)?,
        reads_by_others: true,
        ..Filter::default()
    };
    audit::record(&vault.db, &keys, &vault.metrics, e).await?;
    let rows = store::query(&vault.db.pool, &filter).await?;
    Ok(page(rows, filter.limit))
}
