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
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    match format {
        Format::Text => builder.init(),
        Format::Json => builder.json().init(),
    }
}
