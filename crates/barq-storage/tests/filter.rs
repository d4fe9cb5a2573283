//! Filtered search through the engine: results against a brute-force model (filter, then exact
//! k-NN) for random filters over an indexed segment, a plain segment and a memtable with
//! updates and deletes; recall at 50 % down to 0.1 % selectivity for filters that pick rows near
//! the query, far from it and anywhere; hot and cold answer alike; payload indexes added later are picked
//! up by an index build.

use std::collections::BTreeMap;

use barq_core::filter::{FieldType, IndexedField};
use barq_core::{CollectionConfig, Document, Filter, Metric, Payload, SearchHit};
use barq_storage::{Database, Durability, Options, SearchRequest, StorageTier};
use barq_testkit::Lcg as Rand;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const DIM: usize = 32;
const CENTRES: usize = 40;
/// Rows of the indexed segment.
const BASE: usize = 40_000;
const LANGS: [&str; 7] = ["en", "de", "fr", "es", "it", "pt", "nl"];
const REGIONS: [&str; 4] = ["eu", "us", "apac", "latam"];

fn centres() -> Vec<Vec<f32>> {
    let mut d = Rand(7);
    (0..CENTRES)
        .map(|_| (0..DIM).map(|_| d.gauss() * 3.0).collect())
        .collect()
}

/// Row `i` lies around centre `i % CENTRES`.
fn vector(i: usize, version: u64, cs: &[Vec<f32>]) -> Vec<f32> {
    let mut d = Rand(i as u64 * 7919 + version * 104_729 + 1);
    cs[i % CENTRES].iter().map(|x| x + d.gauss()).collect()
}

/// A bucket in 0..1000 that does not follow the centre.
fn bucket(i: usize) -> u64 {
    ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 1000
}

/// The payload of row `i` at `version`: indexed fields of every type, values of the wrong type
/// and nulls now and then, an unindexed array, a nested object; some rows have none.
fn payload(i: usize, version: u64) -> Option<Payload> {
    if i.is_multiple_of(61) {
        return None;
    }
    let v = i + version as usize * 3;
    let mut p = json!({
        "lang": LANGS[v % LANGS.len()],
        "year": 2000 + (v * 31) % 25,
        "score": (v % 1000) as f64 / 10.0,
        "flag": v.is_multiple_of(3),
        "tags": [format!("t{}", v % 5), format!("t{}", (v / 5) % 5)],
        "meta": {"region": REGIONS[v % REGIONS.len()]},
        "centre": i % CENTRES,
        "bucket": bucket(i),
    });
    if v.is_multiple_of(97) {
        p["lang"] = json!(5);
    }
    if v.is_multiple_of(50) {
        p["lang"] = Value::Null;
    }
    if v.is_multiple_of(89) {
        p["year"] = json!(2010.5);
    }
    if v.is_multiple_of(43) {
        p.as_object_mut().map(|o| o.remove("score"));
    }
    p.as_object().cloned()
}

fn fields() -> Vec<IndexedField> {
    [
        ("lang", FieldType::Keyword),
        ("year", FieldType::Integer),
        ("score", FieldType::Float),
        ("flag", FieldType::Bool),
        ("meta.region", FieldType::Keyword),
        ("centre", FieldType::Integer),
        ("bucket", FieldType::Integer),
    ]
    .into_iter()
    .map(|(p, t)| IndexedField::new(p, t))
    .collect()
}

fn options(filter_exact_max_rows: u64) -> Options {
    Options {
        durability: Durability::None,
        background_compaction: false,
        index_min_rows: 5_000,
        index: barq_storage::IndexParams {
            target_cluster_rows: 250,
            ..Default::default()
        },
        recall_sample_rate: 0.0,
        filter_exact_max_rows,
        ..Options::default()
    }
}

/// The live documents, by id.
type Model = BTreeMap<String, (Vec<f32>, Option<Payload>)>;

fn doc(i: usize, version: u64, cs: &[Vec<f32>]) -> Document {
    Document {
        id: format!("d{i:05}"),
        vector: vector(i, version, cs),
        payload: payload(i, version),
    }
}

