//! Time as a value. The core never reads a clock: every entry point that
//! depends on time takes a [`Timestamp`] (and durations as [`Duration`]).

use std::fmt;
use std::ops::{Add, Sub};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch (UTC).
///
/// Serialises as an RFC 3339 string (`2024-01-01T00:00:00Z`), the form the
/// REST API uses; deserialises from that string or from a bare integer of
/// milliseconds, which keeps test vectors short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The Unix epoch; used as "never" for optional times kept as plain values.
    pub const EPOCH: Timestamp = Timestamp(0);

    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub const fn from_secs(s: i64) -> Self {
        Timestamp(s * 1000)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The RFC 3339 form with millisecond precision when needed.
    pub fn to_rfc3339(self) -> String {
        match DateTime::<Utc>::from_timestamp_millis(self.0) {
            Some(dt) => dt.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            None => self.0.to_string(),
        }
    }

    /// Parses an RFC 3339 string.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|dt| Timestamp(dt.timestamp_millis()))
    }

    /// `self + d`, saturating instead of overflowing.
    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(d.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

/// Accepts milliseconds since the epoch or RFC 3339 text. A visitor rather
/// than an untagged enum: the server decodes every stored peer's timestamps
/// on each account load, and an untagged enum buffers each value and builds
/// an error message for every variant that does not match.
impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TimestampVisitor)
    }
}

struct TimestampVisitor;

impl serde::de::Visitor<'_> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a timestamp: milliseconds since the epoch or RFC 3339 text")
    }

    fn visit_i64<E: serde::de::Error>(self, ms: i64) -> Result<Timestamp, E> {
        Ok(Timestamp(ms))
    }

    fn visit_u64<E: serde::de::Error>(self, ms: u64) -> Result<Timestamp, E> {
        i64::try_from(ms)
            .map(Timestamp)
            .map_err(|_| E::custom(format!("timestamp {ms} is out of range")))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
        Timestamp::parse_rfc3339(s)
            .ok_or_else(|| E::custom(format!("invalid timestamp {s:?}: expected RFC 3339")))
    }
}

/// A span of time in milliseconds. Serialises as an integer of milliseconds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Duration(pub i64);

impl Duration {
    pub const fn from_millis(ms: i64) -> Self {
        Duration(ms)
    }

    pub const fn from_secs(s: i64) -> Self {
        Duration(s * 1000)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(d.0))
    }
}

impl Sub<Timestamp> for Timestamp {
    type Output = Duration;
    fn sub(self, other: Timestamp) -> Duration {
        Duration(self.0.saturating_sub(other.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::parse_rfc3339("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-01T12:00:00Z");
        let t2: Timestamp = serde_json::from_str("\"2024-05-01T12:00:00.250Z\"").unwrap();
        assert_eq!(t2.0 - t.0, 250);
        let t3: Timestamp = serde_json::from_str("1000").unwrap();
        assert_eq!(t3, Timestamp::from_secs(1));
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }
}
