//! The key files under `HOSO_KEYS_DIR`, made on first run (directory 0700, files 0600):
//!
//! | file | what |
//! |---|---|
//! | `kek-NNNNNN.key` | 32 raw bytes, master key (KEK) version N; the highest version is current |
//! | `blind-index.key` | 32 raw bytes, HMAC key of the citizen blind index |
//! | `audit-chain.key` | 32 raw bytes, HMAC key of the audit hash chain |
//! | `grant-seal.key` | 32 raw bytes, HMAC key of the seal on each grant row ([`super::grant_seal`]) |
//! | `token-signing.p8` | Ed25519 PKCS#8, signs staff and grant tokens |
//! | `attestation-signing.p8` | Ed25519 PKCS#8, signs verified-copy attestations |
//! | `audit-signing.p8` | Ed25519 PKCS#8, signs audit checkpoints |
//! | `export-signing.p8` | Ed25519 PKCS#8, signs a citizen's export's manifest |
//! | `erasure-ledger.key` | 32 raw bytes, HMAC key of the erasure ledger's records |
//!
//! With the PKCS#11 store (`HOSO_KEY_STORE=pkcs11`, [`super::pkcs11`]) the master keys and the
//! four signing keys live in the token instead (`keys migrate` moves a files vault's there);
//! the HMAC keys stay files, as `docs/design.md` says why.
//!
//! A file is written to a temporary name, synced, then hard-linked into place, so two processes
//! starting at once cannot both create (and disagree about) the same key.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::envelope::Kek;
use super::grant_seal::{GrantScope, GrantSealKey};
use super::signing::SigningKey;
use super::{CitizenIndex, random_bytes};
use crate::domain::NationalId;

pub struct Keyring {
    dir: PathBuf,
    blind_index: IndexKey,
    audit_chain: Zeroizing<[u8; 32]>,
    /// Seals the erasure ledger's records (`records::ledger`).
    ledger_seal: super::HmacSha256,
    grant_seal: GrantSealKey,
    /// Whether the grants already stored still wait to be sealed once, as they are: set when
    /// the grant-seal key is made (a vault from before grants were sealed), by a marker file
    /// beside it made first, and cleared by [`Keyring::grants_sealed`] once they are. A
    /// database holder cannot make the vault seal a grant they edited: the marker is in `keys/`.
    pub grants_await_seal: bool,
    keks: BTreeMap<u32, Kek>,
    pub token: SigningKey,
    pub attestation: SigningKey,
    pub audit: SigningKey,
    /// Signs a citizen's export's manifest (`records::export`).
    pub export: SigningKey,
    /// The token the PKCS#11 store's KEKs live in (none: files only).
    hsm: Option<std::sync::Arc<super::pkcs11::Hsm>>,
}

