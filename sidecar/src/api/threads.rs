//! Routes under `/v1/threads/{id}`: a thread's framework checkpoints, and the history
//! and decoded view the inspector reads.

use std::sync::Arc;

use agentstate_protocol::{
    Codec, CopyThreadRequest, DeltaHistoryRequest, PutThreadCheckpointRequest,
    PutThreadWritesRequest, VersionResponse,
};
use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::plumbing::{
    decode_body, durability, empty, encode, page_limit, query_params, unknown_parameter,
    PAGE_LIMIT_DEFAULT,
};
use super::routes::ThreadRoute;
use super::{ApiError, App, HttpResponse};
use crate::engine::Engine;

/// Routes under `/v1/threads/{id}`.
pub(super) async fn thread_route(
    app: &App,
    engine: &Arc<Engine>,
    route: ThreadRoute,
    thread: String,
    req: Request<Incoming>,
    codec: Codec,
) -> Result<HttpResponse, ApiError> {
    match route {
        ThreadRoute::PutCheckpoint => {
            let d = durability(&req)?;
            let body: PutThreadCheckpointRequest = decode_body(app, req).await?;
            let resp = engine.put_thread_checkpoint(thread, body, d).await?;
            encode(StatusCode::OK, codec, &resp)
        }
        ThreadRoute::PutWrites => {
            let d = durability(&req)?;
            let body: PutThreadWritesRequest = decode_body(app, req).await?;
            let version = engine.put_thread_writes(thread, body, d).await?;
            encode(StatusCode::OK, codec, &VersionResponse { version })
        }
        ThreadRoute::GetCheckpoint => {
            let (ns, id) = checkpoint_query(req.uri().query())?;
            let tuple = engine.thread_checkpoint(&thread, ns, id).await?;
            encode(StatusCode::OK, codec, &tuple)
        }
        ThreadRoute::Delete => {
            let d = durability(&req)?;
            engine.delete_thread(thread, d).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        ThreadRoute::Copy => {
            let d = durability(&req)?;
            let body: CopyThreadRequest = decode_body(app, req).await?;
            let resp = engine.copy_thread(thread, body.target_thread_id, d).await?;
            encode(StatusCode::OK, codec, &resp)
        }
        ThreadRoute::DeltaHistory => {
            let body: DeltaHistoryRequest = decode_body(app, req).await?;
            let resp = engine.delta_history(&thread, body).await?;
            encode(StatusCode::OK, codec, &resp)
        }
        ThreadRoute::History => {
            let mut ns = String::new();
            let (mut cursor, mut limit) = (None, PAGE_LIMIT_DEFAULT);
            for (k, v) in query_params(req.uri().query())? {
                match k.as_str() {
                    "checkpoint_ns" => ns = v,
                    "cursor" if !v.is_empty() => cursor = Some(v),
                    "cursor" => {}
                    "limit" => limit = page_limit(&v)?,
                    _ => return Err(unknown_parameter(&k)),
                }
            }
            let page = engine.thread_history(&thread, ns, cursor, limit).await?;
            encode(StatusCode::OK, codec, &page)
        }
        ThreadRoute::View => {
            let (ns, id) = checkpoint_query(req.uri().query())?;
            let view = engine.thread_view(&thread, ns, id).await?;
            encode(StatusCode::OK, codec, &view)
        }
    }
}

/// `checkpoint_ns` (default: the root, "") and `checkpoint_id`, percent-decoded.
fn checkpoint_query(query: Option<&str>) -> Result<(String, Option<String>), ApiError> {
    let mut ns = String::new();
    let mut id = None;
    for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = super::plumbing::decode_query_value(k, v)?;
        match k {
            "checkpoint_ns" => ns = v,
            "checkpoint_id" if !v.is_empty() => id = Some(v),
            _ => {}
        }
    }
    Ok((ns, id))
}
