//! How every meshplane program logs (`meshplane-server`, and the
//! `meshplane` daemon, proxy and relay): to standard error, through a
//! tracing filter, as human-readable text or as one JSON object per line
//! for log collectors (`--log-format json`).
//!
//! Colour codes are written only when standard error is a terminal, so log
//! files and journald get plain text.

use std::io::IsTerminal;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One line of text per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the
    /// event's `fields` (its message among them) and the enclosing `span`s.
    Json,
}

/// Installs the process's logger: events that `filter` (tracing's
/// `EnvFilter` syntax, such as `info` or `meshplane_server=debug`) lets
/// through go to stderr in `format`. An invalid filter falls back to
/// `info` rather than silencing the program.
pub fn init(format: Format, filter: &str) {
    let filter = filter_of(filter);
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    match format {
        Format::Text => builder.init(),
        Format::Json => builder.json().init(),
    }
}

/// Library targets held at `error` unless the filter names them: their
/// warnings describe other programs' well-formed packets, not faults.
/// NetBird's ICE puts an attribute after FINGERPRINT in every connectivity
/// check (which RFC 5389 says to ignore), and `stun_types` warns about each
/// one, several lines a second for every NetBird peer.
const QUIET: &[&str] = &["stun_types"];

/// The filter `init` installs: `filter` (or `info` when it is invalid),
/// plus `error` for each [`QUIET`] target it does not mention.
fn filter_of(filter: &str) -> EnvFilter {
    let mut parsed = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    for target in QUIET.iter().filter(|t| !filter.contains(*t)) {
        let directive = format!("{target}=error")
            .parse()
            .expect("a target=level directive parses");
        parsed = parsed.add_directive(directive);
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::filter_of;

    #[test]
    fn quiet_targets_log_errors_only_unless_named() {
        let default = filter_of("info").to_string();
        assert!(default.contains("stun_types=error"), "{default}");
        let named = filter_of("info,stun_types=debug").to_string();
        assert!(named.contains("stun_types=debug"), "{named}");
        assert!(!named.contains("stun_types=error"), "{named}");
        let invalid = filter_of("=[").to_string();
        assert!(invalid.contains("stun_types=error"), "{invalid}");
    }
}