/// The blind-index key: a file's bytes in memory, or a key in the token.
enum IndexKey {
    File(Zeroizing<[u8; 32]>),
    Token(std::sync::Arc<super::pkcs11::Hsm>),
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("keys directory {0} has no key files; run `hoso init` first")]
    Missing(PathBuf),
    #[error("{path}: {message}")]
    Bad { path: PathBuf, message: String },
    /// The hardware security module (`HOSO_KEY_STORE=pkcs11`).
    #[error("{0}")]
    Token(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Keyring {
    /// Loads the keys from files, creating any that are missing when `create` is set (`serve`,
    /// `init`).
    pub fn open(dir: &Path, create: bool) -> Result<Self, KeyError> {
        Self::open_with(dir, create, None)
    }

    /// Loads the keys, the master keys (KEKs) from `keys/` and, with the PKCS#11 store, from the
    /// token `hsm` too. A new vault on the token gets its first KEK there, not in a file.
    pub fn open_with(
        dir: &Path,
        create: bool,
        hsm: Option<std::sync::Arc<super::pkcs11::Hsm>>,
    ) -> Result<Self, KeyError> {
        let missing = Missing::of(create, dir.join("audit-chain.key").exists());
        let no_kek_files = || kek_versions(dir).map_or(true, |v| v.is_empty());
        let token_versions = match &hsm {
            Some(h) => {
                let mut versions = h
                    .kek_versions()
                    .map_err(|e| KeyError::Token(e.to_string()))?;
                // A vault that was made before, with no master key anywhere: looked for once
                // more, in the token read afresh. It always had one: none is made for it.
                if versions.is_empty() && no_kek_files() && missing != Missing::Make {
                    h.read_again();
                    versions = h
                        .kek_versions()
                        .map_err(|e| KeyError::Token(e.to_string()))?;
                }
                versions
            }
            None => Vec::new(),
        };
        if let Some(h) = &hsm
            && missing == Missing::Make
            && token_versions.is_empty()
            && no_kek_files()
        {
            h.generate_kek(1)
                .map_err(|e| KeyError::Token(e.to_string()))?;
            return Self::open_with(dir, create, hsm);
        }
        let token_keks = !token_versions.is_empty();
        let mut keyring = Self::open_files(dir, missing, token_keks, hsm.as_ref())?;
        if let Some(h) = &hsm {
            for version in token_versions {
                keyring
                    .keks
                    .insert(version, Kek::in_token(version, h.clone()));
            }
        }
        keyring.hsm = hsm;
        Ok(keyring)
    }

    fn open_files(
        dir: &Path,
        missing: Missing,
        token_keks: bool,
        hsm: Option<&std::sync::Arc<super::pkcs11::Hsm>>,
    ) -> Result<Self, KeyError> {
        if missing != Missing::Refuse {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_err(dir))?;
            if hsm.is_none() {
                ensure_file(dir, BLIND_INDEX, || random_bytes::<32>().to_vec())?;
            }
            ensure_file(dir, "audit-chain.key", || random_bytes::<32>().to_vec())?;
            ensure_file(dir, LEDGER_SEAL, || random_bytes::<32>().to_vec())?;
            // The marker first: a crash between the two leaves the marker, never a key without
            // it (which would leave earlier grants unsealed, and refused, for good).
            if !dir.join("grant-seal.key").exists() {
                ensure_file(dir, GRANTS_TO_SEAL, Vec::new)?;
            }
            ensure_file(dir, "grant-seal.key", || random_bytes::<32>().to_vec())?;
            // With the PKCS#11 store a missing signing key is made in the token instead.
            for (name, _) in SIGNING_KEYS.iter().filter(|_| hsm.is_none()) {
                ensure_file(dir, name, || SigningKey::generate_pkcs8().to_vec())?;
            }
            if kek_versions(dir)?.is_empty() && !token_keks {
                ensure_file(dir, &kek_file_name(1), || random_bytes::<32>().to_vec())?;
            }
        } else if !dir.join("audit-chain.key").exists() {
            return Err(KeyError::Missing(dir.to_owned()));
        }
        let mut keks = BTreeMap::new();
        for version in kek_versions(dir)? {
            let key = read_key32(&dir.join(kek_file_name(version)))?;
            keks.insert(version, Kek::new(version, &key));
        }
        if keks.is_empty() && !token_keks {
            return Err(KeyError::Missing(dir.to_owned()));
        }
        Ok(Self {
            dir: dir.to_owned(),
            blind_index: index_key(dir, hsm, missing)?,
            audit_chain: read_key32(&dir.join("audit-chain.key"))?,
            ledger_seal: super::HmacSha256::new(read_new_key32(dir, LEDGER_SEAL)?.as_ref()),
            grant_seal: GrantSealKey::new(&*read_grant_seal(dir)?),
            grants_await_seal: dir.join(GRANTS_TO_SEAL).exists(),
            keks,
            token: signing_key(dir, SIGNING_KEYS[0], hsm, missing)?,
            attestation: signing_key(dir, SIGNING_KEYS[1], hsm, missing)?,
            audit: signing_key(dir, SIGNING_KEYS[2], hsm, missing)?,
            export: signing_key(dir, SIGNING_KEYS[3], hsm, missing)?,
            hsm: None,
        })
    }

    pub fn citizen_index(&self, id: &NationalId) -> Result<CitizenIndex, super::KeyUnavailable> {
        match &self.blind_index {
            IndexKey::File(key) => Ok(super::blind_index(key, id)),
            IndexKey::Token(hsm) => hsm
                .index_hmac(&super::blind_index_message(id))
                .map(CitizenIndex)
                .map_err(|e| super::KeyUnavailable(e.to_string())),
        }
    }

    /// The seal of an erasure ledger record's bytes: HMAC-SHA-256 under the ledger key, so a
    /// record written into the bucket by anyone but the vault is not taken for one.
    pub fn seal_ledger_record(&self, record: &[u8]) -> [u8; 32] {
        self.ledger_seal.sign(&[LEDGER_LABEL, record])
    }

    /// Whether `seal` is this vault's seal of `record`, compared in constant time.
    pub fn ledger_record_is_sealed(&self, record: &[u8], seal: &[u8]) -> bool {
        self.ledger_seal
            .verify(&[LEDGER_LABEL, record].concat(), seal)
    }

    pub fn audit_chain_key(&self) -> &[u8] {
        self.audit_chain.as_ref()
    }

    /// The grants stored before the grant-seal key existed are sealed: the marker goes.
    pub fn grants_sealed(&self) -> Result<(), KeyError> {
        let path = self.dir.join(GRANTS_TO_SEAL);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The seal of a grant's fixed scope (hex).
    pub fn seal_grant(&self, scope: &GrantScope<'_>) -> String {
        self.grant_seal.seal(scope)
    }

    /// Whether `seal` is this vault's seal of `scope`.
    pub fn grant_is_sealed(&self, scope: &GrantScope<'_>, seal: &str) -> bool {
        self.grant_seal.is_sealed(scope, seal)
    }

    pub fn current_kek(&self) -> &Kek {
        self.keks.values().next_back().expect("at least one KEK")
    }

    pub fn kek(&self, version: u32) -> Option<&Kek> {
        self.keks.get(&version)
    }

    pub fn kek_versions(&self) -> Vec<u32> {
        self.keks.keys().copied().collect()
    }

    /// Adds KEK version `current + 1` (in the token with the PKCS#11 store, else a file) and
    /// makes it current. Returns the new version.
    pub fn rotate(&self) -> Result<u32, KeyError> {
        let next = self.keks.keys().last().copied().unwrap_or(0) + 1;
        match &self.hsm {
            Some(h) => h
                .generate_kek(next)
                .map_err(|e| KeyError::Token(e.to_string()))?,
            None => {
                ensure_file(&self.dir, &kek_file_name(next), || {
                    random_bytes::<32>().to_vec()
                })?;
            }
        }
        Ok(next)
    }

    /// Deletes a KEK version (its file, or its key in the token). The caller must have proved
    /// no data key uses it.
    pub fn retire(&self, version: u32) -> Result<(), KeyError> {
        if let (Some(h), Some(kek)) = (&self.hsm, self.keks.get(&version))
            && kek.is_in_token()
        {
            return h
                .destroy_kek(version)
                .map_err(|e| KeyError::Token(e.to_string()));
        }
        let path = self.dir.join(kek_file_name(version));
        fs::remove_file(&path).map_err(io_err(&path))?;
        sync_dir(&self.dir)
    }

    /// Puts the blind-index key and each signing key still in a file into the token (the same
    /// keys, so every index stored and every signature made before still checks), proves the
    /// token computes as the file did, then deletes the file. Safe to repeat after a crash at
    /// any step. Returns what it moved.
    pub fn move_keys_to_token(&self) -> Result<Vec<&'static str>, KeyError> {
        let Some(h) = &self.hsm else {
            return Ok(Vec::new());
        };
        let token = |e: super::pkcs11::HsmError| KeyError::Token(e.to_string());
        let mut moved = Vec::new();
        let path = self.dir.join(BLIND_INDEX);
        if path.exists() {
            let file = read_key32(&path)?;
            if !h.has_index_key().map_err(token)? {
                h.import_index_key(&file).map_err(token)?;
            }
            if !index_keys_agree(&file, h)? {
                return Err(KeyError::Token(
                    "the token's blind-index key is not the file's; the file is kept".into(),
                ));
            }
            fs::remove_file(&path).map_err(io_err(&path))?;
            sync_dir(&self.dir)?;
            moved.push("blind-index");
        }
        for (name, purpose) in SIGNING_KEYS {
            let path = self.dir.join(name);
            if !path.exists() {
                continue;
            }
            let pkcs8 = Zeroizing::new(fs::read(&path).map_err(io_err(&path))?);
            let file =
                SigningKey::from_pkcs8(&pkcs8, purpose).map_err(|message| KeyError::Bad {
                    path: path.clone(),
                    message,
                })?;
            let public: [u8; 32] = file.public_key().try_into().expect("32 bytes");
            if h.signing_public(purpose).map_err(token)?.is_none() {
                let seed = super::signing::pkcs8_seed(&pkcs8).ok_or_else(|| KeyError::Bad {
                    path: path.clone(),
                    message: "not an Ed25519 PKCS#8 layout this version reads".into(),
                })?;
                h.import_signing(purpose, &seed, &public).map_err(token)?;
            }
            let probe = b"hoso keys migrate: the token signs as the file did";
            let in_token = SigningKey::in_token(h.clone(), purpose, public);
            let same = in_token.sign(probe).map_err(|e| KeyError::Token(e.0))?
                == file.sign(probe).map_err(|e| KeyError::Token(e.0))?;
            if h.signing_public(purpose).map_err(token)? != Some(public) || !same {
                return Err(KeyError::Token(format!(
                    "the token's {purpose} key is not the file's; the file is kept"
                )));
            }
            fs::remove_file(&path).map_err(io_err(&path))?;
            sync_dir(&self.dir)?;
            moved.push(purpose);
        }
        Ok(moved)
    }

    /// The token of the PKCS#11 store, if that is the store.
    pub fn hsm(&self) -> Option<&std::sync::Arc<super::pkcs11::Hsm>> {
        self.hsm.as_ref()
    }

    /// The JWKS: every public key the vault signs with.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": [
            self.token.jwk(),
            self.attestation.jwk(),
            self.audit.jwk(),
            self.export.jwk(),
        ]})
    }
}

