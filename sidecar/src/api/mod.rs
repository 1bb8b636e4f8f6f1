//! The HTTP API (v1) on hyper: routing, content negotiation, preconditions, and the
//! handlers, which are thin wrappers over the [`Engine`].
//!
//! Hazards: every input is hostile until parsed. Bodies are read through a size limit,
//! decoded into typed requests that refuse unknown fields, and every failure becomes a
//! 4xx with the documented error body. Nothing here panics on input.

mod error;
mod guard;
mod openapi;
mod routes;
mod threads;

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use crate::model::{
    AppendMessagesRequest, BatchRequest, CheckpointsPage, MessagesPage, SaveStateRequest,
    TransferRequest, TransitionRequest, TransitionsPage,
};
use agentstate_protocol::{
    CheckpointRequest, Codec, Durability, ErrorCode, ReplayRequest, RollbackRequest,
    StatusResponse, UsageResponse, VersionResponse,
};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::{de::DeserializeOwned, Serialize};
use tracing::Instrument;

pub use error::ApiError;
pub use guard::{AllowedHosts, Transport};

use crate::engine::{Engine, EngineError, Precondition, PAGE_LIMIT_MAX};
use crate::metrics as m;
use crate::validate;
use routes::{Resolved, RouteId};

/// Default page size of log reads.
const PAGE_LIMIT_DEFAULT: u32 = 100;

/// What the handlers share. The engine appears once WAL replay is done; until then only
/// the health endpoints answer.
pub struct App {
    pub engine: OnceLock<Arc<Engine>>,
    pub body_bytes_max: usize,
    pub backlog_bytes_max: u64,
    /// Required bearer token, if any.
    pub auth_token: Option<String>,
    /// Names a TCP request's `Host` may carry besides loopback ones.
    pub allowed_hosts: AllowedHosts,
}

pub(crate) type HttpResponse = Response<Full<Bytes>>;

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
        RouteId::Healthz => Ok(plain(StatusCode::OK, "ok\n".into())),
        RouteId::Readyz => Ok(match app.engine.get().map(|e| e.unready_reason()) {
            Some(None) => plain(StatusCode::OK, "ready\n".into()),
            Some(Some(why)) => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
            None => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: replaying the WAL\n".into(),
            ),
        }),
        RouteId::Status => status(app, codec),
        RouteId::Usage => {
            let top = usage_top(req.uri().query())?;
            let engine = engine(app)?;
            let body = UsageResponse {
                backend: engine.store_kind().to_string(),
                tables: engine.store.usage().await.map_err(EngineError::from)?,
                largest: engine
                    .store
                    .largest_agents(top)
                    .await
                    .map_err(EngineError::from)?,
            };
            encode(StatusCode::OK, codec, &body)
        }
        RouteId::Metrics => {
            match app.engine.get() {
                Some(e) => e.set_gauges(),
                None => metrics::gauge!(m::READY).set(0.0),
            }
            let text = m::render();
            let mut resp = Response::new(Full::new(Bytes::from(text)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            Ok(resp)
        }
        RouteId::OpenApi => Ok(openapi::response()),
        RouteId::Transfer => {
            let engine = engine(app)?;
            let durability = durability(&req)?;
            let body: TransferRequest = decode_body(app, req).await?;
            let transfer = engine.transfer(body, durability).await?;
            encode(StatusCode::OK, codec, &transfer)
        }
        RouteId::GetTransfer => {
            let id = param(0);
            validate::agent_id(id).map_err(|e| ApiError::malformed(format!("transfer id: {e}")))?;
            let transfer = engine(app)?.get_transfer(id).await?;
            encode(StatusCode::OK, codec, &transfer)
        }
        RouteId::Batch => {
            let engine = engine(app)?;
            let durability = durability(&req)?;
            let body: BatchRequest = decode_body(app, req).await?;
            let resp = engine.batch(body, durability).await?;
            encode(StatusCode::OK, codec, &resp)
        }
        RouteId::PutThreadCheckpoint
        | RouteId::PutThreadWrites
        | RouteId::GetThreadCheckpoint
        | RouteId::DeleteThread
        | RouteId::CopyThread
        | RouteId::DeltaHistory => {
            let id = param(0);
            validate::agent_id(id).map_err(|e| ApiError::malformed(format!("thread id: {e}")))?;
            let engine = engine(app)?;
            threads::thread_route(app, engine, route, id.to_string(), req, codec).await
        }
        RouteId::SearchCheckpoints | RouteId::PruneCheckpoints | RouteId::DeleteForRuns => {
            let engine = engine(app)?;
            threads::checkpoints_route(app, engine, route, req, codec).await
        }
        RouteId::GetAgent
        | RouteId::PutAgent
        | RouteId::DeleteAgent
        | RouteId::PostTransition
        | RouteId::ListTransitions
        | RouteId::BeginTransition
        | RouteId::CompleteTransition
        | RouteId::AbortTransition
        | RouteId::AppendMessages
        | RouteId::ListMessages
        | RouteId::ClearMessages
        | RouteId::PopMessage
        | RouteId::TakeCheckpoint
        | RouteId::ListCheckpoints
        | RouteId::Rollback
        | RouteId::Replay => {
            let id = param(0);
            validate::agent_id(id).map_err(ApiError::malformed)?;
            let engine = engine(app)?;
            let tid = param(1).to_string();
            agent_route(app, engine, route, id.to_string(), tid, req, codec).await
        }
    }
}

