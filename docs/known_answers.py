#!/usr/bin/env python3
"""Known-answer vectors for hoso's byte layouts, computed from the layouts as documented in
src/crypto/envelope.rs, src/crypto/keyring.rs, src/crypto/grant_seal.rs and src/audit/chain.rs with an independent library
(pyca/cryptography), not with hoso's own code. The Rust tests pin the values this prints
(`known_answer_*` tests); if a layout changes on purpose, bump its format version and rerun this.

    pip install cryptography && python3 docs/known_answers.py
"""
import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

DK = bytes(range(32))                       # data key 00 01 .. 1f
KEK = bytes(range(0x20, 0x40))              # master key version 7: 20 21 .. 3f
KEK_VERSION = 7
DOC_ID = bytes(range(0xA0, 0xB0))           # document id (a UUID's 16 bytes)
CITIZEN = bytes([0x42] * 32)                # citizen index
PREFIX = bytes(range(1, 8))                 # body nonce prefix 01 .. 07
FIELDS_NONCE = bytes(range(0x50, 0x5C))
WRAP_NONCE = bytes(range(0x60, 0x6C))
SEGMENT = 65536


def h(key, *parts):
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def body(plaintext):
    key = AESGCM(h(DK, b"hoso/body-key/v1"))
    header = b"HOSO" + bytes([1]) + struct.pack(">I", SEGMENT) + PREFIX
    aad = b"hoso/body/v1" + header + DOC_ID + CITIZEN
    pieces = [plaintext[i:i + SEGMENT] for i in range(0, len(plaintext), SEGMENT)]
    if not pieces:
        pieces = [b""]  # an empty body is one empty final segment; a full last one stays last
    out = header
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        nonce = PREFIX + struct.pack(">I", i) + bytes([1 if last else 0])
        out += key.encrypt(nonce, piece, aad)
    return out


def fields(plaintext):
    key = AESGCM(h(DK, b"hoso/fields-key/v1"))
    return FIELDS_NONCE + key.encrypt(FIELDS_NONCE, plaintext, b"hoso/fields/v1" + DOC_ID + CITIZEN)


def wrapped_key():
    """Row format 1: the key bound to document and citizen."""
    aad = b"hoso/dek/v1" + struct.pack(">I", KEK_VERSION) + DOC_ID + CITIZEN
    return WRAP_NONCE + AESGCM(KEK).encrypt(WRAP_NONCE, DK, aad)


def wrapped_key_v2(doc_type):
    """Row format 2: the document type is bound too."""
    name = doc_type.encode()
    aad = b"hoso/dek/v2" + struct.pack(">I", KEK_VERSION) + bytes([len(name)]) + name + DOC_ID + CITIZEN
    return WRAP_NONCE + AESGCM(KEK).encrypt(WRAP_NONCE, DK, aad)


def blind_index(national_id):
    return h(bytes([0x33] * 32), b"hoso/citizen/v1", national_id.encode())


def audit_entry_hash():
    def f(text):
        if text is None:
            return struct.pack(">I", 0xFFFFFFFF)
        data = text.encode()
        return struct.pack(">I", len(data)) + data
    msg = b"hoso/audit/v1" + struct.pack(">Q", 5) + struct.pack(">q", 1_764_547_200_000)
    for text in ["lan.nguyen", "clerk", "UBND-HAICHAU", "document.read", "allowed"]:
        msg += f(text)
    for text in ["0190a4b2-0000-7000-8000-000000000001", "42" * 32, None, "000.00.31.H40-261124-0042", None]:
        msg += f(text)
    msg += bytes([0x11] * 32)
    return h(bytes([0x77] * 32), msg)


def grant_seal():
    def f(text):
        data = text.encode()
        return struct.pack(">I", len(data)) + data
    msg = b"hoso/grant/v1" + bytes([0xA0] * 16) + bytes([0x42] * 32)
    for text in ["cccd,birth_certificate", "000.00.31.H40-261124-0042", "Đăng ký kết hôn",
                 "officer.binh", "UBND-HAICHAU", "lan.nguyen", "UBND-HAICHAU"]:
        msg += f(text)
    msg += struct.pack(">qqq", 1_764_547_200_000, 1_764_550_800_000, 2)
    return h(bytes([0x55] * 32), msg)


def pattern(n):
    return bytes(i % 251 for i in range(n))


print("body_short      ", body(b"hoso known answer").hex())
print("body_2seg_sha256", hashlib.sha256(body(pattern(SEGMENT + 5))).hexdigest())
print("body_full_sha256", hashlib.sha256(body(pattern(SEGMENT))).hexdigest())
print("fields          ", fields(b'{"doc_number":"001099012345"}').hex())
print("wrapped_key     ", wrapped_key().hex())
print("wrapped_key_v2  ", wrapped_key_v2("passport").hex())
print("blind_index     ", blind_index("001099012345").hex())
print("audit_entry     ", audit_entry_hash().hex())
print("grant_seal      ", grant_seal().hex())
