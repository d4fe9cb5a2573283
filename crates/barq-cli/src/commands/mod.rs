//! The commands. Each opens the data directory (or, with `--url`, connects to a server), does
//! one thing through a [`Backend`], prints its result through [`Output`] and closes the database
//! (so the write-ahead log is fsynced in every durability mode before the process exits).

mod backend;
mod collection;
mod data;
mod import;
mod maintenance;
mod restore;
mod search;
mod serve;
mod tier;

use std::io::IsTerminal;
use std::time::Duration;

use barq_core::{Error, ErrorKind, Result};
use barq_storage::tiering::TieringOptions;
use barq_storage::{Database, Options, StorageTier};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::{Cli, CollectionCommand, Command, TierCommand};
use crate::output::Output;
use crate::remote::Client;
pub use backend::Backend;

/// What a command needs besides its own arguments.
#[derive(Debug)]
pub struct Context<'a> {
    pub db: Backend<'a>,
    pub out: Output,
    pub quiet: bool,
}

/// Run the command `cli` names.
pub fn run(cli: &Cli) -> Result<()> {
    if let Command::Serve(args) = &cli.command {
        return serve::serve(cli, args);
    }
    if let Command::Restore(args) = &cli.command {
        return restore::restore(cli, args);
    }
    // Check what can be checked without the database first, so that a bad argument never
    // creates or touches the data directory.
    if let Command::Collection(CollectionCommand::Create(args)) = &cli.command {
        collection::check_create(args)?;
    }
    // An empty BARQ_URL means local mode, as if it were unset.
    if let Some(url) = cli.url.as_deref().filter(|u| !u.is_empty()) {
        let admin_key = std::env::var("BARQ_ADMIN_API_KEY").ok();
        let client = Client::new(url, cli.api_key.clone(), admin_key)?;
        let ctx = Context {
            db: Backend::Remote(&client),
            out: Output::new(cli.json),
            quiet: cli.quiet,
        };
        return dispatch(cli, &ctx);
    }
    let create = matches!(
        cli.command,
        Command::Collection(CollectionCommand::Create(_))
    );
    let db = open(cli, create)?;
    let ctx = Context {
        db: Backend::Local(&db),
        out: Output::new(cli.json),
        quiet: cli.quiet,
    };
    let result = dispatch(cli, &ctx);
    // Close even after a failure (the writes before it are kept); the command's error wins.
    let closed = db.close();
    result.and(closed)
}

/// Run the command on `ctx`'s backend.
fn dispatch(cli: &Cli, ctx: &Context<'_>) -> Result<()> {
    match &cli.command {
        Command::Collection(CollectionCommand::Create(a)) => collection::create(ctx, a),
        Command::Collection(CollectionCommand::List) => collection::list(ctx),
        Command::Collection(CollectionCommand::Drop(a)) => collection::drop(ctx, &a.name),
        Command::Upsert(a) => data::upsert(ctx, a),
        Command::Import(a) => import::import(ctx, a),
        Command::Get(a) => data::get(ctx, a),
        Command::Delete(a) => data::delete(ctx, a),
        Command::Search(a) => search::search(ctx, a),
        Command::Flush(a) => maintenance::flush(ctx, &a.name),
        Command::Compact(a) => maintenance::compact(ctx, &a.name),
        Command::Index(a) => maintenance::index(ctx, a),
        Command::Count(a) => search::count(ctx, a),
        Command::Stats(a) => maintenance::stats(ctx, a.name.as_deref()),
        Command::Tier(TierCommand::Status) => tier::status(ctx),
        Command::Tier(TierCommand::Offload(a)) => tier::move_segments(ctx, a, StorageTier::Cold),
        Command::Tier(TierCommand::Hydrate(a)) => tier::move_segments(ctx, a, StorageTier::Hot),
        Command::Tier(TierCommand::Pin(a)) => tier::pin(ctx, a, true),
        Command::Tier(TierCommand::Unpin(a)) => tier::pin(ctx, a, false),
        Command::Tier(TierCommand::Maintenance) => tier::maintenance(ctx),
        Command::Serve(_) | Command::Restore(_) => unreachable!("handled above"),
    }
}