/// Routes under `/v1/agents/{id}`.
async fn agent_route(
    app: &App,
    engine: &Arc<Engine>,
    route: RouteId,
    id: String,
    tid: String,
    req: Request<Incoming>,
    codec: Codec,
) -> Result<HttpResponse, ApiError> {
    // Mutating calls all take If-Match and a durability.
    let (cond, durability) = if req.method() == Method::GET {
        (Precondition::None, Durability::default())
    } else {
        (precondition(req.headers())?, durability(&req)?)
    };
    match route {
        RouteId::GetAgent => {
            let record = engine.get(&id).await?;
            let body = record.state_body(codec).map_err(|e| {
                ApiError::new(ErrorCode::Internal, format!("cannot encode response: {e}"))
            })?;
            with_etag(
                Ok(bytes_response(StatusCode::OK, codec, body)),
                record.state.version,
            )
        }
        RouteId::PutAgent => {
            let body: SaveStateRequest = decode_body(app, req).await?;
            let version = engine.save(id, body, cond, durability).await?;
            with_etag(
                encode(StatusCode::OK, codec, &VersionResponse { version }),
                version,
            )
        }
        RouteId::DeleteAgent => {
            engine.delete(id, cond, durability).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        RouteId::PostTransition => {
            let body: TransitionRequest = decode_body(app, req).await?;
            let resp = engine.transition(id, body, cond, durability).await?;
            let version = resp.version;
            with_etag(encode(StatusCode::OK, codec, &resp), version)
        }
        RouteId::ListTransitions => {
            let q = Query::parse(req.uri().query())?;
            let transitions = engine.transitions(&id, q.after, q.limit).await?;
            encode(StatusCode::OK, codec, &TransitionsPage { transitions })
        }
        RouteId::BeginTransition => {
            let body: TransitionRequest = decode_body(app, req).await?;
            let resp = engine.begin_transition(id, body, cond, durability).await?;
            let version = resp.version;
            with_etag(encode(StatusCode::OK, codec, &resp), version)
        }
        RouteId::CompleteTransition | RouteId::AbortTransition => {
            let finish = if route == RouteId::CompleteTransition {
                Engine::complete(decode_optional_body(app, req).await?)
            } else {
                Engine::abort(decode_optional_body(app, req).await?)
            };
            let resp = engine
                .finish_transition(id, tid, finish, cond, durability)
                .await?;
            let version = resp.version;
            with_etag(encode(StatusCode::OK, codec, &resp), version)
        }
        RouteId::AppendMessages => {
            let body: AppendMessagesRequest = decode_body(app, req).await?;
            let resp = engine
                .append_messages(id, body.messages, cond, durability)
                .await?;
            let version = resp.version;
            with_etag(encode(StatusCode::OK, codec, &resp), version)
        }
        RouteId::ListMessages => {
            let q = Query::parse(req.uri().query())?;
            let messages = match q.last {
                Some(n) => engine.last_messages(&id, n).await?,
                None => engine.messages(&id, q.after, q.limit).await?,
            };
            encode(StatusCode::OK, codec, &MessagesPage { messages })
        }
        RouteId::PopMessage => {
            let resp = engine.pop_message(id, cond, durability).await?;
            let version = resp.version;
            with_etag(encode(StatusCode::OK, codec, &resp), version)
        }
        RouteId::ClearMessages => {
            let version = engine.clear_messages(id, cond, durability).await?;
            with_etag(
                encode(StatusCode::OK, codec, &VersionResponse { version }),
                version,
            )
        }
        RouteId::TakeCheckpoint => {
            let body: CheckpointRequest = decode_optional_body(app, req).await?;
            let resp = engine.checkpoint(id, body, durability).await?;
            encode(StatusCode::OK, codec, &resp)
        }
        RouteId::ListCheckpoints => {
            let checkpoints = engine.checkpoints(&id).await?;
            encode(StatusCode::OK, codec, &CheckpointsPage { checkpoints })
        }
        RouteId::Rollback => {
            let body: RollbackRequest = decode_body(app, req).await?;
            let resp = engine
                .rollback(id, body.checkpoint_id, cond, durability)
                .await?;
            let version = resp.version;
            with_etag(encode(StatusCode::OK, codec, &resp), version)
        }
        RouteId::Replay => {
            let body: ReplayRequest = decode_body(app, req).await?;
            let resp = engine
                .replay(id, body.checkpoint_id, body.apply, cond, durability)
                .await?;
            let version = resp.version;
            with_etag(encode(StatusCode::OK, codec, &resp), version)
        }
        _ => Err(misrouted(route)),
    }
}

/// 405, with the methods the path has (`Allow`, which RFC 9110 requires on a 405).
fn method_not_allowed(method: &Method, path: &str, allow: String) -> ApiError {
    ApiError {
        allow: Some(allow),
        ..ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed on {path}"),
        )
    }
}

