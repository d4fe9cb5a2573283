//! `barq import`: bulk-load a JSONL or `.fvecs` file in validated batches, with a progress bar.

use std::time::Instant;

use barq_core::Result;
use indicatif::{HumanCount, HumanDuration};
use serde::Serialize;

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
    segments_written: usize,
}

pub fn import(ctx: &Context<'_>, args: &ImportArgs) -> Result<()> {
    let config = ctx.db.collection_config(&args.name)?;
    let format = args.format.unwrap_or_else(|| detect_format(&args.file));
    let mut reader = DocReader::open(&args.file, format)?;
    let progress = super::progress_bar(reader.len(), ctx.quiet);
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
    let flushed = ctx.db.flush(&args.name)?;
    let elapsed = start.elapsed();
    let result = Imported {
        collection: &args.name,
        file: reader.name(),
        format: match format {
            Format::Jsonl => "jsonl",
            Format::Fvecs => "fvecs",
        },
        imported,
        seconds: elapsed.as_secs_f64(),
        segments_written: flushed.segments.len(),
    };
    ctx.out.emit(&result, || {
        let rate = imported as f64 / elapsed.as_secs_f64().max(1e-3);
        format!(
            "imported {} into \"{}\" from {} in {} ({} documents/s)",
            plural(imported, "document"),
            args.name,
            result.file,
            HumanDuration(elapsed),
            HumanCount(rate as u64),
        )
    })
}
