//! Envelope encryption: a fresh data key per document seals its body and its personal fields;
//! a versioned master key (KEK) wraps the data key.
//!
//! Every ciphertext is bound to its document by associated data built from a [`Binding`]
//! (document id, citizen index) and the format version, so a body, a field blob or a wrapped key
//! copied onto another record fails authentication instead of decrypting.
//!
//! # Byte layouts (format version 1)
//!
//! Two subkeys are derived from the 32-byte data key `DK`, so the body and the fields never share
//! a key/nonce space:
//!
//! ```text
//! body_key   = HMAC-SHA-256(DK, "hoso/body-key/v1")
//! fields_key = HMAC-SHA-256(DK, "hoso/fields-key/v1")
//! ```
//!
//! **Stored object** (the body, a STREAM construction over AES-256-GCM):
//!
//! ```text
//! header   16 bytes  "HOSO" | 0x01 (format) | segment size u32 BE (= 65536) | nonce prefix (7 random bytes)
//! segment  N times   AES-256-GCM(body_key, nonce_i, aad_i, plaintext_i) | tag (16)
//!
//! plaintext_i  65536 bytes, except the last segment: 0..=65536 bytes
//! nonce_i      nonce prefix (7) | i as u32 BE (4) | 0x01 if last segment else 0x00 (1)
//! aad_i        "hoso/body/v1" | header (16) | document id (16) | citizen index (32)
//! ```
//!
//! The final-segment flag in the nonce makes truncation at a segment boundary fail; the counter
//! makes reordering fail; the header in every segment's AAD makes header edits fail.
//!
//! **Sealed fields** (the personal metadata JSON):
//!
//! ```text
//! nonce (12 random) | AES-256-GCM(fields_key, nonce, "hoso/fields/v1" | document id | citizen index, json) | tag (16)
//! ```
//!
//! **Wrapped data key** (60 bytes; the KEK version is kept beside it in its own column). Rows of
//! format 2 (every document taken in since) also bind the document type, so a row relabelled in
//! the database (a passport made a `cccd`, to fall inside a CCCD grant) no longer unwraps:
//!
//! ```text
//! format 2: nonce (12 random) | AES-256-GCM(KEK_v, nonce, "hoso/dek/v2" | v as u32 BE
//!           | len(doc_type) u8 | doc_type (ASCII) | document id | citizen index, DK) | tag (16)
//! format 1: nonce (12 random) | AES-256-GCM(KEK_v, nonce, "hoso/dek/v1" | v as u32 BE
//!           | document id | citizen index, DK) | tag (16)
//! ```
//!
//! A row's format is its `format_version`; `hoso keys rewrap` brings format-1 rows to format 2.
//!
//! **The key store's tag.** The layouts above are a KEK of the file store's (`keys/`), and have
//! no tag: their bytes, and the known answers below, are as they always were. A KEK kept in a
//! hardware security module (`HOSO_KEY_STORE=pkcs11`, [`super::pkcs11`]) wraps inside the token,
//! with the same associated data, and its wrapped key (61 bytes) starts with a tag:
//!
//! ```text
//! pkcs11:   0x50 ('P') | IV (12, from the token) | AES-256-GCM(KEK_v in the token, IV, aad, DK) | tag (16)
//! ```
//!
//! The row's KEK version says which KEK; the tag says which store must hold it, so a file KEK is
//! never asked to open a token's wrap or the reverse.
//! Bodies and fields are laid out the same in both (the body header's format byte stays 1).

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Tag};

type Nonce = aes_gcm::Nonce<aes_gcm::aead::consts::U12>;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{CitizenIndex, hmac_sha256, random_bytes};
use crate::domain::DocType;

/// The row format new documents are written in (see the module doc).
pub const FORMAT_VERSION: u8 = 2;
/// The format byte in a stored body's header; the body layout is the same for rows of format
/// 1 and 2.
pub const BODY_FORMAT: u8 = 1;
pub const MAGIC: &[u8; 4] = b"HOSO";
pub const HEADER_LEN: usize = 16;
pub const SEGMENT_LEN: usize = 64 * 1024;
pub const TAG_LEN: usize = 16;
pub const NONCE_LEN: usize = 12;
pub const WRAPPED_KEY_LEN: usize = NONCE_LEN + 32 + TAG_LEN;
const SEALED_SEGMENT_LEN: usize = SEGMENT_LEN + TAG_LEN;

