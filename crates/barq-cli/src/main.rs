//! `barq`: the Barq DB command-line tool. It works directly on a data directory (which it locks
//! for the duration of one command): collections, documents, bulk import, search, flush,
//! compaction and statistics. Run `barq --help`.
//!
//! Results go to stdout (text, or one JSON document with `--json`); errors go to stderr as one
//! `error: …` line, and the exit status tells what kind of failure it was (see
//! [`commands::exit_code`]).

mod args;
mod commands;
mod input;
mod output;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    init_tracing();
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

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings and errors only).
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