/// The key that seals the erasure ledger's records, and what each seal starts with.
const LEDGER_SEAL: &str = "erasure-ledger.key";
const LEDGER_LABEL: &[u8] = b"hoso/erasure-ledger/v1";

/// A 32-byte key a newer hoso added, which `serve` or `init` makes.
fn read_new_key32(dir: &Path, name: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let path = dir.join(name);
    if !path.exists() {
        return Err(KeyError::Bad {
            path,
            message: "missing: start `hoso serve` or run `hoso init` once to make it".into(),
        });
    }
    read_key32(&path)
}

/// The marker of grants still to be sealed (see [`Keyring::grants_await_seal`]).
const GRANTS_TO_SEAL: &str = "grant-seal.pending";

fn kek_file_name(version: u32) -> String {
    format!("kek-{version:06}.key")
}

fn kek_versions(dir: &Path) -> Result<Vec<u32>, KeyError> {
    let mut versions = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let name = entry.map_err(io_err(dir))?.file_name();
        let name = name.to_string_lossy();
        if let Some(v) = name
            .strip_prefix("kek-")
            .and_then(|rest| rest.strip_suffix(".key"))
            .and_then(|digits| digits.parse::<u32>().ok())
        {
            versions.push(v);
        }
    }
    versions.sort_unstable();
    Ok(versions)
}

