//! The web inspector: its page, script and style sheet (compiled into the binary), what
//! it may do here, and its writes (rollback, abort, fork), which the sidecar answers only
//! when started with `--ui-writes` and which log the operator's reason.
//!
//! Hazards: the page shows untrusted text (states and messages are model output). The
//! script sets it only as text, and the page's Content-Security-Policy allows no script,
//! style or connection but the sidecar's own files and API, so text that gets into markup
//! anyway cannot run. The page is served on the listener `guard` protects (Host and
//! Origin checked), and asks for the bearer token, where one is set, into memory only.

use std::sync::Arc;

use agentstate_protocol::{
    Codec, Durability, ErrorCode, InspectorAbortRequest, InspectorForkRequest, InspectorInfo,
    InspectorRollbackRequest,
};
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::plumbing::{decode_body, encode};
use super::routes::InspectorRoute;
use super::{engine, ApiError, App, HttpResponse};
use crate::validate;

/// Only the sidecar's own files and API; no inline script or style, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// A file of the inspector: its name in `sidecar/ui`, its type, its text as compiled in.
struct File {
    /// Read from the source tree by debug builds only.
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    name: &'static str,
    content_type: &'static str,
    text: &'static str,
}

const PAGE: File = File {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    text: include_str!("../../ui/index.html"),
};
const SCRIPT: File = File {
    name: "app.js",
    content_type: "text/javascript; charset=utf-8",
    text: include_str!("../../ui/app.js"),
};
const STYLE: File = File {
    name: "app.css",
    content_type: "text/css; charset=utf-8",
    text: include_str!("../../ui/app.css"),
};

impl File {
    /// The file's text. A debug build reads it from the source tree when it can, so
    /// that editing the page needs no rebuild; a release build serves what it holds.
    fn body(&self) -> Bytes {
        #[cfg(debug_assertions)]
        {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("ui")
                .join(self.name);
            if let Ok(text) = std::fs::read(path) {
                return Bytes::from(text);
            }
        }
        Bytes::from_static(self.text.as_bytes())
    }

    fn response(&self) -> HttpResponse {
        let mut resp = Response::new(Full::new(self.body()));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        resp
    }
}

pub(super) async fn inspector_route(
    app: &App,
    route: InspectorRoute,
    params: &[String],
    req: Request<Incoming>,
    codec: Codec,
) -> Result<HttpResponse, ApiError> {
    let param = |i: usize| params.get(i).cloned().unwrap_or_default();
    match route {
        InspectorRoute::Page => Ok(PAGE.response()),
        InspectorRoute::Script => Ok(SCRIPT.response()),
        InspectorRoute::Style => Ok(STYLE.response()),
        InspectorRoute::Info => encode(
            StatusCode::OK,
            codec,
            &InspectorInfo {
                ui_writes: app.ui_writes,
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
        ),
        InspectorRoute::Rollback => {
            let engine = writable(app)?;
            let id = agent_param(param(0))?;
            let body: InspectorRollbackRequest = decode_body(app, req).await?;
            let resp = engine
                .inspector_rollback(id, body.checkpoint_id, body.reason, Durability::Local)
                .await?;
            encode(StatusCode::OK, codec, &resp)
        }
        InspectorRoute::Abort => {
            let engine = writable(app)?;
            let id = agent_param(param(0))?;
            let body: InspectorAbortRequest = decode_body(app, req).await?;
            let resp = engine
                .inspector_abort(id, param(1), body.reason, Durability::Local)
                .await?;
            encode(StatusCode::OK, codec, &resp)
        }
        InspectorRoute::Fork => {
            let engine = writable(app)?;
            let id = agent_param(param(0))
                .map_err(|e| ApiError::malformed(format!("thread id: {}", e.message)))?;
            let body: InspectorForkRequest = decode_body(app, req).await?;
            let resp = engine.fork_thread(id, body, Durability::Local).await?;
            encode(StatusCode::OK, codec, &resp)
        }
    }
}

/// The engine, if the inspector may write.
fn writable(app: &App) -> Result<&Arc<crate::engine::Engine>, ApiError> {
    if !app.ui_writes {
        return Err(ApiError::new(
            ErrorCode::UiWritesDisabled,
            "the inspector's writes are off; start the sidecar with --ui-writes to allow them",
        ));
    }
    engine(app)
}

fn agent_param(id: String) -> Result<String, ApiError> {
    validate::agent_id(&id).map_err(ApiError::malformed)?;
    Ok(id)
}
