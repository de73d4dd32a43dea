//! The log: text lines for people or JSON lines for log shippers (`log.format`), on stderr,
//! filtered by `RUST_LOG` when it is set, else by `log.level` (docs/configuration.md).
//!
//! Every line about one input record carries its `id`, `store` and stream sequence `seq` as
//! fields (see the runner); with `json` they are top-level keys of the line's object.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Sets up the process's log. Call once, before anything logs.
pub fn init(log: &LogConfig) {
    let (filter, bad_rust_log) = filter(&log.level);
    // Colours only on a terminal: a file, a pipe or journald would keep the escape codes.
    let on_terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(on_terminal);
    if log.format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    if let Some(error) = bad_rust_log {
        tracing::warn!(%error, level = %log.level, "RUST_LOG does not parse; using log.level instead.");
    }
}

/// `RUST_LOG` when set and valid, else `level`; and why `RUST_LOG` was not used, if it was set.
fn filter(level: &str) -> (EnvFilter, Option<String>) {
    match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => match EnvFilter::try_new(&directives) {
            Ok(filter) => (filter, None),
            Err(err) => (EnvFilter::new(level), Some(err.to_string())),
        },
        _ => (EnvFilter::new(level), None),
    }
}