/// Open the data directory. It must exist unless `create`. (The engine itself refuses a
/// directory that holds other files but no manifest.)
fn open(cli: &Cli, create: bool) -> Result<Database> {
    open_with(cli, create, false, None)
}

/// [`open`], with the maintenance loop of the configuration and background compaction when
/// `maintain` (for a server), and the URL a server publishes as its writer's (`writer_url`).
fn open_with(
    cli: &Cli,
    create: bool,
    maintain: bool,
    writer_url: Option<String>,
) -> Result<Database> {
    let dir = &cli.data_dir;
    if !create && !dir.exists() {
        return Err(Error::not_found(format!(
            "data directory {} does not exist (create a collection with \
             `barq collection create`, or pass --data-dir)",
            dir.display()
        )));
    }
    let settings = barq_config::load(cli.config.as_deref())?;
    let cold_store = barq_config::build_cold_store(&settings.storage, dir)?;
    let mut options = options(cli, &settings, maintain);
    options.tiering.writer_url = writer_url;
    tracing::debug!(dir = %dir.display(), "opening database");
    let mut builder = Database::builder(dir).options(options);
    if let Some(spec) = cold_store {
        builder = builder.cold_store(spec);
    }
    builder.open()
}

/// The engine's options for `settings` and the command line; with the background work of a
/// server when `maintain`.
fn options(cli: &Cli, settings: &barq_config::Settings, maintain: bool) -> Options {
    let defaults = settings.tiering_options();
    Options {
        durability: cli.durability.to_durability(),
        tiering: TieringOptions {
            warm_dir: cli.warm_dir.clone().or(defaults.warm_dir.clone()),
            // A one-shot command must not move segments behind the user's back; maintenance
            // runs only when asked (`barq tier maintenance`). A server runs it periodically.
            maintenance_interval: if maintain {
                defaults.maintenance_interval
            } else {
                None
            },
            // Likewise uploads on seal and publishing to the bucket: `barq serve` runs them.
            upload_on_seal: if maintain {
                defaults.upload_on_seal
            } else {
                Some(false)
            },
            ..defaults
        },
        // Likewise compaction and index builds: a one-shot command that started one as it
        // finished would wait for it before exiting. `barq compact` and `barq index` run them.
        background_compaction: maintain,
        index_min_rows: settings.index.min_rows,
        index_delay: settings.index.delay.0,
        index: settings.index.params(),
        recall_sample_rate: settings.index.recall_sample_rate,
        ..Options::default()
    }
}

/// A bar over `len` bytes (a spinner when the length is unknown, e.g. stdin), drawn on stderr
/// only when it is a terminal and `--quiet` was not given.
fn progress_bar(len: Option<u64>, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let template = match len {
        Some(_) => {
            "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} \
             ({bytes_per_sec}, eta {eta}) {msg}"
        }
        None => "{spinner} [{elapsed_precise}] {bytes} ({bytes_per_sec}) {msg}",
    };
    let style = ProgressStyle::with_template(template)
        .expect("the template is a constant that parses")
        .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr()).with_style(style);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A spinner with `msg` and the elapsed time, for work of unknown length; drawn as
/// [`progress_bar`] is.
fn spinner(msg: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
        .expect("the template is a constant that parses");
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        .with_style(style)
        .with_message(msg.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Add to `e` how many documents were `verb` (imported, written) before it: the batches before
/// a failure stay written.
fn note_written(e: Error, written: u64, verb: &str) -> Error {
    let note = match written {
        0 => format!("nothing was {verb}"),
        1 => format!("the document before it was {verb}"),
        n => format!("the {n} documents before it were {verb}"),
    };
    Error::new(e.kind(), format!("{}; {note}", e.message()))
}

/// The exit status of a failed command (documented in `barq --help`).
pub fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::NotFound => 1,
        ErrorKind::InvalidArgument => 2,
        ErrorKind::Conflict | ErrorKind::ReadOnly => 3,
        ErrorKind::Unavailable
        | ErrorKind::DataCorruption
        | ErrorKind::Closed
        | ErrorKind::Internal => 4,
    }
}