fn upsert(db: &Database, model: &mut Model, docs: Vec<Document>) {
    db.upsert("c", &docs).expect("upsert");
    for d in docs {
        model.insert(d.id, (d.vector, d.payload));
    }
}

/// An indexed segment of `BASE` rows; with `mixed`, also a plain segment (new rows, updates of
/// indexed rows, deletes) and a memtable (more of each).
fn setup(
    dir: &std::path::Path,
    indexed: Vec<IndexedField>,
    mixed: bool,
    exact_max: u64,
) -> (Database, Model) {
    let cs = centres();
    let db = Database::open(dir, options(exact_max)).expect("open");
    db.create_collection(
        CollectionConfig::new("c", DIM as u32, Metric::L2)
            .expect("cfg")
            .with_indexed_fields(indexed)
            .expect("fields"),
    )
    .expect("create");
    let mut model = Model::new();
    for chunk in (0..BASE).collect::<Vec<_>>().chunks(10_000) {
        upsert(
            &db,
            &mut model,
            chunk.iter().map(|&i| doc(i, 0, &cs)).collect(),
        );
        db.flush("c").expect("flush");
    }
    db.compact("c").expect("compact");
    if mixed {
        // A plain segment: 2,000 new rows, 500 updates, 300 deletes.
        let mut docs: Vec<Document> = (BASE..BASE + 2_000).map(|i| doc(i, 0, &cs)).collect();
        docs.extend((0..500).map(|j| doc(j * 37 % BASE, 1, &cs)));
        upsert(&db, &mut model, docs);
        let gone: Vec<String> = (0..300)
            .map(|j| format!("d{:05}", j * 101 % BASE))
            .collect();
        let refs: Vec<&str> = gone.iter().map(String::as_str).collect();
        db.delete_many("c", &refs).expect("delete");
        for g in &gone {
            model.remove(g);
        }
        db.flush("c").expect("flush");
        // The memtable: 500 new rows, 200 updates, 100 deletes.
        let mut docs: Vec<Document> = (BASE + 2_000..BASE + 2_500)
            .map(|i| doc(i, 0, &cs))
            .collect();
        docs.extend((0..200).map(|j| doc(j * 53 % BASE, 2, &cs)));
        upsert(&db, &mut model, docs);
        let gone: Vec<String> = (0..100)
            .map(|j| format!("d{:05}", j * 211 % BASE + 7))
            .collect();
        let refs: Vec<&str> = gone.iter().map(String::as_str).collect();
        db.delete_many("c", &refs).expect("delete");
        for g in &gone {
            model.remove(g);
        }
    }
    (db, model)
}

/// The exact top `k` of the documents `filter` matches.
fn brute_force(model: &Model, filter: &Filter, q: &[f32], k: usize) -> Vec<String> {
    let mut scored: Vec<(f32, &String)> = model
        .iter()
        .filter(|(id, (_, p))| filter.matches(id, p.as_ref()))
        .map(|(id, (v, _))| (barq_core::l2_squared(v, q), id))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(k)
        .map(|(_, id)| id.clone())
        .collect()
}

fn ids(hits: &[SearchHit]) -> Vec<String> {
    hits.iter().map(|h| h.id.clone()).collect()
}

fn recall(got: &[String], want: &[String]) -> f64 {
    if want.is_empty() {
        return 1.0;
    }
    want.iter().filter(|w| got.contains(w)).count() as f64 / want.len() as f64
}

fn query(n: usize) -> Vec<f32> {
    vector(1_000_000 + n * 13, 0, &centres())
}

fn filter(v: Value) -> Filter {
    Filter::from_json(&v).expect("valid filter")
}