/// Stored bytes failed authentication, or do not have the documented layout.
#[derive(Debug, thiserror::Error)]
#[error("integrity check failed: {0}")]
pub struct IntegrityError(pub &'static str);

/// Why a data key could not be wrapped or unwrapped.
#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
    /// The hardware security module holding the KEK did not answer: try again later.
    #[error("{0}")]
    Unavailable(String),
}

/// The tag a wrapped key of a KEK kept in a PKCS#11 token starts with.
pub const TOKEN_TAG: u8 = b'P';
/// Its length: the tag, the token's IV, the data key and the GCM tag.
pub const TOKEN_WRAPPED_KEY_LEN: usize = 1 + WRAPPED_KEY_LEN;

/// What a ciphertext is bound to.
#[derive(Clone, Copy, Debug)]
pub struct Binding {
    pub document_id: Uuid,
    pub citizen: CitizenIndex,
}

impl Binding {
    fn aad(&self, label: &[u8], extra: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(label.len() + extra.len() + 48);
        aad.extend_from_slice(label);
        aad.extend_from_slice(extra);
        aad.extend_from_slice(self.document_id.as_bytes());
        aad.extend_from_slice(&self.citizen.0);
        aad
    }
}

/// A document's 256-bit data key. It cannot be printed or cloned, and is wiped when dropped.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    pub fn generate() -> Self {
        Self(Zeroizing::new(random_bytes::<32>()))
    }

    /// A key from known bytes: for known-answer tests and fuzzing, never for documents.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    fn subkey(&self, label: &[u8]) -> Aes256Gcm {
        let key = Zeroizing::new(hmac_sha256(self.0.as_ref(), &[label]));
        Aes256Gcm::new_from_slice(key.as_ref()).expect("a 32-byte key")
    }
}

/// What a wrapped data key is bound to besides its document and citizen: nothing (format 1, for
/// rows taken in before the type was bound) or the document type (format 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrapFormat {
    V1,
    V2 { doc_type: DocType },
}

impl WrapFormat {
    /// The wrap format of a row of `format_version`, or `None` for a format this version of
    /// hoso does not know.
    pub fn of_row(format_version: i64, doc_type: DocType) -> Option<Self> {
        match format_version {
            1 => Some(Self::V1),
            2 => Some(Self::V2 { doc_type }),
            _ => None,
        }
    }
}

/// A master key (KEK) of one version: a file's bytes in memory, or a key in a token.
pub struct Kek {
    pub version: u32,
    store: KekStore,
}

enum KekStore {
    File(Box<Aes256Gcm>),
    Token(std::sync::Arc<super::pkcs11::Hsm>),
}

impl Kek {
    pub fn new(version: u32, key: &[u8; 32]) -> Self {
        Self {
            version,
            store: KekStore::File(Box::new(
                Aes256Gcm::new_from_slice(key).expect("a 32-byte key"),
            )),
        }
    }

    /// KEK `version`, kept in the token `hsm` (it is never read out of it).
    pub fn in_token(version: u32, hsm: std::sync::Arc<super::pkcs11::Hsm>) -> Self {
        Self {
            version,
            store: KekStore::Token(hsm),
        }
    }

    /// Whether this KEK is kept in a hardware security module.
    pub fn is_in_token(&self) -> bool {
        matches!(self.store, KekStore::Token(_))
    }

    fn aad(&self, binding: &Binding, format: WrapFormat) -> Vec<u8> {
        let version = self.version.to_be_bytes();
        match format {
            WrapFormat::V1 => binding.aad(b"hoso/dek/v1", &version),
            WrapFormat::V2 { doc_type } => {
                let name = doc_type.as_str().as_bytes();
                let mut extra = version.to_vec();
                extra.push(u8::try_from(name.len()).expect("type names are short"));
                extra.extend_from_slice(name);
                binding.aad(b"hoso/dek/v2", &extra)
            }
        }
    }

    /// Wraps a data key in `format`; the vault writes `WrapFormat::V2` (format 1 is only read,
    /// and written by tests that stand in for rows made before format 2).
    pub fn wrap(
        &self,
        key: &DataKey,
        binding: &Binding,
        format: WrapFormat,
    ) -> Result<Vec<u8>, WrapError> {
        match &self.store {
            KekStore::File(cipher) => Ok(wrap_with_nonce(
                cipher,
                key,
                &self.aad(binding, format),
                random_bytes::<NONCE_LEN>(),
            )),
            KekStore::Token(hsm) => {
                let sealed = hsm
                    .seal(self.version, &self.aad(binding, format), key.0.as_ref())
                    .map_err(token_error)?;
                let mut out = Vec::with_capacity(TOKEN_WRAPPED_KEY_LEN);
                out.push(TOKEN_TAG);
                out.extend_from_slice(&sealed);
                Ok(out)
            }
        }
    }

