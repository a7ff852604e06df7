//! `wasmops enrolment`: tokens devices trade for their own credentials.

use anyhow::Result;
use clap::Parser;
use wasmops_api::{DEFAULT_ENROLMENT_VALIDITY_S, EnrolmentRequest};

use crate::args::Connection;

/// Create an enrolment token (operator): devices matching PATTERN trade it for their own credentials.
#[derive(Parser)]
pub struct EnrolmentCommand {
    /// A device id, or a pattern with `*` (e.g. factory-12-*).
    #[arg(long)]
    pub devices: String,
    /// How long the token stays valid, in seconds.
    #[arg(long, default_value_t = DEFAULT_ENROLMENT_VALIDITY_S)]
    pub valid_for_s: u64,
    #[command(flatten)]
    pub conn: Connection,
}

impl EnrolmentCommand {
    pub fn execute(self) -> Result<()> {
        let r = self.conn.client()?.create_enrolment(&EnrolmentRequest {
            devices: self.devices.clone(),
            valid_for_s: self.valid_for_s,
        })?;
        eprintln!(
            "enrolment token for `{}`, valid until {} ms; shown only once:",
            self.devices, r.expires_at_ms
        );
        println!("{}", r.token);
        Ok(())
    }
}
