//! `barq tier status`: where every segment is, as a JSON document or as tables.

use barq_core::Result;
use barq_storage::StorageTier;
use barq_storage::tiering::{ColdStoreState, TieringStatus};
use indicatif::HumanBytes;

use super::{Context, describe_error};
use crate::output::{Align, Table, format_utc_ms};

pub fn status(ctx: &Context<'_>) -> Result<()> {
    let status = ctx.db.tiering_status()?;
    ctx.out
        .emit(&status, || describe_status(&status, ctx.db.is_remote()))
}

/// `remote`: the counters are the server's, since it started.
fn describe_status(s: &TieringStatus, remote: bool) -> String {
    let reachable = match (s.cold_store_reachable, &s.cold_store_error) {
        (Some(true), _) => " (reachable)".to_owned(),
        (Some(false), Some(e)) => format!(" (UNREACHABLE: {e})"),
        (Some(false), None) => " (UNREACHABLE)".to_owned(),
        (None, _) => String::new(),
    };
    let h = &s.cold_store_health;
    let state = match (h.state, &h.reason) {
        (ColdStoreState::Degraded, Some(why)) => format!(
            "DEGRADED since {} (hot data is served; moves and uncached cold reads wait): {why}",
            format_utc_ms(h.since_ms)
        ),
        (state, _) => state.as_str().to_owned(),
    };
    let mut text = format!(
        "cold store:      {}{reachable}\nstore state:     {state}\nwarm directory:  {}\n",
        s.cold_store,
        s.warm_dir.as_ref().map_or_else(
            || "- (not configured)".to_owned(),
            |d| d.display().to_string()
        )
    );
    if let Some(why) = &s.poisoned {
        text.push_str(&format!("POISONED:        {why}\n"));
    }
    let b = &s.bucket;
    if b.enabled {
        let published = match (b.published_version, b.published_at_ms) {
            (Some(v), Some(at)) => format!("version {v} at {}", format_utc_ms(at)),
            _ => "nothing yet".to_owned(),
        };
        text.push_str(&format!(
            "bucket:          writer epoch {}, published {published} (local version {}), \
             upload lag {} segments / {}\n",
            b.epoch.map_or_else(|| "-".to_owned(), |e| e.to_string()),
            b.local_version,
            b.upload_lag_segments,
            HumanBytes(b.upload_lag_bytes)
        ));
        if let Some(e) = &b.last_error {
            text.push_str(&format!("bucket error:    {e}\n"));
        }
        if let Some(why) = &b.fenced {
            text.push_str(&format!("FENCED:          {why}\n"));
        }
    }
    text.push('\n');
    let mut t = Table::new(&[
        ("TIER", Align::Left),
        ("SEGMENTS", Align::Right),
        ("BYTES", Align::Right),
    ]);
    for tier in [StorageTier::Hot, StorageTier::Warm, StorageTier::Cold] {
        let stats = s.tiers.get(&tier).cloned().unwrap_or_default();
        if tier == StorageTier::Warm && s.warm_dir.is_none() && stats.segments == 0 {
            continue;
        }
        let bytes = HumanBytes(stats.bytes).to_string();
        t.row(vec![tier.to_string(), stats.segments.to_string(), bytes]);
    }
    text.push_str(&t.render());
    for c in &s.collections {
        let pinned = if c.pinned { " (pinned)" } else { "" };
        if c.segments.is_empty() {
            text.push_str(&format!(
                "\ncollection \"{}\"{pinned}: no segments\n",
                c.name
            ));
            continue;
        }
        text.push_str(&format!("\ncollection \"{}\"{pinned}\n", c.name));
        let mut t = Table::new(&[
            ("ID", Align::Right),
            ("TIER", Align::Left),
            ("SIZE", Align::Right),
            ("ROWS", Align::Right),
            ("REMOTE", Align::Left),
            ("PINNED", Align::Left),
            ("LAST ACCESS", Align::Left),
            ("ACCESSES", Align::Right),
            ("BUSY", Align::Left),
        ]);
        for seg in &c.segments {
            t.row(vec![
                seg.id.to_string(),
                seg.tier.to_string(),
                HumanBytes(seg.size_bytes).to_string(),
                seg.rows.to_string(),
                yes_no(seg.remote),
                yes_no(seg.pinned),
                seg.last_access_ms.map_or_else(|| "-".into(), format_utc_ms),
                seg.access_count.to_string(),
                seg.busy.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        text.push_str(&t.render());
    }
    let n = &s.counters;
    let counters = [
        ("uploads", n.uploads.to_string()),
        ("downloads", n.downloads.to_string()),
        ("bytes uploaded", HumanBytes(n.bytes_uploaded).to_string()),
        (
            "bytes downloaded",
            HumanBytes(n.bytes_downloaded).to_string(),
        ),
        ("moves done", n.moves_done.to_string()),
        ("moves failed", n.moves_failed.to_string()),
        ("cache hits", n.cache_hits.to_string()),
        ("cache misses", n.cache_misses.to_string()),
        ("cache bytes", HumanBytes(n.cache_bytes).to_string()),
        ("cache budget", HumanBytes(n.cache_budget_bytes).to_string()),
        ("remote requests", n.remote_requests.to_string()),
        (
            "remote bytes",
            HumanBytes(n.remote_bytes_fetched).to_string(),
        ),
    ];
    let header = if remote {
        "COUNTER (SINCE THE SERVER STARTED)"
    } else {
        "COUNTER (THIS COMMAND)"
    };
    let mut t = Table::new(&[(header, Align::Left), ("VALUE", Align::Right)]);
    for (k, v) in counters {
        t.row(vec![k.to_owned(), v]);
    }
    text.push('\n');
    text.push_str(&t.render());
    if !s.last_errors.is_empty() {
        text.push_str("\nlast errors:\n");
        for e in &s.last_errors {
            text.push_str(&format!("  {}\n", describe_error(e)));
        }
    }
    text
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}
