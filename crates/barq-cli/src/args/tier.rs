//! `barq tier …`: the tiering subcommands.

use clap::{Args, Subcommand};

pub(super) const TIER_AFTER_HELP: &str = "\
A collection's sealed segments (what `barq flush` writes) live in one of three tiers:
  hot   the data directory
  warm  a second local directory, given with --warm-dir or BARQ_WARM_DIR
  cold  object storage; for the command line this is the directory DATA_DIR/cold
Reads stay correct wherever a segment is; cold segments are read by range through a local
cache. Documents not flushed yet are always hot.

Examples:
  barq tier status
  barq tier offload docs --all
  barq tier hydrate docs --segment 3
  barq tier pin docs
  barq tier maintenance";

#[derive(Debug, Subcommand)]
pub enum TierCommand {
    /// Show every segment's tier, size, pin and accesses, and the tiering counters.
    #[command(after_help = "\
The counters (uploads, cache hits, …) count since the database was opened, that is during this
command only (with --url: since the server started); `barq tier maintenance` reports what a
pass did.

Examples:
  barq tier status
  barq --json tier status")]
    Status,

    /// Move segments to the cold tier (object storage).
    #[command(after_help = "\
With --all, every segment not already cold is moved, one after another, with a progress bar.
A segment that fails to move stays where it was; with --all the others are still moved, the
summary is printed, and the exit status is that of the first failure.

Examples:
  barq tier offload docs --all
  barq tier offload docs --segment 3
  barq --json tier offload docs --all")]
    Offload(MoveArgs),

    /// Bring segments back to the hot tier (the data directory).
    #[command(after_help = "\
With --all, every segment not already hot is moved, one after another, with a progress bar.
A hydrated segment keeps its copy in the cold store, so offloading it again uploads nothing.
A segment that fails to move stays where it was; with --all the others are still moved, the
summary is printed, and the exit status is that of the first failure.

Examples:
  barq tier hydrate docs --segment 3
  barq tier hydrate docs --all")]
    Hydrate(MoveArgs),

    /// Pin a collection, or one of its segments, to the hot tier.
    #[command(after_help = "\
Maintenance never moves a pinned segment out of the hot tier and brings it back if it is
elsewhere. Pinning does not move anything by itself: run `barq tier hydrate` or
`barq tier maintenance`.

Examples:
  barq tier pin docs
  barq tier pin docs --segment 3")]
    Pin(PinArgs),

    /// Undo `barq tier pin`.
    #[command(after_help = "\
A segment stays pinned while its collection is.

Examples:
  barq tier unpin docs
  barq tier unpin docs --segment 3")]
    Unpin(PinArgs),

    /// Run one pass of tiering maintenance now.
    #[command(after_help = "\
One pass: the tiering policy plans moves (by age and last access, honouring pins) and they are
executed; cold-store objects no segment references are deleted once older than the grace
period; access statistics are saved. The report is printed; the exit status is 4 if a move or
the cleanup failed (failed moves are planned again by the next pass).

Examples:
  barq tier maintenance
  barq --json tier maintenance")]
    Maintenance,
}

#[derive(Debug, Args)]
pub struct MoveArgs {
    /// Collection name.
    pub name: String,
    #[command(flatten)]
    pub which: WhichSegments,
}

/// `--segment ID` or `--all`: exactly one.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct WhichSegments {
    /// Only this segment (see `barq tier status` for ids).
    #[arg(long, value_name = "ID")]
    pub segment: Option<u64>,
    /// Every segment of the collection.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct PinArgs {
    /// Collection name.
    pub name: String,
    /// Only this segment [default: the whole collection].
    #[arg(long, value_name = "ID")]
    pub segment: Option<u64>,
}
