//! `hoso keys rotate|rewrap|status|retire`: master-key (KEK) versions.

use std::process::ExitCode;

use clap::Subcommand;

use super::{CliError, cli_error, open};
use crate::config::{KeyStoreKind, Settings};
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
    /// Move every data key to a master key in the hardware security module (HOSO_KEY_STORE=
    /// pkcs11): makes one there if the current one is a file, then rewraps; safe to run again
    /// and to stop midway. The file versions can then be retired.
    Migrate {
        /// The store to move to.
        #[arg(long, value_enum)]
        to: crate::config::KeyStoreKind,
    },
}

pub async fn run(settings: Settings, command: KeysCommand) -> Result<ExitCode, CliError> {
    match command {
        KeysCommand::Rotate => rotate(settings).await,
        KeysCommand::Rewrap => rewrap(settings).await,
        KeysCommand::Status => status(settings).await,
        KeysCommand::Retire { version } => retire(settings, version).await,
        KeysCommand::Migrate { to } => migrate(settings, to).await,
    }
}

async fn rotate(settings: Settings) -> Result<ExitCode, CliError> {
    let version = open(settings.clone())
        .await?
        .vault
        .keys()
        .rotate()
        .map_err(|e| e.to_string())?;
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

async fn migrate(settings: Settings, to: KeyStoreKind) -> Result<ExitCode, CliError> {
    if to != KeyStoreKind::Pkcs11 || settings.key_store != KeyStoreKind::Pkcs11 {
        return Err(
            "keys migrate moves master keys into a hardware security module: run it with \
             HOSO_KEY_STORE=pkcs11 (and its HOSO_PKCS11_* settings) and --to pkcs11; a key in a \
             token cannot be moved back out"
                .into(),
        );
    }
    let keys = open(settings.clone()).await?.vault.keys();
    if !keys.current_kek().is_in_token() {
        let version = keys.rotate().map_err(|e| e.to_string())?;
        eprintln!("master key version {version} made in the token");
    }
    // Opened again: the new version registered, and current here.
    let app = open(settings).await?;
    let current = app.vault.keys().current_kek().version;
    let done = master_keys::rewrap(&app.vault, |n| eprintln!("moved {n} data keys…"))
        .await
        .map_err(cli_error)?;
    let moved = app
        .vault
        .keys()
        .move_keys_to_token()
        .map_err(|e| e.to_string())?;
    for purpose in &moved {
        eprintln!("the {purpose} key is in the token now; its file is deleted");
    }
    println!(
        "{done} data keys moved under version {current}, in the token; {} more keys moved there; \
         retire the file versions with `hoso keys retire --version N` once `hoso keys status` \
         shows them unused",
        moved.len()
    );
    Ok(ExitCode::SUCCESS)
}
