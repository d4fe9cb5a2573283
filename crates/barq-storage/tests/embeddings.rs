//! Recall on real text embeddings: all-MiniLM-L6-v2 vectors (384 dimensions) of English
//! sentences, made offline by `scripts/embeddings.py` (`scripts/test.sh` makes them and names
//! the file in `BARQ_TEST_EMBEDDINGS`). Real embeddings need more probes than gaussian clusters;
//! the index's calibration must find that out by itself, so the defaults are used unchanged.

use std::collections::HashSet;
use std::path::Path;

use barq_core::{CollectionConfig, Document, Metric};
use barq_storage::{Database, Durability, Options, SearchRequest};

fn embeddings() -> Option<Vec<Vec<f32>>> {
    let path = barq_testkit::require(
        "real text embeddings (scripts/embeddings.py)",
        &["BARQ_TEST_EMBEDDINGS"],
    )?
    .remove(0);
    Some(barq_testkit::read_embeddings(Path::new(&path)).expect("the embeddings file"))
}

/// Searches the corpus, indexed with the default parameters, with the held-out queries:
/// recall@10 at the default settings and at 4× the calibrated probes, against exact search.
fn recall(metric: Metric, corpus: &[Vec<f32>], queries: &[Vec<f32>]) -> (f64, f64, usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options {
        durability: Durability::None,
        background_compaction: false,
        recall_sample_rate: 0.0,
        ..Options::default()
    };
    assert!(
        corpus.len() as u64 >= options.index_min_rows,
        "the corpus is large enough to be indexed by default"
    );
    let db = Database::open(dir.path(), options).expect("open");
    let dim = corpus[0].len() as u32;
    db.create_collection(CollectionConfig::new("text", dim, metric).expect("cfg"))
        .expect("create");
    for (n, chunk) in corpus.chunks(5000).enumerate() {
        let docs: Vec<Document> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| Document::new(format!("s{}", n * 5000 + i), v.clone()))
            .collect();
        db.upsert("text", &docs).expect("upsert");
    }
    db.flush("text").expect("flush");
    db.compact("text")
        .expect("compact into one indexed segment");
    let stats = db.collection_stats("text").expect("stats");
    assert_eq!(
        stats.indexed_segments, 1,
        "{metric}: the segment is indexed"
    );
    let mut found = [0usize; 2];
    let mut probed = 0;
    for q in queries {
        let truth: HashSet<String> = db
            .search("text", &SearchRequest::new(q.clone(), 10).exact(true))
            .expect("exact")
            .into_iter()
            .map(|h| h.id)
            .collect();
        let (hits, explain) = db
            .search_explained("text", &SearchRequest::new(q.clone(), 10))
            .expect("default search");
        assert_eq!(explain.segments[0].plan, "index", "{metric}");
        probed = probed.max(explain.clusters_probed as usize);
        found[0] += hits.iter().filter(|h| truth.contains(&h.id)).count();
        let calibrated = explain.clusters_probed as usize;
        let hits = db
            .search(
                "text",
                &SearchRequest::new(q.clone(), 10).nprobe(calibrated * 4),
            )
            .expect("wider search");
        found[1] += hits.iter().filter(|h| truth.contains(&h.id)).count();
    }
    let total = (queries.len() * 10) as f64;
    (found[0] as f64 / total, found[1] as f64 / total, probed)
}

#[test]
fn default_search_reaches_the_recall_target_on_real_text_embeddings() {
    let Some(rows) = embeddings() else { return };
    assert!(
        rows.len() > 20_200,
        "{} rows in the embeddings file",
        rows.len()
    );
    let (corpus, queries) = rows.split_at(rows.len() - 200);
    // Normalised sentence vectors for cosine; for dot and l2 the same directions with norms
    // spread over 0.5..1.5, so that the three metrics rank differently.
    let scaled: Vec<Vec<f32>> = corpus
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let s = 0.5 + ((i * 7919) % 1000) as f32 / 1000.0;
            v.iter().map(|x| x * s).collect()
        })
        .collect();
    for (metric, corpus) in [
        (Metric::Cosine, corpus),
        (Metric::Dot, &scaled[..]),
        (Metric::L2, &scaled[..]),
    ] {
        let (default, wider, probed) = recall(metric, corpus, queries);
        eprintln!(
            "{metric}: recall@10 {default:.3} at the defaults (up to {probed} clusters), {wider:.3} at 4x the probes"
        );
        assert!(
            default >= 0.95,
            "{metric}: recall@10 {default:.3} at the defaults is under 0.95"
        );
        assert!(
            wider >= default - 0.005,
            "{metric}: more probes, no lower recall"
        );
    }
}