/// A random condition (or nested filter, while `depth` allows).
fn condition(rng: &mut StdRng, depth: usize) -> Value {
    let lang = |rng: &mut StdRng| json!(LANGS[rng.random_range(0..LANGS.len())]);
    match rng.random_range(0..if depth > 0 { 12 } else { 11 }) {
        0 => json!({"key": "lang", "match": {"value": lang(rng)}}),
        1 => json!({"key": "lang", "match": {"any": [lang(rng), lang(rng), 5]}}),
        2 => {
            let a = rng.random_range(1995..2030);
            json!({"key": "year", "range": {"gte": a, "lt": a + rng.random_range(1..12)}})
        }
        3 => json!({"key": "year", "match": {"value": rng.random_range(2000..2025)}}),
        4 => {
            let a = rng.random_range(0.0..100.0f64);
            json!({"key": "score", "range": {"gt": a, "lte": a + rng.random_range(1.0..40.0)}})
        }
        5 => json!({"key": "flag", "match": {"value": rng.random_bool(0.5)}}),
        6 => json!({"key": "meta.region", "match": {"value": REGIONS[rng.random_range(0..4)]}}),
        7 => json!({"key": "tags", "match": {"value": format!("t{}", rng.random_range(0..5))}}),
        8 => json!({"is_null": {"key": "lang"}}),
        9 => json!({"exists": {"key": "score"}}),
        10 => {
            let ids: Vec<String> = (0..rng.random_range(1..30))
                .map(|_| format!("d{:05}", rng.random_range(0..BASE + 2_500)))
                .collect();
            json!({"has_id": ids})
        }
        _ => random_filter(rng, depth - 1),
    }
}

fn random_filter(rng: &mut StdRng, depth: usize) -> Value {
    let mut f = serde_json::Map::new();
    for group in ["must", "should", "must_not"] {
        let n = match group {
            "must" => rng.random_range(0..3),
            _ => rng.random_range(0..2),
        };
        if n > 0 {
            let list: Vec<Value> = (0..n).map(|_| condition(rng, depth)).collect();
            f.insert(group.into(), Value::Array(list));
        }
    }
    if f.is_empty() {
        f.insert("must".into(), Value::Array(vec![condition(rng, 0)]));
    }
    Value::Object(f)
}

#[test]
fn filtered_search_agrees_with_a_brute_force_model_for_random_filters() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Indexed: everything but `tags` (filters on it read the payloads).
    let (db, model) = setup(dir.path(), fields(), true, 2048);
    let mut rng = StdRng::seed_from_u64(12);
    let (mut recall_sum, mut n) = (0.0, 0);
    let mut plans = BTreeMap::<&str, usize>::new();
    for round in 0..60 {
        let json = random_filter(&mut rng, 1);
        let f = filter(json.clone());
        let q = query(round);
        let want = brute_force(&model, &f, &q, 10);
        let exact = db
            .search(
                "c",
                &SearchRequest::new(q.clone(), 10)
                    .exact(true)
                    .filter(f.clone()),
            )
            .expect("exact");
        assert_eq!(ids(&exact), want, "exact search, filter {json}");
        let (ann, stats) = db
            .search_explained("c", &SearchRequest::new(q.clone(), 10).filter(f.clone()))
            .expect("ann");
        let got = ids(&ann);
        for id in &got {
            let (_, p) = model
                .get(id)
                .unwrap_or_else(|| panic!("{id} is deleted: {json}"));
            assert!(f.matches(id, p.as_ref()), "{id} does not match {json}");
        }
        assert_eq!(
            got.len(),
            want.len(),
            "as many hits as matches allow: {json}"
        );
        let mut uniq = got.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), got.len(), "no id twice: {json}");
        recall_sum += recall(&got, &want);
        n += 1;
        for s in &stats.segments {
            *plans.entry(s.plan).or_default() += 1;
            assert!(s.rows_matched.is_some() && s.filter.is_some(), "{s:?}");
        }
        let count = model
            .iter()
            .filter(|(id, (_, p))| f.matches(id, p.as_ref()))
            .count() as u64;
        assert_eq!(
            db.count_matching("c", &f).expect("count"),
            count,
            "count of {json}"
        );
    }
    let recall = recall_sum / f64::from(n);
    assert!(
        recall >= 0.95,
        "mean recall@10 {recall} over random filters"
    );
    assert!(
        plans.contains_key("index") && plans.contains_key("matches"),
        "random filters exercise both plans of the indexed segment: {plans:?}"
    );
}

/// Where a filter's matches lie.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Lie {
    /// Around the query (its nearest centres).
    Near,
    /// Around the centres farthest from the query.
    Far,
    /// Anywhere (a bucket that does not follow the centres).
    Random,
}