/// A route handed to a group of handlers that does not serve it: a bug in `route`, answered
/// as one rather than a panic.
fn misrouted(route: RouteId) -> ApiError {
    ApiError::new(
        ErrorCode::Internal,
        format!("route {route:?} reached the wrong handler"),
    )
}

fn with_etag(resp: Result<HttpResponse, ApiError>, version: u64) -> Result<HttpResponse, ApiError> {
    let mut resp = resp?;
    set_etag(&mut resp, version);
    Ok(resp)
}

/// With a token configured, every request but the probes must carry it. Compared in
/// constant time, so the answer's timing tells nothing about the token.
fn authorize<B>(app: &App, req: &Request<B>) -> Result<(), ApiError> {
    let Some(token) = &app.auth_token else {
        return Ok(());
    };
    if matches!(req.uri().path(), "/healthz" | "/readyz") {
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

fn not_found(path: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no such endpoint: {path}"))
}

fn engine(app: &App) -> Result<&Arc<Engine>, ApiError> {
    app.engine.get().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "sidecar is starting: WAL replay is not finished",
        )
    })
}

fn status(app: &App, codec: Codec) -> Result<HttpResponse, ApiError> {
    let engine = engine(app)?;
    let (wal_segments, wal_bytes) = engine.wal.size();
    let backlog = engine.backlog.stats();
    let flush = engine.flush_status();
    let body = StatusResponse {
        ready: engine.is_ready(),
        backend: engine.store_kind().to_string(),
        backend_reachable: flush.backend_reachable,
        wal_segments,
        wal_bytes,
        wal_last_lsn: engine.wal.last_lsn(),
        flushed_lsn: engine.flushed_lsn(),
        backlog_agents: backlog.agents,
        backlog_bytes: backlog.bytes,
        backlog_bytes_max: app.backlog_bytes_max,
        backlog_oldest_age_ms: backlog.oldest_age.as_millis() as u64,
        last_flush_at: flush.last_flush_at,
        last_flush_error: flush.last_error,
        cache_entries: engine.cache.entries(),
    };
    encode(StatusCode::OK, codec, &body)
}

/// The codec of the response: `Accept` if it names one we speak, else the request's
/// `Content-Type`, else JSON.
fn response_codec(headers: &HeaderMap) -> Codec {
    let get = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    get(header::ACCEPT)
        .and_then(Codec::from_accept)
        .or_else(|| get(header::CONTENT_TYPE).and_then(Codec::from_media_type))
        .unwrap_or(Codec::Json)
}

/// A body that may be absent: empty means the type's default.
async fn decode_optional_body<T: DeserializeOwned + Default>(
    app: &App,
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let (codec, bytes) = read_body(app, req).await?;
    if bytes.is_empty() {
        return Ok(T::default());
    }
    expect_map(codec, &bytes)?;
    codec
        .decode(&bytes)
        .map_err(|e| ApiError::malformed(e.to_string()))
}

async fn decode_body<T: DeserializeOwned>(
    app: &App,
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let (codec, bytes) = read_body(app, req).await?;
    if bytes.is_empty() {
        return Err(ApiError::malformed("request body is empty"));
    }
    expect_map(codec, &bytes)?;
    codec
        .decode(&bytes)
        .map_err(|e| ApiError::malformed(e.to_string()))
}

