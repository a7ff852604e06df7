//! `wasmops token`: API tokens (admin): create, list, revoke.

use anyhow::Result;
use clap::{Parser, Subcommand};
use wasmops_api::TokenRequest;

use crate::args::Connection;

/// API tokens (admin): roles viewer, data-scientist, operator, admin, worker.
#[derive(Parser)]
pub struct TokenCommand {
    #[command(subcommand)]
    pub action: TokenAction,
}

#[derive(Subcommand)]
pub enum TokenAction {
    /// A new token, printed once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
        /// Days until it expires (90 unless given; a `device:ID` credential
        /// made here lasts until revoked unless given).
        #[arg(long)]
        valid_for_days: Option<u64>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Every token: name, role, created, expires, revoked (never the secrets).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Revokes every live token named NAME (a device credential: `device:ID`).
    Revoke {
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
}

fn when(ms: i64) -> String {
    wasmops_trust::Timestamp::from_unix((ms.max(0) / 1000) as u64).to_string()
}

impl TokenCommand {
    pub fn execute(self) -> Result<()> {
        match self.action {
            TokenAction::Create {
                name,
                role,
                valid_for_days,
                conn,
            } => {
                let r = conn.client()?.create_token(&TokenRequest {
                    name,
                    role,
                    valid_for_s: valid_for_days.map(|d| d.saturating_mul(86_400)),
                })?;
                eprintln!(
                    "created {} token `{}`, valid until {}; it is shown only once:",
                    r.role,
                    r.name,
                    r.expires_at_ms.map(when).unwrap_or_else(|| "never".into())
                );
                println!("{}", r.token);
            }
            TokenAction::List { json, conn } => {
                let list = conn.client()?.tokens()?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                    return Ok(());
                }
                let now = wasmops_protocol::now_ms();
                println!(
                    "{:<28} {:<15} {:<21} {:<21} state",
                    "name", "role", "created", "expires"
                );
                for t in list {
                    let state = match t.expires_at_ms {
                        _ if t.revoked => "revoked",
                        Some(at) if at <= now => "expired",
                        _ => "live",
                    };
                    println!(
                        "{:<28} {:<15} {:<21} {:<21} {state}",
                        t.name,
                        t.role,
                        when(t.created_at_ms),
                        t.expires_at_ms.map(when).unwrap_or_else(|| "never".into())
                    );
                }
            }
            TokenAction::Revoke { name, conn } => {
                let r = conn.client()?.revoke_tokens(&name)?;
                eprintln!("revoked {} token(s) named `{}`", r.revoked, r.name);
            }
        }
        Ok(())
    }
}
