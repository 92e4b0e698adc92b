//! The PKCS#11 key store (`HOSO_KEY_STORE=pkcs11`): master keys (KEKs) that live in a hardware
//! security module and never leave it. Each KEK version is an AES-256 key generated inside the
//! token — `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE`, not `CKA_EXTRACTABLE`, allowed mechanism
//! AES-GCM only — labelled `{prefix}-kek-{version:06}`; a data key is wrapped with `C_Encrypt`
//! (AES-GCM, a 12-byte IV from the token's random generator, the same associated data the file
//! store binds) and unwrapped with `C_Decrypt`. See [`super::envelope`] for the wrapped key's
//! byte layout, which carries the store's tag.
//!
//! `C_Initialize` runs once per process (here, when the store is opened); sessions are kept in
//! a pool, each used by one thread at a time (`Session` is `Send`, not `Sync`). A session the
//! token dropped (it was removed, restarted) is thrown away and a fresh one opened and logged
//! in on the next use. The PIN is read once from its file and kept only as a secret; it is in no
//! message, log line or setting's value.

use std::path::Path;
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::config::HsmSettings;

/// Why the token could not be used, in words for the operator (never the PIN).
#[derive(Debug, Clone, thiserror::Error)]
pub enum HsmError {
    /// Set up wrongly: the module, the token label, the PIN. Start-up stops on it.
    #[error("{0}")]
    Setting(String),
    /// The token did not do what was asked (gone, failing): try again later.
    #[error("the hardware security module is unavailable: {0}")]
    Unavailable(String),
    /// The token refused the ciphertext: it was changed or moved.
    #[error("the hardware security module refused the wrapped key: it failed authentication")]
    Integrity,
}

/// An open token, logged in, with a pool of sessions.
pub struct Hsm {
    ctx: Pkcs11,
    slot: Slot,
    pin: AuthPin,
    prefix: String,
    sessions: Mutex<Vec<Session>>,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The errors that mean the session (or the token under it) is gone, not that the request was
/// wrong: the session is dropped and a fresh one opened next time.
fn session_lost(e: &Error) -> bool {
    matches!(e, Error::Pkcs11(rv, _) if matches!(rv,
        RvError::SessionHandleInvalid | RvError::SessionClosed | RvError::DeviceRemoved
        | RvError::DeviceError | RvError::TokenNotPresent | RvError::TokenNotRecognized
        | RvError::UserNotLoggedIn | RvError::SlotIdInvalid | RvError::CryptokiNotInitialized))
}

fn unavailable(e: Error) -> HsmError {
    HsmError::Unavailable(e.to_string())
}

impl Hsm {
    /// Loads the module, initialises it, finds the token by label and logs in with the PIN in
    /// `pin_file`. Each failure is one line saying which setting to fix.
    pub fn open(s: &HsmSettings, keys_dir: &Path, create: bool) -> Result<Self, HsmError> {
        let setting = |what: String| HsmError::Setting(what);
        let prefix = match &s.label_prefix {
            Some(p) => p.clone(),
            None => own_prefix(keys_dir, create)?,
        };
        let ctx = context(&s.module)?;
        let slot = find_slot(&ctx, &s.token_label)?;
        let pin = read_pin(&s.pin_file)?;
        let hsm = Self {
            ctx,
            slot,
            pin,
            prefix,
            sessions: Mutex::new(Vec::new()),
        };
        // Log in once now, so a wrong PIN stops start-up rather than the first intake.
        let session = hsm.ctx.open_rw_session(hsm.slot).map_err(unavailable)?;
        match session.login(UserType::User, Some(&hsm.pin)) {
            Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(Error::Pkcs11(
                RvError::PinIncorrect
                | RvError::PinInvalid
                | RvError::PinLenRange
                | RvError::PinLocked,
                _,
            )) => {
                return Err(setting(format!(
                    "HOSO_PKCS11_PIN_FILE {}: the token refused this PIN",
                    s.pin_file.display()
                )));
            }
            Err(e) => return Err(unavailable(e)),
        }
        hsm.give_back(session);
        Ok(hsm)
    }

