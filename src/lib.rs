//! hoso: a once-only records vault for public services.
//!
//! A request flows one way: [`http`] → [`auth`] → [`records`] → [`db`] / [`blob`] / [`crypto`],
//! with [`audit`] beside it. [`app`] opens them, [`http::app`] serves them; [`cli`] is the command line.
#![forbid(unsafe_code)]

/// Shared state: the settings and the records service they open.
pub mod app;
/// Append-only, hash-chained, signed audit log.
pub mod audit;
/// Token claims, roles, and the extractor that turns a request into a `Caller`.
pub mod auth;
/// Object storage for sealed document bodies.
pub mod blob;
/// The CCCD's QR code, read from a scanned card.
pub mod card;
/// The `hoso` subcommands.
pub mod cli;
/// Typed settings from `HOSO_*` variables.
pub mod config;
/// Envelope encryption, key ring, blind index and signatures.
pub mod crypto;
/// Database pool, migrations and one query module per table.
pub mod db;
/// Validated domain types; no HTTP, no SQL.
pub mod domain;
/// The one error type and its stable codes.
pub mod error;
/// The router, the caller extractor and the handlers, one file per resource.
pub mod http;
/// Counters for `/metrics`.
pub mod metrics;
/// The records service: the only place that combines db, blob, crypto and audit.
pub mod records;
/// A ZIP archive of stored entries, written as a stream (the citizen's export).
pub mod zip;