fn read_key32(path: &Path) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    check_mode(path)?;
    let bytes = Zeroizing::new(fs::read(path).map_err(io_err(path))?);
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(KeyError::Bad {
            path: path.to_owned(),
            message: "expected exactly 32 bytes".into(),
        });
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// The grant-seal key; a vault from before it existed is told how to make it.
fn read_grant_seal(dir: &Path) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let path = dir.join("grant-seal.key");
    if !path.exists() {
        return Err(KeyError::Bad {
            path,
            message: "missing: run `hoso serve` or `hoso init` once to make it (grants made \
                      before it existed are then sealed as they are)"
                .into(),
        });
    }
    read_key32(&path)
}

const BLIND_INDEX: &str = "blind-index.key";

/// What opening a vault does about a key the token does not show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Missing {
    /// Refuse: the vault is opened, not made (`hoso audit verify`, `doctor`…).
    Refuse,
    /// Make it: the vault is made now.
    Make,
    /// Look again, then make it: a vault made before, opened by `serve` or `init` (which make
    /// what a newer hoso needs, such as a signing key for a new purpose).
    LookAgainThenMake,
}

impl Missing {
    /// `existed`: the vault was made before (its keys directory holds its keys).
    fn of(create: bool, existed: bool) -> Self {
        match (create, existed) {
            (false, _) => Self::Refuse,
            (true, false) => Self::Make,
            (true, true) => Self::LookAgainThenMake,
        }
    }

