//! Retention: how long each type of document is kept, read from a file (`HOSO_RETENTION_FILE`;
//! `config/retention.json` is built in as the default), and the run that erases what is due.
//!
//! A rule gives one or both periods: days after the document stopped being current (superseded
//! or revoked), and days after its last copy was served (its intake if never copied). A document
//! is due when every period its type's rule gives has passed; a type with no rule is kept, and a
//! legal hold beats any rule. One run at a time across a fleet holds the retention lease.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;
use uuid::Uuid;

use super::Vault;
use super::erasure::{self, Fate, Source, Why};
use crate::audit::{AuditAction, Entry};
use crate::db::erasure as store;
use crate::domain::{DocType, EraseReason};
use crate::error::ApiError;

const DAY_MS: i64 = 86_400_000;
/// How long a run's lease lasts unless renewed (each page renews it).
const LEASE_MS: i64 = 10 * 60 * 1000;

/// The built-in default, documented in the file itself.
pub const DEFAULT: &str = include_str!("../../config/retention.json");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub after_not_current_days: Option<u32>,
    pub after_last_read_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    after_not_current_days: Option<u32>,
    after_last_read_days: Option<u32>,
}

impl TryFrom<RawRule> for Rule {
    type Error = String;
    fn try_from(raw: RawRule) -> Result<Self, String> {
        let days = [raw.after_not_current_days, raw.after_last_read_days];
        if days.iter().all(Option::is_none) {
            return Err(
                "a rule needs after_not_current_days, after_last_read_days or both \
                        (leave a type out to keep its documents)"
                    .into(),
            );
        }
        if days.iter().flatten().any(|d| *d == 0 || *d > 36_525) {
            return Err("a period is a whole number of days from 1 to 36525".into());
        }
        Ok(Self {
            after_not_current_days: raw.after_not_current_days,
            after_last_read_days: raw.after_last_read_days,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    /// Words for the person editing the file.
    #[serde(default)]
    #[allow(dead_code)]
    about: Option<String>,
    rules: BTreeMap<DocType, RuleEntry>,
}

/// A rule as the file spells it, checked as it is read (so an error names its line).
#[derive(Deserialize)]
#[serde(try_from = "RawRule")]
struct RuleEntry(Rule);

impl TryFrom<RawRule> for RuleEntry {
    type Error = String;
    fn try_from(raw: RawRule) -> Result<Self, String> {
        Rule::try_from(raw).map(Self)
    }
}

/// Every type's rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules(pub BTreeMap<DocType, Rule>);

impl Rules {
    /// The rules in `path`, or the built-in default. An error says which file and line.
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        let (name, text) = match path {
            Some(p) => (
                p.display().to_string(),
                std::fs::read_to_string(p).map_err(|e| {
                    format!("HOSO_RETENTION_FILE {}: cannot be read: {e}", p.display())
                })?,
            ),
            None => (
                "the built-in config/retention.json".to_owned(),
                DEFAULT.to_owned(),
            ),
        };
        Self::parse(&text).map_err(|e| format!("HOSO_RETENTION_FILE {name}: {e}"))
    }

    /// serde_json's message names the line and column.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: RulesFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(Self(
            file.rules.into_iter().map(|(t, r)| (t, r.0)).collect(),
        ))
    }
}

/// What a run found and did.
#[derive(Debug, Default)]
pub struct Report {
    /// Documents past their rule (erased, or listed by a dry run).
    pub due: Vec<(Uuid, DocType)>,
    pub erased: usize,
    /// Due but kept by a hold in force: the document and why.
    pub held: Vec<(Uuid, String)>,
    /// What re-applying the ledger first did.
    pub ledger: erasure::Reapplied,
}

/// Why a run did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("another retention run holds the lease (one run at a time across the fleet)")]
    Busy,
    #[error(transparent)]
    Failed(#[from] ApiError),
}

/// Runs retention as at `now` (ms; the clock, injected for tests): re-applies the ledger, then
/// erases every document due (with `dry_run`, only lists them). `progress(checked, erased)` is
/// called at most every two seconds.
pub async fn run(
    vault: &Vault,
    rules: &Rules,
    now: i64,
    dry_run: bool,
    mut progress: impl FnMut(u64, usize),
) -> Result<Report, RunError> {
    let holder = Uuid::now_v7().to_string();
    lease(vault, &holder).await?;
    let result = async {
        let mut report = Report {
            ledger: if dry_run {
                erasure::Reapplied::default()
            } else {
                erasure::reapply(vault, Source::Live).await?
            },
            ..Report::default()
        };
        let (mut checked, mut shown) = (0u64, Instant::now());
        for (doc_type, rule) in &rules.0 {
            let mut after = None;
            while let Some(page) = due_page(vault, *doc_type, rule, now, &mut after).await? {
                lease(vault, &holder).await?;
                for id in page {
                    checked += 1;
                    act(vault, id, (*doc_type, rule), dry_run, &mut report).await?;
                    if shown.elapsed() >= Duration::from_secs(2) {
                        progress(checked, report.erased);
                        shown = Instant::now();
                    }
                }
            }
        }
        Ok::<_, RunError>(report)
    }
    .await;
    store::release_lease(&vault.db.pool, &holder)
        .await
        .map_err(ApiError::from)?;
    let report = result?;
    if report.erased > 0 {
        vault.db.purge_freed().await;
    }
    Ok(report)
}

async fn lease(vault: &Vault, holder: &str) -> Result<(), RunError> {
    let now = crate::db::now_ms();
    let mut tx = vault.db.begin().await.map_err(ApiError::from)?;
    let taken = store::take_lease(&mut tx, holder, now, now + LEASE_MS)
        .await
        .map_err(ApiError::from)?;
    tx.commit("take the retention lease")
        .await
        .map_err(ApiError::from)?;
    if taken { Ok(()) } else { Err(RunError::Busy) }
}