    pub fn unwrap(
        &self,
        wrapped: &[u8],
        binding: &Binding,
        format: WrapFormat,
    ) -> Result<DataKey, WrapError> {
        let aad = self.aad(binding, format);
        match &self.store {
            KekStore::File(cipher) => Ok(unwrap_file(cipher, wrapped, &aad)?),
            KekStore::Token(hsm) => {
                let sealed = match wrapped.split_first() {
                    Some((&TOKEN_TAG, sealed)) if wrapped.len() == TOKEN_WRAPPED_KEY_LEN => sealed,
                    _ => return Err(IntegrityError("not a key wrapped in the token").into()),
                };
                let plain = hsm
                    .open_sealed(self.version, &aad, sealed)
                    .map_err(token_error)?;
                let bytes: [u8; 32] = plain
                    .as_slice()
                    .try_into()
                    .map_err(|_| IntegrityError("the token's data key has the wrong length"))?;
                Ok(DataKey(Zeroizing::new(bytes)))
            }
        }
    }
}

/// The file store's wrap under a chosen nonce, for the known-answer vectors.
#[cfg(test)]
impl Kek {
    fn wrap_with_nonce(
        &self,
        key: &DataKey,
        binding: &Binding,
        format: WrapFormat,
        nonce: [u8; NONCE_LEN],
    ) -> Vec<u8> {
        let KekStore::File(cipher) = &self.store else {
            panic!("known answers are the file store's");
        };
        wrap_with_nonce(cipher, key, &self.aad(binding, format), nonce)
    }
}

fn token_error(e: super::pkcs11::HsmError) -> WrapError {
    match e {
        super::pkcs11::HsmError::Integrity => {
            WrapError::Integrity(IntegrityError("wrapped key failed authentication"))
        }
        other => WrapError::Unavailable(other.to_string()),
    }
}

fn wrap_with_nonce(
    cipher: &Aes256Gcm,
    key: &DataKey,
    aad: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(WRAPPED_KEY_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(key.0.as_ref());
    let tag = cipher
        .encrypt_inout_detached(&Nonce::from(nonce), aad, (&mut out[NONCE_LEN..]).into())
        .expect("32 bytes are within AES-GCM limits");
    out.extend_from_slice(&tag);
    out
}

fn unwrap_file(cipher: &Aes256Gcm, wrapped: &[u8], aad: &[u8]) -> Result<DataKey, IntegrityError> {
    if wrapped.len() != WRAPPED_KEY_LEN {
        return Err(IntegrityError("wrapped key has the wrong length"));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&wrapped[NONCE_LEN..NONCE_LEN + 32]);
    let nonce = Nonce::try_from(&wrapped[..NONCE_LEN]).expect("12 bytes");
    let tag = Tag::try_from(&wrapped[NONCE_LEN + 32..]).expect("16 bytes");
    cipher
        .decrypt_inout_detached(&nonce, aad, key.as_mut_slice().into(), &tag)
        .map_err(|_| IntegrityError("wrapped key failed authentication"))?;
    Ok(DataKey(key))
}

/// Seals the personal-fields JSON.
pub fn seal_fields(key: &DataKey, binding: &Binding, plaintext: &[u8]) -> Vec<u8> {
    seal_fields_with_nonce(key, binding, plaintext, random_bytes::<NONCE_LEN>())
}

fn seal_fields_with_nonce(
    key: &DataKey,
    binding: &Binding,
    plaintext: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    let cipher = key.subkey(b"hoso/fields-key/v1");
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_inout_detached(
            &Nonce::from(nonce),
            &binding.aad(b"hoso/fields/v1", &[]),
            (&mut out[NONCE_LEN..]).into(),
        )
        .expect("metadata is within AES-GCM limits");
    out.extend_from_slice(&tag);
    out
}

pub fn open_fields(
    key: &DataKey,
    binding: &Binding,
    sealed: &[u8],
) -> Result<Vec<u8>, IntegrityError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(IntegrityError("sealed fields are too short"));
    }
    let cipher = key.subkey(b"hoso/fields-key/v1");
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut plaintext = ciphertext.to_vec();
    cipher
        .decrypt_inout_detached(
            &Nonce::try_from(nonce).expect("12 bytes"),
            &binding.aad(b"hoso/fields/v1", &[]),
            plaintext.as_mut_slice().into(),
            &Tag::try_from(tag).expect("16 bytes"),
        )
        .map_err(|_| IntegrityError("sealed fields failed authentication"))?;
    Ok(plaintext)
}