/// Every request body is a map (a JSON object). Checked before decoding, since serde
/// would also read a struct from an array of its fields in order.
fn expect_map(codec: Codec, bytes: &[u8]) -> Result<(), ApiError> {
    let is_map = match codec {
        Codec::Json => bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'),
        // fixmap, map 16, map 32.
        Codec::MsgPack => matches!(bytes.first(), Some(0x80..=0x8f | 0xde | 0xdf)),
    };
    if is_map {
        Ok(())
    } else {
        Err(ApiError::malformed(
            "the request body must be a map (a JSON object)",
        ))
    }
}

/// The body's codec (from `Content-Type`, which a body must have) and bytes, read
/// through the size limit.
async fn read_body(app: &App, req: Request<Incoming>) -> Result<(Codec, Bytes), ApiError> {
    // No type is not JSON: a browser's `no-cors` post sends none (see `guard`).
    let codec = match req.headers().get(header::CONTENT_TYPE) {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(Codec::from_media_type).ok_or_else(|| {
            guard::count_media_type_refusal();
            ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "Content-Type {v:?} is not supported; use application/json or application/msgpack"
                ),
            )
        })?),
    };
    let max = app.body_bytes_max;
    let too_large = || {
        ApiError::new(
            ErrorCode::TooLarge,
            format!("request body exceeds {max} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let bytes = Limited::new(req.into_body(), max)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large()
            } else {
                ApiError::malformed(format!("cannot read request body: {e}"))
            }
        })?
        .to_bytes();
    match codec {
        Some(codec) => Ok((codec, bytes)),
        None if bytes.is_empty() => Ok((Codec::Json, bytes)),
        None => {
            guard::count_media_type_refusal();
            Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "the request body has no Content-Type; send application/json or application/msgpack",
            ))
        }
    }
}

/// `If-Match: "3"` (or `3`) and `If-None-Match: *`.
fn precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    if let Some(v) = headers.get(header::IF_MATCH) {
        let s = v.to_str().unwrap_or("").trim();
        let digits = s
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(s);
        return digits
            .parse::<u64>()
            .map(Precondition::Version)
            .map_err(|_| {
                ApiError::malformed(format!("If-Match must be a version like \"3\", got {v:?}"))
            });
    }
    if let Some(v) = headers.get(header::IF_NONE_MATCH) {
        return if v.as_bytes() == b"*" {
            Ok(Precondition::Absent)
        } else {
            Err(ApiError::malformed("If-None-Match supports only *"))
        };
    }
    Ok(Precondition::None)
}

/// `?durability=` wins over the `Agentstate-Durability` header; `local` by default. Both
/// are checked when both are given: a bad value is refused wherever it is.
fn durability<B>(req: &Request<B>) -> Result<Durability, ApiError> {
    let parse = |s: &str| {
        Durability::parse(s).ok_or_else(|| {
            ApiError::malformed(format!(
                "durability must be local, remote or memory, got {s:?}"
            ))
        })
    };
    let from_query = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("durability=")))
        .map(parse)
        .transpose()?;
    let from_header = req
        .headers()
        .get(Durability::HEADER)
        .map(|v| parse(v.to_str().unwrap_or("?")))
        .transpose()?;
    Ok(from_query.or(from_header).unwrap_or_default())
}

/// Largest agents a usage reading names by default, and at most.
const USAGE_TOP_DEFAULT: u32 = 10;
const USAGE_TOP_MAX: u32 = 1000;

/// `?top=` of `GET /v1/usage`.
fn usage_top(query: Option<&str>) -> Result<u32, ApiError> {
    let Some(v) = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("top="))
    else {
        return Ok(USAGE_TOP_DEFAULT);
    };
    v.parse()
        .ok()
        .filter(|n| *n <= USAGE_TOP_MAX)
        .ok_or_else(|| {
            ApiError::malformed(format!(
                "top must be an integer from 0 to {USAGE_TOP_MAX}, got {v:?}"
            ))
        })
}

/// Paging parameters of log reads.
struct Query {
    after: u64,
    limit: u32,
    /// The latest N instead of a page after `after`.
    last: Option<u32>,
}

