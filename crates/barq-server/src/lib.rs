//! Barq DB's HTTP/JSON API, served by `barq serve`: collections, documents, search, flush and
//! compaction, tiering (offload, hydrate, pins, policy overrides, maintenance, status),
//! asynchronous operations, `/metrics`, `/healthz`, `/readyz` and `/v1/openapi.json`.
//! docs/api.md documents every route.
//!
//! Every handler runs the (blocking) engine call on tokio's blocking pool. Every error is
//! `{"error": {"code", "message"}}` with the status [`error::status_of`] gives its kind.

mod auth;
pub mod body;
pub mod error;
mod metrics;
pub mod operations;
mod routes;
pub mod spec;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use barq_storage::Database;

pub use error::{ApiError, ErrorBody, status_of};

/// Server settings besides the database.
#[derive(Clone)]
pub struct ServerConfig {
    /// `BARQ_API_KEY`: when set, every route but the health checks needs it.
    pub api_key: Option<String>,
    /// `BARQ_ADMIN_API_KEY`: guards tiering, compaction and drop (the API key when unset).
    pub admin_api_key: Option<String>,
    /// Largest request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// A request that takes longer is answered 503 `timeout` (the engine call may still
    /// finish; use `"async": true` for long operations).
    pub request_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            api_key: None,
            admin_api_key: None,
            max_body_bytes: 64 << 20,
            request_timeout: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |k: &Option<String>| k.as_ref().map(|_| "<redacted>");
        f.debug_struct("ServerConfig")
            .field("api_key", &redact(&self.api_key))
            .field("admin_api_key", &redact(&self.admin_api_key))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

struct Inner {
    db: Arc<Database>,
    config: ServerConfig,
    metrics: metrics::Metrics,
    ops: Arc<operations::Operations>,
}

/// The state every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("db", &self.inner.db.path())
            .field("config", &self.inner.config)
            .finish()
    }
}

impl AppState {
    /// The state of a server over `db`.
    pub fn new(db: Arc<Database>, config: ServerConfig) -> Self {
        let ops = Arc::new(operations::Operations::default());
        AppState {
            inner: Arc::new(Inner {
                metrics: metrics::Metrics::new(Arc::clone(&db), Arc::clone(&ops)),
                db,
                config,
                ops,
            }),
        }
    }

    /// The database.
    pub fn db(&self) -> &Arc<Database> {
        &self.inner.db
    }

    /// Wait until no asynchronous operation runs, or `max` has passed; returns how many still
    /// run.
    pub async fn wait_for_operations(&self, max: Duration) -> usize {
        self.inner.ops.wait_idle(max).await
    }

    /// The router: every route of [`spec::ROUTES`] with auth, metrics, the body limit and the
    /// request timeout.
    pub fn router(&self) -> Router {
        routes::routes()
            .route_layer(middleware::from_fn_with_state(self.clone(), timeout))
            .route_layer(middleware::from_fn_with_state(
                self.clone(),
                auth::require_key,
            ))
            .route_layer(middleware::from_fn_with_state(self.clone(), metrics::track))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(self.inner.config.max_body_bytes))
            .with_state(self.clone())
    }
}

async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.inner.config.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {limit:?} (--request-timeout); long operations accept \"async\": true"
            ),
        )
        .into_response(),
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route {} {} (see /v1/openapi.json)",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Serve `state` on `listener` until `shutdown` completes; then stop accepting, finish the
/// requests in flight, and wait (up to `drain`) for asynchronous operations.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    axum::serve(listener, state.router())
        .with_graceful_shutdown(shutdown)
        .await?;
    let running = state.wait_for_operations(drain).await;
    if running > 0 {
        tracing::warn!(
            running,
            "shutting down with operations still running; they stop with the process and resume safely at the next start"
        );
    }
    Ok(())
}
