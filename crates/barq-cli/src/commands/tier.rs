//! `barq tier status|offload|hydrate|pin|unpin|maintenance`: the tiering API of the engine.

use std::time::{SystemTime, UNIX_EPOCH};

use barq_core::{Error, ErrorKind, Result};
use barq_storage::StorageTier;
use barq_storage::tiering::{MaintenanceReport, MoveError, MoveOutcome};
use indicatif::HumanBytes;
use serde::Serialize;

use super::Context;
use crate::args::{MoveArgs, PinArgs};
use crate::output::{format_utc_ms, plural};

mod status;
pub use status::status;

/// `segment 3 of "docs" → cold (2025-01-01 00:00:00 UTC): message`.
pub(super) fn describe_error(e: &MoveError) -> String {
    format!(
        "segment {} of \"{}\" → {} ({}): {}",
        e.segment_id,
        e.collection,
        e.to,
        format_utc_ms(e.at_ms),
        one_line(&e.error)
    )
}

pub(super) fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[derive(Debug, Serialize)]
struct Moved<'a> {
    collection: &'a str,
    to: StorageTier,
    moves: Vec<MoveOutcome>,
    failed: Vec<MoveError>,
    bytes_moved: u64,
}

/// `tier offload` (`to` = Cold) and `tier hydrate` (`to` = Hot): move one segment, or every
/// segment not already in `to`, one after another.
pub fn move_segments(ctx: &Context<'_>, args: &MoveArgs, to: StorageTier) -> Result<()> {
    let segments = ctx.db.segments(&args.name)?;
    // (id, bytes it will transfer at most)
    let todo: Vec<(u64, u64)> = match args.which.segment {
        Some(id) => {
            let s = segments.iter().find(|s| s.id == id).ok_or_else(|| {
                Error::not_found(format!("collection \"{}\" has no segment {id}", args.name))
            })?;
            vec![(id, if s.tier == to { 0 } else { s.size_bytes })]
        }
        None => segments
            .iter()
            .filter(|s| s.tier != to)
            .map(|s| (s.id, s.size_bytes))
            .collect(),
    };
    let mut result = Moved {
        collection: &args.name,
        to,
        moves: Vec::new(),
        failed: Vec::new(),
        bytes_moved: 0,
    };
    let bar = super::progress_bar(Some(todo.iter().map(|t| t.1).sum()), ctx.quiet);
    let (ids, sizes): (Vec<u64>, Vec<u64>) = todo.iter().copied().unzip();
    let progress = |i: usize, id: u64, bytes: u64| {
        bar.set_message(format!("segment {id} ({}/{})", i + 1, todo.len()));
        bar.set_position(bytes);
    };
    let batch = ctx
        .db
        .move_segments(&args.name, &ids, to, &sizes, &progress)?;
    let mut first_error = None;
    result.bytes_moved = batch.bytes_moved();
    result.moves = batch.moves;
    for (id, e) in batch.failures {
        // One segment asked for: its error is the command's, as for any other command.
        if !args.which.all {
            bar.finish_and_clear();
            return Err(e);
        }
        bar.suspend(|| eprintln!("error: segment {id}: {}", one_line(e.message())));
        first_error.get_or_insert(e.kind());
        result.failed.push(MoveError {
            collection: args.name.clone(),
            segment_id: id,
            to,
            error: e.message().to_owned(),
            at_ms: now_ms(),
        });
    }
    bar.finish_and_clear();
    ctx.out
        .emit(&result, || describe_moves(&result, segments.len()))?;
    match first_error {
        None => Ok(()),
        Some(kind) => Err(Error::new(
            kind,
            format!(
                "could not move {} of \"{}\" to {to} (see above){}",
                plural(result.failed.len() as u64, "segment"),
                args.name,
                if result.moves.is_empty() {
                    ""
                } else {
                    "; the others were moved"
                }
            ),
        )),
    }
}

