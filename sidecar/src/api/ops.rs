//! Health, readiness, status, storage usage, metrics and the API's description.

use agentstate_protocol::{Codec, UsageResponse};
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use super::plumbing::{encode, plain, query_params, unknown_parameter};
use super::routes::OpsRoute;
use super::{engine, openapi, ApiError, App, HttpResponse};
use crate::engine::EngineError;
use crate::metrics as m;

pub(super) async fn ops_route(
    app: &App,
    route: OpsRoute,
    query: Option<&str>,
    codec: Codec,
) -> Result<HttpResponse, ApiError> {
    match route {
        OpsRoute::Healthz => Ok(plain(StatusCode::OK, "ok\n".into())),
        OpsRoute::Readyz => Ok(match app.engine.get().map(|e| e.unready_reason()) {
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
        OpsRoute::Status => encode(StatusCode::OK, codec, &engine(app)?.status()),
        OpsRoute::Usage => {
            let top = usage_top(query)?;
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
        OpsRoute::Metrics => {
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
        OpsRoute::OpenApi => Ok(openapi::response()),
    }
}

/// Largest agents a usage reading names by default, and at most.
const USAGE_TOP_DEFAULT: u32 = 10;
const USAGE_TOP_MAX: u32 = 1000;

/// `?top=` of `GET /v1/usage`.
fn usage_top(query: Option<&str>) -> Result<u32, ApiError> {
    let mut top = None;
    for (k, v) in query_params(query)? {
        match k.as_str() {
            "top" => top = Some(v),
            _ => return Err(unknown_parameter(&k)),
        }
    }
    let Some(v) = top else {
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
