//! `GET /metrics`: request counts and latency histograms per route (recorded by a middleware),
//! and the database's own numbers read at scrape time (documents and bytes per collection,
//! segments and bytes per tier, moves, the cold cache, cold-store traffic).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use barq_storage::Database;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;
use crate::operations::Operations;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The registry and the HTTP metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    cold_requests: Histogram,
    cold_bytes: Histogram,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Metrics {
    /// Metrics of `db` and of the server's operations.
    pub fn new(db: Arc<Database>, ops: Arc<Operations>) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "barq_http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "barq_http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        // 1 to 32,768 requests; 4 KiB to 32 GiB.
        let cold_requests = Histogram::new(exponential_buckets(1.0, 2.0, 16));
        let cold_bytes = Histogram::new(exponential_buckets(4096.0, 4.0, 13));
        registry.register(
            "barq_search_cold_requests",
            "Ranged reads sent to the cold store per search that read a cold segment",
            cold_requests.clone(),
        );
        registry.register(
            "barq_search_cold_bytes",
            "Bytes fetched from the cold store per search that read a cold segment",
            cold_bytes.clone(),
        );
        registry.register_collector(Box::new(DbCollector { db, ops }));
        Metrics {
            registry,
            requests,
            latency,
            cold_requests,
            cold_bytes,
        }
    }

    /// Record what a search cost in cold reads (searches that read no cold segment are not
    /// recorded).
    pub fn observe_search(&self, stats: &barq_storage::SearchStats) {
        if stats
            .segments
            .iter()
            .any(|s| s.tier == barq_storage::StorageTier::Cold)
        {
            self.cold_requests.observe(stats.cold_requests as f64);
            self.cold_bytes.observe(stats.cold_bytes as f64);
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// The middleware that counts and times every routed request.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let resp = next.run(req).await;
    let m = &state.inner.metrics;
    m.latency
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}

/// Reads the database's numbers at each scrape.
#[derive(Debug)]
struct DbCollector {
    db: Arc<Database>,
    ops: Arc<Operations>,
}

fn gauge<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in values {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in values {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

type NoLabels = [(&'static str, &'static str); 0];

impl Collector for DbCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        // A scrape never reads the cold store: see `stats_without_cold_reads`.
        let stats = match self.db.stats_without_cold_reads() {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(error = %err, "metrics: reading database statistics failed");
                return Ok(());
            }
        };
        let cols = &stats.collections;
        gauge(
            &mut e,
            "barq_collection_documents",
            "Live documents per collection (left out for a collection with cold segments: \
             counting them reads the cold store; see barq_collection_rows)",
            cols.iter()
                .filter(|c| !c.tiers.contains_key(&barq_storage::StorageTier::Cold))
                .map(|c| ([("collection", c.name.clone())], i(c.documents))),
        )?;
        gauge(
            &mut e,
            "barq_collection_rows",
            "Rows per collection in segments and memtables, shadowed versions and tombstones included",
            cols.iter().map(|c| {
                (
                    [("collection", c.name.clone())],
                    i(c.segment_rows + c.memtable_rows),
                )
            }),
        )?;
        counter(
            &mut e,
            "barq_search_recall_samples",
            "Searches through an index re-run exactly to measure recall, per collection",
            cols.iter()
                .map(|c| ([("collection", c.name.clone())], c.recall_samples)),
        )?;
        {
            let mut m = e.encode_descriptor(
                "barq_search_sampled_recall",
                "Recall@k of the sampled searches since start, per collection (exact top-k hits \
                 found / wanted)",
                None,
                MetricType::Gauge,
            )?;
            for c in cols {
                if let Some(r) = c.sampled_recall {
                    ConstGauge::new(r)
                        .encode(m.encode_family(&[("collection", c.name.clone())])?)?;
                }
            }
        }
        let per_tier = |f: fn(&barq_storage::TierStats) -> u64| {
            cols.iter()
                .flat_map(move |c| {
                    c.tiers.iter().map(move |(t, s)| {
                        (
                            [("collection", c.name.clone()), ("tier", t.to_string())],
                            i(f(s)),
                        )
                    })
                })
                .collect::<Vec<_>>()
        };
        gauge(
            &mut e,
            "barq_collection_segment_bytes",
            "Segment bytes per collection and tier",
            per_tier(|s| s.bytes),
        )?;
        gauge(
            &mut e,
            "barq_collection_segments",
            "Segments per collection and tier",
            per_tier(|s| s.segments),
        )?;
        let Ok(status) = self.db.tiering().status() else {
            return Ok(());
        };
        gauge(
            &mut e,
            "barq_cold_store_degraded",
            "1 while the cold store is degraded (it failed a probe or an operation), else 0",
            [(
                NoLabels::default(),
                i(u64::from(
                    status.cold_store_health.state
                        == barq_storage::tiering::ColdStoreState::Degraded,
                )),
            )],
        )?;
        gauge(
            &mut e,
            "barq_database_poisoned",
            "1 once a background worker panicked and the database takes no writes, else 0",
            [(NoLabels::default(), i(u64::from(status.poisoned.is_some())))],
        )?;
        if let Some(r) = self.db.replica_status() {
            gauge(
                &mut e,
                "barq_replica_manifest_version",
                "The manifest version of the bucket this read-only replica serves (0: none yet)",
                [(NoLabels::default(), i(r.version.unwrap_or(0)))],
            )?;
            gauge(
                &mut e,
                "barq_replica_behind_versions",
                "How many version numbers the served manifest is behind the bucket's newest",
                [(NoLabels::default(), i(r.behind_versions))],
            )?;
            gauge(
                &mut e,
                "barq_replica_lag_milliseconds",
                "How long the bucket's newest manifest version has waited to be served",
                [(NoLabels::default(), i(r.lag_ms))],
            )?;
        }
        let b = &status.bucket;
        if b.enabled {
            gauge(
                &mut e,
                "barq_upload_lag_segments",
                "Sealed segments not yet copied to the cold store (upload on seal)",
                [(NoLabels::default(), i(b.upload_lag_segments))],
            )?;
            gauge(
                &mut e,
                "barq_upload_lag_bytes",
                "Bytes of the sealed segments not yet copied to the cold store",
                [(NoLabels::default(), i(b.upload_lag_bytes))],
            )?;
            gauge(
                &mut e,
                "barq_manifest_publish_lag_versions",
                "Local manifest versions newer than the newest one published to the bucket",
                [(
                    NoLabels::default(),
                    i(b.local_version
                        .saturating_sub(b.published_version.unwrap_or(0))),
                )],
            )?;
            gauge(
                &mut e,
                "barq_writer_fenced",
                "1 once a newer writer claimed the bucket and this node takes no writes, else 0",
                [(NoLabels::default(), i(u64::from(b.fenced.is_some())))],
            )?;
        }
        gauge(
            &mut e,
            "barq_tier_segments",
            "Segments per tier, all collections",
            status
                .tiers
                .iter()
                .map(|(t, s)| ([("tier", t.to_string())], i(s.segments))),
        )?;
        gauge(
            &mut e,
            "barq_tier_bytes",
            "Segment bytes per tier, all collections",
            status
                .tiers
                .iter()
                .map(|(t, s)| ([("tier", t.to_string())], i(s.bytes))),
        )?;
        let c = &status.counters;
        counter(
            &mut e,
            "barq_tier_moves",
            "Segment moves by result",
            [
                ([("result", "done")], c.moves_done),
                ([("result", "failed")], c.moves_failed),
            ],
        )?;
        counter(
            &mut e,
            "barq_tier_move_bytes",
            "Bytes moved between tiers by direction",
            [
                ([("direction", "upload")], c.bytes_uploaded),
                ([("direction", "download")], c.bytes_downloaded),
            ],
        )?;
        {
            let mut m = e.encode_descriptor(
                "barq_tier_move_duration_seconds",
                "Wall time spent in the moves done",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(c.move_millis as f64 / 1000.0)
                .encode(m.encode_family(&NoLabels::default())?)?;
        }
        gauge(
            &mut e,
            "barq_tier_moves_in_progress",
            "Moves and compactions running now",
            [(NoLabels::default(), i(status.in_progress.len() as u64))],
        )?;
        counter(
            &mut e,
            "barq_cold_cache_requests",
            "Cold reads by cache result",
            [
                ([("result", "hit")], c.cache_hits),
                ([("result", "miss")], c.cache_misses),
            ],
        )?;
        counter(
            &mut e,
            "barq_cold_cache_evictions",
            "Cold cache entries evicted",
            [(NoLabels::default(), c.cache_evictions)],
        )?;
        gauge(
            &mut e,
            "barq_cold_cache_bytes",
            "Bytes in the cold cache",
            [(NoLabels::default(), i(c.cache_bytes))],
        )?;
        gauge(
            &mut e,
            "barq_cold_heads_kept",
            "Cold segments whose footer and index head are kept on local disk across restarts",
            [(NoLabels::default(), i(c.heads_kept))],
        )?;
        gauge(
            &mut e,
            "barq_cold_heads_kept_bytes",
            "Bytes of the cold segments' metadata kept on local disk",
            [(NoLabels::default(), i(c.heads_kept_bytes))],
        )?;
        gauge(
            &mut e,
            "barq_cold_cache_budget_bytes",
            "The cold cache's byte budget",
            [(NoLabels::default(), i(c.cache_budget_bytes))],
        )?;
        counter(
            &mut e,
            "barq_remote_requests",
            "Requests sent to the cold store by result",
            [
                ([("result", "sent")], c.remote_requests),
                ([("result", "failed")], c.remote_failures),
            ],
        )?;
        counter(
            &mut e,
            "barq_remote_bytes_fetched",
            "Bytes fetched from the cold store by cold reads",
            [(NoLabels::default(), c.remote_bytes_fetched)],
        )?;
        counter(
            &mut e,
            "barq_orphans_deleted",
            "Unreferenced cold-store objects deleted",
            [(NoLabels::default(), c.orphans_deleted)],
        )?;
        gauge(
            &mut e,
            "barq_operations_running",
            "Asynchronous API operations running",
            [(NoLabels::default(), i(self.ops.running() as u64))],
        )?;
        Ok(())
    }
}