impl Query {
    fn parse(query: Option<&str>) -> Result<Query, ApiError> {
        let mut q = Query {
            after: 0,
            limit: PAGE_LIMIT_DEFAULT,
            last: None,
        };
        for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "after" => {
                    q.after = v.parse().map_err(|_| {
                        ApiError::malformed(format!(
                            "after must be a non-negative integer, got {v:?}"
                        ))
                    })?
                }
                "limit" => {
                    q.limit = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=PAGE_LIMIT_MAX).contains(n))
                        .ok_or_else(|| {
                            ApiError::malformed(format!(
                                "limit must be an integer from 1 to {PAGE_LIMIT_MAX}, got {v:?}"
                            ))
                        })?
                }
                "last" => {
                    q.last = Some(
                        v.parse()
                            .ok()
                            .filter(|n| (1..=PAGE_LIMIT_MAX).contains(n))
                            .ok_or_else(|| {
                                ApiError::malformed(format!(
                                    "last must be an integer from 1 to {PAGE_LIMIT_MAX}, got {v:?}"
                                ))
                            })?,
                    )
                }
                // Other parameters (durability) are read elsewhere.
                _ => {}
            }
        }
        Ok(q)
    }
}

/// A percent-decoded path segment.
fn decode_path_param(segment: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::malformed(format!("path segment {segment:?} is not UTF-8")))
}

/// A percent-encoded query value (`+` is a space, as forms send it).
fn decode_query_value(key: &str, v: &str) -> Result<String, ApiError> {
    let spaced = v.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::malformed(format!("query parameter {key} is not UTF-8")))
}

fn encode<T: Serialize>(
    status: StatusCode,
    codec: Codec,
    body: &T,
) -> Result<HttpResponse, ApiError> {
    let bytes = codec
        .encode(body)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("cannot encode response: {e}")))?;
    Ok(bytes_response(status, codec, Bytes::from(bytes)))
}

/// A response of already encoded `body`.
fn bytes_response(status: StatusCode, codec: Codec, body: Bytes) -> HttpResponse {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(codec.content_type()),
    );
    resp
}

fn set_etag(resp: &mut HttpResponse, version: u64) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
}

fn plain(status: StatusCode, text: String) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

fn empty(status: StatusCode) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

fn error_response(e: &ApiError, codec: Codec) -> HttpResponse {
    let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match encode(status, codec, &e.body()) {
        Ok(r) => r,
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode error\n".into(),
        ),
    };
    if e.code == ErrorCode::Unauthorized {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(allow) = e
        .allow
        .as_deref()
        .and_then(|a| HeaderValue::from_str(a).ok())
    {
        resp.headers_mut().insert(header::ALLOW, allow);
    }
    if let Some(secs) = e.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preconditions_parse() {
        let mut h = HeaderMap::new();
        assert_eq!(precondition(&h).unwrap(), Precondition::None);
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"7\""));
        assert_eq!(precondition(&h).unwrap(), Precondition::Version(7));
        h.insert(header::IF_MATCH, HeaderValue::from_static("7"));
        assert_eq!(precondition(&h).unwrap(), Precondition::Version(7));
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"x\""));
        assert!(precondition(&h).is_err());
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert_eq!(precondition(&h).unwrap(), Precondition::Absent);
    }

    #[test]
    fn paging_parameters_are_checked() {
        let q = Query::parse(Some("after=5&limit=10")).unwrap();
        assert_eq!((q.after, q.limit), (5, 10));
        assert!(Query::parse(Some("after=-1")).is_err());
        assert!(Query::parse(Some("limit=0")).is_err());
        assert!(Query::parse(Some("limit=100000")).is_err());
    }

    #[test]
    fn path_parameters_are_percent_decoded() {
        assert_eq!(decode_path_param("a%3Ab").unwrap(), "a:b");
        assert_eq!(decode_path_param("plain").unwrap(), "plain");
        assert!(decode_path_param("%FF").is_err());
    }

    #[test]
    fn bodies_are_maps() {
        assert!(expect_map(Codec::Json, b" \n{}").is_ok());
        assert!(expect_map(Codec::Json, b"[\"idle\"]").is_err());
        assert!(expect_map(Codec::MsgPack, &[0x80]).is_ok());
        assert!(expect_map(Codec::MsgPack, &[0x90]).is_err());
    }

    #[test]
    fn durability_from_query_or_header() {
        let req = Request::get("/v1/agents/a?durability=memory")
            .body(())
            .unwrap();
        assert_eq!(durability(&req).unwrap(), Durability::Memory);
        let req = Request::get("/v1/agents/a")
            .header(Durability::HEADER, "remote")
            .body(())
            .unwrap();
        assert_eq!(durability(&req).unwrap(), Durability::Remote);
        let req = Request::get("/v1/agents/a?durability=disk")
            .body(())
            .unwrap();
        assert!(durability(&req).is_err());
        let req = Request::get("/v1/agents/a?durability=memory")
            .header(Durability::HEADER, "disk")
            .body(())
            .unwrap();
        assert!(
            durability(&req).is_err(),
            "a bad header is refused beside a good query"
        );
    }
}