/// The state shared by the body's sealer and opener: key, header and per-segment nonces.
/// Body segments use ring's AES-256-GCM (the same algorithm and bytes as the `aes-gcm` crate
/// used for keys and fields, and faster on 64 KiB segments: `benches/compare.rs` measures both
/// side by side): the body is where the bytes are.
struct Segments {
    cipher: ring::aead::LessSafeKey,
    header: [u8; HEADER_LEN],
    aad: Vec<u8>,
    next: u32,
}

impl Segments {
    fn new(key: &DataKey, binding: &Binding, header: [u8; HEADER_LEN]) -> Self {
        let subkey = Zeroizing::new(hmac_sha256(key.0.as_ref(), &[b"hoso/body-key/v1"]));
        let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, subkey.as_ref())
            .expect("a 32-byte key");
        Self {
            cipher: ring::aead::LessSafeKey::new(unbound),
            aad: binding.aad(b"hoso/body/v1", &header),
            header,
            next: 0,
        }
    }

    fn nonce(&mut self, last: bool) -> Result<ring::aead::Nonce, IntegrityError> {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..7].copy_from_slice(&self.header[9..16]);
        nonce[7..11].copy_from_slice(&self.next.to_be_bytes());
        nonce[11] = u8::from(last);
        self.next = self
            .next
            .checked_add(1)
            .ok_or(IntegrityError("too many segments"))?;
        Ok(ring::aead::Nonce::assume_unique_for_key(nonce))
    }

    /// Opens one sealed segment (ciphertext | tag) in place; its plaintext is the first
    /// `len - TAG_LEN` bytes afterwards. On failure the bytes are not plaintext and must not be
    /// used.
    fn open_in_place(&mut self, sealed: &mut [u8], last: bool) -> Result<(), IntegrityError> {
        let nonce = self.nonce(last)?;
        if sealed.len() < TAG_LEN {
            return Err(IntegrityError("object is truncated"));
        }
        let (ciphertext, tag) = sealed.split_at_mut(sealed.len() - TAG_LEN);
        let tag = ring::aead::Tag::try_from(&*tag).map_err(|_| IntegrityError("bad tag"))?;
        self.cipher
            .open_in_place_separate_tag(
                nonce,
                ring::aead::Aad::from(&self.aad),
                tag,
                ciphertext,
                0..,
            )
            .map(|_| ())
            .map_err(|_| IntegrityError("segment failed authentication"))
    }
}

/// Seals a body as it streams in, one 64 KiB segment at a time; memory stays at two segments.
pub struct BodySealer {
    segments: Segments,
    pending: Vec<u8>,
    started: bool,
}

impl BodySealer {
    pub fn new(key: &DataKey, binding: &Binding) -> Self {
        Self::with_nonce_prefix(key, binding, random_bytes::<7>())
    }

    fn with_nonce_prefix(key: &DataKey, binding: &Binding, prefix: [u8; 7]) -> Self {
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(MAGIC);
        header[4] = BODY_FORMAT;
        header[5..9].copy_from_slice(&(SEGMENT_LEN as u32).to_be_bytes());
        header[9..16].copy_from_slice(&prefix);
        Self {
            segments: Segments::new(key, binding, header),
            pending: Vec::with_capacity(2 * SEGMENT_LEN),
            started: false,
        }
    }

    /// Takes plaintext, appends whatever sealed bytes are ready to `out`. A full segment is held
    /// back until more data shows it is not the last one.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        self.start(out);
        while !data.is_empty() {
            let room = 2 * SEGMENT_LEN - self.pending.len();
            let take = room.min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() > SEGMENT_LEN {
                self.seal(SEGMENT_LEN, false, out);
            }
        }
    }

    /// Seals what is left as the final segment.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.start(out);
        while self.pending.len() > SEGMENT_LEN {
            self.seal(SEGMENT_LEN, false, out);
        }
        let len = self.pending.len();
        self.seal(len, true, out);
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            out.extend_from_slice(&self.segments.header);
            self.started = true;
        }
    }

    fn seal(&mut self, len: usize, last: bool, out: &mut Vec<u8>) {
        let nonce = self.segments.nonce(last).expect("a body under 256 TiB");
        let start = out.len();
        out.extend_from_slice(&self.pending[..len]);
        let tag = self
            .segments
            .cipher
            .seal_in_place_separate_tag(
                nonce,
                ring::aead::Aad::from(&self.segments.aad),
                &mut out[start..],
            )
            .expect("a segment is within AES-GCM limits");
        out.extend_from_slice(tag.as_ref());
        self.pending.drain(..len);
    }
}

