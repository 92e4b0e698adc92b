//! `hoso audit verify|key|witness|verify-receipt`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use super::{CliError, cli_error, open};
use crate::audit::checkpoints::Trusted;
use crate::audit::merkle::Hash;
use crate::audit::note;
use crate::audit::receipt::{Receipt, decode_hash};
use crate::audit::witness::{self, State};
use crate::config::Settings;
use crate::records;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the log: chain, signatures, its Merkle tree against every checkpoint in the object
    /// store (and a witness's, with --witness-state); exit 0 when intact, 1 naming the first bad
    /// entry. Reads one consistent snapshot, so traffic meanwhile raises no false alarm.
    Verify {
        /// A witness's state directory (`hoso audit witness --state`): its last checkpoint must
        /// be a prefix of this log.
        #[arg(long)]
        witness_state: Option<PathBuf>,
    },
    /// Print the log's verifier key (give it to witnesses and to citizens checking receipts).
    Key,
    /// Watch a vault from outside: fetch its latest checkpoint, check its signature and a
    /// consistency proof from the last one this witness kept, keep it. Exit 1, saying what the
    /// log did, on any inconsistency (a smaller tree, another root for a size seen, a bad or
    /// missing proof). Run it where the vault's operators have no hand.
    Witness {
        /// The vault's address, e.g. https://hoso.danang.gov.vn.
        #[arg(long)]
        url: String,
        /// This witness's state directory (created on first use; it pins the log's key).
        #[arg(long)]
        state: PathBuf,
        /// The log's verifier key (`hoso audit key`), to pin instead of trusting the first one
        /// the vault shows.
        #[arg(long)]
        key: Option<String>,
        /// Check once and exit (for cron); otherwise check every --interval seconds.
        #[arg(long)]
        once: bool,
        #[arg(long, default_value_t = 60)]
        interval: u64,
    },
    /// Check a receipt offline: a C2SP tlog-proof (from a citizen's access log) against the
    /// log's verifier key. Exit 0 when the entry is in the signed log, 1 otherwise.
    VerifyReceipt {
        /// The proof file (`-` for standard input).
        #[arg(long)]
        proof: PathBuf,
        /// The log's verifier key (`hoso audit key`).
        #[arg(long)]
        key: String,
        /// The leaf hash from the read's `hoso-audit-receipt` header, if you kept it: it must
        /// be the proof's.
        #[arg(long)]
        leaf: Option<String>,
    },
}

pub async fn run(settings: Settings, command: AuditCommand) -> Result<ExitCode, CliError> {
    match command {
        AuditCommand::Verify { witness_state } => verify(settings, witness_state.as_deref()).await,
        AuditCommand::Key => {
            let app = open(settings).await?;
            println!("{}", records::oversight::verifier_key(&app.vault));
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Witness {
            url,
            state,
            key,
            once,
            interval,
        } => loop {
            let code = witness_once(&url, &state, key.as_deref()).await;
            if once || code != ExitCode::SUCCESS {
                return Ok(code);
            }
            tokio::time::sleep(Duration::from_secs(interval.max(1))).await;
        },
        AuditCommand::VerifyReceipt { proof, key, leaf } => {
            verify_receipt(&proof, &key, leaf.as_deref())
        }
    }
}

async fn verify(settings: Settings, witness_state: Option<&Path>) -> Result<ExitCode, CliError> {
    let witness = match witness_state {
        None => None,
        Some(dir) => match State::load(dir)? {
            Some(State {
                checkpoint: Some((_, c)),
                ..
            }) => Some(Trusted {
                size: c.size,
                root: c.root,
                source: format!("the witness state in {}", dir.display()),
            }),
            _ => return Err(format!("{} holds no witness checkpoint", dir.display()).into()),
        },
    };
    let app = open(settings).await?;
    let report = records::oversight::verify_all(&app.vault, witness)
        .await
        .map_err(cli_error)?;
    for g in &report.grants {
        println!("grant {} NOT intact: {}", g.grant_id, g.problem);
    }
    match report.first_bad_seq {
        None => println!(
            "audit log intact: {} entries, head {}",
            report.entries, report.head
        ),
        Some(seq) => println!(
            "audit log NOT intact: first bad entry is {seq} ({})",
            report.problem.unwrap_or_default()
        ),
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One witness round. Exit 0: accepted (or unchanged); 1: the log is inconsistent; 2: the
/// vault could not be asked (try again later; nothing was kept).
async fn witness_once(url: &str, dir: &Path, pinned: Option<&str>) -> ExitCode {
    match witness_round(url, dir, pinned).await {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(Round::Inconsistent(message)) => {
            eprintln!("AUDIT LOG INCONSISTENT: {message}");
            ExitCode::from(1)
        }
        Err(Round::Unreachable(message)) => {
            eprintln!("cannot check the vault now: {message}");
            ExitCode::from(2)
        }
    }
}

enum Round {
    Inconsistent(String),
    Unreachable(String),
}

async fn get(url: &str) -> Result<reqwest::Response, Round> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Round::Unreachable(e.to_string()))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| Round::Unreachable(format!("{url}: {e}")))?;
    if !response.status().is_success() {
        return Err(Round::Unreachable(format!(
            "{url} answered {}",
            response.status()
        )));
    }
    Ok(response)
}

