//! `hoso token issue|revoke`.

use std::process::ExitCode;

use clap::Subcommand;

use super::{CliError, cli_error, open};
use crate::auth::TokenRequest;
use crate::config::Settings;
use crate::domain::{Code, NationalId, Role};
use crate::records;

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Print a signed token, and nothing else, on standard output (or, with --link, a console
    /// sign-in link that carries it).
    Issue {
        /// admin, clerk, auditor or citizen (officers get tokens through grants).
        #[arg(long)]
        role: Role,
        /// Staff id; for `citizen`, the 12-digit national ID.
        #[arg(long)]
        sub: String,
        /// Office code, e.g. UBND-HAICHAU; required for staff roles.
        #[arg(long)]
        office: Option<String>,
        /// Lifetime: 90s, 30m, 8h, 2d.
        #[arg(long, default_value = "8h")]
        ttl: String,
        /// Print a link that opens the console signed in (HOSO_PUBLIC_URL, default
        /// http://LISTEN); the token is in the link's #fragment, which is never sent to a server.
        #[arg(long)]
        link: bool,
    },
    /// Refuse a token from now until it expires.
    Revoke {
        /// The token to revoke.
        token: String,
    },
}

pub async fn run(settings: Settings, command: TokenCommand) -> Result<ExitCode, CliError> {
    match command {
        TokenCommand::Issue {
            role,
            sub,
            office,
            ttl,
            link,
        } => issue(settings, role, &sub, office.as_deref(), &ttl, link).await,
        TokenCommand::Revoke { token } => revoke(settings, &token).await,
    }
}

/// Checks the flags, then issues through the vault so the issue is logged.
async fn issue(
    settings: Settings,
    role: Role,
    sub: &str,
    office: Option<&str>,
    ttl: &str,
    link: bool,
) -> Result<ExitCode, CliError> {
    if role == Role::Citizen {
        NationalId::parse(sub).map_err(|_| "a citizen's --sub is their 12-digit national ID")?;
    } else {
        Code::parse(sub, "--sub").map_err(|e| e.to_string())?;
    }
    if let Some(office) = office {
        Code::parse(office, "--office").map_err(|e| e.to_string())?;
    }
    let request = TokenRequest {
        role,
        sub,
        office,
        ttl_seconds: parse_ttl(ttl)?,
        grant: None,
        via: None,
    };
    let app = open(settings).await?;
    let token = records::tokens::issue(&app.vault, request)
        .await
        .map_err(cli_error)?;
    if link {
        println!(
            "{}",
            records::tokens::sign_in_link(&app.vault.console_url, &token)
        );
    } else {
        println!("{token}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn revoke(settings: Settings, token: &str) -> Result<ExitCode, CliError> {
    let app = open(settings).await?;
    let jti = records::tokens::revoke(&app.vault, token)
        .await
        .map_err(cli_error)?;
    eprintln!("token {jti} refused from now on");
    Ok(ExitCode::SUCCESS)
}

/// Parses `90s`, `30m`, `8h`, `2d` or a plain number of seconds.
pub fn parse_ttl(text: &str) -> Result<i64, String> {
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("cannot read the duration {text:?}"))?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("unknown unit in {text:?}; use s, m, h or d")),
    };
    match n.checked_mul(scale) {
        Some(s) if s > 0 && s <= 30 * 86_400 => Ok(s),
        _ => Err("a token lives between 1 second and 30 days".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttl_accepts_units_and_refuses_nonsense() {
        assert_eq!(parse_ttl("8h"), Ok(8 * 3600));
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("2d"), Ok(2 * 86_400));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("8x").is_err());
        assert!(parse_ttl("365d").is_err());
    }
}
