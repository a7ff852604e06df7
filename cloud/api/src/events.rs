//! The fleet's events as they travel on `GET /v1/events`: Server-Sent Events,
//! one per [`Event`] (`event:` its kind, `id:` its number since the
//! coordinator started, `data:` the JSON), a `missed` event when the reader
//! fell behind the coordinator's buffer, and a comment line every 15 s so a
//! reader and any proxy between see the stream alive.
//!
//! People and programs watch the fleet here with their API token; MQTT
//! logins are for devices and the coordinator only.

use serde::{Deserialize, Serialize};

/// One fleet event (ModelRegistered, DeploymentStarted, ModelDeployed,
/// DeviceOffline, RolloutStarted, WaveCompleted, RolloutAborted,
/// DataDriftDetected, PredictionDriftDetected, DataQualityAlert,
/// PerformanceDegraded, RunFinished, ValidationFailed, ApprovalRequired, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: String,
    pub at_ms: i64,
    /// What it is about: `model@version`, a device id, a deployment id.
    pub subject: String,
    pub detail: serde_json::Value,
}

/// The SSE event name of a gap: its data is [`Missed`].
pub const MISSED: &str = "missed";

/// How many events a slow reader did not get.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Missed {
    pub missed: u64,
}

/// Event kinds a reader asks for (`?kind=A,B`): empty is all.
pub fn wants(kinds: &[String], kind: &str) -> bool {
    kinds.is_empty() || kinds.iter().any(|k| k == kind)
}

/// One message of an SSE stream, as [`SseParser`] assembles it.
#[derive(Debug, Clone, PartialEq)]
pub struct SseMessage {
    pub event: String,
    pub data: String,
}

/// Assembles SSE messages from lines (the subset the coordinator writes:
/// `event:`, `data:`, `id:`, comments, blank line ends a message). Lines
/// over `max_line` bytes are refused by the reader, not here.
#[derive(Debug, Default)]
pub struct SseParser {
    event: String,
    data: String,
}

impl SseParser {
    /// Feeds one line without its end; returns a message when it completes one.
    pub fn line(&mut self, line: &str) -> Option<SseMessage> {
        if line.is_empty() {
            if self.data.is_empty() && self.event.is_empty() {
                return None;
            }
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            return Some(SseMessage {
                event: if event.is_empty() {
                    "message".into()
                } else {
                    event
                },
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value);
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_assembled_and_comments_skipped() {
        let mut p = SseParser::default();
        let mut got = vec![];
        for l in [
            ": alive",
            "event: ModelDeployed",
            "id: 7",
            "data: {\"a\":",
            "data: 1}",
            "",
            "",
            "data: x",
            "",
        ] {
            got.extend(p.line(l));
        }
        assert_eq!(
            got,
            vec![
                SseMessage {
                    event: "ModelDeployed".into(),
                    data: "{\"a\":\n1}".into()
                },
                SseMessage {
                    event: "message".into(),
                    data: "x".into()
                }
            ]
        );
    }

    #[test]
    fn an_empty_kind_list_wants_everything() {
        assert!(wants(&[], "X"));
        assert!(wants(&["X".into()], "X"));
        assert!(!wants(&["Y".into()], "X"));
    }
}
