//! `POST /v1/scans/read-card`: the QR code on a CCCD the clerk is holding, read from its scan so
//! the intake form fills itself and typing mistakes show. A read of what the clerk already has
//! in hand: nothing is stored and nothing personal is logged (the call is counted in metrics; a
//! refused caller is logged like any other refusal).

use super::Vault;
use super::access::{entry, require_role};
use crate::audit::AuditAction;
use crate::auth::Caller;
use crate::card::{self, CardRead};
use crate::domain::Role;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Reads the card's QR from `image`, bounded by the vault's card limits in size, pixels,
/// memory and time, off the async workers.
pub async fn read_card(
    vault: &Vault,
    caller: &Caller,
    image: bytes::Bytes,
) -> Result<CardRead, ApiError> {
    // Refused as a part of intake, the act it prepares.
    let e = entry(&vault.keys(), caller, AuditAction::DocumentIntake);
    require_role(vault, &e, caller, &[Role::Clerk]).await?;
    Metrics::inc(&vault.metrics.card_reads);
    let limits = vault.limits.card;
    let work = tokio::task::spawn_blocking(move || card::read(&image, limits));
    match tokio::time::timeout(vault.limits.card_read, work).await {
        Ok(Ok(Ok(read))) => Ok(read),
        Ok(Ok(Err(e))) => Err(ApiError::InvalidRequest(e.to_string())),
        Ok(Err(join)) => Err(ApiError::internal("read a card's QR", join)),
        Err(_) => Err(ApiError::InvalidRequest(format!(
            "the image could not be read within {} s; scan the card again, closer",
            vault.limits.card_read.as_secs()
        ))),
    }
}

/// The chip CCCD a scan's QR describes, if it can be read as one within the card limits; for
/// the intake's own check, where anything else means "not checked".
pub(super) async fn card_in(vault: &Vault, image: Vec<u8>) -> Option<crate::card::CardFields> {
    let limits = vault.limits.card;
    let work = tokio::task::spawn_blocking(move || card::read(&image, limits));
    match tokio::time::timeout(vault.limits.card_read, work).await {
        Ok(Ok(Ok(CardRead::Recognised(card)))) => Some(*card),
        _ => None,
    }
}