async fn witness_round(url: &str, dir: &Path, pinned: Option<&str>) -> Result<String, Round> {
    let base = url.trim_end_matches('/');
    let held = State::load(dir).map_err(Round::Inconsistent)?;
    let response = get(&format!("{base}/v1/audit/checkpoint")).await?;
    let offered_key = response
        .headers()
        .get("hoso-log-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response
        .text()
        .await
        .map_err(|e| Round::Unreachable(e.to_string()))?;
    let key = match (&held, pinned, offered_key) {
        (Some(state), Some(p), _) if state.key != p => {
            return Err(Round::Inconsistent(
                "--key differs from the key this witness pinned".into(),
            ));
        }
        (Some(state), _, _) => state.key.clone(),
        (None, Some(p), _) => p.to_owned(),
        (None, None, Some(offered)) => offered,
        (None, None, None) => {
            return Err(Round::Unreachable(
                "the vault names no log key; pass --key".into(),
            ));
        }
    };
    let (name, public) = note::parse_verifier_key(&key).map_err(Round::Inconsistent)?;
    let new = note::open(&text, &name, &public)
        .map_err(|e| Round::Inconsistent(format!("the vault's checkpoint: {e}")))?;
    let before = held.and_then(|s| s.checkpoint).map(|(_, c)| c);
    let proof = match &before {
        Some(old) if old.size > 0 && old.size < new.size => {
            consistency_proof(base, old.size, new.size).await?
        }
        _ => Vec::new(),
    };
    witness::check(before.as_ref(), &new, &proof).map_err(Round::Inconsistent)?;
    State::save(dir, &key, &text).map_err(Round::Unreachable)?;
    Ok(match before {
        Some(old) if old.size == new.size => format!("unchanged: {} entries", new.size),
        Some(old) => format!(
            "consistent: {} entries, extending the {} seen before",
            new.size, old.size
        ),
        None => format!(
            "first checkpoint kept: {} entries (key {name} pinned)",
            new.size
        ),
    })
}

/// The vault's proof that its log of `to` entries extends the one of `from`.
async fn consistency_proof(base: &str, from: u64, to: u64) -> Result<Vec<Hash>, Round> {
    let url = format!("{base}/v1/audit/proof/consistency?from={from}&to={to}");
    let bytes = get(&url)
        .await?
        .bytes()
        .await
        .map_err(|e| Round::Unreachable(e.to_string()))?;
    let body: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Round::Inconsistent(format!("no consistency proof: {e}")))?;
    decode_hashes(&body["hashes"]).map_err(Round::Inconsistent)
}

fn decode_hashes(value: &serde_json::Value) -> Result<Vec<Hash>, String> {
    value
        .as_array()
        .ok_or("the proof has no hashes")?
        .iter()
        .map(|h| decode_hash(h.as_str().unwrap_or_default()))
        .collect()
}

fn verify_receipt(path: &Path, key: &str, leaf: Option<&str>) -> Result<ExitCode, CliError> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(|e| e.to_string())?
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
    };
    let checked = Receipt::parse(&text).and_then(|receipt| {
        let leaf = leaf.map(decode_hash).transpose()?;
        Ok((receipt.index, receipt.check(key, leaf.as_ref())?))
    });
    match checked {
        Ok((index, size)) => {
            println!(
                "receipt valid: entry {} is in the signed log of {size} entries",
                index + 1
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            println!("receipt NOT valid: {problem}");
            Ok(ExitCode::from(1))
        }
    }
}
