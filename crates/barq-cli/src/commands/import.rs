//! `barq import`: bulk-load a JSONL or `.fvecs` file in validated batches, with a progress bar.

use std::time::Instant;

use barq_core::Result;
use indicatif::{HumanCount, HumanDuration};
use serde::Serialize;
use std::time::Duration;

use super::Context;
use crate::args::{Format, ImportArgs};
use crate::input::{DocReader, detect_format};
use crate::output::plural;

#[derive(Debug, Serialize)]
struct Imported<'a> {
    collection: &'a str,
    file: &'a str,
    format: &'static str,
    imported: u64,
    seconds: f64,
    /// Segments created while the import ran (its flushes, and compactions of them).
    segments_written: usize,
    /// The collection's segments when the import ended.
    segments: usize,
}

pub fn import(ctx: &Context<'_>, args: &ImportArgs) -> Result<()> {
    let config = ctx.db.collection_config(&args.name)?;
    let format = args.format.unwrap_or_else(|| detect_format(&args.file));
    let mut reader = DocReader::open(&args.file, format)?;
    let progress = super::progress_bar(reader.len(), ctx.quiet);
    let newest_before = ctx.db.segments(&args.name)?.iter().map(|s| s.id).max();
    let start = Instant::now();
    let mut imported = 0u64;
    loop {
        let batch = reader
            .read_batch(&config, args.batch_size as usize)
            .and_then(|batch| {
                if !batch.is_empty() {
                    ctx.db.upsert(&args.name, &batch)?;
                }
                Ok(batch.len() as u64)
            });
        match batch {
            Ok(0) => break,
            Ok(n) => imported += n,
            Err(e) => {
                progress.abandon();
                return Err(super::note_written(e, imported, "imported"));
            }
        }
        progress.set_position(reader.bytes_read());
        progress.set_message(format!("{} documents", HumanCount(imported)));
    }
    progress.finish_and_clear();
    // Bulk loads end with a flush so the next open does not replay the write-ahead log.
    ctx.db.flush(&args.name)?;
    let elapsed = start.elapsed();
    let segments = ctx.db.segments(&args.name)?;
    let segments_written = segments
        .iter()
        .filter(|s| newest_before.is_none_or(|n| s.id > n))
        .count();
    let result = Imported {
        collection: &args.name,
        file: reader.name(),
        format: match format {
            Format::Jsonl => "jsonl",
            Format::Fvecs => "fvecs",
        },
        imported,
        seconds: elapsed.as_secs_f64(),
        segments_written,
        segments: segments.len(),
    };
    ctx.out.emit(&result, || {
        let rate = imported as f64 / elapsed.as_secs_f64().max(1e-3);
        format!(
            "imported {} into \"{}\" from {} in {} ({} documents/s)",
            plural(imported, "document"),
            args.name,
            result.file,
            duration(elapsed),
            HumanCount(rate as u64),
        )
    })
}

/// `0.42 s` under a minute (a whole-second rounding would print "0 seconds"), else "3 minutes".
fn duration(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        HumanDuration(d).to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_imports_show_fractions_of_a_second() {
        use std::time::Duration;
        assert_eq!(super::duration(Duration::from_millis(420)), "0.42 s");
        assert_eq!(super::duration(Duration::from_secs(12)), "12.00 s");
        assert_eq!(super::duration(Duration::from_secs(180)), "3 minutes");
    }
}
