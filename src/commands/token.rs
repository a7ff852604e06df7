//! `wasmops token`: API tokens.

use anyhow::Result;
use clap::Parser;
use wasmops_api::TokenRequest;

use crate::args::Connection;

/// Create an API token (admin): roles viewer, data-scientist, operator, admin.
#[derive(Parser)]
pub struct TokenCommand {
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub role: String,
    #[command(flatten)]
    pub conn: Connection,
}

impl TokenCommand {
    pub fn execute(self) -> Result<()> {
        let r = self.conn.client()?.create_token(&TokenRequest {
            name: self.name,
            role: self.role,
        })?;
        eprintln!(
            "created {} token `{}`; it is shown only once:",
            r.role, r.name
        );
        println!("{}", r.token);
        Ok(())
    }
}
