//! The handlers of [`crate::spec::ROUTES`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use barq_core::{CollectionConfig, Document, Metric, validate_collection_name, validate_id};
use barq_storage::tiering::{ColdStoreState, TieringOverrides};
use barq_storage::{Database, SearchRequest, SegmentEntry, StorageTier};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::body::{Body, OptionalBody};
use crate::error::ApiError;
use crate::operations::Operation;

type ApiResult<T = Json<Value>> = Result<T, ApiError>;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route(
            "/v1/collections",
            get(list_collections).post(create_collection),
        )
        .route("/v1/stats", get(stats))
        .route(
            "/v1/collections/{name}",
            get(get_collection).delete(drop_collection),
        )
        .route("/v1/collections/{name}/documents", post(upsert))
        .route(
            "/v1/collections/{name}/documents/{id}",
            get(get_document).delete(delete_document),
        )
        .route(
            "/v1/collections/{name}/delete-documents",
            post(delete_documents),
        )
        .route("/v1/collections/{name}/search", post(search))
        .route("/v1/collections/{name}/count", post(count))
        .route(
            "/v1/collections/{name}/indexed-fields",
            post(add_indexed_fields),
        )
        .route("/v1/collections/{name}/flush", post(flush))
        .route("/v1/collections/{name}/compact", post(compact))
        .route("/v1/collections/{name}/index", post(build_indexes))
        .route("/v1/collections/{name}/segments", get(segments))
        .route("/v1/collections/{name}/offload", post(offload))
        .route("/v1/collections/{name}/hydrate", post(hydrate))
        .route("/v1/collections/{name}/pin", post(pin))
        .route("/v1/collections/{name}/unpin", post(unpin))
        .route(
            "/v1/collections/{name}/tiering",
            get(get_tiering).put(put_tiering),
        )
        .route("/v1/tiering/status", get(tiering_status))
        .route("/v1/tiering/maintenance", post(maintenance))
        .route("/v1/operations", get(list_operations))
        .route("/v1/operations/{id}", get(get_operation))
}

/// Run a blocking engine call on the blocking pool.
async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> barq_core::Result<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(format!(
            "the request's task failed: {e}"
        ))),
    }
}

fn db(state: &AppState) -> Arc<Database> {
    Arc::clone(&state.inner.db)
}

/// A collection name from a path, checked before it reaches anything that builds a file path or
/// an object key.
fn name(name: &str) -> Result<String, ApiError> {
    validate_collection_name(name)?;
    Ok(name.to_owned())
}

fn json<T: Serialize>(v: &T) -> ApiResult {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| ApiError::internal(format!("could not encode the response: {e}")))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// How long a readiness or status check waits for the cold store.
const STORE_CHECK: Duration = Duration::from_secs(3);

/// `Ok(())` when the cold store answered within [`STORE_CHECK`].
async fn check_store(db: Arc<Database>) -> Result<(), String> {
    let check = tokio::task::spawn_blocking(move || db.tiering().check_cold_store());
    match tokio::time::timeout(STORE_CHECK, check).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e.message().to_owned()),
        Ok(Err(e)) => Err(format!("the check failed: {e}")),
        Err(_) => Err(format!(
            "the cold store did not answer within {STORE_CHECK:?}"
        )),
    }
}