/// Opens a whole stored body held in one buffer, in place: every segment is authenticated and
/// decrypted where it lies, and the plaintext is the returned ranges of `sealed`, in order (no
/// copy). Either every segment authenticates or an error is returned and `sealed` must be
/// dropped unread.
pub fn open_in_place(
    key: &DataKey,
    binding: &Binding,
    sealed: &mut [u8],
) -> Result<Vec<std::ops::Range<usize>>, IntegrityError> {
    if sealed.len() < HEADER_LEN {
        return Err(IntegrityError("object is shorter than its header"));
    }
    let header: [u8; HEADER_LEN] = sealed[..HEADER_LEN].try_into().expect("16");
    if &header[..4] != MAGIC || header[4] != BODY_FORMAT {
        return Err(IntegrityError("unknown object format"));
    }
    if header[5..9] != (SEGMENT_LEN as u32).to_be_bytes() {
        return Err(IntegrityError("unexpected segment size"));
    }
    let mut segments = Segments::new(key, binding, header);
    let mut ranges = Vec::with_capacity(sealed.len() / SEALED_SEGMENT_LEN + 1);
    let mut offset = HEADER_LEN;
    loop {
        let rest = sealed.len() - offset;
        // As in the streaming opener: a segment is the last exactly when nothing follows it.
        let (len, last) = if rest > SEALED_SEGMENT_LEN {
            (SEALED_SEGMENT_LEN, false)
        } else {
            (rest, true)
        };
        segments.open_in_place(&mut sealed[offset..offset + len], last)?;
        ranges.push(offset..offset + len - TAG_LEN);
        offset += len;
        if last {
            return Ok(ranges);
        }
    }
}

/// Opens a body as it streams out. Plaintext is only produced for segments that authenticated.
pub struct BodyOpener {
    key: DataKey,
    binding: Binding,
    segments: Option<Segments>,
    buffer: Vec<u8>,
}

impl BodyOpener {
    pub fn new(key: DataKey, binding: Binding) -> Self {
        Self {
            key,
            binding,
            segments: None,
            buffer: Vec::with_capacity(2 * SEALED_SEGMENT_LEN),
        }
    }

