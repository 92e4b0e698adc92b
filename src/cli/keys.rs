//! `hoso keys rotate|rewrap|status|retire`: master-key (KEK) versions.

use std::process::ExitCode;

use clap::Subcommand;

use super::{CliError, cli_error, open};
use crate::config::Settings;
use crate::crypto::keyring::Keyring;
use crate::records::master_keys::{self, KekState};

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Add a new master-key version and make it current.
    Rotate,
    /// Rewrap every data key under the current master key (bodies are not touched).
    Rewrap,
    /// Show master-key versions and how many data keys each wraps.
    Status,
    /// Delete a master-key version; refused while any data key uses it.
    Retire {
        #[arg(long)]
        version: u32,
    },
}

pub async fn run(settings: Settings, command: KeysCommand) -> Result<ExitCode, CliError> {
    match command {
        KeysCommand::Rotate => rotate(settings).await,
        KeysCommand::Rewrap => rewrap(settings).await,
        KeysCommand::Status => status(settings).await,
        KeysCommand::Retire { version } => retire(settings, version).await,
    }
}

async fn rotate(settings: Settings) -> Result<ExitCode, CliError> {
    let version = Keyring::rotate(&settings.keys_dir).map_err(|e| e.to_string())?;
    // Opening the vault registers the version, which tells running vaults (they check before
    // each intake) to reload their key files.
    open(settings).await?;
    println!(
        "master key version {version} is now current; run `hoso keys rewrap` to move existing data keys to it"
    );
    Ok(ExitCode::SUCCESS)
}

async fn rewrap(settings: Settings) -> Result<ExitCode, CliError> {
    let app = open(settings).await?;
    let done = master_keys::rewrap(&app.vault, |n| eprintln!("rewrapped {n} data keys…"))
        .await
        .map_err(cli_error)?;
    println!(
        "{done} data keys rewrapped under version {}",
        app.vault.keys().current_kek().version
    );
    Ok(ExitCode::SUCCESS)
}

async fn status(settings: Settings) -> Result<ExitCode, CliError> {
    let app = open(settings).await?;
    let versions = master_keys::status(&app.vault).await.map_err(cli_error)?;
    println!("version  current  in use  wrapped ever  state");
    for v in versions {
        let state = match v.state {
            KekState::Available => "available",
            KekState::Retired => "retired",
            KekState::MissingFile => "MISSING FILE",
        };
        println!(
            "{:>7}  {:>7}  {:>6}  {:>12}  {state}",
            v.version,
            if v.current { "*" } else { "" },
            v.in_use,
            v.wraps
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn retire(settings: Settings, version: u32) -> Result<ExitCode, CliError> {
    let app = open(settings).await?;
    master_keys::retire(&app.vault, version)
        .await
        .map_err(cli_error)?;
    println!("master key version {version} retired and deleted");
    Ok(ExitCode::SUCCESS)
}
