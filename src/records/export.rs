//! A citizen's export (Law 91/2025, the right to be given one's data): one ZIP, streamed, holding
//!
//! - `documents.json`: every document's metadata with its fields opened (tombstones included);
//! - `access-log.json`: every line of the citizen's access log, each with its receipt (a C2SP
//!   `tlog-proof` holding the checkpoint it verifies against) once a checkpoint covers it;
//! - `grants.json`: the grants made over their records; `requests.json`: their requests;
//! - with `scans=true`, `scans/{id}.{pdf,jpg,png,tif}` and, for verified ones,
//!   `scans/{id}.attestation.jws`;
//! - `manifest.json`: every file above with its size and SHA-256;
//! - `manifest.sig`: `{"alg": "EdDSA", "kid": "export-…", "signature": base64url}`, the vault's
//!   Ed25519 signature over the exact bytes of `manifest.json`, with the key of its own purpose
//!   published in the JWKS. `hoso verify-export` checks it offline; so can any Ed25519 library.
//!
//! The export is logged (`citizen.export`) before its first byte leaves.

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Vault, entry, refuse, require_own_records, require_role};
use crate::audit::AuditAction;
use crate::auth::Caller;
use crate::crypto::keyring::Keyring;
use crate::domain::{DocStatus, MediaType, NationalId, RequestKind, Role, format_rfc3339};
use crate::error::ApiError;
use crate::zip;

pub const FORMAT: &str = "hoso-export/1";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Include the scans and their attestations.
    #[serde(default)]
    pub scans: bool,
    /// A clerk names the citizen's open `access` or `provide` request they are fulfilling.
    pub request: Option<Uuid>,
}

/// One file of the manifest.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub vault: String,
    pub citizen: String,
    pub created_at: String,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Signature {
    pub alg: String,
    pub kid: String,
    pub signature: String,
}

/// An export on its way out.
pub struct Export {
    pub filename: String,
    pub body: BoxStream<'static, Result<Bytes, ApiError>>,
}

/// A file of the archive: bytes at hand, or a scan's plaintext as it is decrypted.
enum Part {
    Bytes(Bytes),
    Scan(BoxStream<'static, Result<Bytes, ApiError>>),
}

pub async fn export(
    vault: &Vault,
    caller: &Caller,
    national_id: &NationalId,
    q: ExportQuery,
) -> Result<Export, ApiError> {
    let keys = vault.keys();
    let citizen = keys.citizen_index(national_id)?;
    let mut e = entry(caller, AuditAction::CitizenExport);
    e.citizen_idx = Some(citizen);
    require_role(vault, &e, caller, &[Role::Citizen, Role::Clerk]).await?;
    require_own_records(vault, &e, caller, national_id, "records").await?;
    if caller.role == Role::Clerk {
        let fulfils = match q.request {
            Some(id) => crate::db::requests::get(&vault.db.pool, id)
                .await?
                .is_some_and(|r| {
                    r.citizen_idx == citizen
                        && r.state.is_open()
                        && matches!(r.kind, RequestKind::Access | RequestKind::Provide)
                }),
            None => false,
        };
        if !fulfils {
            let why = "a clerk exports a citizen's records only to fulfil their open access or \
                       provide request: name it (request=…)";
            return Err(refuse(vault, e, ApiError::Forbidden(why.into())).await);
        }
        e.case_ref = q.request.map(|r| r.to_string());
    }
    e.reason = Some(if q.scans { "with scans" } else { "metadata" }.into());
    let parts = gather(vault, &citizen, q.scans).await?;
    vault.record(e).await?;
    let manifest = Manifest {
        format: FORMAT.into(),
        vault: vault.token_policy.issuer.clone(),
        citizen: super::access::citizen_actor(&citizen),
        created_at: format_rfc3339(crate::db::now_ms()),
        files: Vec::new(),
    };
    let date = &manifest.created_at[..10];
    Ok(Export {
        filename: format!("hoso-export-{date}.zip"),
        body: archive(parts, manifest, keys),
    })
}

fn json<T: Serialize>(value: &T) -> Result<Part, ApiError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| ApiError::internal("export", e))?;
    Ok(Part::Bytes(Bytes::from(bytes)))
}