fn describe_moves(m: &Moved<'_>, segments: usize) -> String {
    if m.moves.is_empty() && m.failed.is_empty() {
        return match segments {
            0 => format!("nothing to move: \"{}\" has no segments", m.collection),
            _ => format!(
                "nothing to move: every segment of \"{}\" is already {}",
                m.collection, m.to
            ),
        };
    }
    let mut text = String::new();
    let mut moved = 0;
    for o in &m.moves {
        if o.from == o.to {
            text.push_str(&format!("segment {}: already {}\n", o.segment_id, o.to));
        } else {
            moved += 1;
            text.push_str(&format!(
                "segment {}: {} → {}, {}\n",
                o.segment_id,
                o.from,
                o.to,
                HumanBytes(o.bytes)
            ));
        }
    }
    for e in &m.failed {
        text.push_str(&format!("segment {}: failed\n", e.segment_id));
    }
    text.push_str(&format!(
        "moved {} of \"{}\" to {}, {} transferred",
        plural(moved, "segment"),
        m.collection,
        m.to,
        HumanBytes(m.bytes_moved)
    ));
    if !m.failed.is_empty() {
        text.push_str(&format!(
            "; {} failed",
            plural(m.failed.len() as u64, "segment")
        ));
    }
    text
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug, Serialize)]
struct Pinned<'a> {
    collection: &'a str,
    segment: Option<u64>,
    pinned: bool,
    changed: bool,
}

/// `tier pin` (`pinned`) and `tier unpin`.
pub fn pin(ctx: &Context<'_>, args: &PinArgs, pinned: bool) -> Result<()> {
    let name = args.name.as_str();
    let segments = ctx.db.segments(name)?;
    let collection_pinned = ctx
        .db
        .tiering_status()?
        .collections
        .iter()
        .any(|c| c.name == name && c.pinned);
    let (before, what, not_hot) = match args.segment {
        Some(id) => {
            let s = segments.iter().find(|s| s.id == id).ok_or_else(|| {
                Error::not_found(format!("collection \"{name}\" has no segment {id}"))
            })?;
            let not_hot = u64::from(s.tier != StorageTier::Hot);
            (s.pinned, format!("segment {id} of \"{name}\""), not_hot)
        }
        None => {
            let not_hot = segments.iter().filter(|s| s.tier != StorageTier::Hot);
            (
                collection_pinned,
                format!("collection \"{name}\""),
                not_hot.count() as u64,
            )
        }
    };
    ctx.db.set_pin(name, args.segment, pinned)?;
    let result = Pinned {
        collection: name,
        segment: args.segment,
        pinned,
        changed: before != pinned,
    };
    ctx.out.emit(&result, || {
        let verb = if pinned { "pinned" } else { "unpinned" };
        let mut text = if result.changed {
            format!("{verb} {what}")
        } else {
            format!("{what} was already {verb}")
        };
        if pinned && not_hot > 0 {
            let (which, hydrate) = match (args.segment, not_hot) {
                (Some(id), _) => ("it is not hot now".to_owned(), format!("--segment {id}")),
                (None, 1) => ("1 segment is not hot now".to_owned(), "--all".to_owned()),
                (None, n) => (format!("{n} segments are not hot now"), "--all".to_owned()),
            };
            text.push_str(&format!(
                "; {which}: run `barq tier hydrate {name} {hydrate}` or `barq tier maintenance`"
            ));
        }
        if !pinned && args.segment.is_some() && collection_pinned {
            text.push_str(" (it stays pinned while its collection is)");
        }
        text
    })
}

/// `tier maintenance`: one pass; failures are printed, then reported by the exit status.
pub fn maintenance(ctx: &Context<'_>) -> Result<()> {
    let report = ctx.db.maintenance()?;
    ctx.out.emit(&report, || describe_report(&report))?;
    let failed = report.moves_failed.len() as u64;
    if failed == 0 && report.gc_error.is_none() {
        return Ok(());
    }
    let mut what = Vec::new();
    if failed > 0 {
        what.push(format!(
            "{} of {} failed",
            plural(failed, "move"),
            report.planned
        ));
    }
    if report.gc_error.is_some() {
        what.push("deleting orphaned objects failed".to_owned());
    }
    Err(Error::new(
        ErrorKind::Unavailable,
        format!("maintenance: {} (see above)", what.join("; ")),
    ))
}

fn describe_report(r: &MaintenanceReport) -> String {
    let mut text = format!(
        "maintenance: {} planned, {} done, {} failed; {} moved; {} deleted\n",
        plural(r.planned as u64, "move"),
        r.moves_done.len(),
        r.moves_failed.len(),
        HumanBytes(r.bytes_moved),
        plural(r.orphans_deleted, "orphaned object"),
    );
    for o in &r.moves_done {
        text.push_str(&format!(
            "  segment {} of \"{}\": {} → {}, {}\n",
            o.segment_id,
            o.collection,
            o.from,
            o.to,
            HumanBytes(o.bytes)
        ));
    }
    for e in &r.moves_failed {
        text.push_str(&format!("  failed: {}\n", describe_error(e)));
    }
    if let Some(e) = &r.gc_error {
        text.push_str(&format!(
            "  deleting orphaned objects failed: {}\n",
            one_line(e)
        ));
    }
    text
}
