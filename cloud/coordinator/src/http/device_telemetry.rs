//! `POST /v1/devices/{id}/telemetry`: telemetry over HTTP, for devices that
//! have no MQTT session — a browser page (`wasmops web --coordinator`).
//!
//! Data path: the device's own token (`device:{id}`, role device) → the body
//! read within [`MAX_REPORT_BYTES`] → parsed and checked as the MQTT path
//! checks a report → [`crate::telemetry::store_checked`], a batch of one (the
//! same de-duplication by (device, stream, seq), monitoring fold and
//! prediction records) → 200 with the acknowledged sequence numbers
//! ([`Ack`]), sent only after the commit. A refused report gets 4xx naming
//! why, and the device drops it; a database fault gets 5xx, and the device
//! sends it again.
//!
//! Pages call from their own origin: every answer carries CORS headers for
//! any origin (the credential is a bearer token, never a cookie), and the
//! preflight is answered here.
//!
//! A page's token is public (it ships in the page), so each device's reports
//! are paced ([`ReportPace`]): a burst of [`BURST`], then one a second;
//! past that, 429 with `Retry-After`, and the page sends it again later.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use wasmops_protocol::telemetry::{Ack, MAX_REPORT_BYTES, Report};

use super::{Api, ApiError, ApiResult, allow};
use crate::auth::Action;

/// The largest body taken: a report at its limit.
pub(super) const MAX_BODY_BYTES: usize = MAX_REPORT_BYTES;

/// Reports a device may post at once before the pace applies. A page sends
/// one every 10 s by default, and one when it is hidden.
pub const BURST: f64 = 30.0;
/// Reports a second a device may keep posting.
pub const PER_SECOND: f64 = 1.0;

/// Per-device token buckets for HTTP reports.
#[derive(Debug, Default)]
pub struct ReportPace(
    std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
);

impl ReportPace {
    /// Takes one report's token for `device`, or says how many seconds
    /// until there is one.
    pub fn take(&self, device: &str) -> Result<(), u64> {
        let now = std::time::Instant::now();
        let mut buckets = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, at) = buckets.entry(device.to_string()).or_insert((BURST, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * PER_SECOND).min(BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / PER_SECOND).ceil().max(1.0) as u64)
        }
    }
}

pub(super) async fn post(
    state: Api,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let State(c) = state;
    let who = allow(&c, &headers, Action::Report).await?;
    if who.name != crate::enrolment::credential_name(&id) {
        return Err(ApiError::client(
            StatusCode::FORBIDDEN,
            format!("token `{}` does not report for device `{id}`", who.name),
        ));
    }
    if let Err(wait) = c.http_reports.take(&id) {
        let mut r = ApiError::client(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "device `{id}` posts reports faster than {PER_SECOND} a second (after a burst of {BURST}); send it again in {wait} s"
            ),
        )
        .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return Ok(r);
    }
    let report: Report = serde_json::from_slice(&body).map_err(|e| {
        ApiError::client(
            StatusCode::BAD_REQUEST,
            format!("the body is not a telemetry report: {e}"),
        )
    })?;
    if report.device != id {
        return Err(ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the report says it is from `{}`, posted for `{id}`",
                report.device
            ),
        ));
    }
    report.check().map_err(|e| {
        ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("telemetry report {} refused: {e}", report.seq),
        )
    })?;
    let mut acks =
        crate::telemetry::store_checked(&c, &[report], Default::default(), crate::now_ms()).await?;
    let seqs = acks.remove(&id).unwrap_or_default();
    Ok(axum::Json(Ack { seqs }).into_response())
}

/// The CORS preflight: POST with a bearer token and a JSON body, from any origin.
pub(super) async fn preflight() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    r
}

/// Every answer of the route (refusals and the body limit's 413 included)
/// readable by a page of any origin.
pub(super) async fn cors(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_pace_per_device() {
        let pace = ReportPace::default();
        for _ in 0..BURST as usize {
            assert_eq!(pace.take("web-1"), Ok(()));
        }
        assert_eq!(pace.take("web-1"), Err(1));
        // Another device has its own bucket.
        assert_eq!(pace.take("web-2"), Ok(()));
    }
}
