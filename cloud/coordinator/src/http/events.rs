//! `GET /v1/events?kind=A,B`: the fleet's events as Server-Sent Events (the
//! wire format is `wasmops_api`'s `events` module). Each reader gets its own
//! receiver on [`Coordinator::internal_events`]; a reader slower than that
//! buffer (1024 events) is told how many it missed and goes on. The reader's
//! token is checked again every minute: a revoked or expired one ends the
//! stream, and so does the coordinator's shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::{Api, ApiError, ApiResult, allow, bearer};
use crate::Coordinator;
use crate::auth::{Action, Checked};

/// How often a live stream re-checks its reader's token.
const RECHECK: Duration = Duration::from_secs(60);
/// Kinds one reader may name, and how long each: events have short names.
const MAX_KINDS: usize = 32;
const MAX_KIND_LEN: usize = 64;

#[derive(Deserialize)]
pub(super) struct EventsQuery {
    kind: Option<String>,
}

/// What one open stream holds between items.
struct Reader {
    c: Arc<Coordinator>,
    token: String,
    kinds: Vec<String>,
    rx: tokio::sync::broadcast::Receiver<wasmops_api::Event>,
    stopping: tokio::sync::watch::Receiver<bool>,
    greeted: bool,
    recheck: tokio::time::Instant,
}

pub(super) async fn events(
    State(c): Api,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    let kinds: Vec<String> = q
        .kind
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    if kinds.len() > MAX_KINDS || kinds.iter().any(|k| k.len() > MAX_KIND_LEN) {
        return Err(ApiError::client(
            StatusCode::BAD_REQUEST,
            format!("at most {MAX_KINDS} event kinds of at most {MAX_KIND_LEN} characters each"),
        ));
    }
    let reader = Reader {
        token: bearer(&headers)?.to_string(),
        rx: c.internal_events.subscribe(),
        stopping: c.stopping.subscribe(),
        c,
        kinds,
        greeted: false,
        recheck: tokio::time::Instant::now() + RECHECK,
    };
    let stream = futures::stream::unfold(reader, |mut r| async move {
        let next = r.next().await?;
        Some((Ok::<_, Infallible>(next), r))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

impl Reader {
    /// The next item to send, or `None` to end the stream.
    async fn next(&mut self) -> Option<SseEvent> {
        if !self.greeted {
            // At once, so the reader knows it is subscribed.
            self.greeted = true;
            return Some(SseEvent::default().comment("subscribed"));
        }
        loop {
            tokio::select! {
                // The coordinator is shutting down: end, so it need not wait.
                _ = stopped(&mut self.stopping) => return None,
                e = self.rx.recv() => match e {
                    Ok(e) if wasmops_api::wants(&self.kinds, &e.kind) => {
                        return Some(
                            SseEvent::default()
                                .event(e.kind.clone())
                                .json_data(&e)
                                .expect("events serialise"),
                        );
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        return Some(
                            SseEvent::default()
                                .event(wasmops_api::MISSED)
                                .json_data(wasmops_api::Missed { missed })
                                .expect("serialises"),
                        );
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep_until(self.recheck) => {
                    self.recheck = tokio::time::Instant::now() + RECHECK;
                    match crate::auth::check(&self.c.db, &self.token).await {
                        Ok(Checked::Valid(_)) => {}
                        Ok(_) => return None,
                        // The database's trouble is not the reader's: keep going.
                        Err(e) => tracing::warn!("cannot re-check an event reader's token: {e}"),
                    }
                }
            }
        }
    }
}

/// Resolves once `stopping` turns true (never if its sender is gone).
async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    while !*stopping.borrow_and_update() {
        if stopping.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