/// Filters of the given selectivity (share of the indexed segment's rows) whose matches lie
/// as `lie` says.
fn selective(q: &[f32], share: f64, lie: Lie) -> Filter {
    if lie == Lie::Random {
        let buckets = (share * 1000.0).round() as u64;
        return filter(json!({"must": [{"key": "bucket", "range": {"lt": buckets}}]}));
    }
    let near = lie == Lie::Near;
    let cs = centres();
    let mut order: Vec<usize> = (0..CENTRES).collect();
    order.sort_by(|&a, &b| {
        barq_core::l2_squared(&cs[a], q).total_cmp(&barq_core::l2_squared(&cs[b], q))
    });
    if !near {
        order.reverse();
    }
    // Whole centres while they fit, then a bucket range inside one.
    let per_centre = 1.0 / CENTRES as f64;
    let whole = (share / per_centre).floor() as usize;
    if whole >= 1 {
        return filter(json!({"must": [{"key": "centre", "match": {"any": order[..whole]}}]}));
    }
    let buckets = (share / per_centre * 1000.0).round() as u64;
    filter(json!({"must": [
        {"key": "centre", "match": {"value": order[0]}},
        {"key": "bucket", "range": {"lt": buckets}}
    ]}))
}

#[test]
fn recall_holds_from_half_the_rows_down_to_a_thousandth_near_far_and_anywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (exact_max, label) in [(2048, "planner"), (0, "index only")] {
        let sub = dir.path().join(label.replace(' ', "-"));
        let (db, model) = setup(&sub, fields(), false, exact_max);
        for share in [0.5, 0.1, 0.01, 0.001] {
            for lie in [Lie::Near, Lie::Far, Lie::Random] {
                let mut sum = 0.0;
                let mut matched = 0;
                for qi in 0..10 {
                    let q = query(qi);
                    let f = selective(&q, share, lie);
                    let want = brute_force(&model, &f, &q, 10);
                    let (hits, stats) = db
                        .search_explained("c", &SearchRequest::new(q, 10).filter(f))
                        .expect("search");
                    matched = stats.rows_matched.expect("with a filter");
                    sum += recall(&ids(&hits), &want);
                }
                let r = sum / 10.0;
                let real = matched as f64 / BASE as f64;
                assert!(
                    (real - share).abs() <= share * 0.2,
                    "{label}: the filter for {share} matched {matched} rows"
                );
                assert!(
                    r >= 0.95,
                    "{label}: recall@10 {r} at selectivity {share}, matches {lie:?}"
                );
            }
        }
        db.close().expect("close");
    }
}

