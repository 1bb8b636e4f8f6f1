//! Routes of the threads API (framework checkpoints): `/v1/threads/{id}/...` and the
//! cross-thread calls under `/v1/checkpoints/...`.

use std::sync::Arc;

use agentstate_protocol::{
    CopyThreadRequest, DeleteForRunsRequest, DeltaHistoryRequest, PruneRequest,
    PutThreadCheckpointRequest, PutThreadWritesRequest, SearchCheckpointsRequest,
    ThreadCheckpointsPage, VersionResponse,
};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use super::{
    decode_body, durability, empty, encode, method_not_allowed, not_found, ApiError, App,
    HttpResponse,
};
use crate::engine::Engine;
use agentstate_protocol::Codec;

/// Routes under `/v1/threads/{id}`.
pub(super) async fn thread_route(
    app: &App,
    engine: &Arc<Engine>,
    thread: String,
    rest: &[&str],
    req: Request<Incoming>,
    codec: Codec,
) -> Result<HttpResponse, ApiError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match (method.clone(), rest) {
        (Method::POST, ["checkpoints"]) => {
            let d = durability(&req)?;
            let body: PutThreadCheckpointRequest = decode_body(app, req).await?;
            let resp = engine.put_thread_checkpoint(thread, body, d).await?;
            encode(StatusCode::OK, codec, &resp)
        }
        (Method::POST, ["writes"]) => {
            let d = durability(&req)?;
            let body: PutThreadWritesRequest = decode_body(app, req).await?;
            let version = engine.put_thread_writes(thread, body, d).await?;
            encode(StatusCode::OK, codec, &VersionResponse { version })
        }
        (Method::GET, ["checkpoint"]) => {
            let (ns, id) = checkpoint_query(req.uri().query())?;
            let tuple = engine.thread_checkpoint(&thread, ns, id).await?;
            encode(StatusCode::OK, codec, &tuple)
        }
        (Method::DELETE, []) => {
            let d = durability(&req)?;
            engine.delete_thread(thread, d).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (Method::POST, ["copy"]) => {
            let d = durability(&req)?;
            let body: CopyThreadRequest = decode_body(app, req).await?;
            let resp = engine.copy_thread(thread, body.target_thread_id, d).await?;
            encode(StatusCode::OK, codec, &resp)
        }
        (Method::POST, ["delta_history"]) => {
            let body: DeltaHistoryRequest = decode_body(app, req).await?;
            let resp = engine.delta_history(&thread, body).await?;
            encode(StatusCode::OK, codec, &resp)
        }
        (_, [] | ["checkpoints"] | ["writes"] | ["checkpoint"] | ["copy"] | ["delta_history"]) => {
            Err(method_not_allowed(&method, &path))
        }
        _ => Err(not_found(&path)),
    }
}

/// Routes under `/v1/checkpoints`: calls that span threads.
pub(super) async fn checkpoints_route(
    app: &App,
    engine: &Arc<Engine>,
    rest: &[&str],
    req: Request<Incoming>,
    codec: Codec,
) -> Result<HttpResponse, ApiError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match (method.clone(), rest) {
        (Method::POST, ["search"]) => {
            let body: SearchCheckpointsRequest = decode_body(app, req).await?;
            let checkpoints = engine.search_checkpoints(body).await?;
            encode(
                StatusCode::OK,
                codec,
                &ThreadCheckpointsPage { checkpoints },
            )
        }
        (Method::POST, ["prune"]) => {
            let d = durability(&req)?;
            let body: PruneRequest = decode_body(app, req).await?;
            let resp = engine
                .prune_threads(body.thread_ids, body.strategy, d)
                .await?;
            encode(StatusCode::OK, codec, &resp)
        }
        (Method::POST, ["delete_for_runs"]) => {
            let d = durability(&req)?;
            let body: DeleteForRunsRequest = decode_body(app, req).await?;
            let resp = engine.delete_for_runs(body.run_ids, d).await?;
            encode(StatusCode::OK, codec, &resp)
        }
        (_, ["search"] | ["prune"] | ["delete_for_runs"]) => {
            Err(method_not_allowed(&method, &path))
        }
        _ => Err(not_found(&path)),
    }
}

/// `checkpoint_ns` (default: the root, "") and `checkpoint_id`, percent-decoded.
fn checkpoint_query(query: Option<&str>) -> Result<(String, Option<String>), ApiError> {
    let mut ns = String::new();
    let mut id = None;
    for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = super::decode_query_value(k, v)?;
        match k {
            "checkpoint_ns" => ns = v,
            "checkpoint_id" if !v.is_empty() => id = Some(v),
            _ => {}
        }
    }
    Ok((ns, id))
}