/// Public. `ready` (200) when the cold store answers; `degraded` (still 200: writes and hot
/// data are served) with the reason (names the store, never a secret) when it does not;
/// `poisoned` (503) when a background worker panicked and the database takes no writes.
async fn readyz(State(s): State<AppState>) -> ApiResult {
    let db = db(&s);
    if let Some(why) = db.poisoned() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("not ready: {why}"),
        ));
    }
    let replica = db.replica_status();
    if let Some(r) = replica.as_ref().filter(|r| r.version.is_none()) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "not ready: this replica has not read a manifest version of {} yet{}",
                r.store,
                r.last_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
        ));
    }
    // A failed check makes the store degraded; only a successful probe clears that. A check
    // that is still waiting when this one gives up counts as a failure too.
    let checked = check_store(Arc::clone(&db)).await;
    if let Err(e) = &checked {
        tracing::warn!(error = %e, "the cold store does not answer");
    }
    let health = db.tiering().cold_store_health();
    let mut body = match (health.state, checked) {
        (ColdStoreState::Degraded, _) => json!({
            "status": "degraded",
            "cold_store": health.state.as_str(),
            "reason": health.reason,
            "since_ms": health.since_ms,
        }),
        (_, Err(reason)) => json!({
            "status": "degraded",
            "cold_store": ColdStoreState::Degraded.as_str(),
            "reason": reason,
        }),
        (state, Ok(())) => json!({"status": "ready", "cold_store": state.as_str()}),
    };
    if let Some(r) = replica {
        body["replica"] = json!(r);
    }
    Ok(Json(body))
}

