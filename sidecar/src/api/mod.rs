//! The HTTP API (v1) on hyper, and the web inspector beside it.
//!
//! A request is checked (`guard`: Host, Origin; then the bearer token), resolved against
//! the route table (`routes`), and handed to the module serving its group of routes:
//! `ops` (health, status, metrics), `agents`, `threads`, `collections` (listings,
//! transfers, batches, searches) and `inspector`. Each `match`es its own routes
//! exhaustively; handlers are thin wrappers over the [`Engine`]. `http` holds the
//! plumbing they share.
//!
//! Hazards: every input is hostile until parsed. Bodies are read through a size limit,
//! decoded into typed requests that refuse unknown fields, and every failure becomes a
//! 4xx with the documented error body. Nothing here panics on input.

mod agents;
mod collections;
mod error;
mod guard;
mod inspector;
mod openapi;
mod ops;
mod plumbing;
mod routes;
mod threads;

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use agentstate_protocol::{Codec, ErrorCode};
use http::{header, HeaderValue, Request};
use hyper::body::Incoming;
use tracing::Instrument;

pub use error::ApiError;
pub use guard::{AllowedHosts, Transport};

use crate::engine::Engine;
use crate::metrics as m;
use crate::validate;
use plumbing::{decode_path_param, error_response, method_not_allowed, not_found, response_codec};
use routes::{Resolved, RouteId};

/// What the handlers share. The engine appears once WAL replay is done; until then only
/// the health endpoints answer.
pub struct App {
    pub engine: OnceLock<Arc<Engine>>,
    pub body_bytes_max: usize,
    /// Required bearer token, if any.
    pub auth_token: Option<String>,
    /// Names a TCP request's `Host` may carry besides loopback ones.
    pub allowed_hosts: AllowedHosts,
    /// The inspector may change state (`--ui-writes`).
    pub ui_writes: bool,
}

pub(crate) type HttpResponse = http::Response<http_body_util::Full<bytes::Bytes>>;

/// The hyper service function.
pub async fn handle(
    app: Arc<App>,
    transport: Transport,
    req: Request<Incoming>,
) -> Result<HttpResponse, Infallible> {
    let codec = response_codec(req.headers());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!("request", %method, %path);
    let started = std::time::Instant::now();
    let template = routes::template(&path);
    async move {
        let checked =
            guard::check(&app.allowed_hosts, transport, &req).and_then(|()| authorize(&app, &req));
        let resp = match checked {
            Ok(()) => route(&app, req, codec).await,
            Err(e) => Err(e),
        };
        let mut resp = match resp {
            Ok(resp) => resp,
            Err(e) => error_response(&e, codec),
        };
        // Answers carry untrusted text (states and messages are model output, an error
        // may quote a header): a browser must take them as the type they say, never
        // sniff them into HTML.
        resp.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        let status = resp.status().as_u16();
        tracing::debug!(status, "request done");
        metrics::counter!(m::REQUESTS_TOTAL, "route" => template, "status" => status.to_string())
            .increment(1);
        metrics::histogram!(m::REQUEST_DURATION, "route" => template)
            .record(started.elapsed().as_secs_f64());
        Ok(resp)
    }
    .instrument(span)
    .await
}

async fn route(app: &App, req: Request<Incoming>, codec: Codec) -> Result<HttpResponse, ApiError> {
    let path = req.uri().path().to_string();
    let (route, params) = match routes::resolve(req.method().as_str(), &path) {
        Resolved::Found(route, params) => (route, params),
        Resolved::MethodNotAllowed(allow) => {
            return Err(method_not_allowed(req.method(), &path, allow))
        }
        Resolved::NotFound => return Err(not_found(&path)),
    };
    // The first path parameter is the agent, thread or transfer id; the second a
    // transition id. Clients may percent-encode any character (`:` as `%3A`).
    let params = params
        .into_iter()
        .map(decode_path_param)
        .collect::<Result<Vec<_>, _>>()?;
    let param = |i: usize| params.get(i).map_or("", String::as_str);
    match route {
        RouteId::Ops(r) => ops::ops_route(app, r, req.uri().query(), codec).await,
        RouteId::Inspector(r) => inspector::inspector_route(app, r, &params, req, codec).await,
        RouteId::Collection(r) => {
            let engine = engine(app)?;
            collections::collection_route(app, engine, r, &params, req, codec).await
        }
        RouteId::Thread(r) => {
            let id = param(0);
            validate::agent_id(id).map_err(|e| ApiError::malformed(format!("thread id: {e}")))?;
            let engine = engine(app)?;
            threads::thread_route(app, engine, r, id.to_string(), req, codec).await
        }
        RouteId::Agent(r) => {
            let id = param(0);
            validate::agent_id(id).map_err(ApiError::malformed)?;
            let engine = engine(app)?;
            let tid = param(1).to_string();
            agents::agent_route(app, engine, r, id.to_string(), tid, req, codec).await
        }
    }
}

/// With a token configured, every request but the probes and the inspector's files must
/// carry it. Compared in
/// constant time, so the answer's timing tells nothing about the token.
fn authorize<B>(app: &App, req: &Request<B>) -> Result<(), ApiError> {
    let Some(token) = &app.auth_token else {
        return Ok(());
    };
    // The probes, and the inspector's files, which hold no data: the page must load to
    // ask for the token.
    if matches!(
        req.uri().path(),
        "/healthz" | "/readyz" | "/ui" | "/ui/app.js" | "/ui/app.css"
    ) {
        return Ok(());
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    use subtle::ConstantTimeEq;
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Unauthorized,
            "missing or wrong bearer token (Authorization: Bearer <token>)",
        ))
    }
}

fn engine(app: &App) -> Result<&Arc<Engine>, ApiError> {
    app.engine.get().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "sidecar is starting: WAL replay is not finished",
        )
    })
}
