//! The integration suite: every promise of `docs/design.md`, through the real router, on a real SQLite
//! file and a real local object store.

mod browser;
mod card;
mod common;
mod console;
mod console_rights;

mod contract;
mod faults;
mod hardening;
mod hsm;
mod insider;
mod interop;

mod p01_tampered_bodies;
mod p02_moved_ciphertexts;
mod p03_duplicate_intake;
mod p04_grants;
mod p05_tokens;
mod p06_uploads;
mod p07_crashes;
mod p08_audit;
mod p08_witnessed;
mod p09_key_rotation;
mod p10_nothing_in_clear;
mod p12_erasure;
mod processes;
mod reliability;
mod rights;
mod scale_out;
mod script;
mod sign_in;
mod survival;
mod workflows;