async fn metrics(State(s): State<AppState>) -> ApiResult<Response> {
    let state = s.clone();
    let text = blocking(move || Ok(state.inner.metrics.encode())).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn openapi() -> Json<Value> {
    Json(crate::spec::openapi())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCollection {
    name: String,
    dimension: u32,
    metric: Metric,
    #[serde(default)]
    indexed_fields: Vec<barq_core::IndexedField>,
}

async fn list_collections(State(s): State<AppState>) -> ApiResult {
    json(&json!({"collections": s.inner.db.list_collections()}))
}

async fn create_collection(
    State(s): State<AppState>,
    Body(req): Body<CreateCollection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let config = CollectionConfig::new(req.name, req.dimension, req.metric)?
        .with_indexed_fields(req.indexed_fields)?;
    let db = db(&s);
    let created = config.clone();
    blocking(move || db.create_collection(config)).await?;
    Ok((StatusCode::CREATED, json(&created)?))
}

async fn stats(State(s): State<AppState>) -> ApiResult {
    let db = db(&s);
    json(&blocking(move || db.stats()).await?)
}

async fn get_collection(State(s): State<AppState>, Path(n): Path<String>) -> ApiResult {
    let n = name(&n)?;
    let db = db(&s);
    json(&blocking(move || db.collection_stats(&n)).await?)
}

async fn drop_collection(State(s): State<AppState>, Path(n): Path<String>) -> ApiResult {
    let n = name(&n)?;
    let db = db(&s);
    let dropped = n.clone();
    blocking(move || db.drop_collection(&n)).await?;
    Ok(Json(json!({"dropped": dropped})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Upsert {
    documents: Vec<Document>,
}

async fn upsert(
    State(s): State<AppState>,
    Path(n): Path<String>,
    Body(req): Body<Upsert>,
) -> ApiResult {
    let n = name(&n)?;
    if req.documents.is_empty() {
        return Err(ApiError::invalid("\"documents\" is empty"));
    }
    let count = req.documents.len();
    let db = db(&s);
    let collection = n.clone();
    blocking(move || db.upsert(&n, &req.documents)).await?;
    Ok(Json(json!({"collection": collection, "upserted": count})))
}

async fn get_document(
    State(s): State<AppState>,
    Path((n, id)): Path<(String, String)>,
) -> ApiResult {
    let n = name(&n)?;
    validate_id(&id)?;
    let db = db(&s);
    let (c, i) = (n.clone(), id.clone());
    match blocking(move || db.get(&c, &i)).await? {
        Some(doc) => json(&doc),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("document \"{id}\" not found in collection \"{n}\""),
        )),
    }
}

/// Delete `ids`, saying which existed.
async fn delete_ids(s: &AppState, n: String, ids: Vec<String>) -> ApiResult {
    for id in &ids {
        validate_id(id)?;
    }
    let db = db(s);
    let collection = n.clone();
    let report = blocking(move || {
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        db.delete_reporting(&n, &refs)
    })
    .await?;
    Ok(Json(
        json!({"collection": collection, "deleted": report.deleted, "missing": report.missing}),
    ))
}

async fn delete_document(
    State(s): State<AppState>,
    Path((n, id)): Path<(String, String)>,
) -> ApiResult {
    let n = name(&n)?;
    delete_ids(&s, n, vec![id]).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteDocuments {
    ids: Vec<String>,
}

async fn delete_documents(
    State(s): State<AppState>,
    Path(n): Path<String>,
    Body(req): Body<DeleteDocuments>,
) -> ApiResult {
    let n = name(&n)?;
    if req.ids.is_empty() {
        return Err(ApiError::invalid("\"ids\" is empty"));
    }
    delete_ids(&s, n, req.ids).await
}

fn default_k() -> usize {
    10
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Search {
    #[serde(deserialize_with = "barq_core::deserialize_vector")]
    vector: Vec<f32>,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default)]
    with_payload: bool,
    /// Brute force over every row, ignoring the indexes.
    #[serde(default)]
    exact: bool,
    /// Clusters probed per indexed segment.
    #[serde(default)]
    nprobe: Option<usize>,
    /// Recall@10 to aim for (the calibrated probe count).
    #[serde(default)]
    recall: Option<f32>,
    /// Return what the search did.
    #[serde(default)]
    explain: bool,
    /// Only documents this filter matches.
    #[serde(default)]
    filter: Option<Value>,
}

/// A filter from a request body, validated (a 400 naming the condition).
fn parse_filter(v: Option<&Value>) -> Result<Option<barq_core::Filter>, ApiError> {
    Ok(v.map(barq_core::Filter::from_json).transpose()?)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Count {
    #[serde(default)]
    filter: Option<Value>,
}

async fn count(
    State(s): State<AppState>,
    Path(n): Path<String>,
    OptionalBody(req): OptionalBody<Count>,
) -> ApiResult {
    let n = name(&n)?;
    let filter = parse_filter(req.filter.as_ref())?;
    let db = db(&s);
    let c = n.clone();
    let count = blocking(move || match &filter {
        Some(f) => db.count_matching(&c, f),
        None => db.count(&c),
    })
    .await?;
    json(&json!({"collection": n, "count": count}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddIndexedFields {
    indexed_fields: Vec<barq_core::IndexedField>,
}

async fn add_indexed_fields(
    State(s): State<AppState>,
    Path(n): Path<String>,
    Body(req): Body<AddIndexedFields>,
) -> ApiResult {
    let n = name(&n)?;
    let db = db(&s);
    let c = n.clone();
    let fields = blocking(move || db.add_indexed_fields(&c, &req.indexed_fields)).await?;
    json(&json!({"collection": n, "indexed_fields": fields}))
}

async fn search(
    State(s): State<AppState>,
    Path(n): Path<String>,
    Body(req): Body<Search>,
) -> ApiResult {
    let n = name(&n)?;
    let db = db(&s);
    let request = SearchRequest {
        vector: req.vector,
        k: req.k,
        with_payload: req.with_payload,
        exact: req.exact,
        nprobe: req.nprobe,
        recall: req.recall,
        filter: parse_filter(req.filter.as_ref())?,
    };
    let (results, stats) = blocking(move || db.search_explained(&n, &request)).await?;
    s.inner.metrics.observe_search(&stats);
    if req.explain {
        json(&json!({"results": results, "explain": stats}))
    } else {
        json(&json!({"results": results}))
    }
}

async fn flush(State(s): State<AppState>, Path(n): Path<String>) -> ApiResult {
    let n = name(&n)?;
    let db = db(&s);
    json(&blocking(move || db.flush(&n)).await?)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AsyncFlag {
    #[serde(default, rename = "async")]
    run_async: bool,
}

/// Run `work` now, or as an operation when `run_async` (202 with the operation).
async fn run_op<F>(
    s: &AppState,
    kind: &'static str,
    collection: Option<String>,
    run_async: bool,
    bytes_total: u64,
    work: F,
) -> ApiResult<Response>
where
    F: FnOnce(Option<&Operation>) -> Result<Value, ApiError> + Send + 'static,
{
    // Every operation writes (compaction, index builds, moves, maintenance): a replica refuses
    // it at once rather than in the operation's result.
    s.inner.db.check_writable()?;
    if run_async {
        let op = s
            .inner
            .ops
            .start(kind, collection, bytes_total, move |op| work(Some(op)));
        let view = op.view();
        let location = format!("/v1/operations/{}", view.id);
        return Ok((
            StatusCode::ACCEPTED,
            [(header::LOCATION, location)],
            json(&view)?,
        )
            .into_response());
    }
    match tokio::task::spawn_blocking(move || work(None)).await {
        Ok(r) => Ok(Json(r?).into_response()),
        Err(e) => Err(ApiError::internal(format!(
            "the request's task failed: {e}"
        ))),
    }
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(format!("could not encode: {e}")))
}

async fn compact(
    State(s): State<AppState>,
    Path(n): Path<String>,
    OptionalBody(flag): OptionalBody<AsyncFlag>,
) -> ApiResult<Response> {
    let n = name(&n)?;
    let db = db(&s);
    s.inner.db.collection_config(&n)?;
    run_op(
        &s,
        "compact",
        Some(n.clone()),
        flag.run_async,
        0,
        move |_| to_value(&db.compact(&n)?),
    )
    .await
}

async fn build_indexes(
    State(s): State<AppState>,
    Path(n): Path<String>,
    OptionalBody(flag): OptionalBody<AsyncFlag>,
) -> ApiResult<Response> {
    let n = name(&n)?;
    let db = db(&s);
    s.inner.db.collection_config(&n)?;
    run_op(&s, "index", Some(n.clone()), flag.run_async, 0, move |_| {
        let built = db.build_indexes(&n)?;
        to_value(&json!({"collection": n, "indexed": built}))
    })
    .await
}

async fn segments(State(s): State<AppState>, Path(n): Path<String>) -> ApiResult {
    let n = name(&n)?;
    let segments = s.inner.db.tiering().segments(&n)?;
    json(&json!({"collection": n, "segments": segments}))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveRequest {
    /// Only these segments (default: every sealed segment not already in the target tier).
    segments: Option<Vec<u64>>,
    #[serde(default, rename = "async")]
    run_async: bool,
}

async fn offload(
    State(s): State<AppState>,
    Path(n): Path<String>,
    OptionalBody(req): OptionalBody<MoveRequest>,
) -> ApiResult<Response> {
    move_segments(s, n, req, StorageTier::Cold, "offload").await
}

async fn hydrate(
    State(s): State<AppState>,
    Path(n): Path<String>,
    OptionalBody(req): OptionalBody<MoveRequest>,
) -> ApiResult<Response> {
    move_segments(s, n, req, StorageTier::Hot, "hydrate").await
}

/// The segments a move request names (all that are not in `to` by default); an unknown id is
/// 404 before anything moves.
fn chosen(
    db: &Database,
    n: &str,
    ids: Option<&[u64]>,
    to: StorageTier,
) -> Result<Vec<SegmentEntry>, ApiError> {
    let all = db.tiering().segments(n)?;
    match ids {
        None => Ok(all.into_iter().filter(|e| e.tier != to).collect()),
        Some(ids) => ids
            .iter()
            .map(|id| {
                all.iter().find(|e| e.id == *id).cloned().ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        format!("collection \"{n}\" has no segment {id}"),
                    )
                })
            })
            .collect(),
    }
}

async fn move_segments(
    s: AppState,
    n: String,
    req: MoveRequest,
    to: StorageTier,
    kind: &'static str,
) -> ApiResult<Response> {
    let n = name(&n)?;
    let db = db(&s);
    let segs = chosen(&db, &n, req.segments.as_deref(), to)?;
    let total: u64 = segs.iter().map(|e| e.size_bytes).sum();
    run_op(&s, kind, Some(n.clone()), req.run_async, total, move |op| {
        let ids: Vec<u64> = segs.iter().map(|e| e.id).collect();
        let progress = |_: usize, _: u64, bytes: u64| {
            if let Some(op) = op {
                op.bytes_done
                    .store(bytes, std::sync::atomic::Ordering::Relaxed);
            }
        };
        // One failure does not stop the other segments (as with the CLI's `--all`); the
        // failures are reported at the end, with the moves that were done.
        let batch = db.tiering().move_segments(&n, &ids, to, &progress)?;
        if let Some((_, first)) = batch.failures.first() {
            let listed: Vec<String> = batch
                .failures
                .iter()
                .map(|(id, e)| format!("segment {id}: {}", e.message()))
                .collect();
            let moved: Vec<String> = batch
                .moves
                .iter()
                .map(|m| m.segment_id.to_string())
                .collect();
            return Err(ApiError::from(barq_core::Error::new(
                first.kind(),
                format!(
                    "{} of {} moves failed ({}); moved: [{}]",
                    batch.failures.len(),
                    segs.len(),
                    listed.join("; "),
                    moved.join(", ")
                ),
            )));
        }
        let bytes_moved = batch.bytes_moved();
        Ok(json!({"collection": n, "to": to, "moves": batch.moves, "bytes_moved": bytes_moved}))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinRequest {
    segment: Option<u64>,
}

async fn set_pin(s: AppState, n: String, req: PinRequest, pinned: bool) -> ApiResult {
    let n = name(&n)?;
    let db = db(&s);
    let (c, seg) = (n.clone(), req.segment);
    blocking(move || {
        if pinned {
            db.tiering().pin(&c, seg)
        } else {
            db.tiering().unpin(&c, seg)
        }
    })
    .await?;
    Ok(Json(
        json!({"collection": n, "segment": req.segment, "pinned": pinned}),
    ))
}

async fn pin(
    State(s): State<AppState>,
    Path(n): Path<String>,
    OptionalBody(req): OptionalBody<PinRequest>,
) -> ApiResult {
    set_pin(s, n, req, true).await
}

async fn unpin(
    State(s): State<AppState>,
    Path(n): Path<String>,
    OptionalBody(req): OptionalBody<PinRequest>,
) -> ApiResult {
    set_pin(s, n, req, false).await
}

/// The overrides are [`TieringOverrides`] in their own serde form (durations as humantime
/// strings, sizes as integers; unknown fields refused), the same as in the manifest.
async fn get_tiering(State(s): State<AppState>, Path(n): Path<String>) -> ApiResult {
    let n = name(&n)?;
    let o = s.inner.db.tiering().overrides(&n)?;
    json(&json!({"collection": n, "overrides": o}))
}

async fn put_tiering(
    State(s): State<AppState>,
    Path(n): Path<String>,
    Body(o): Body<TieringOverrides>,
) -> ApiResult {
    let n = name(&n)?;
    let db = db(&s);
    let c = n.clone();
    blocking(move || db.tiering().set_overrides(&c, o)).await?;
    let o = s.inner.db.tiering().overrides(&n)?;
    json(&json!({"collection": n, "overrides": o}))
}

async fn tiering_status(State(s): State<AppState>) -> ApiResult {
    let d = db(&s);
    let status = blocking(move || d.tiering().status()).await?;
    let check = check_store(db(&s)).await;
    let mut status = status;
    status.cold_store_reachable = Some(check.is_ok());
    status.cold_store_error = check.err();
    status.cold_store_health = s.inner.db.tiering().cold_store_health();
    json(&status)
}

async fn maintenance(
    State(s): State<AppState>,
    OptionalBody(flag): OptionalBody<AsyncFlag>,
) -> ApiResult<Response> {
    let db = db(&s);
    run_op(&s, "maintenance", None, flag.run_async, 0, move |_| {
        to_value(&db.tiering().run_maintenance()?)
    })
    .await
}

async fn list_operations(State(s): State<AppState>) -> ApiResult {
    json(&json!({"operations": s.inner.ops.list()}))
}

async fn get_operation(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let op = s.inner.ops.get(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no operation \"{id}\" (finished operations are kept for a while only)"),
        )
    })?;
    json(&op.view())
}
