//! `barq restore --from URL`: build a new data directory from the bucket a writer shares.

use barq_core::{Error, Result};
use barq_storage::Database;
use indicatif::HumanBytes;

use crate::args::{Cli, RestoreArgs};
use crate::output::{Output, plural};

pub fn restore(cli: &Cli, args: &RestoreArgs) -> Result<()> {
    if cli.url.as_deref().is_some_and(|u| !u.is_empty()) {
        return Err(Error::invalid(
            "restore builds a local data directory: run it without --url / BARQ_URL",
        ));
    }
    let settings = barq_config::load_with_store_url(cli.config.as_deref(), "--from", &args.from)?;
    let dir = &cli.data_dir;
    let spec = barq_config::build_cold_store(&settings.storage, dir)?
        .ok_or_else(|| Error::invalid(format!("--from {:?} names no store", args.from)))?;
    let options = super::options(cli, &settings, false);
    let spinner = super::spinner(&format!("restoring from {}", spec.description), cli.quiet);
    let restored = Database::builder(dir)
        .options(options)
        .cold_store(spec)
        .restore();
    spinner.finish_and_clear();
    let (db, report) = restored?;
    db.close()?;
    Output::new(cli.json).emit(&report, || {
        let mut text = format!(
            "restored {} and {} ({} in the store, none copied) from manifest version {} of {} \
             in {} ms into {}\n",
            plural(report.collections, "collection"),
            plural(report.segments, "segment"),
            HumanBytes(report.bytes),
            report.version,
            report.store,
            report.took_ms,
            dir.display()
        );
        for s in &report.skipped {
            text.push_str(&format!("skipped a newer version: {s}\n"));
        }
        text.push_str(&format!(
            "serve it on the same store: BARQ_COLD_STORE_URL={} barq --data-dir {} serve",
            args.from,
            dir.display()
        ));
        text
    })
}