/// The next page of documents of `doc_type` that `rule` may make due at `now`, after `after`
/// (moved on); None when there are no more. A rule on last reads is checked per document.
async fn due_page(
    vault: &Vault,
    doc_type: DocType,
    rule: &Rule,
    now: i64,
    after: &mut Option<Uuid>,
) -> Result<Option<Vec<Uuid>>, ApiError> {
    let cutoff = |days: Option<u32>| days.map(|d| now - i64::from(d) * DAY_MS);
    let not_current_before = cutoff(rule.after_not_current_days);
    let unread_since = cutoff(rule.after_last_read_days);
    let page = store::retention_page(
        &vault.db.pool,
        doc_type,
        not_current_before,
        unread_since.unwrap_or(i64::MAX),
        *after,
    )
    .await?;
    let Some(last) = page.last() else {
        return Ok(None);
    };
    *after = Some(*last);
    let mut due = Vec::with_capacity(page.len());
    for id in page {
        let unread = match unread_since {
            Some(before) => store::last_copy(&vault.db.pool, id)
                .await?
                .is_none_or(|at| at <= before),
            None => true,
        };
        if unread {
            due.push(id);
        }
    }
    Ok(Some(due))
}

/// Erases one due document (or, in a dry run, says whether a hold keeps it).
async fn act(
    vault: &Vault,
    id: Uuid,
    (doc_type, rule): (DocType, &Rule),
    dry_run: bool,
    report: &mut Report,
) -> Result<(), ApiError> {
    report.due.push((id, doc_type));
    if dry_run {
        let now = crate::db::now_ms();
        if let Some(hold) = crate::db::holds::holding(&vault.db.pool, id, now).await? {
            report
                .held
                .push((id, format!("legal hold {}: {}", hold.id, hold.reason)));
        }
        return Ok(());
    }
    let why = Why {
        reason: EraseReason::Retention,
        detail: describe(doc_type, rule),
    };
    let mut by = Entry::operator(AuditAction::DocumentErase);
    by.actor = "hoso-retention".into();
    match erasure::erase(vault, id, &why, by).await? {
        Fate::Erased => report.erased += 1,
        Fate::Held { reason, .. } => report.held.push((id, reason)),
        Fate::AlreadyErased | Fate::NotFound => {}
    }
    Ok(())
}

/// Why `doc` must be kept at `now` rather than erased on request, if it must: a hold in force,
/// or its type's retention rule still running (the period the law requires it kept).
pub async fn kept_by(
    vault: &Vault,
    doc: &crate::db::documents::DocumentRow,
    now: i64,
) -> Result<Option<String>, ApiError> {
    if let Some(hold) = crate::db::holds::holding(&vault.db.pool, doc.id, now).await? {
        return Ok(Some(format!(
            "legal hold {} ({}): {}",
            hold.id, hold.case_ref, hold.reason
        )));
    }
    let Some(rule) = vault.retention.0.get(&doc.doc_type) else {
        return Ok(None);
    };
    let until = |from: i64, days: u32| from + i64::from(days) * DAY_MS;
    let mut keep_until = None;
    if let Some(days) = rule.after_not_current_days {
        keep_until = Some(match (doc.status.is_current(), doc.status_changed_at) {
            (false, Some(changed)) => until(changed, days),
            _ => i64::MAX,
        });
    }
    if let Some(days) = rule.after_last_read_days {
        let last = store::last_copy(&vault.db.pool, doc.id).await?;
        let read_until = until(last.unwrap_or(doc.intake_at), days);
        keep_until = Some(keep_until.map_or(read_until, |k| k.max(read_until)));
    }
    Ok(keep_until.filter(|k| *k > now).map(|k| {
        let when = if k == i64::MAX {
            "while it is current".to_owned()
        } else {
            format!("until {}", crate::domain::format_rfc3339(k))
        };
        format!(
            "{} requires keeping it {when}",
            describe(doc.doc_type, rule)
        )
    }))
}

/// The rule in words, as the tombstone, ledger and log keep it.
fn describe(doc_type: DocType, rule: &Rule) -> String {
    let mut parts = Vec::new();
    if let Some(d) = rule.after_not_current_days {
        parts.push(format!("{d} days after it stopped being current"));
    }
    if let Some(d) = rule.after_last_read_days {
        parts.push(format!("{d} days after its last copy"));
    }
    format!("retention rule for {doc_type}: {}", parts.join(" and "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_rules_parse_and_keep_land_use_certificates() {
        let rules = Rules::load(None).unwrap();
        assert_eq!(
            rules.0[&DocType::Cccd],
            Rule {
                after_not_current_days: Some(1826),
                after_last_read_days: None
            }
        );
        assert!(!rules.0.contains_key(&DocType::LandUseCertificate));
    }

    #[test]
    fn a_bad_rules_file_is_refused_naming_its_line() {
        for (text, says) in [
            (
                "{\"rules\": {\n \"cccd\": {\"after_not_current_days\": 10},\n \"pasport\": {\"after_not_current_days\": 10}}}",
                "line 3",
            ),
            ("{\"rules\": {\n\n \"cccd\": {}}}", "line 3"),
            (
                "{\"rules\": {\"cccd\":\n {\"after_not_current_days\": 0}}}",
                "line 2",
            ),
            (
                "{\"rules\": {\"cccd\": {\"after_not_current_days\": 10,\n \"keep\": 1}}}",
                "line 2",
            ),
            (
                "{\"rules\": {\"cccd\": {\"after_not_current_days\": 10}}",
                "line 1",
            ),
        ] {
            let err = Rules::parse(text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }
}
