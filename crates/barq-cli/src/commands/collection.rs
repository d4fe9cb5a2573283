//! `barq collection create|list|drop`.

use barq_core::{CollectionConfig, Metric, Result};
use serde::Serialize;

use super::Context;
use crate::args::CreateArgs;
use crate::output::{Align, Table};

/// The validated settings of `collection create`.
fn config(args: &CreateArgs) -> Result<CollectionConfig> {
    let metric: Metric = args.metric.parse()?;
    CollectionConfig::new(args.name.clone(), args.dim, metric)
}

/// Validate `collection create`'s arguments before the data directory is touched.
pub fn check_create(args: &CreateArgs) -> Result<()> {
    config(args).map(|_| ())
}

pub fn create(ctx: &Context<'_>, args: &CreateArgs) -> Result<()> {
    let config = config(args)?;
    ctx.db.create_collection(&config)?;
    tracing::debug!(collection = %config.name, "collection created");
    ctx.out.emit(&config, || {
        format!(
            "created collection \"{}\" (dimension {}, metric {})",
            config.name, config.dimension, config.metric
        )
    })
}

#[derive(Debug, Serialize)]
struct ListItem {
    name: String,
    dimension: u32,
    metric: Metric,
    documents: u64,
}

#[derive(Debug, Serialize)]
struct List {
    collections: Vec<ListItem>,
}

pub fn list(ctx: &Context<'_>) -> Result<()> {
    let found = ctx.db.list()?;
    let collections = found
        .collections
        .into_iter()
        .map(|(c, documents)| ListItem {
            documents,
            name: c.name,
            dimension: c.dimension,
            metric: c.metric,
        })
        .collect();
    let list = List { collections };
    ctx.out.emit(&list, || {
        if list.collections.is_empty() {
            return format!("no collections in {}", found.data_dir.display());
        }
        let mut t = Table::new(&[
            ("NAME", Align::Left),
            ("DIMENSION", Align::Right),
            ("METRIC", Align::Left),
            ("DOCUMENTS", Align::Right),
        ]);
        for c in &list.collections {
            t.row(vec![
                c.name.clone(),
                c.dimension.to_string(),
                c.metric.to_string(),
                c.documents.to_string(),
            ]);
        }
        t.render()
    })
}

#[derive(Debug, Serialize)]
struct Dropped<'a> {
    dropped: &'a str,
}

pub fn drop(ctx: &Context<'_>, name: &str) -> Result<()> {
    ctx.db.drop_collection(name)?;
    ctx.out.emit(&Dropped { dropped: name }, || {
        format!("dropped collection \"{name}\"")
    })
}
