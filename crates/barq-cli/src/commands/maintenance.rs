//! `barq flush`, `barq compact`, `barq index` and `barq stats`.

use barq_core::Result;
use barq_storage::{CollectionStats, SegmentEntry};
use indicatif::HumanBytes;
use serde::Serialize;

use super::Context;
use crate::output::{Align, Table, format_utc_ms, plural};

#[derive(Debug, Serialize)]
struct Flushed<'a> {
    collection: &'a str,
    segments: Vec<SegmentEntry>,
}

pub fn flush(ctx: &Context<'_>, name: &str) -> Result<()> {
    let outcome = ctx.db.flush(name)?;
    let result = Flushed {
        collection: name,
        segments: outcome.segments,
    };
    ctx.out.emit(&result, || {
        if result.segments.is_empty() {
            return format!("nothing to flush in \"{name}\"");
        }
        let parts: Vec<String> = result.segments.iter().map(describe).collect();
        format!("flushed \"{name}\" to {}", parts.join(", "))
    })
}

#[derive(Debug, Serialize)]
struct Compacted<'a> {
    collection: &'a str,
    inputs: Vec<u64>,
    output: Option<SegmentEntry>,
    dropped_rows: u64,
}

pub fn compact(ctx: &Context<'_>, name: &str) -> Result<()> {
    let outcome = ctx.db.compact(name)?;
    let result = Compacted {
        collection: name,
        inputs: outcome.inputs,
        output: outcome.output,
        dropped_rows: outcome.dropped_rows,
    };
    ctx.out.emit(&result, || {
        if result.inputs.is_empty() {
            return format!("nothing to compact in \"{name}\": it has no segments");
        }
        let into = match &result.output {
            Some(seg) => describe(seg),
            None => "nothing (no live rows)".to_owned(),
        };
        format!(
            "compacted {} of \"{name}\" into {into}; dropped {}",
            plural(result.inputs.len() as u64, "segment"),
            plural(result.dropped_rows, "row"),
        )
    })
}

#[derive(Debug, Serialize)]
struct Indexed<'a> {
    collection: &'a str,
    indexed: Vec<barq_storage::CompactionOutcome>,
}

pub fn index(ctx: &Context<'_>, args: &crate::args::IndexArgs) -> Result<()> {
    let name = args.name.as_str();
    let fields = args
        .fields
        .iter()
        .map(|f| super::collection::parse_field(f, "--field"))
        .collect::<Result<Vec<_>>>()?;
    if !fields.is_empty() {
        ctx.db.add_indexed_fields(name, &fields)?;
    }
    let spinner = super::spinner(&format!("building the indexes of \"{name}\""), ctx.quiet);
    let built = ctx.db.build_indexes(name);
    spinner.finish_and_clear();
    let result = Indexed {
        collection: name,
        indexed: built?,
    };
    ctx.out.emit(&result, || {
        if result.indexed.is_empty() {
            return format!("every large segment of \"{name}\" is indexed already");
        }
        let parts: Vec<String> = result
            .indexed
            .iter()
            .filter_map(|o| o.output.as_ref().map(describe))
            .collect();
        format!("indexed \"{name}\": {}", parts.join(", "))
    })
}

/// `segment 3 (1000 rows, 512.00 KiB)`.
fn describe(seg: &SegmentEntry) -> String {
    format!(
        "segment {} ({}, {})",
        seg.id,
        plural(seg.rows, "row"),
        HumanBytes(seg.size_bytes)
    )
}

pub fn stats(ctx: &Context<'_>, name: Option<&str>) -> Result<()> {
    if let Some(name) = name {
        let stats = ctx.db.collection_stats(name)?;
        return ctx.out.emit(&stats, || describe_collection(&stats));
    }
    let stats = ctx.db.stats()?;
    ctx.out.emit(&stats, || {
        let mut text = format!("data directory: {}\n", stats.data_dir.display());
        if stats.collections.is_empty() {
            text.push_str("no collections\n");
            return text;
        }
        let mut t = Table::new(&[
            ("NAME", Align::Left),
            ("DIMENSION", Align::Right),
            ("METRIC", Align::Left),
            ("DOCUMENTS", Align::Right),
            ("SEGMENTS", Align::Right),
            ("SEGMENT SIZE", Align::Right),
            ("MEMTABLE ROWS", Align::Right),
            ("WAL SIZE", Align::Right),
        ]);
        for c in &stats.collections {
            t.row(vec![
                c.name.clone(),
                c.dimension.to_string(),
                c.metric.to_string(),
                c.documents.to_string(),
                c.segments.to_string(),
                HumanBytes(c.segment_bytes).to_string(),
                c.memtable_rows.to_string(),
                HumanBytes(c.wal_bytes).to_string(),
            ]);
        }
        text.push_str(&t.render());
        text
    })
}

fn describe_collection(c: &CollectionStats) -> String {
    let tiers: Vec<String> = c
        .tiers
        .iter()
        .map(|(tier, t)| {
            let tier = serde_json::to_value(tier)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{tier:?}"));
            format!("{tier} {} ({})", t.segments, HumanBytes(t.bytes))
        })
        .collect();
    let lines = [
        ("name", c.name.clone()),
        ("dimension", c.dimension.to_string()),
        ("metric", c.metric.to_string()),
        ("created", format_utc_ms(c.created_at_ms)),
        ("documents", c.documents.to_string()),
        (
            "segments",
            format!("{} ({})", c.segments, HumanBytes(c.segment_bytes)),
        ),
        ("segment rows", c.segment_rows.to_string()),
        (
            "tiers",
            if tiers.is_empty() {
                "-".into()
            } else {
                tiers.join(", ")
            },
        ),
        (
            "memtable rows",
            format!("{} ({})", c.memtable_rows, HumanBytes(c.memtable_bytes)),
        ),
        ("wal size", HumanBytes(c.wal_bytes).to_string()),
        ("last sequence", c.last_seq.to_string()),
        (
            "indexed",
            format!(
                "{} of {} segments ({} of index)",
                c.indexed_segments,
                c.segments,
                HumanBytes(c.index_bytes)
            ),
        ),
        ("exact rows", c.unindexed_rows.to_string()),
        (
            "recall",
            match c.sampled_recall {
                Some(r) => format!("{r:.3} ({})", plural(c.recall_samples, "sample")),
                None => "- (no sample yet)".into(),
            },
        ),
    ];
    let mut t = Table::new(&[("FIELD", Align::Left), ("VALUE", Align::Left)]);
    for (k, v) in lines {
        t.row(vec![k.to_owned(), v]);
    }
    let mut text = t.render();
    if !c.segment_list.is_empty() {
        let mut s = Table::new(&[
            ("SEGMENT", Align::Right),
            ("TIER", Align::Left),
            ("ROWS", Align::Right),
            ("SIZE", Align::Right),
            ("INDEXED", Align::Left),
            ("CLUSTERS", Align::Right),
            ("INDEX SIZE", Align::Right),
        ]);
        for seg in &c.segment_list {
            s.row(vec![
                seg.id.to_string(),
                serde_json::to_value(seg.tier)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                seg.rows.to_string(),
                HumanBytes(seg.bytes).to_string(),
                match seg.indexed {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => "?".into(),
                },
                seg.clusters.map_or("-".into(), |n| n.to_string()),
                HumanBytes(seg.index_bytes).to_string(),
            ]);
        }
        text.push('\n');
        text.push_str(&s.render());
    }
    text
}