    /// Takes stored bytes, appends the plaintext of every segment known not to be the last.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), IntegrityError> {
        self.buffer.extend_from_slice(data);
        if self.segments.is_none() {
            if self.buffer.len() < HEADER_LEN {
                return Ok(());
            }
            let header: [u8; HEADER_LEN] = self.buffer[..HEADER_LEN].try_into().expect("16");
            if &header[..4] != MAGIC || header[4] != BODY_FORMAT {
                return Err(IntegrityError("unknown object format"));
            }
            if header[5..9] != (SEGMENT_LEN as u32).to_be_bytes() {
                return Err(IntegrityError("unexpected segment size"));
            }
            self.segments = Some(Segments::new(&self.key, &self.binding, header));
            self.buffer.drain(..HEADER_LEN);
        }
        // Strictly more than one sealed segment buffered: the first cannot be the last.
        let mut offset = 0;
        while self.buffer.len() - offset > SEALED_SEGMENT_LEN {
            self.open(offset, SEALED_SEGMENT_LEN, false, out)?;
            offset += SEALED_SEGMENT_LEN;
        }
        self.buffer.drain(..offset);
        Ok(())
    }

    /// The stored bytes have ended: what is buffered must be the final segment.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), IntegrityError> {
        if self.segments.is_none() {
            return Err(IntegrityError("object is shorter than its header"));
        }
        let len = self.buffer.len();
        if len < TAG_LEN {
            return Err(IntegrityError("object is truncated"));
        }
        self.open(0, len, true, out)
    }

    fn open(
        &mut self,
        offset: usize,
        len: usize,
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), IntegrityError> {
        let segments = self.segments.as_mut().expect("header parsed");
        let start = out.len();
        out.extend_from_slice(&self.buffer[offset..offset + len]);
        if let Err(e) = segments.open_in_place(&mut out[start..], last) {
            // Never leave unauthenticated bytes where a caller could pick them up.
            out.truncate(start);
            return Err(e);
        }
        out.truncate(start + len - TAG_LEN);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed inputs of the known-answer vectors; `docs/known_answers.py` computes the expected
    /// bytes from the documented layout with an independent AES-GCM (pyca/cryptography).
    mod known {
        use super::*;

        pub fn dk() -> DataKey {
            DataKey::from_bytes(std::array::from_fn(|i| i as u8))
        }
        pub fn kek() -> Kek {
            Kek::new(7, &std::array::from_fn(|i| 0x20 + i as u8))
        }
        pub fn binding() -> Binding {
            Binding {
                document_id: Uuid::from_bytes(std::array::from_fn(|i| 0xa0 + i as u8)),
                citizen: CitizenIndex([0x42; 32]),
            }
        }
        pub fn pattern(n: usize) -> Vec<u8> {
            (0..n).map(|i| (i % 251) as u8).collect()
        }
        pub fn seal(plaintext: &[u8]) -> Vec<u8> {
            let mut sealer = BodySealer::with_nonce_prefix(
                &dk(),
                &binding(),
                std::array::from_fn(|i| 1 + i as u8),
            );
            let mut out = Vec::new();
            sealer.push(plaintext, &mut out);
            sealer.finish(&mut out);
            out
        }
    }

    #[test]
    fn known_answer_a_short_body_has_the_documented_bytes_and_opens() {
        let expected = "484f534f0100010000010203040506074b04859825a3c62bf02437797622943886836d34ee18cd8f864c3912ebe36478c1";
        let sealed = known::seal(b"hoso known answer");
        assert_eq!(hex::encode(&sealed), expected);
        let opened = open(
            known::dk(),
            known::binding(),
            &hex::decode(expected).unwrap(),
            7,
        )
        .unwrap();
        assert_eq!(opened, b"hoso known answer");
    }

    #[test]
    fn a_whole_body_opens_in_place_and_refuses_any_change() {
        for len in [
            0,
            1,
            17,
            SEGMENT_LEN - 1,
            SEGMENT_LEN,
            SEGMENT_LEN + 1,
            3 * SEGMENT_LEN,
        ] {
            let plaintext = known::pattern(len);
            let mut sealed = known::seal(&plaintext);
            let pristine = sealed.clone();
            let ranges = open_in_place(&known::dk(), &known::binding(), &mut sealed).unwrap();
            let opened: Vec<u8> = ranges
                .iter()
                .flat_map(|r| sealed[r.clone()].to_vec())
                .collect();
            assert_eq!(opened, plaintext, "{len} bytes");
            for at in [0, 5, HEADER_LEN, pristine.len() - 1] {
                let mut bent = pristine.clone();
                bent[at] ^= 1;
                assert!(open_in_place(&known::dk(), &known::binding(), &mut bent).is_err());
            }
            let mut cut = pristine[..pristine.len() - 1].to_vec();
            assert!(open_in_place(&known::dk(), &known::binding(), &mut cut).is_err());
            if len > SEGMENT_LEN {
                // Cut at a segment boundary: the segment left last was not sealed as the last.
                let mut cut = pristine[..HEADER_LEN + SEALED_SEGMENT_LEN].to_vec();
                assert!(open_in_place(&known::dk(), &known::binding(), &mut cut).is_err());
            }
        }
    }

    #[test]
    fn known_answer_multi_segment_bodies_have_the_documented_bytes() {
        let digest = |n| hex::encode(crate::crypto::sha256(&known::seal(&known::pattern(n))));
        // One full segment is the last one; one byte more makes a second, final segment.
        assert_eq!(
            digest(SEGMENT_LEN),
            "d13addfb1699bb286c3f87f1a8a9816f11b45526ee52257f8e113a10dc5840ae"
        );
        assert_eq!(
            digest(SEGMENT_LEN + 5),
            "b9ebc3f61bf6ef305ccebc72b2cf9122eb62b8f976d188d49e0f3352d69f05ee"
        );
    }

    #[test]
    fn known_answer_sealed_fields_have_the_documented_bytes_and_open() {
        let expected = "505152535455565758595a5baa2feba83faf0d010a0021ac9a3e92af3672801dc5eee58b23e5cdef8c7d546811f77ae6367b3f881e3bcc8d54";
        let json = br#"{"doc_number":"001099012345"}"#;
        let nonce = std::array::from_fn(|i| 0x50 + i as u8);
        let sealed = seal_fields_with_nonce(&known::dk(), &known::binding(), json, nonce);
        assert_eq!(hex::encode(&sealed), expected);
        let opened = open_fields(
            &known::dk(),
            &known::binding(),
            &hex::decode(expected).unwrap(),
        );
        assert_eq!(opened.unwrap(), json);
    }

    #[test]
    fn known_answer_wrapped_keys_have_the_documented_bytes_and_unwrap() {
        let passport = WrapFormat::V2 {
            doc_type: DocType::Passport,
        };
        let vectors = [
            (
                WrapFormat::V1,
                "606162636465666768696a6be295afa8f7d57d52f14d6db719477d766216891155184ede13bea37393ccad22883d52b86888f53e3b4e7437300a194e",
            ),
            (
                passport,
                "606162636465666768696a6be295afa8f7d57d52f14d6db719477d766216891155184ede13bea37393ccad226e87ff83921b8907fd67b84b1fedc9c5",
            ),
        ];
        for (format, expected) in vectors {
            let nonce = std::array::from_fn(|i| 0x60 + i as u8);
            let wrapped =
                known::kek().wrap_with_nonce(&known::dk(), &known::binding(), format, nonce);
            assert_eq!(hex::encode(&wrapped), expected, "{format:?}");
            let key = known::kek()
                .unwrap(&hex::decode(expected).unwrap(), &known::binding(), format)
                .unwrap();
            assert_eq!(*key.0, *known::dk().0);
        }
    }

    fn binding(n: u8) -> Binding {
        Binding {
            document_id: Uuid::from_bytes([n; 16]),
            citizen: CitizenIndex([n; 32]),
        }
    }

    fn seal(key: &DataKey, b: &Binding, plaintext: &[u8], chunk: usize) -> Vec<u8> {
        let mut sealer = BodySealer::new(key, b);
        let mut out = Vec::new();
        for piece in plaintext.chunks(chunk.max(1)) {
            sealer.push(piece, &mut out);
        }
        sealer.finish(&mut out);
        out
    }

    fn open(
        key: DataKey,
        b: Binding,
        stored: &[u8],
        chunk: usize,
    ) -> Result<Vec<u8>, IntegrityError> {
        let mut opener = BodyOpener::new(key, b);
        let mut out = Vec::new();
        for piece in stored.chunks(chunk.max(1)) {
            opener.push(piece, &mut out)?;
        }
        opener.finish(&mut out)?;
        Ok(out)
    }

    fn same_key(key: &DataKey) -> DataKey {
        DataKey(Zeroizing::new(*key.0))
    }

    #[test]
    fn bodies_round_trip_at_every_segment_boundary() {
        let key = DataKey::generate();
        for len in [
            0,
            1,
            SEGMENT_LEN - 1,
            SEGMENT_LEN,
            SEGMENT_LEN + 1,
            3 * SEGMENT_LEN,
            200_000,
        ] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for chunk in [1000, 65_536, 100_000] {
                let stored = seal(&key, &binding(1), &plaintext, chunk);
                let expected_len = HEADER_LEN + len + TAG_LEN * len.div_ceil(SEGMENT_LEN).max(1);
                assert_eq!(stored.len(), expected_len, "len {len}");
                let opened = open(same_key(&key), binding(1), &stored, chunk + 7).unwrap();
                assert_eq!(opened, plaintext, "len {len} chunk {chunk}");
            }
        }
    }

    #[test]
    fn every_flipped_bit_truncation_and_extension_is_refused() {
        let key = DataKey::generate();
        let plaintext: Vec<u8> = (0..(SEGMENT_LEN * 2 + 100)).map(|i| i as u8).collect();
        let stored = seal(&key, &binding(1), &plaintext, 4096);
        // A bit in every byte position of the header, of the first and last segment.
        let positions = (0..stored.len())
            .step_by(97)
            .chain(stored.len() - 20..stored.len());
        for pos in positions {
            let mut bad = stored.clone();
            bad[pos] ^= 0x01;
            assert!(
                open(same_key(&key), binding(1), &bad, 65_536).is_err(),
                "flip at {pos}"
            );
        }
        for cut in [
            1,
            TAG_LEN,
            100,
            SEGMENT_LEN + TAG_LEN,
            stored.len() - HEADER_LEN,
        ] {
            let bad = &stored[..stored.len() - cut];
            assert!(
                open(same_key(&key), binding(1), bad, 65_536).is_err(),
                "truncated by {cut}"
            );
        }
        // Truncation exactly at a segment boundary is the STREAM case the final flag guards.
        let two_segments = HEADER_LEN + 2 * SEALED_SEGMENT_LEN;
        assert!(open(same_key(&key), binding(1), &stored[..two_segments], 1000).is_err());
        let mut longer = stored.clone();
        longer.extend_from_slice(&[0u8; 17]);
        assert!(open(same_key(&key), binding(1), &longer, 65_536).is_err());
    }

    #[test]
    fn reordered_segments_are_refused() {
        let key = DataKey::generate();
        let plaintext = vec![7u8; SEGMENT_LEN * 3];
        let stored = seal(&key, &binding(1), &plaintext, SEGMENT_LEN);
        let mut swapped = stored[..HEADER_LEN].to_vec();
        let seg = |i: usize| &stored[HEADER_LEN + i * SEALED_SEGMENT_LEN..][..SEALED_SEGMENT_LEN];
        swapped.extend_from_slice(seg(1));
        swapped.extend_from_slice(seg(0));
        swapped.extend_from_slice(&stored[HEADER_LEN + 2 * SEALED_SEGMENT_LEN..]);
        assert!(open(key, binding(1), &swapped, 65_536).is_err());
    }

    #[test]
    fn a_body_bound_to_one_document_does_not_open_for_another() {
        let key = DataKey::generate();
        let stored = seal(&key, &binding(1), b"%PDF-1.7 hello", 10);
        assert!(open(same_key(&key), binding(2), &stored, 10).is_err());
        assert!(open(DataKey::generate(), binding(1), &stored, 10).is_err());
    }

    #[test]
    fn rows_of_format_1_unwrap_as_before_and_unknown_formats_are_refused() {
        assert_eq!(WrapFormat::of_row(1, DocType::Cccd), Some(WrapFormat::V1));
        assert_eq!(
            WrapFormat::of_row(2, DocType::Cccd),
            Some(WrapFormat::V2 {
                doc_type: DocType::Cccd
            })
        );
        assert_eq!(WrapFormat::of_row(3, DocType::Cccd), None);
        assert_eq!(WrapFormat::of_row(0, DocType::Cccd), None);
    }

    #[test]
    fn wrapped_keys_are_bound_to_document_type_and_kek_version() {
        let kek1 = Kek::new(1, &[1u8; 32]);
        let kek1_as_v2 = Kek::new(2, &[1u8; 32]);
        let key = DataKey::generate();
        let cccd = WrapFormat::V2 {
            doc_type: DocType::Cccd,
        };
        let wrapped = kek1.wrap(&key, &binding(1), cccd).unwrap();
        assert_eq!(wrapped.len(), WRAPPED_KEY_LEN);
        assert_eq!(*kek1.unwrap(&wrapped, &binding(1), cccd).unwrap().0, *key.0);
        assert!(kek1.unwrap(&wrapped, &binding(2), cccd).is_err());
        assert!(kek1_as_v2.unwrap(&wrapped, &binding(1), cccd).is_err());
        let relabelled = WrapFormat::V2 {
            doc_type: DocType::Passport,
        };
        assert!(kek1.unwrap(&wrapped, &binding(1), relabelled).is_err());
        assert!(kek1.unwrap(&wrapped, &binding(1), WrapFormat::V1).is_err());
        assert!(
            Kek::new(1, &[2u8; 32])
                .unwrap(&wrapped, &binding(1), cccd)
                .is_err()
        );
        for pos in 0..wrapped.len() {
            let mut bad = wrapped.clone();
            bad[pos] ^= 0x80;
            assert!(
                kek1.unwrap(&bad, &binding(1), cccd).is_err(),
                "flip at {pos}"
            );
        }
    }

    #[test]
    fn sealing_twice_gives_different_bytes() {
        let key = DataKey::generate();
        let a = seal(&key, &binding(1), b"same scan", 100);
        let b = seal(&key, &binding(1), b"same scan", 100);
        assert_ne!(a, b);
        let fa = seal_fields(&key, &binding(1), b"{}");
        assert_ne!(fa, seal_fields(&key, &binding(1), b"{}"));
        assert_eq!(open_fields(&key, &binding(1), &fa).unwrap(), b"{}");
        assert!(open_fields(&key, &binding(2), &fa).is_err());
    }
}
