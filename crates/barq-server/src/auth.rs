//! Bearer-token authentication. With `BARQ_API_KEY` set every route but the health checks needs
//! `Authorization: Bearer <key>`; admin routes (tiering, compaction, drop) need
//! `BARQ_ADMIN_API_KEY`, or the API key when no admin key is set. Keys are compared in constant
//! time. A missing or unknown key is 401; a valid data key on an admin route is 403.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;
use crate::spec::{Access, access};

fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn unauthorized(message: &str) -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    resp
}

/// The middleware.
pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let keys = &state.inner.config;
    let admin_key = keys.admin_api_key.as_deref().or(keys.api_key.as_deref());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let level = route
        .as_deref()
        .and_then(|p| access(req.method().as_str(), p))
        .unwrap_or(Access::Data);
    let needed = match level {
        Access::Public => None,
        Access::Data => keys.api_key.as_deref(),
        Access::Admin => admin_key,
    };
    if needed.is_none() {
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme is case-insensitive (RFC 9110 §11.1).
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(token) = token else {
        return unauthorized("this server needs an API key: send `Authorization: Bearer <key>`");
    };
    let is_admin = admin_key.is_some_and(|k| same(token, k));
    let is_data = keys.api_key.as_deref().is_some_and(|k| same(token, k));
    let ok = match level {
        Access::Public => true,
        Access::Data => is_data || is_admin,
        Access::Admin => is_admin,
    };
    if ok {
        next.run(req).await
    } else if level == Access::Admin && is_data {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this route needs the admin API key (BARQ_ADMIN_API_KEY)",
        )
        .into_response()
    } else {
        unauthorized("the API key is not valid")
    }
}
