//! Timestamps as RFC 3339 text (UTC, whole seconds), the form they take in
//! claims and metadata.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from_system(SystemTime::now())
    }

    pub fn from_system(t: SystemTime) -> Timestamp {
        Timestamp(
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }

    pub fn from_unix(secs: u64) -> Timestamp {
        Timestamp(secs)
    }

    pub fn unix(self) -> u64 {
        self.0
    }

    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_secs()))
    }

    /// RFC 3339 (`2027-01-01T00:00:00Z`) or a duration from now (`90d`, `12h`).
    pub fn parse_or_after(text: &str, now: Timestamp) -> Result<Timestamp, String> {
        if let Ok(t) = text.parse::<Timestamp>() {
            return Ok(t);
        }
        humantime::parse_duration(text)
            .map(|d| now.plus(d))
            .map_err(|_| format!("`{text}` is neither an RFC 3339 time nor a duration such as 90d"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(self.0))
        )
    }
}

impl std::str::FromStr for Timestamp {
    type Err = String;
    fn from_str(s: &str) -> Result<Timestamp, String> {
        humantime::parse_rfc3339_weak(s)
            .map(Timestamp::from_system)
            .map_err(|e| format!("bad time `{s}`: {e}"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_parses_durations() {
        let t: Timestamp = "2027-03-04T05:06:07Z".parse().unwrap();
        assert_eq!(t.to_string(), "2027-03-04T05:06:07Z");
        // 2027-03-04T05:06:07Z is 1804136767 seconds after the epoch (date -d ... +%s).
        assert_eq!(t.unix(), 1_804_136_767);
        assert_eq!(
            Timestamp::parse_or_after("1day", t).unwrap().unix(),
            t.unix() + 86_400
        );
        assert!(Timestamp::parse_or_after("soon", t).is_err());
    }
}