#[test]
fn hot_and_cold_filtered_searches_answer_alike_and_cold_fetches_only_what_can_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, _model) = setup(dir.path(), fields(), false, 2048);
    let filters: Vec<Filter> = (0..6)
        .flat_map(|qi| {
            let q = query(qi);
            [
                selective(&q, 0.1, Lie::Random),
                selective(&q, 0.001, Lie::Far),
                filter(json!({"must": [{"key": "tags", "match": {"value": "t3"}}]})),
            ]
        })
        .collect();
    let run = |db: &Database| -> Vec<(Vec<SearchHit>, barq_storage::SearchStats)> {
        filters
            .iter()
            .enumerate()
            .map(|(i, f)| {
                db.search_explained(
                    "c",
                    &SearchRequest::new(query(i / 3), 10)
                        .with_payload(true)
                        .filter(f.clone()),
                )
                .expect("search")
            })
            .collect()
    };
    let hot = run(&db);
    for (_, st) in &hot {
        assert_eq!(st.cold_requests, 0);
    }
    let seg = db.tiering().segments("c").expect("segments")[0].clone();
    db.tiering().offload_segment("c", seg.id).expect("offload");
    drop(db);
    let db = Database::open(dir.path(), options(2048)).expect("reopen");
    let cold = run(&db);
    for (i, ((h, hs), (c, cs))) in hot.iter().zip(&cold).enumerate() {
        assert_eq!(c, h, "filter {i}: cold answers as hot");
        let (hs, cs) = (&hs.segments[0], &cs.segments[0]);
        assert_eq!(cs.tier, StorageTier::Cold);
        assert_eq!(
            (cs.plan, cs.rows_matched, cs.filter),
            (hs.plan, hs.rows_matched, hs.filter),
            "filter {i}: the same plan"
        );
    }
    // By index: matches at 0.1 % are read as their rows only; an unindexed field reads payloads.
    assert_eq!(cold[1].1.segments[0].plan, "matches");
    assert_eq!(cold[1].1.segments[0].filter, Some("payload index"));
    assert_eq!(cold[2].1.segments[0].filter, Some("payload scan"));
    // A filter that matches nothing fetches nothing: the filter head is kept locally and no
    // value part or cluster is read.
    let none = filter(json!({"must": [{"key": "lang", "match": {"value": "xx"}}]}));
    let (hits, st) = db
        .search_explained("c", &SearchRequest::new(query(0), 10).filter(none))
        .expect("search");
    assert!(hits.is_empty());
    assert_eq!((st.cold_requests, st.cold_bytes), (0, 0), "{st:?}");
    assert_eq!(st.segments[0].rows_matched, Some(0));
    // An unfiltered search, and a selective filtered one, from an empty cache.
    drop(db);
    let db = Database::open(dir.path(), options(2048)).expect("reopen");
    let (_, plain) = db
        .search_explained("c", &SearchRequest::new(query(1), 10))
        .expect("search");
    let (_, filtered) = db
        .search_explained(
            "c",
            &SearchRequest::new(query(2), 10).filter(selective(&query(2), 0.001, Lie::Near)),
        )
        .expect("search");
    assert!(
        filtered.cold_bytes <= plain.cold_bytes,
        "a selective filter fetched {} bytes, the unfiltered search {}",
        filtered.cold_bytes,
        plain.cold_bytes
    );
}

#[test]
fn fields_indexed_later_are_picked_up_by_an_index_build_and_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, model) = setup(dir.path(), Vec::new(), false, 2048);
    let f = filter(json!({"must": [{"key": "lang", "match": {"value": "de"}},
                                   {"key": "year", "range": {"gte": 2010}}]}));
    let q = query(3);
    let want = brute_force(&model, &f, &q, 10);
    let search = |db: &Database| {
        db.search_explained("c", &SearchRequest::new(q.clone(), 10).filter(f.clone()))
            .expect("search")
    };
    let (before, st) = search(&db);
    assert_eq!(st.segments[0].filter, Some("payload scan"));
    let added = db
        .add_indexed_fields(
            "c",
            &[
                IndexedField::new("lang", FieldType::Keyword),
                IndexedField::new("year", FieldType::Integer),
            ],
        )
        .expect("add");
    assert_eq!(added.len(), 2);
    let e = db
        .add_indexed_fields("c", &[IndexedField::new("lang", FieldType::Integer)])
        .expect_err("another type");
    assert!(e.message().contains("already indexed as keyword"), "{e}");
    assert_eq!(
        search(&db).1.segments[0].filter,
        Some("payload scan"),
        "the segment has no index of the new fields before a build"
    );
    assert_eq!(db.build_indexes("c").expect("build").len(), 1);
    assert!(
        db.build_indexes("c").expect("again").is_empty(),
        "nothing left to build"
    );
    let (after, st) = search(&db);
    assert_eq!(st.segments[0].filter, Some("payload index"));
    assert_eq!(ids(&after), ids(&before));
    assert!(recall(&ids(&after), &want) >= 0.9);
    db.close().expect("close");
    let db = Database::open(dir.path(), options(2048)).expect("reopen");
    assert_eq!(
        db.collection_config("c").expect("cfg").indexed_fields,
        added
    );
    assert_eq!(search(&db).1.segments[0].filter, Some("payload index"));
}

