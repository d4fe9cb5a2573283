//! `barq upsert`, `barq get` and `barq delete`.

use barq_core::Result;
use serde::Serialize;

use super::Context;
use crate::args::{DeleteArgs, Format, GetArgs, UpsertArgs};
use crate::input::DocReader;
use crate::output::{format_vector, plural};

#[derive(Debug, Serialize)]
struct Upserted<'a> {
    collection: &'a str,
    upserted: usize,
}

/// Read and validate the whole file, then write it in batches: a bad line writes nothing.
pub fn upsert(ctx: &Context<'_>, args: &UpsertArgs) -> Result<()> {
    let config = ctx.db.collection_config(&args.name)?;
    let mut reader = DocReader::open(&args.file, Format::Jsonl)?;
    let docs = reader.read_batch(&config, usize::MAX)?;
    tracing::debug!(collection = %args.name, documents = docs.len(), "input validated");
    let mut written = 0u64;
    for batch in docs.chunks(args.batch_size as usize) {
        ctx.db
            .upsert(&args.name, batch)
            .map_err(|e| super::note_written(e, written, "written"))?;
        written += batch.len() as u64;
    }
    let result = Upserted {
        collection: &args.name,
        upserted: docs.len(),
    };
    ctx.out.emit(&result, || {
        format!(
            "upserted {} into \"{}\"",
            plural(docs.len() as u64, "document"),
            args.name
        )
    })
}

pub fn get(ctx: &Context<'_>, args: &GetArgs) -> Result<()> {
    let doc = ctx.db.get(&args.name, &args.id)?;
    ctx.out.emit(&doc, || {
        let mut text = format!(
            "id:       {}\nvector:   {}\n",
            doc.id,
            format_vector(&doc.vector)
        );
        if let Some(p) = &doc.payload {
            // A payload is a JSON object, which always serializes.
            let p = serde_json::to_string(p).unwrap_or_default();
            text.push_str(&format!("payload:  {p}\n"));
        }
        text
    })
}

#[derive(Debug, Serialize)]
struct Deleted<'a> {
    collection: &'a str,
    deleted: Vec<String>,
    missing: Vec<String>,
}

/// Delete the ids that exist and say which did not.
pub fn delete(ctx: &Context<'_>, args: &DeleteArgs) -> Result<()> {
    let mut ids: Vec<&str> = Vec::new();
    for id in &args.ids {
        if !ids.contains(&id.as_str()) {
            ids.push(id);
        }
    }
    let (deleted, missing) = ctx.db.delete(&args.name, &ids)?;
    let result = Deleted {
        collection: &args.name,
        deleted,
        missing,
    };
    ctx.out.emit(&result, || {
        let mut text = format!(
            "deleted {} from \"{}\"",
            plural(result.deleted.len() as u64, "document"),
            args.name
        );
        if !result.missing.is_empty() {
            let missing: Vec<String> = result.missing.iter().map(|id| format!("{id:?}")).collect();
            text.push_str(&format!(" (not found: {})", missing.join(", ")));
        }
        text
    })
}
