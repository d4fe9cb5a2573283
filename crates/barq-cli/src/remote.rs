//! The HTTP client of `--url`: calls the routes of a running `barq serve` (see
//! `barq_server::spec::ROUTES`) and turns its answers back into the engine's values and errors,
//! so that the commands print the same thing in both modes.

use std::fmt;
use std::time::Duration;

use barq_core::{Error, ErrorKind, Result};
use barq_server::ErrorBody;
use barq_server::spec::{self, Access};
use reqwest::blocking::{Client as Http, Response};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// How often an asynchronous operation is polled.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// A connection to a Barq server.
pub struct Client {
    base: Url,
    http: Http,
    api_key: Option<String>,
    admin_key: Option<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |k: &Option<String>| k.as_ref().map(|_| "<redacted>");
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("api_key", &redact(&self.api_key))
            .field("admin_key", &redact(&self.admin_key))
            .finish_non_exhaustive()
    }
}

/// `GET /v1/operations/{id}`, the fields the client reads.
#[derive(Debug, Deserialize)]
struct OperationView {
    id: String,
    state: String,
    #[serde(default)]
    bytes_done: u64,
    #[serde(default)]
    bytes_total: u64,
    result: Option<Value>,
    error: Option<ErrorBody>,
}

impl Client {
    /// A client of the server at `url` (`http://host:port`, optionally with a path prefix).
    /// Data routes send `api_key`; admin routes send `admin_key`, or `api_key` without one.
    pub fn new(url: &str, api_key: Option<String>, admin_key: Option<String>) -> Result<Client> {
        let base = Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "invalid --url {url:?}: expected http://HOST:PORT or https://HOST:PORT"
                ))
            })?;
        let http = Http::builder()
            .connect_timeout(Duration::from_secs(10))
            // Flushes, big upserts and searches of cold data may take long; the server has its
            // own request timeout.
            .timeout(None::<Duration>)
            .user_agent(concat!("barq-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))?;
        let nonempty = |k: Option<String>| k.filter(|k| !k.is_empty());
        Ok(Client {
            base,
            http,
            api_key: nonempty(api_key),
            admin_key: nonempty(admin_key),
        })
    }

    /// The server's URL as given.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The URL of `route` (a path template of `ROUTES`) with its `{…}` parameters replaced by
    /// `params`, in order and percent-encoded.
    fn url(&self, route: &str, params: &[&str]) -> Url {
        let mut url = self.base.clone();
        let mut params = params.iter();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty();
            for seg in route.split('/').filter(|s| !s.is_empty()) {
                if seg.starts_with('{') {
                    segs.push(params.next().copied().unwrap_or_default());
                } else {
                    segs.push(seg);
                }
            }
        }
        url
    }

    /// Send one request and return the successful response; an error answer becomes the
    /// engine error of its code.
    fn send(
        &self,
        method: &'static str,
        route: &'static str,
        params: &[&str],
        body: Option<&Value>,
    ) -> Result<Response> {
        let access = spec::access(method, route);
        debug_assert!(access.is_some(), "{method} {route} is not in ROUTES");
        let key = match access {
            Some(Access::Public) => None,
            Some(Access::Admin) => self.admin_key.as_ref().or(self.api_key.as_ref()),
            Some(Access::Data) | None => self.api_key.as_ref(),
        };
        let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
        let url = self.url(route, params);
        tracing::debug!(%method, %url, "request");
        let mut req = self.http.request(method, url);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().map_err(|e| self.transport_error(&e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.error_answer(resp))
    }

    /// Call `route` and decode its JSON answer.
    pub fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        route: &'static str,
        params: &[&str],
        body: Option<&Value>,
    ) -> Result<T> {
        let resp = self.send(method, route, params, body)?;
        self.decode(resp)
    }

    fn decode<T: DeserializeOwned>(&self, resp: Response) -> Result<T> {
        let bytes = resp.bytes().map_err(|e| self.transport_error(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::internal(format!(
                "unexpected answer from the Barq server at {}: {e}",
                self.base()
            ))
        })
    }

    /// Run a long operation (`POST route` with `"async": true` added to `body`): poll it every
    /// 200 ms, report `(bytes_done, bytes_total)` to `progress`, and return its result, which
    /// is what the synchronous request would have answered.
    pub fn operation<T: DeserializeOwned>(
        &self,
        route: &'static str,
        params: &[&str],
        mut body: Value,
        progress: &dyn Fn(u64, u64),
    ) -> Result<T> {
        body["async"] = json!(true);
        let resp = self.send("POST", route, params, Some(&body))?;
        if resp.status() != StatusCode::ACCEPTED {
            // The server ran it at once.
            return self.decode(resp);
        }
        let mut op: OperationView = self.decode(resp)?;
        loop {
            progress(op.bytes_done, op.bytes_total);
            match op.state.as_str() {
                "succeeded" => {
                    let result = op.result.unwrap_or(Value::Null);
                    return serde_json::from_value(result).map_err(|e| {
                        Error::internal(format!(
                            "unexpected result of operation {} from the Barq server at {}: {e}",
                            op.id,
                            self.base()
                        ))
                    });
                }
                "failed" => {
                    let body = op.error.unwrap_or_else(|| ErrorBody {
                        code: "internal".into(),
                        message: format!("operation {} failed", op.id),
                    });
                    return Err(self.api_error(None, body));
                }
                _ => {}
            }
            std::thread::sleep(POLL_EVERY);
            op = self.call("GET", "/v1/operations/{id}", &[&op.id], None)?;
        }
    }

    /// A request that got no answer.
    fn transport_error(&self, e: &reqwest::Error) -> Error {
        // The innermost cause says the most ("Connection refused (os error 111)").
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        let what = if e.is_decode() || e.is_body() {
            "lost the answer of"
        } else {
            "cannot reach"
        };
        Error::new(
            ErrorKind::Unavailable,
            format!("{what} the Barq server at {}: {cause}", self.base()),
        )
    }

    /// An error answer: `{"error": {"code", "message"}}`, or whatever a proxy sent.
    fn error_answer(&self, resp: Response) -> Error {
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        #[derive(Deserialize)]
        struct Wrapper {
            error: ErrorBody,
        }
        let body = match serde_json::from_str::<Wrapper>(&text) {
            Ok(w) => w.error,
            Err(_) => ErrorBody {
                code: match status {
                    StatusCode::BAD_REQUEST => "invalid_argument",
                    StatusCode::NOT_FOUND => "not_found",
                    StatusCode::CONFLICT => "conflict",
                    StatusCode::UNAUTHORIZED => "unauthorized",
                    StatusCode::FORBIDDEN => "forbidden",
                    _ => "unavailable",
                }
                .into(),
                message: format!(
                    "the server at {} answered {status}: {}",
                    self.base(),
                    text.chars().take(200).collect::<String>()
                ),
            },
        };
        self.api_error(Some(status), body)
    }

    /// The engine error of an API error code (so that the exit status is that of local mode).
    fn api_error(&self, status: Option<StatusCode>, body: ErrorBody) -> Error {
        let ErrorBody { code, message } = body;
        let kind = match code.as_str() {
            "invalid_argument" => ErrorKind::InvalidArgument,
            "not_found" => ErrorKind::NotFound,
            "conflict" => ErrorKind::Conflict,
            "read_only" => ErrorKind::ReadOnly,
            "closed" => ErrorKind::Closed,
            "data_corruption" => ErrorKind::DataCorruption,
            "internal" => ErrorKind::Internal,
            _ => ErrorKind::Unavailable,
        };
        let message = match code.as_str() {
            "unauthorized" => format!(
                "the Barq server at {} refused the request: {message} (give the key with \
                 --api-key or BARQ_API_KEY)",
                self.base()
            ),
            "forbidden" => format!(
                "the Barq server at {} refused the request: {message} (set BARQ_ADMIN_API_KEY \
                 to the admin key)",
                self.base()
            ),
            "payload_too_large" => {
                format!("{message}; use a smaller --batch-size")
            }
            _ => message,
        };
        tracing::debug!(?status, %code, "error answer");
        Error::new(kind, message)
    }
}
