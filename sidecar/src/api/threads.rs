//! Routes of the threads API (framework checkpoints): `/v1/threads/{id}/...` and the
//! cross-thread calls under `/v1/checkpoints/...`.

use std::sync::Arc;

use agentstate_protocol::{
    CopyThreadRequest, DeleteForRunsRequest, DeltaHistoryRequest, PruneRequest,
    PutThreadCheckpointRequest, PutThreadWritesRequest, SearchCheckpointsRequest,
    ThreadCheckpointsPage, VersionResponse,
};
use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::{
    decode_body, durability, empty, encode, misrouted, ApiError, App, HttpResponse, RouteId,
};
use crate::engine::Engine;
use agentstate_protocol::Codec;

/// Routes under `/v1/threads/{id}`.
pub(super) async fn thread_route(
    app: &App,
    engine: &Arc<Engine>,
    route: RouteId,
    thread: String,
    req: Request<Incoming>,
    codec: Codec,
) -> Result<HttpResponse, ApiError> {
    match route {
        RouteId::PutThreadCheckpoint => {
            let d = durability(&req)?;
            let body: PutThreadCheckpointRequest = decode_body(app, req).await?;
            let resp = engine.put_thread_checkpoint(thread, body, d).await?;
            encode(StatusCode::OK, codec, &resp)
        }
        RouteId::PutThreadWrites => {
            let d = durability(&req)?;
            let body: PutThreadWritesRequest = decode_body(app, req).await?;
            let version = engine.put_thread_writes(thread, body, d).await?;
            encode(StatusCode::OK, codec, &VersionResponse { version })
        }
        RouteId::GetThreadCheckpoint => {
            let (ns, id) = checkpoint_query(req.uri().query())?;
            let tuple = engine.thread_checkpoint(&thread, ns, id).await?;
            encode(StatusCode::OK, codec, &tuple)
        }
        RouteId::DeleteThread => {
            let d = durability(&req)?;
            engine.delete_thread(thread, d).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        RouteId::CopyThread => {
            let d = durability(&req)?;
            let body: CopyThreadRequest = decode_body(app, req).await?;
            let resp = engine.copy_thread(thread, body.target_thread_id, d).await?;
            encode(StatusCode::OK, codec, &resp)
        }
        RouteId::DeltaHistory => {
            let body: DeltaHistoryRequest = decode_body(app, req).await?;
            let resp = engine.delta_history(&thread, body).await?;
            encode(StatusCode::OK, codec, &resp)
        }
        _ => Err(misrouted(route)),
    }
}

/// Routes under `/v1/checkpoints`: calls that span threads.
pub(super) async fn checkpoints_route(
    app: &App,
    engine: &Arc<Engine>,
    route: RouteId,
    req: Request<Incoming>,
    codec: Codec,
) -> Result<HttpResponse, ApiError> {
    match route {
        RouteId::SearchCheckpoints => {
            let body: SearchCheckpointsRequest = decode_body(app, req).await?;
            let checkpoints = engine.search_checkpoints(body).await?;
            encode(
                StatusCode::OK,
                codec,
                &ThreadCheckpointsPage { checkpoints },
            )
        }
        RouteId::PruneCheckpoints => {
            let d = durability(&req)?;
            let body: PruneRequest = decode_body(app, req).await?;
            let resp = engine
                .prune_threads(body.thread_ids, body.strategy, d)
                .await?;
            encode(StatusCode::OK, codec, &resp)
        }
        RouteId::DeleteForRuns => {
            let d = durability(&req)?;
            let body: DeleteForRunsRequest = decode_body(app, req).await?;
            let resp = engine.delete_for_runs(body.run_ids, d).await?;
            encode(StatusCode::OK, codec, &resp)
        }
        _ => Err(misrouted(route)),
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
