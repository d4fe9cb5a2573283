//! `barq collection create|list|drop`.

use barq_core::{CollectionConfig, Metric, Result};
use serde::Serialize;

use super::Context;
use crate::args::CreateArgs;
use crate::output::{Align, Table};

/// The validated settings of `collection create`.
fn config(args: &CreateArgs) -> Result<CollectionConfig> {
    let metric: Metric = args.metric.parse()?;
    let fields = args
        .index_fields
        .iter()
        .map(|f| parse_field(f, "--index-field"))
        .collect::<Result<Vec<_>>>()?;
    CollectionConfig::new(args.name.clone(), args.dim, metric)?.with_indexed_fields(fields)
}

/// A payload field to index, given as `PATH:TYPE`.
pub fn parse_field(text: &str, flag: &str) -> Result<barq_core::IndexedField> {
    let bad = |why: &str| {
        barq_core::Error::invalid(format!(
            "invalid {flag} \"{text}\": {why}; expected PATH:TYPE with TYPE keyword, integer, float or bool"
        ))
    };
    let (path, ty) = text.rsplit_once(':').ok_or_else(|| bad("no type"))?;
    let field_type = match ty {
        "keyword" => barq_core::FieldType::Keyword,
        "integer" => barq_core::FieldType::Integer,
        "float" => barq_core::FieldType::Float,
        "bool" => barq_core::FieldType::Bool,
        _ => return Err(bad(&format!("unknown type \"{ty}\""))),
    };
    Ok(barq_core::IndexedField::new(path, field_type))
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
        let fields: Vec<String> = config
            .indexed_fields
            .iter()
            .map(|f| format!("{}:{}", f.path, f.field_type.name()))
            .collect();
        let indexed = if fields.is_empty() {
            String::new()
        } else {
            format!(", indexing {}", fields.join(", "))
        };
        format!(
            "created collection \"{}\" (dimension {}, metric {}{indexed})",
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