    fn open_session(&self) -> Result<Session, HsmError> {
        let session = self.ctx.open_rw_session(self.slot).map_err(unavailable)?;
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn give_back(&self, session: Session) {
        if let Ok(mut pool) = self.sessions.lock() {
            pool.push(session);
        }
    }

    /// Runs `f` on a pooled session (opening one if none is free). A session the token lost is
    /// dropped and `f` tried once more on a fresh one.
    fn with_session<T>(&self, f: impl Fn(&Session) -> Result<T, Error>) -> Result<T, HsmError> {
        for attempt in 0..2 {
            let pooled = self.sessions.lock().ok().and_then(|mut pool| pool.pop());
            let session = match pooled {
                Some(s) => s,
                None => self.open_session()?,
            };
            match f(&session) {
                Ok(value) => {
                    self.give_back(session);
                    return Ok(value);
                }
                Err(e) if session_lost(&e) && attempt == 0 => {
                    // The token restarted or was removed: every pooled session is as dead.
                    drop(session);
                    if let Ok(mut pool) = self.sessions.lock() {
                        pool.clear();
                    }
                }
                Err(e) => {
                    if !session_lost(&e) {
                        self.give_back(session);
                    }
                    return Err(unavailable(e));
                }
            }
        }
        Err(HsmError::Unavailable(
            "the token lost two sessions in a row".into(),
        ))
    }

    fn kek_label(&self, version: u32) -> Vec<u8> {
        format!("{}-kek-{version:06}", self.prefix).into_bytes()
    }

    /// The key labelled `label`. Two such keys (two processes made one at once) are refused
    /// rather than one picked: a data key wrapped under one would not open under the other.
    fn find_kek(session: &Session, label: &[u8]) -> Result<Option<ObjectHandle>, Error> {
        let found = session.find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.to_vec()),
        ])?;
        if found.len() > 1 {
            return Err(Error::Pkcs11(
                RvError::KeyHandleInvalid,
                cryptoki::context::Function::FindObjects,
            ));
        }
        Ok(found.into_iter().next())
    }

    /// The KEK versions the token holds under this store's prefix, sorted.
    pub fn kek_versions(&self) -> Result<Vec<u32>, HsmError> {
        let start = format!("{}-kek-", self.prefix);
        let labels = self.with_session(|s| {
            let handles = s.find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])?;
            let mut labels = Vec::new();
            for h in handles {
                // A key another session destroyed since the search is simply gone.
                let Ok(attrs) = s.get_attributes(h, &[AttributeType::Label]) else {
                    continue;
                };
                for attr in attrs {
                    if let Attribute::Label(l) = attr {
                        labels.push(l);
                    }
                }
            }
            Ok(labels)
        })?;
        let mut versions: Vec<u32> = labels
            .iter()
            .filter_map(|l| std::str::from_utf8(l).ok())
            .filter_map(|l| l.strip_prefix(&start))
            .filter_map(|digits| digits.parse().ok())
            .collect();
        versions.sort_unstable();
        versions.dedup();
        Ok(versions)
    }

    /// Generates KEK `version` inside the token: AES-256, sensitive, never extractable, usable
    /// for AES-GCM only.
    pub fn generate_kek(&self, version: u32) -> Result<(), HsmError> {
        let label = self.kek_label(version);
        // SoftHSM2's file store answers CKR_GENERAL_ERROR now and then when several sessions
        // write the token at once; the key is then made on another try.
        for _ in 0..4 {
            if self.with_session(|s| Self::make_kek(s, &label))? {
                return Ok(());
            }
        }
        Err(HsmError::Unavailable(
            "the token would not make a key (CKR_GENERAL_ERROR four times)".into(),
        ))
    }

    /// Makes the key labelled `label` unless it is there; false when the token failed and the
    /// caller may try again. A key already there is used only if it is one the vault would
    /// make: AES-256 generated in the token, sensitive, never extractable.
    fn make_kek(s: &Session, label: &[u8]) -> Result<bool, Error> {
        if let Some(key) = Self::find_kek(s, label)? {
            let attrs = s.get_attributes(
                key,
                &[
                    AttributeType::Sensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Local,
                    AttributeType::ValueLen,
                ],
            )?;
            let sound = attrs.iter().all(|a| match a {
                Attribute::Sensitive(b) | Attribute::NeverExtractable(b) | Attribute::Local(b) => {
                    *b
                }
                Attribute::ValueLen(n) => u64::from(*n) == 32,
                _ => true,
            }) && attrs.len() == 4;
            if !sound {
                return Err(Error::Pkcs11(
                    RvError::KeyTypeInconsistent,
                    cryptoki::context::Function::GetAttributeValue,
                ));
            }
            return Ok(true);
        }
        let made = s.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Label(label.to_vec()),
                Attribute::ValueLen(32.into()),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Modifiable(false),
                Attribute::Copyable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
                Attribute::Sign(false),
                Attribute::Verify(false),
                Attribute::Derive(false),
                Attribute::AllowedMechanisms(vec![MechanismType::AES_GCM]),
            ],
        );
        match made {
            Ok(_) => Ok(true),
            Err(Error::Pkcs11(RvError::GeneralError, _)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Destroys KEK `version` in the token. The caller has proved no data key uses it.
    pub fn destroy_kek(&self, version: u32) -> Result<(), HsmError> {
        let label = self.kek_label(version);
        self.with_session(|s| {
            if let Some(h) = Self::find_kek(s, &label)? {
                s.destroy_object(h)?;
            }
            Ok(())
        })
    }

    /// AES-GCM with KEK `version` under a fresh 12-byte IV from the token: `iv | ciphertext |
    /// tag`.
    pub fn seal(&self, version: u32, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, HsmError> {
        let label = self.kek_label(version);
        self.with_session(|s| {
            let key = Self::find_kek(s, &label)?.ok_or(Error::Pkcs11(
                RvError::KeyHandleInvalid,
                cryptoki::context::Function::Encrypt,
            ))?;
            let mut iv = [0u8; 12];
            s.generate_random_slice(&mut iv)?;
            let sealed = s.encrypt(
                &Mechanism::AesGcm(GcmParams::new(&mut iv, aad, 128.into())?),
                key,
                plaintext,
            )?;
            // The IV as the call left it: a token that chooses its own writes it back here.
            let mut out = iv.to_vec();
            out.extend_from_slice(&sealed);
            Ok(out)
        })
    }

    /// The inverse of [`Hsm::seal`]; a changed byte is [`HsmError::Integrity`].
    pub fn open_sealed(
        &self,
        version: u32,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        if sealed.len() < 12 + 16 {
            return Err(HsmError::Integrity);
        }
        let label = self.kek_label(version);
        let opened = self.with_session(|s| {
            let key = Self::find_kek(s, &label)?.ok_or(Error::Pkcs11(
                RvError::KeyHandleInvalid,
                cryptoki::context::Function::Decrypt,
            ))?;
            let mut iv = [0u8; 12];
            iv.copy_from_slice(&sealed[..12]);
            let mechanism = Mechanism::AesGcm(GcmParams::new(&mut iv, aad, 128.into())?);
            match s.decrypt(&mechanism, key, &sealed[12..]) {
                Ok(plain) => Ok(Some(plain)),
                // A GCM tag that does not check: SoftHSM2 says CKR_GENERAL_ERROR (others
                // CKR_ENCRYPTED_DATA_INVALID). The session is fine; the ciphertext is not.
                Err(Error::Pkcs11(
                    RvError::GeneralError
                    | RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::DataInvalid,
                    _,
                )) => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        opened.ok_or(HsmError::Integrity)
    }

    /// Whether the token refuses to give out KEK `version`'s value (`CKA_VALUE` is sensitive),
    /// as it must: for the test that proves it, and for `hoso keys status`.
    pub fn kek_value_is_sealed(&self, version: u32) -> Result<bool, HsmError> {
        let label = self.kek_label(version);
        self.with_session(|s| {
            let Some(key) = Self::find_kek(s, &label)? else {
                return Ok(false);
            };
            let info = s.get_attribute_info(key, &[AttributeType::Value])?;
            let extractable = s.get_attributes(key, &[AttributeType::Extractable])?;
            Ok(matches!(info.first(), Some(AttributeInfo::Sensitive))
                && extractable
                    .iter()
                    .all(|a| !matches!(a, Attribute::Extractable(true))))
        })
    }
}

/// The vault's own label prefix, `hoso-` and 16 random hex digits, made once (by `serve` or
/// `init`) and kept in `keys/pkcs11-label-prefix`.
fn own_prefix(keys_dir: &Path, create: bool) -> Result<String, HsmError> {
    let path = keys_dir.join("pkcs11-label-prefix");
    if !path.exists() && create {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let name = format!("hoso-{}", hex::encode(super::random_bytes::<8>()));
        let made = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(keys_dir)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
            })
            .and_then(|mut f| f.write_all(name.as_bytes()).and_then(|()| f.sync_all()));
        if let Err(e) = made
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(HsmError::Setting(format!("{}: {e}", path.display())));
        }
    }
    let text = std::fs::read_to_string(&path).map_err(|e| {
        HsmError::Setting(format!(
            "{}: {e} (the vault's key label prefix; `hoso serve` or `hoso init` makes it)",
            path.display()
        ))
    })?;
    Ok(text.trim().to_owned())
}

/// The process's one context for `module`: loaded and `C_Initialize`d the first time, then
/// kept for the life of the process. A module unloaded and loaded again (a context dropped,
/// another made) would have to be initialised again, which not every module survives.
fn context(module: &Path) -> Result<Pkcs11, HsmError> {
    static LOADED: Mutex<Vec<(std::path::PathBuf, Pkcs11)>> = Mutex::new(Vec::new());
    let mut loaded = LOADED
        .lock()
        .map_err(|_| HsmError::Unavailable("the PKCS#11 module's lock was poisoned".into()))?;
    if let Some((_, ctx)) = loaded.iter().find(|(path, _)| path == module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module).map_err(|e| {
        HsmError::Setting(format!(
            "HOSO_PKCS11_MODULE {}: cannot be loaded as a PKCS#11 module ({e})",
            module.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(HsmError::Setting(format!(
                "the PKCS#11 module did not initialise: {e}"
            )));
        }
    }
    loaded.push((module.to_owned(), ctx.clone()));
    Ok(ctx)
}

fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| HsmError::Setting(format!("the PKCS#11 module lists no tokens: {e}")))?;
    slots
        .into_iter()
        .find(|slot| ctx.get_token_info(*slot).is_ok_and(|t| t.label() == label))
        .ok_or_else(|| {
            HsmError::Setting(format!(
                "HOSO_PKCS11_TOKEN_LABEL {label:?}: no token with this label in the module"
            ))
        })
}

/// The PIN, read once from its file (trailing newline dropped), kept as a secret.
fn read_pin(path: &Path) -> Result<AuthPin, HsmError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        HsmError::Setting(format!(
            "HOSO_PKCS11_PIN_FILE {}: cannot be read ({e})",
            path.display()
        ))
    })?;
    let pin = text.trim_end_matches(['\n', '\r']);
    if pin.is_empty() {
        return Err(HsmError::Setting(format!(
            "HOSO_PKCS11_PIN_FILE {} is empty",
            path.display()
        )));
    }
    Ok(AuthPin::new(pin.into()))
}
