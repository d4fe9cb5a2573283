//! `barq`: the Barq DB command-line tool. It works directly on a data directory (which it locks
//! for the duration of one command) or, with `--url`, on a running `barq serve` through its
//! HTTP API: collections, documents, bulk import, search, flush, compaction, statistics and
//! tiering. Run `barq --help`.
//!
//! Results go to stdout (text, or one JSON document with `--json`); errors go to stderr as one
//! `error: …` line, and the exit status tells what kind of failure it was (see
//! [`commands::exit_code`]).

mod args;
mod commands;
mod input;
mod output;
mod remote;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    init_tracing(matches!(cli.command, args::Command::Serve(_)));
    match commands::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the message holds.
            let message = e.message().replace(['\n', '\r'], " ");
            eprintln!("error: {message}");
            tracing::debug!(kind = %e.kind(), error = ?e, "command failed");
            ExitCode::from(commands::exit_code(e.kind()))
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings and errors only; for `serve`,
/// info too).
fn init_tracing(server: bool) {
    let default = if server { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