    /// Settles a key the token did not show. A vault made before looks again first, in the
    /// token read afresh ([`super::pkcs11::Hsm::read_again`]): a SoftHSM2 that read its files
    /// while another process rewrote them can miss a key, and a key made again would be a
    /// second one under its label, refused for good.
    fn settle<T>(
        self,
        h: &super::pkcs11::Hsm,
        what: &str,
        look: impl Fn() -> Result<Option<T>, super::pkcs11::HsmError>,
        make: impl FnOnce() -> Result<T, super::pkcs11::HsmError>,
    ) -> Result<T, KeyError> {
        let token = |e: super::pkcs11::HsmError| KeyError::Token(e.to_string());
        if self == Self::Make {
            return make().map_err(token);
        }
        let read_again = h.read_again();
        if let Some(found) = look().map_err(token)? {
            return Ok(found);
        }
        match self {
            Self::LookAgainThenMake if read_again => make().map_err(token),
            Self::LookAgainThenMake => Err(KeyError::Token(format!(
                "the token shows no {what} under this vault's label prefix, and could not be \
                 read afresh to make sure: try again"
            ))),
            _ => Err(KeyError::Token(format!(
                "the token holds no {what} under this vault's label prefix"
            ))),
        }
    }
}

/// The blind-index key, found as [`signing_key`] finds a signing key: the token's, else the
/// file's, else settled as `missing` says. A file beside the token's key must be the
/// same key (an interrupted `keys migrate`).
fn index_key(
    dir: &Path,
    hsm: Option<&std::sync::Arc<super::pkcs11::Hsm>>,
    missing: Missing,
) -> Result<IndexKey, KeyError> {
    let path = dir.join(BLIND_INDEX);
    let Some(h) = hsm else {
        return Ok(IndexKey::File(read_key32(&path)?));
    };
    let token = |e: super::pkcs11::HsmError| KeyError::Token(e.to_string());
    if !h.has_index_key().map_err(token)? {
        if path.exists() {
            return Ok(IndexKey::File(read_key32(&path)?));
        }
        let look = || Ok(h.has_index_key()?.then_some(()));
        missing.settle(h, "blind-index key", look, || h.generate_index_key())?;
    }
    if path.exists() && !index_keys_agree(&*read_key32(&path)?, h)? {
        return Err(KeyError::Bad {
            path,
            message: "a blind-index key other than the token's: remove the one not in use".into(),
        });
    }
    Ok(IndexKey::Token(h.clone()))
}

/// Whether the token's blind-index key gives the file key's index for a probe.
fn index_keys_agree(file: &[u8; 32], h: &super::pkcs11::Hsm) -> Result<bool, KeyError> {
    let probe = NationalId::parse("001099000000").expect("a well-formed number");
    let in_token = h
        .index_hmac(&super::blind_index_message(&probe))
        .map_err(|e| KeyError::Token(e.to_string()))?;
    Ok(super::blind_index(file, &probe).0 == in_token)
}

/// The signing keys: file name and purpose (the purpose names its `kid` and its token label).
pub const SIGNING_KEYS: [(&str, &str); 4] = [
    ("token-signing.p8", "token"),
    ("attestation-signing.p8", super::attestation::PURPOSE),
    ("audit-signing.p8", "audit"),
    ("export-signing.p8", "export"),
];

/// A signing key: with the PKCS#11 store, the token's if it holds one (a file of the same
/// purpose beside it must be the same key, left by an interrupted `keys migrate`), else the
/// file's (a vault that began on files, not migrated yet), else settled as `missing` says.
/// Without the store, the file's.
fn signing_key(
    dir: &Path,
    (name, purpose): (&str, &str),
    hsm: Option<&std::sync::Arc<super::pkcs11::Hsm>>,
    missing: Missing,
) -> Result<SigningKey, KeyError> {
    let Some(h) = hsm else {
        return read_signing(dir, name, purpose);
    };
    let token = |e: super::pkcs11::HsmError| KeyError::Token(e.to_string());
    let in_file = dir.join(name).exists();
    let public = match h.signing_public(purpose).map_err(token)? {
        Some(public) => public,
        None if in_file => return read_signing(dir, name, purpose),
        None => missing.settle(
            h,
            &format!("{purpose} signing key"),
            || h.signing_public(purpose),
            || h.generate_signing(purpose),
        )?,
    };
    if in_file && read_signing(dir, name, purpose)?.public_key() != public {
        return Err(KeyError::Bad {
            path: dir.join(name),
            message: format!(
                "a {purpose} key other than the token's: remove the one that is not in use"
            ),
        });
    }
    // The token's private half must be the one its public half says: one signature, checked
    // here, before anything is signed or verified with the pair.
    let key = SigningKey::in_token(h.clone(), purpose, public);
    let probe = super::random_bytes::<32>();
    let signature = key.sign(&probe).map_err(|e| KeyError::Token(e.0))?;
    if !super::signing::signature_is_valid(&public, &probe, &signature) {
        return Err(KeyError::Token(format!(
            "the token's {purpose} key pair does not match: its public half was changed"
        )));
    }
    Ok(key)
}

