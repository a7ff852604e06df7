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
    /// How long the token stays valid, in seconds (30 days at most).
    #[arg(long, default_value_t = DEFAULT_ENROLMENT_VALIDITY_S)]
    pub valid_for_s: u64,
    /// How often each device id may enrol with it.
    #[arg(long, default_value_t = 1)]
    pub uses: u32,
    /// It may replace the credential of an id that is enrolled already (the
    /// old credential is revoked): for devices that lost theirs.
    #[arg(long)]
    pub reenrol: bool,
    #[command(flatten)]
    pub conn: Connection,
}

impl EnrolmentCommand {
    pub fn execute(self) -> Result<()> {
        let r = self.conn.client()?.create_enrolment(&EnrolmentRequest {
            devices: self.devices.clone(),
            valid_for_s: self.valid_for_s,
            uses_per_device: self.uses,
            reenrol: self.reenrol,
        })?;
        eprintln!(
            "enrolment token for `{}`, valid until {}, {} use(s) per device id{}; shown only once:",
            self.devices,
            wasmops_trust::Timestamp::from_unix((r.expires_at_ms.max(0) / 1000) as u64),
            r.uses_per_device,
            if r.reenrol {
                ", may replace an enrolled device's credential"
            } else {
                ""
            }
        );
        println!("{}", r.token);
        Ok(())
    }
}
