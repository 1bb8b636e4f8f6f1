//! Calls that span agents or threads: the listings the inspector pages through,
//! transfers, batches, and searches and prunes of framework checkpoints.

use std::sync::Arc;

use agentstate_protocol::{
    Codec, DeleteForRunsRequest, PruneRequest, SearchCheckpointsRequest, ThreadCheckpointsPage,
};
use chrono::{DateTime, Utc};
use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::plumbing::{
    decode_body, durability, encode, page_limit, query_params, unknown_parameter,
    PAGE_LIMIT_DEFAULT,
};
use super::routes::CollectionRoute;
use super::{ApiError, App, HttpResponse};
use crate::engine::Engine;
use crate::model::{BatchRequest, TransferRequest};
use crate::store::AgentFilter;
use crate::validate;

pub(super) async fn collection_route(
    app: &App,
    engine: &Arc<Engine>,
    route: CollectionRoute,
    params: &[String],
    req: Request<Incoming>,
    codec: Codec,
) -> Result<HttpResponse, ApiError> {
    match route {
        CollectionRoute::ListAgents => {
            let (filter, cursor, limit) = agents_query(req.uri().query())?;
            let page = engine.list_agents(filter, &cursor, limit).await?;
            encode(StatusCode::OK, codec, &page)
        }
        CollectionRoute::ListThreads => {
            let (mut prefix, mut cursor, mut limit) =
                (String::new(), String::new(), PAGE_LIMIT_DEFAULT);
            for (k, v) in query_params(req.uri().query())? {
                match k.as_str() {
                    "prefix" => prefix = v,
                    "cursor" => cursor = v,
                    "limit" => limit = page_limit(&v)?,
                    _ => return Err(unknown_parameter(&k)),
                }
            }
            let page = engine.list_threads(&prefix, &cursor, limit).await?;
            encode(StatusCode::OK, codec, &page)
        }
        CollectionRoute::ListTransfers => {
            let (mut agent, mut cursor, mut limit) = (None, String::new(), PAGE_LIMIT_DEFAULT);
            for (k, v) in query_params(req.uri().query())? {
                match k.as_str() {
                    "agent" => {
                        validate::agent_id(&v)
                            .map_err(|e| ApiError::malformed(format!("agent: {e}")))?;
                        agent = Some(v)
                    }
                    "cursor" => cursor = v,
                    "limit" => limit = page_limit(&v)?,
                    _ => return Err(unknown_parameter(&k)),
                }
            }
            let page = engine
                .list_transfers(agent.as_deref(), &cursor, limit)
                .await?;
            encode(StatusCode::OK, codec, &page)
        }
        CollectionRoute::Transfer => {
            let durability = durability(&req)?;
            let body: TransferRequest = decode_body(app, req).await?;
            let transfer = engine.transfer(body, durability).await?;
            encode(StatusCode::OK, codec, &transfer)
        }
        CollectionRoute::GetTransfer => {
            let id = params.first().map_or("", String::as_str);
            validate::agent_id(id).map_err(|e| ApiError::malformed(format!("transfer id: {e}")))?;
            let transfer = engine.get_transfer(id).await?;
            encode(StatusCode::OK, codec, &transfer)
        }
        CollectionRoute::Batch => {
            let durability = durability(&req)?;
            let body: BatchRequest = decode_body(app, req).await?;
            let resp = engine.batch(body, durability).await?;
            encode(StatusCode::OK, codec, &resp)
        }
        CollectionRoute::SearchCheckpoints => {
            let body: SearchCheckpointsRequest = decode_body(app, req).await?;
            let checkpoints = engine.search_checkpoints(body).await?;
            encode(
                StatusCode::OK,
                codec,
                &ThreadCheckpointsPage { checkpoints },
            )
        }
        CollectionRoute::PruneCheckpoints => {
            let d = durability(&req)?;
            let body: PruneRequest = decode_body(app, req).await?;
            let resp = engine
                .prune_threads(body.thread_ids, body.strategy, d)
                .await?;
            encode(StatusCode::OK, codec, &resp)
        }
        CollectionRoute::DeleteForRuns => {
            let d = durability(&req)?;
            let body: DeleteForRunsRequest = decode_body(app, req).await?;
            let resp = engine.delete_for_runs(body.run_ids, d).await?;
            encode(StatusCode::OK, codec, &resp)
        }
    }
}

/// The filters, cursor and page size of `GET /v1/agents`.
fn agents_query(query: Option<&str>) -> Result<(AgentFilter, String, u32), ApiError> {
    let mut f = AgentFilter::default();
    let (mut cursor, mut limit) = (String::new(), PAGE_LIMIT_DEFAULT);
    let some = |v: String| (!v.is_empty()).then_some(v);
    for (k, v) in query_params(query)? {
        match k.as_str() {
            "prefix" => f.prefix = v,
            "state" => f.state = some(v),
            "type" => f.agent_type = some(v),
            "updated_after" => {
                let t = DateTime::parse_from_rfc3339(&v).map_err(|_| {
                    ApiError::malformed(format!(
                        "updated_after must be an RFC 3339 time like 2026-01-31T12:00:00Z, got {v:?}"
                    ))
                })?;
                f.updated_after = Some(t.with_timezone(&Utc));
            }
            "failed" => {
                f.failed = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" | "" => false,
                    _ => {
                        return Err(ApiError::malformed(format!(
                            "failed must be true or false, got {v:?}"
                        )))
                    }
                }
            }
            "cursor" => cursor = v,
            "limit" => limit = page_limit(&v)?,
            _ => return Err(unknown_parameter(&k)),
        }
    }
    Ok((f, cursor, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_listing_filters_parse_and_refuse_what_they_do_not_know() {
        let (f, cursor, limit) = agents_query(Some(
            "prefix=greet%2D&state=idle&type=&updated_after=2026-12-07T08%3A00%3A00Z&failed=true&cursor=b&limit=5",
        ))
        .unwrap();
        assert_eq!(f.prefix, "greet-");
        assert_eq!(f.state.as_deref(), Some("idle"));
        assert_eq!(f.agent_type, None, "an empty filter is no filter");
        assert!(f.updated_after.is_some() && f.failed);
        assert_eq!((cursor.as_str(), limit), ("b", 5));
        for bad in [
            "stat=idle",
            "limit=0",
            "limit=1001",
            "failed=maybe",
            "updated_after=yesterday",
            "state=a&state=b",
        ] {
            assert!(agents_query(Some(bad)).is_err(), "{bad}");
        }
    }
}