fn read_signing(dir: &Path, name: &str, purpose: &str) -> Result<SigningKey, KeyError> {
    let path = dir.join(name);
    if !path.exists() {
        // A key a newer hoso added (the export key): made by `serve` or `init`.
        return Err(KeyError::Bad {
            path,
            message: "missing: start `hoso serve` or run `hoso init` once to make it".into(),
        });
    }
    check_mode(&path)?;
    let bytes = Zeroizing::new(fs::read(&path).map_err(io_err(&path))?);
    SigningKey::from_pkcs8(&bytes, purpose).map_err(|message| KeyError::Bad { path, message })
}

/// A key readable by group or others has leaked already as far as we can know: refuse to start.
fn check_mode(path: &Path) -> Result<(), KeyError> {
    let mode = fs::metadata(path)
        .map_err(io_err(path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::Bad {
            path: path.to_owned(),
            message: format!("mode {:o} lets others read it; chmod 600 it", mode & 0o777),
        });
    }
    Ok(())
}

/// Makes the key file `name` unless it exists. Returns whether this call made it.
fn ensure_file(dir: &Path, name: &str, make: impl FnOnce() -> Vec<u8>) -> Result<bool, KeyError> {
    let path = dir.join(name);
    if path.exists() {
        return Ok(false);
    }
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(random_bytes::<6>())));
    let content = Zeroizing::new(make());
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(&content).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_dir(dir).map(|()| true),
        // Another process made it first; theirs is the key.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err(&path)(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), KeyError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// The key ring a running vault uses, re-read from the key files when it meets a KEK version it
/// has not loaded: a rotation made by another process (`hoso keys rotate` on any machine).
pub struct KeyCache {
    dir: PathBuf,
    current: std::sync::RwLock<std::sync::Arc<Keyring>>,
}

impl KeyCache {
    pub fn new(dir: &Path, keys: Keyring) -> Self {
        Self {
            dir: dir.to_owned(),
            current: std::sync::RwLock::new(std::sync::Arc::new(keys)),
        }
    }

    /// The keys as last loaded.
    pub fn get(&self) -> std::sync::Arc<Keyring> {
        self.current.read().expect("keyring lock").clone()
    }

    /// Re-reads the key files (and the token's KEKs) and makes them current.
    pub fn reload(&self) -> Result<std::sync::Arc<Keyring>, KeyError> {
        let hsm = self.get().hsm.clone();
        let fresh = std::sync::Arc::new(Keyring::open_with(&self.dir, false, hsm)?);
        *self.current.write().expect("keyring lock") = fresh.clone();
        Ok(fresh)
    }

    /// Keys that hold KEK `version`, reloading once if this process has not seen it yet.
    pub fn with_kek(&self, version: u32) -> Result<std::sync::Arc<Keyring>, KeyError> {
        let keys = self.get();
        if keys.kek(version).is_some() {
            return Ok(keys);
        }
        self.reload()
    }

    /// Keys whose current KEK is at least `newest` (the newest version any process registered).
    pub fn at_least(&self, newest: u32) -> Result<std::sync::Arc<Keyring>, KeyError> {
        let keys = self.get();
        if keys.current_kek().version >= newest {
            return Ok(keys);
        }
        self.reload()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_open_creates_private_key_files_and_second_open_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let first = Keyring::open(&keys, true).unwrap();
        let id = NationalId::parse("001099012345").unwrap();
        let idx = first.citizen_index(&id).unwrap();
        for entry in fs::read_dir(&keys).unwrap() {
            let mode = entry.unwrap().metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = Keyring::open(&keys, false).unwrap();
        assert_eq!(second.citizen_index(&id).unwrap(), idx);
        assert_eq!(second.current_kek().version, 1);
        assert_eq!(second.rotate().unwrap(), 2);
        assert_eq!(
            Keyring::open(&keys, false).unwrap().current_kek().version,
            2
        );
    }

    #[test]
    fn opening_without_keys_says_to_run_init() {
        let dir = tempfile::tempdir().unwrap();
        let err = Keyring::open(dir.path(), false).err().unwrap();
        assert!(err.to_string().contains("hoso init"));
    }
}
