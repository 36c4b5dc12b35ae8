//! The daemon's side of one exposed service: renew every period, give up on
//! the first failed or unanswered renewal, stop cleanly on Ctrl+C.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::time::{Duration, Timestamp};

/// The reason a renewal that got no answer in time gives.
pub const RENEW_TIMEOUT_REASON: &str = "renewal timed out";

/// Client-side constants of peer expose (SEMANTICS.md "Peer expose").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeepAliveConfig {
    /// Time from one successful renewal to the next request.
    pub renew_period: Duration,
    /// How long one renewal may take.
    pub renew_timeout: Duration,
    /// How long a stop may take before the client leaves anyway.
    pub stop_timeout: Duration,
}

impl Default for KeepAliveConfig {
    fn default() -> Self {
        KeepAliveConfig {
            renew_period: Duration::from_secs(30),
            renew_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(5),
        }
    }
}

/// Where the machine is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum KeepAliveState {
    /// The session is up; the next renewal goes out at `next_renew`.
    Active { next_renew: Timestamp },
    /// A renewal is in flight and must be answered before `deadline`.
    Renewing { deadline: Timestamp },
    /// A stop is in flight; the client leaves at `deadline` regardless.
    Stopping { deadline: Timestamp },
    /// Done; `clean` when the server acknowledged the stop.
    Stopped { clean: bool },
    /// Gave up: the CLI ends with this error; the server expires the
    /// session by TTL.
    Failed { reason: String },
}

/// A message for the management server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Renew,
    Stop,
}

/// What the CLI reports when the machine finishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum KeepAliveEvent {
    Failed { reason: String },
    Stopped { clean: bool },
}

/// The keep-alive machine of one exposed service.
///
/// Feed it with `handle_*` and [`stop`](Self::stop); after each call send
/// every [`poll_transmit`](Self::poll_transmit), report every
/// [`poll_event`](Self::poll_event) and arm a timer for
/// [`poll_timeout`](Self::poll_timeout). Answers that do not fit the current
/// state (a renewal acknowledged after the stop went out, a second stop) are
/// ignored: on a real network late and duplicate replies are normal.
#[derive(Debug, Clone)]
pub struct KeepAlive {
    config: KeepAliveConfig,
    state: KeepAliveState,
    transmits: VecDeque<Request>,
    events: VecDeque<KeepAliveEvent>,
}

impl KeepAlive {
    /// A machine for a session the server created at `now`.
    pub fn new(config: KeepAliveConfig, now: Timestamp) -> Self {
        KeepAlive {
            config,
            state: KeepAliveState::Active {
                next_renew: now + config.renew_period,
            },
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> &KeepAliveState {
        &self.state
    }

    /// Whether the machine reached `Stopped` or `Failed`.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.state,
            KeepAliveState::Stopped { .. } | KeepAliveState::Failed { .. }
        )
    }

    /// Acts on whatever deadline has passed at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        match self.state {
            KeepAliveState::Active { next_renew } if now >= next_renew => {
                self.state = KeepAliveState::Renewing {
                    deadline: now + self.config.renew_timeout,
                };
                self.transmits.push_back(Request::Renew);
            }
            KeepAliveState::Renewing { deadline } if now >= deadline => {
                self.fail(RENEW_TIMEOUT_REASON.to_string());
            }
            KeepAliveState::Stopping { deadline } if now >= deadline => {
                self.finish(false);
            }
            _ => {}
        }
    }

    /// The server renewed the session.
    pub fn handle_renew_ok(&mut self, now: Timestamp) {
        if let KeepAliveState::Renewing { .. } = self.state {
            self.state = KeepAliveState::Active {
                next_renew: now + self.config.renew_period,
            };
        }
    }

    /// The server refused the renewal or could not be reached.
    pub fn handle_renew_failed(&mut self, reason: &str, _now: Timestamp) {
        if let KeepAliveState::Renewing { .. } = self.state {
            self.fail(reason.to_string());
        }
    }

    /// Ctrl+C or SIGTERM: send a stop and wait at most `stop_timeout`.
    pub fn stop(&mut self, now: Timestamp) {
        if let KeepAliveState::Active { .. } | KeepAliveState::Renewing { .. } = self.state {
            self.state = KeepAliveState::Stopping {
                deadline: now + self.config.stop_timeout,
            };
            self.transmits.push_back(Request::Stop);
        }
    }

    /// The server acknowledged the stop.
    pub fn handle_stop_done(&mut self, _now: Timestamp) {
        if let KeepAliveState::Stopping { .. } = self.state {
            self.finish(true);
        }
    }

    /// The next message to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Request> {
        self.transmits.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next; `None`
    /// once finished.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match self.state {
            KeepAliveState::Active { next_renew } => Some(next_renew),
            KeepAliveState::Renewing { deadline } | KeepAliveState::Stopping { deadline } => {
                Some(deadline)
            }
            KeepAliveState::Stopped { .. } | KeepAliveState::Failed { .. } => None,
        }
    }

    /// The next thing to tell the user.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<KeepAliveEvent> {
        self.events.pop_front()
    }

    fn fail(&mut self, reason: String) {
        self.events.push_back(KeepAliveEvent::Failed {
            reason: reason.clone(),
        });
        self.state = KeepAliveState::Failed { reason };
    }

    fn finish(&mut self, clean: bool) {
        self.events.push_back(KeepAliveEvent::Stopped { clean });
        self.state = KeepAliveState::Stopped { clean };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: i64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    #[test]
    fn renew_cycle_then_clean_stop() {
        let mut ka = KeepAlive::new(KeepAliveConfig::default(), secs(0));
        assert_eq!(ka.poll_timeout(), Some(secs(30)));
        ka.handle_timeout(secs(29));
        assert_eq!(ka.poll_transmit(), None);
        ka.handle_timeout(secs(30));
        assert_eq!(ka.poll_transmit(), Some(Request::Renew));
        assert_eq!(ka.poll_timeout(), Some(secs(40)));
        ka.handle_renew_ok(secs(31));
        assert_eq!(ka.poll_timeout(), Some(secs(61)));
        ka.stop(secs(45));
        assert_eq!(ka.poll_transmit(), Some(Request::Stop));
        ka.handle_stop_done(secs(46));
        assert_eq!(
            ka.poll_event(),
            Some(KeepAliveEvent::Stopped { clean: true })
        );
        assert!(ka.is_finished());
        assert_eq!(ka.poll_timeout(), None);
    }

    #[test]
    fn renewal_timeout_and_unclean_stop() {
        let mut ka = KeepAlive::new(KeepAliveConfig::default(), secs(0));
        ka.handle_timeout(secs(30));
        ka.handle_timeout(secs(40));
        assert_eq!(
            ka.poll_event(),
            Some(KeepAliveEvent::Failed {
                reason: RENEW_TIMEOUT_REASON.to_string()
            })
        );
        // A late answer does not revive it.
        ka.handle_renew_ok(secs(41));
        assert!(ka.is_finished());

        let mut ka = KeepAlive::new(KeepAliveConfig::default(), secs(0));
        ka.stop(secs(1));
        ka.handle_timeout(secs(5));
        assert_eq!(ka.poll_event(), None);
        ka.handle_timeout(secs(6));
        assert_eq!(
            ka.poll_event(),
            Some(KeepAliveEvent::Stopped { clean: false })
        );
    }
}
