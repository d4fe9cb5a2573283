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
}

pub fn search(ctx: &Context<'_>, args: &SearchArgs) -> Result<()> {
    let config = ctx.db.collection_config(&args.name)?;
    let mut request = SearchRequest::new(parse_vector(&args.vector)?, args.k)
        .with_payload(args.with_payload)
        .exact(args.exact);
    request.nprobe = args.nprobe;
    request.recall = args.recall;
    let hits = ctx.db.search(&args.name, &request)?;
    let result = SearchResult {
        collection: &args.name,
        metric: config.metric,
        hits,
    };
    ctx.out.emit(&result, || {
        if result.hits.is_empty() {
            return format!("no results: collection \"{}\" is empty", args.name);
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
        t.render()
    })
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