#[test]
fn rows_a_memtable_replaced_never_crowd_out_matches() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The index plan at every selectivity.
    let (db, mut model) = setup(dir.path(), fields(), false, 0);
    let q = query(4);
    let f = selective(&q, 0.5, Lie::Near);
    // The 300 nearest matches get a newer version (in the memtable) that no longer matches.
    let stale = brute_force(&model, &f, &q, 300);
    let docs: Vec<Document> = stale
        .iter()
        .map(|id| {
            let (v, p) = &model[id];
            let mut p = p.clone().unwrap_or_default();
            p.insert("centre".into(), json!(1000));
            Document {
                id: id.clone(),
                vector: v.clone(),
                payload: Some(p),
            }
        })
        .collect();
    upsert(&db, &mut model, docs);
    let want = brute_force(&model, &f, &q, 10);
    let (hits, stats) = db
        .search_explained("c", &SearchRequest::new(q.clone(), 10).filter(f.clone()))
        .expect("search");
    assert_eq!(stats.segments[0].plan, "index");
    assert_eq!(hits.len(), 10, "{stats:?}");
    for h in &hits {
        assert!(
            !stale.contains(&h.id),
            "{} was replaced by a version that does not match",
            h.id
        );
    }
    assert!(
        recall(&ids(&hits), &want) >= 0.9,
        "{:?} vs {want:?}",
        ids(&hits)
    );
    assert_eq!(
        db.count_matching("c", &f).expect("count"),
        model
            .iter()
            .filter(|(id, (_, p))| f.matches(id, p.as_ref()))
            .count() as u64
    );
}

#[test]
fn index_and_payloads_agree_on_edge_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path(), options(2048)).expect("open");
    db.create_collection(
        CollectionConfig::new("c", 2, Metric::L2)
            .expect("cfg")
            .with_indexed_fields(vec![
                IndexedField::new("n", FieldType::Integer),
                IndexedField::new("x", FieldType::Float),
                IndexedField::new("s", FieldType::Keyword),
                IndexedField::new("b", FieldType::Bool),
            ])
            .expect("fields"),
    )
    .expect("create");
    let p53: i64 = 1 << 53;
    let edge = [
        json!(p53 - 1),
        json!(p53),
        json!(p53 + 1),
        json!(-p53),
        json!(u64::MAX),
        json!(2020.0),
        json!(2020.5),
        json!(9007199254740992.0),
        json!("2020"),
        json!(true),
        Value::Null,
        json!([]),
        json!([1, "a", null]),
        json!({"k": 1}),
        json!("x".repeat(2000)),
    ];
    let mut model = Model::new();
    let docs: Vec<Document> = (0..6000)
        .map(|i| {
            let v = &edge[i % edge.len()];
            let p = json!({"n": v, "x": v, "s": v, "b": v});
            Document {
                id: format!("d{i:05}"),
                vector: vec![i as f32, 0.0],
                payload: p.as_object().cloned(),
            }
        })
        .collect();
    upsert(&db, &mut model, docs);
    db.flush("c").expect("flush");
    db.compact("c").expect("compact");
    let mut values: Vec<Value> = edge.iter().filter(|v| !v.is_object()).cloned().collect();
    values.extend([
        json!(2020),
        json!(p53 + 2),
        json!("a"),
        json!(1),
        json!(false),
    ]);
    for key in ["n", "x", "s", "b"] {
        let mut filters = vec![
            json!({"must": [{"exists": {"key": key}}]}),
            json!({"must": [{"is_null": {"key": key}}]}),
            json!({"must_not": [{"exists": {"key": key}}]}),
            json!({"must": [{"key": key, "range": {"gte": 2020}}]}),
            json!({"must": [{"key": key, "range": {"gt": p53 - 2, "lt": p53 + 2}}]}),
        ];
        for v in &values {
            if v.is_string() || v.is_boolean() || v.as_i64().is_some() {
                filters.push(json!({"must": [{"key": key, "match": {"value": v}}]}));
            }
        }
        for f in filters {
            let parsed = filter(f.clone());
            let want = model
                .iter()
                .filter(|(id, (_, p))| parsed.matches(id, p.as_ref()))
                .count() as u64;
            let (_, st) = db
                .search_explained(
                    "c",
                    &SearchRequest::new(vec![0.0, 0.0], 1).filter(parsed.clone()),
                )
                .expect("search");
            assert_eq!(st.segments[0].filter, Some("payload index"), "{f}");
            assert_eq!(db.count_matching("c", &parsed).expect("count"), want, "{f}");
        }
    }
}
