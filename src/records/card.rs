//! `POST /v1/scans/read-card`: the QR code on a CCCD the clerk is holding, read from its scan so
//! the intake form fills itself and typing mistakes show; and the same read inside an intake.
//! A read of what the clerk already has in hand: nothing is stored and nothing personal is
//! logged (the call is counted in metrics; a refused caller is logged like any other refusal).
//!
//! A read is CPU work on bytes a caller chose, so it is bounded three ways: the image's size
//! and pixels ([`crate::card::CardLimits`]), the time a request waits for it, for a free
//! reader and for the read together (`HOSO_CARD_READ_SECONDS`), and how many run at once
//! ([`Vault::card_reads`], one per core): a read that outlives its request keeps its slot until
//! it ends, so hostile images cannot pile up threads or take every core. A request that finds
//! every reader busy waits its turn within that time (clerks at several desks taking in cards
//! at once are not refused); only one that waits it all out is answered "busy".

use super::Vault;
use super::access::{entry, require_role};
use crate::audit::AuditAction;
use crate::auth::Caller;
use crate::card::{self, CardFields, CardRead};
use crate::domain::Role;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Reads the card's QR from `image` for the clerk's form.
pub async fn read_card(
    vault: &Vault,
    caller: &Caller,
    image: bytes::Bytes,
) -> Result<CardRead, ApiError> {
    // Refused as a part of intake, the act it prepares.
    let e = entry(caller, AuditAction::DocumentIntake);
    require_role(vault, &e, caller, &[Role::Clerk]).await?;
    Metrics::inc(&vault.metrics.card_reads);
    bounded_read(vault, image.to_vec()).await
}

/// The chip CCCD a scan's QR describes, for the intake's own check: `None` when there is no
/// QR, it is not a chip CCCD's, or the file is not an image that decodes (then nothing is
/// checked). A read that could not finish (busy, too slow, the reader failed) is an error: a
/// scan made to defeat the reader is not let through unchecked.
pub(super) async fn card_in(vault: &Vault, image: Vec<u8>) -> Result<Option<CardFields>, ApiError> {
    match bounded_read(vault, image).await {
        Ok(CardRead::Recognised(card)) => Ok(Some(*card)),
        Ok(CardRead::NotRecognised(_) | CardRead::NotFound) => Ok(None),
        Err(ApiError::InvalidRequest(_)) => Ok(None),
        Err(other) => Err(other),
    }
}

/// One read, within the vault's card limits, off the async workers.
async fn bounded_read(vault: &Vault, image: Vec<u8>) -> Result<CardRead, ApiError> {
    let deadline = tokio::time::Instant::now() + vault.limits.card_read;
    let free = vault.card_reads.clone().acquire_owned();
    let Ok(Ok(slot)) = tokio::time::timeout_at(deadline, free).await else {
        return Err(ApiError::Unavailable(
            "every card reader is busy; try again in a moment".into(),
        ));
    };
    let limits = vault.limits.card;
    let too_late = deadline.into_std();
    let work = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        // A slot freed just as the request's time ran out: a read begun now would only keep
        // the next one waiting, for an answer nobody takes.
        (std::time::Instant::now() < too_late).then(|| card::read(&image, limits))
    });
    let seconds = vault.limits.card_read.as_secs();
    match tokio::time::timeout_at(deadline, work).await {
        Ok(Ok(Some(Ok(read)))) => Ok(read),
        Ok(Ok(Some(Err(e)))) => Err(ApiError::InvalidRequest(e.to_string())),
        Ok(Ok(None)) | Ok(Err(_)) | Err(_) => Err(ApiError::Conflict(format!(
            "the scan's QR code could not be read within {seconds} s; scan the card again"
        ))),
    }
}