/// Everything the archive holds, read now (the scans opened: authenticated, ready to decrypt).
async fn gather(
    vault: &Vault,
    citizen: &crate::crypto::CitizenIndex,
    scans: bool,
) -> Result<Vec<(String, Part)>, ApiError> {
    let rows = crate::db::documents::list_for_citizen(&vault.db.pool, citizen, true).await?;
    let views = rows
        .iter()
        .map(|r| super::view(vault, r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut log = Vec::new();
    for line in super::oversight::access_log_all(vault, *citizen).await? {
        let receipt = super::oversight::receipt_for(vault, line.seq).await?;
        log.push(serde_json::json!({ "entry": line, "receipt": receipt }));
    }
    let grants = crate::db::grants::list_for_citizen(&vault.db.pool, citizen, 10_000).await?;
    let grants = grants
        .into_iter()
        .map(|g| {
            let g = super::grants::open(vault, g)?;
            Ok(super::grants::GrantView::new(&g, crate::db::now_ms()))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let requests = crate::db::requests::for_citizen(&vault.db.pool, citizen, 10_000).await?;
    let requests: Vec<_> = requests
        .iter()
        .map(|r| super::requests::RequestView::of(r, crate::db::now_ms()))
        .collect();
    let mut parts = vec![
        ("documents.json".to_owned(), json(&views)?),
        ("access-log.json".to_owned(), json(&log)?),
        ("grants.json".to_owned(), json(&grants)?),
        ("requests.json".to_owned(), json(&requests)?),
    ];
    if scans {
        for doc in rows.iter().filter(|d| d.status != DocStatus::Erased) {
            let ext = extension(&doc.content_type);
            let body = super::read::open_body(vault, doc).await?;
            parts.push((format!("scans/{}.{ext}", doc.id), Part::Scan(body)));
            if let Some(jws) = &doc.attestation {
                let name = format!("scans/{}.attestation.jws", doc.id);
                parts.push((name, Part::Bytes(Bytes::from(jws.clone()))));
            }
        }
    }
    Ok(parts)
}

fn extension(content_type: &str) -> &'static str {
    let known = [
        (MediaType::Pdf, "pdf"),
        (MediaType::Jpeg, "jpg"),
        (MediaType::Png, "png"),
        (MediaType::Tiff, "tif"),
    ];
    known
        .iter()
        .find(|(m, _)| m.as_mime() == content_type)
        .map_or("bin", |(_, ext)| ext)
}

/// The archive as a stream: each part, then the manifest of them all and its signature.
fn archive(
    parts: Vec<(String, Part)>,
    mut manifest: Manifest,
    keys: std::sync::Arc<Keyring>,
) -> BoxStream<'static, Result<Bytes, ApiError>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, ApiError>>(4);
    tokio::spawn(async move {
        let mut w = zip::Writer::default();
        let written = async {
            for (name, part) in parts {
                manifest
                    .files
                    .push(write_part(&tx, &mut w, &name, part).await?);
            }
            let signed = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| ApiError::internal("export manifest", e))?;
            let signature = sign(&keys, &signed)?;
            write_part(&tx, &mut w, "manifest.json", Part::Bytes(signed.into())).await?;
            write_part(&tx, &mut w, "manifest.sig", Part::Bytes(signature)).await?;
            send(&tx, w.finish().map_err(zip_err)?).await
        }
        .await;
        if let Err(e) = written {
            // The client sees the archive cut off; the cause goes to the log.
            tracing::error!(error = %e.clone().for_operator(), "an export failed midway");
            let _ = tx.send(Err(e)).await;
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
        .boxed()
}

fn zip_err(e: zip::ZipError) -> ApiError {
    ApiError::internal("export archive", e)
}

async fn send(
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, ApiError>>,
    chunk: Bytes,
) -> Result<(), ApiError> {
    tx.send(Ok(chunk))
        .await
        .map_err(|_| ApiError::Internal("the client went away".into()))
}

/// Writes one part as an entry and says what the manifest lists for it.
async fn write_part(
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, ApiError>>,
    w: &mut zip::Writer,
    name: &str,
    part: Part,
) -> Result<FileEntry, ApiError> {
    send(tx, w.begin(name).map_err(zip_err)?).await?;
    let mut sha = crate::crypto::Sha256::default();
    let mut size = 0u64;
    let mut pieces = match part {
        Part::Bytes(b) => futures_util::stream::iter([Ok(b)]).boxed(),
        Part::Scan(s) => s,
    };
    while let Some(piece) = pieces.next().await {
        let piece = piece?;
        w.data(&piece).map_err(zip_err)?;
        sha.update(&piece);
        size += piece.len() as u64;
        send(tx, piece).await?;
    }
    send(tx, w.end_entry().map_err(zip_err)?).await?;
    Ok(FileEntry {
        name: name.to_owned(),
        size,
        sha256: hex::encode(sha.finish()),
    })
}

fn sign(keys: &Keyring, manifest: &[u8]) -> Result<Bytes, ApiError> {
    use base64::Engine;
    let signature = Signature {
        alg: "EdDSA".into(),
        kid: keys.export.kid().to_owned(),
        signature: base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(keys.export.sign(manifest)?),
    };
    let bytes =
        serde_json::to_vec_pretty(&signature).map_err(|e| ApiError::internal("export", e))?;
    Ok(Bytes::from(bytes))
}

/// What checking an export found.
#[derive(Debug)]
pub struct Checked {
    pub manifest: Manifest,
}

/// Checks an export offline: the manifest's signature against a key of the export purpose in
/// `jwks`, then every file against the manifest (none missing, none extra, sizes and SHA-256).
pub fn verify(archive: &[u8], jwks: &serde_json::Value) -> Result<Checked, String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let files = zip::read(archive).map_err(|e| e.to_string())?;
    let find = |name: &str| {
        files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.as_slice())
            .ok_or_else(|| format!("the export has no {name}"))
    };
    let signed = find("manifest.json")?;
    let sig: Signature =
        serde_json::from_slice(find("manifest.sig")?).map_err(|e| format!("manifest.sig: {e}"))?;
    if sig.alg != "EdDSA" || !sig.kid.starts_with("export-") {
        return Err(format!(
            "manifest.sig names {} {}, not an export key",
            sig.alg, sig.kid
        ));
    }
    let key = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == sig.kid.as_str()))
        .and_then(|k| k["x"].as_str())
        .and_then(|x| b64.decode(x).ok())
        .ok_or_else(|| format!("the JWKS has no key {}", sig.kid))?;
    let signature = b64
        .decode(&sig.signature)
        .map_err(|_| "manifest.sig: the signature is not base64url".to_owned())?;
    if !crate::crypto::signing::signature_is_valid(&key, signed, &signature) {
        return Err("the manifest's signature is NOT valid: the export was changed".into());
    }
    let manifest: Manifest =
        serde_json::from_slice(signed).map_err(|e| format!("manifest.json: {e}"))?;
    for (name, data) in &files {
        if name == "manifest.json" || name == "manifest.sig" {
            continue;
        }
        let listed = manifest
            .files
            .iter()
            .find(|f| f.name == *name)
            .ok_or_else(|| format!("{name} is not in the signed manifest"))?;
        let sha = hex::encode(crate::crypto::sha256(data));
        if listed.size != data.len() as u64 || listed.sha256 != sha {
            return Err(format!("{name} is NOT as the signed manifest says"));
        }
    }
    if let Some(missing) = manifest
        .files
        .iter()
        .find(|f| !files.iter().any(|(n, _)| *n == f.name))
    {
        return Err(format!("{} is listed but missing", missing.name));
    }
    Ok(Checked { manifest })
}
