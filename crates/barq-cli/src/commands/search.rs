//! `barq search`: k-nearest-neighbour search (through the segments' indexes, or `--exact`).

use barq_core::{Error, Metric, Result, SearchHit};
use barq_storage::SearchRequest;
use serde::Serialize;

use super::Context;
use crate::args::SearchArgs;
use crate::output::{Align, Table, format_score};

#[derive(Debug, Serialize)]
struct SearchResult<'a> {
    collection: &'a str,
    metric: Metric,
    hits: Vec<SearchHit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    explain: Option<serde_json::Value>,
}

pub fn search(ctx: &Context<'_>, args: &SearchArgs) -> Result<()> {
    let config = ctx.db.collection_config(&args.name)?;
    let mut request = SearchRequest::new(parse_vector(&args.vector)?, args.k)
        .with_payload(args.with_payload)
        .exact(args.exact);
    request.nprobe = args.nprobe;
    request.recall = args.recall;
    let filter = parse_filter(args.filter.as_deref())?;
    request.filter = filter.as_ref().map(|(_, f)| f.clone());
    let (hits, explain) = ctx.db.search(
        &args.name,
        &request,
        filter.as_ref().map(|(v, _)| v),
        args.explain,
    )?;
    let result = SearchResult {
        collection: &args.name,
        metric: config.metric,
        hits,
        explain,
    };
    ctx.out.emit(&result, || {
        let explained = result
            .explain
            .as_ref()
            .map(explain_text)
            .unwrap_or_default();
        if result.hits.is_empty() {
            let why = if args.filter.is_some() {
                "no document matches the filter"
            } else {
                "the collection is empty"
            };
            return format!("no results in \"{}\": {why}{explained}", args.name);
        }
        let score = if config.metric.higher_is_better() {
            "SIMILARITY"
        } else {
            "DISTANCE"
        };
        let mut columns = vec![
            ("RANK", Align::Right),
            ("ID", Align::Left),
            (score, Align::Right),
        ];
        if args.with_payload {
            columns.push(("PAYLOAD", Align::Left));
        }
        let mut t = Table::new(&columns);
        for (i, hit) in result.hits.iter().enumerate() {
            let mut row = vec![(i + 1).to_string(), hit.id.clone(), format_score(hit.score)];
            if args.with_payload {
                let payload = match &hit.payload {
                    // A payload is a JSON object, which always serializes.
                    Some(p) => serde_json::to_string(p).unwrap_or_default(),
                    None => "-".to_owned(),
                };
                row.push(payload);
            }
            t.row(row);
        }
        t.render() + &explained
    })
}

/// A `--filter` argument: its JSON and the validated filter (nothing runs when it is bad).
fn parse_filter(text: Option<&str>) -> Result<Option<(serde_json::Value, barq_core::Filter)>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::invalid(format!("invalid --filter: {e}; expected a JSON object")))?;
    let f = barq_core::Filter::from_json(&v)?;
    Ok(Some((v, f)))
}

#[derive(Debug, Serialize)]
struct Counted<'a> {
    collection: &'a str,
    count: u64,
}

/// `barq count`.
pub fn count(ctx: &Context<'_>, args: &crate::args::CountArgs) -> Result<()> {
    let filter = parse_filter(args.filter.as_deref())?;
    let count = ctx
        .db
        .count_matching(&args.name, filter.as_ref().map(|(v, f)| (v, f)))?;
    let result = Counted {
        collection: &args.name,
        count,
    };
    let what = if args.filter.is_some() {
        "documents match"
    } else {
        "documents"
    };
    ctx.out
        .emit(&result, || format!("{count} {what} in \"{}\"", args.name))
}

/// The statistics of `--explain` as text: a line of totals, then one row per segment.
fn explain_text(stats: &serde_json::Value) -> String {
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    let mut out = format!(
        "\n\nsearched in {:.2} ms: {} memtable rows, {} clusters probed, {} rows scanned, {} \
         re-ranked; cold store: {} requests, {} bytes\n",
        stats["took_ms"].as_f64().unwrap_or(0.0),
        n(stats, "memtable_rows"),
        n(stats, "clusters_probed"),
        n(stats, "rows_scanned"),
        n(stats, "rows_reranked"),
        n(stats, "cold_requests"),
        n(stats, "cold_bytes"),
    );
    let segments = stats["segments"].as_array().cloned().unwrap_or_default();
    if !segments.is_empty() {
        let mut t = Table::new(&[
            ("SEGMENT", Align::Right),
            ("TIER", Align::Left),
            ("PLAN", Align::Left),
            ("ROWS", Align::Right),
            ("MATCHED", Align::Right),
            ("PROBED", Align::Right),
            ("SCANNED", Align::Right),
            ("RERANKED", Align::Right),
        ]);
        for s in &segments {
            t.row(vec![
                n(s, "id").to_string(),
                s["tier"].as_str().unwrap_or("").to_owned(),
                s["plan"].as_str().unwrap_or("").to_owned(),
                n(s, "rows").to_string(),
                match s["rows_matched"].as_u64() {
                    Some(m) => format!("{m} ({})", s["filter"].as_str().unwrap_or("")),
                    None => "-".to_owned(),
                },
                format!("{}/{}", n(s, "clusters_probed"), n(s, "clusters")),
                n(s, "rows_scanned").to_string(),
                n(s, "rows_reranked").to_string(),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render());
    }
    out
}

/// A query vector given as a JSON array (`[0.1, 0.2]`) or as comma-separated numbers
/// (`0.1,0.2`). Whether it fits the collection is the engine's call.
fn parse_vector(text: &str) -> Result<Vec<f32>> {
    let text = text.trim();
    if text.starts_with('[') {
        return serde_json::from_str(text).map_err(|e| {
            Error::invalid(format!(
                "invalid --vector: {e}; expected a JSON array of numbers"
            ))
        });
    }
    text.split(',')
        .map(|part| {
            let part = part.trim();
            part.parse::<f32>().map_err(|_| {
                Error::invalid(format!(
                    "invalid --vector: {part:?} is not a number; expected a JSON array or \
                     comma-separated numbers"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_vector;

    #[test]
    fn vectors_as_json_or_csv() {
        assert_eq!(
            parse_vector("[1, -2.5, 3e-1]").expect("json"),
            vec![1.0, -2.5, 0.3]
        );
        assert_eq!(
            parse_vector(" 1,-2.5 , 0.3").expect("csv"),
            vec![1.0, -2.5, 0.3]
        );
        let err = parse_vector("1,x").expect_err("not a number");
        assert!(err.message().contains("\"x\" is not a number"), "{err}");
        assert!(parse_vector("[1, \"a\"]").is_err());
    }
}
