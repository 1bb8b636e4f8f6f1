//! Routes under `/v1/agents/{id}`: an agent's state, transitions, conversation,
//! checkpoints and timeline.

use std::sync::Arc;

use agentstate_protocol::{
    CheckpointRequest, Codec, Durability, ErrorCode, ReplayRequest, RollbackRequest,
    VersionResponse,
};
use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::plumbing::{
    bytes_response, decode_body, decode_optional_body, durability, empty, encode, page_limit,
    precondition, query_params, unknown_parameter, with_etag, Query, PAGE_LIMIT_DEFAULT,
};
use super::routes::AgentRoute;
use super::{ApiError, App, HttpResponse};
use crate::engine::{Engine, Precondition, TimelineCursor};
use crate::model::{
    AppendMessagesRequest, CheckpointsPage, MessagesPage, SaveStateRequest, TransitionRequest,
    TransitionsPage,
};

/// Routes under `/v1/agents/{id}`.
pub(super) async fn agent_route(
    app: &App,
    engine: &Arc<Engine>,
    route: AgentRoute,
    id: String,
    tid: String,
    req: Request<Incoming>,
    codec: Codec,
) -> Result<HttpResponse, ApiError> {
    // Mutating calls all take If-Match and a durability.
    let (cond, durability) = if req.method() == http::Method::GET {
        (Precondition::None, Durability::default())
    } else {
        (precondition(req.headers())?, durability(&req)?)
    };
    match route {
        AgentRoute::Get => {
            let record = engine.get(&id).await?;
            let body = record.state_body(codec).map_err(|e| {
                ApiError::new(ErrorCode::Internal, format!("cannot encode response: {e}"))
            })?;
            with_etag(
                Ok(bytes_response(StatusCode::OK, codec, body)),
                record.state.version,
            )
        }
        AgentRoute::Put => {
            let body: SaveStateRequest = decode_body(app, req).await?;
            let version = engine.save(id, body, cond, durability).await?;
            with_etag(
                encode(StatusCode::OK, codec, &VersionResponse { version }),
                version,
            )
        }
        AgentRoute::Delete => {
            engine.delete(id, cond, durability).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        AgentRoute::PostTransition => {
            let body: TransitionRequest = decode_body(app, req).await?;
            let resp = engine.transition(id, body, cond, durability).await?;
            let version = resp.version;
            with_etag(encode(StatusCode::OK, codec, &resp), version)
        }
        AgentRoute::ListTransitions => {
            let q = Query::parse(req.uri().query())?;
            let transitions = engine.transitions(&id, q.after, q.limit).await?;
            encode(StatusCode::OK, codec, &TransitionsPage { transitions })
        }
        AgentRoute::BeginTransition => {
            let body: TransitionRequest = decode_body(app, req).await?;
            let resp = engine.begin_transition(id, body, cond, durability).await?;
            let version = resp.version;
            with_etag(encode(StatusCode::OK, codec, &resp), version)
        }
        AgentRoute::CompleteTransition | AgentRoute::AbortTransition => {
            let finish = if route == AgentRoute::CompleteTransition {
                Engine::complete(decode_optional_body(app, req).await?)
            } else {
                Engine::abort(decode_optional_body(app, req).await?)
            };
            let resp = engine
                .finish_transition(id, tid, finish, cond, durability, None)
                .await?;
            let version = resp.version;
            with_etag(encode(StatusCode::OK, codec, &resp), version)
        }
        AgentRoute::AppendMessages => {
            let body: AppendMessagesRequest = decode_body(app, req).await?;
            let resp = engine
                .append_messages(id, body.messages, cond, durability)
                .await?;
            let version = resp.version;
            with_etag(encode(StatusCode::OK, codec, &resp), version)
        }
        AgentRoute::ListMessages => {
            let q = Query::parse(req.uri().query())?;
            let messages = match q.last {
                Some(n) => engine.last_messages(&id, n).await?,
                None => engine.messages(&id, q.after, q.limit).await?,
            };
            encode(StatusCode::OK, codec, &MessagesPage { messages })
        }
        AgentRoute::PopMessage => {
            let resp = engine.pop_message(id, cond, durability).await?;
            let version = resp.version;
            with_etag(encode(StatusCode::OK, codec, &resp), version)
        }
        AgentRoute::ClearMessages => {
            let version = engine.clear_messages(id, cond, durability).await?;
            with_etag(
                encode(StatusCode::OK, codec, &VersionResponse { version }),
                version,
            )
        }
        AgentRoute::TakeCheckpoint => {
            let body: CheckpointRequest = decode_optional_body(app, req).await?;
            let resp = engine.checkpoint(id, body, durability).await?;
            encode(StatusCode::OK, codec, &resp)
        }
        AgentRoute::ListCheckpoints => {
            let checkpoints = engine.checkpoints(&id).await?;
            encode(StatusCode::OK, codec, &CheckpointsPage { checkpoints })
        }
        AgentRoute::Rollback => {
            let body: RollbackRequest = decode_body(app, req).await?;
            let resp = engine
                .rollback(id, body.checkpoint_id, cond, durability, None)
                .await?;
            let version = resp.version;
            with_etag(encode(StatusCode::OK, codec, &resp), version)
        }
        AgentRoute::Replay => {
            let body: ReplayRequest = decode_body(app, req).await?;
            let resp = engine
                .replay(id, body.checkpoint_id, body.apply, cond, durability)
                .await?;
            let version = resp.version;
            with_etag(encode(StatusCode::OK, codec, &resp), version)
        }
        AgentRoute::Timeline => {
            let mut cursor = TimelineCursor::default();
            let mut limit = PAGE_LIMIT_DEFAULT;
            for (k, v) in query_params(req.uri().query())? {
                match k.as_str() {
                    "cursor" if v.is_empty() => {}
                    "cursor" => cursor = TimelineCursor::parse(&v)?,
                    "limit" => limit = page_limit(&v)?,
                    _ => return Err(unknown_parameter(&k)),
                }
            }
            let page = engine.timeline(&id, cursor, limit).await?;
            encode(StatusCode::OK, codec, &page)
        }
    }
}
