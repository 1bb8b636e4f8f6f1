//! An async HTTP client for the sidecar, over hyper.
//!
//! One `Client` holds a connection pool; clone it freely. Bodies go out as MessagePack by
//! default ([`Client::with_codec`] switches to JSON). Error bodies become
//! [`ClientError::Api`] with the server's code, so callers can branch on
//! `version_conflict` or `validation_failed`.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client as HyperClient};
use hyper_util::rt::TokioExecutor;
use serde::{de::DeserializeOwned, Serialize};

use crate::codec::{Codec, CodecError};
use crate::error::{ErrorBody, ErrorCode};
use crate::inspector::{
    AgentsPage, ThreadHistoryPage, ThreadView, ThreadsPage, TimelinePage, TransfersPage,
};
use crate::persistence::StatePersistence;
use crate::threads::{
    CheckpointsDeletedResponse, CopyThreadRequest, CopyThreadResponse, DeleteForRunsRequest,
    DeltaHistoryRequest, DeltaHistoryResponse, PopMessageResponse, PruneRequest, PruneStrategy,
    PutThreadCheckpointRequest, PutThreadCheckpointResponse, PutThreadWritesRequest,
    SearchCheckpointsRequest, ThreadCheckpointTuple, ThreadCheckpointsPage,
};
use crate::types::{
    AbortTransitionRequest, AppendMessagesRequest, AppendMessagesResponse, BatchRequest,
    BatchResponse, BeginTransitionResponse, Checkpoint, CheckpointRequest, CheckpointResponse,
    CheckpointsPage, CompleteTransitionRequest, Durability, Message, MessagesPage, NewMessage,
    PersistedState, ReplayRequest, ReplayResponse, RollbackRequest, SaveStateRequest,
    StateTransition, StatusResponse, Transfer, TransferRequest, TransitionRequest,
    TransitionResponse, TransitionsPage, VersionResponse,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("sidecar answered {status}: {} ({})", .body.error.message, .body.error.code.as_str())]
    Api { status: u16, body: ErrorBody },
    #[error("sidecar answered {status} with an unreadable body")]
    BadResponse { status: u16 },
    #[error("cannot reach the sidecar: {0}")]
    Transport(String),
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl ClientError {
    /// The server's error code, if the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { body, .. } => Some(body.error.code),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    http: HyperClient<HttpConnector, Full<Bytes>>,
    /// `http://host:port`, without a trailing slash.
    base: String,
    codec: Codec,
    durability: Option<Durability>,
    /// Sent as `Authorization: Bearer <token>` when the sidecar requires one.
    token: Option<String>,
    /// Bound on one whole call, so an agent never hangs on a stuck sidecar.
    timeout: Duration,
}

impl Client {
    /// A client for the sidecar at `base` (for example `http://127.0.0.1:7700`).
    pub fn new(base: impl Into<String>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Client {
            http,
            base: base.into().trim_end_matches('/').to_string(),
            codec: Codec::MsgPack,
            durability: None,
            token: None,
            timeout: Duration::from_secs(30),
        }
    }

    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Durability asked for on every write (the sidecar's default, `local`, when unset).
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }

    /// The bearer token of a sidecar started with `--auth-token-file`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Deletes the agent and its history. With `expected_version`, only that version.
    pub async fn delete_agent(
        &self,
        agent_id: &str,
        expected_version: Option<u64>,
    ) -> Result<(), ClientError> {
        let path = agent_path(agent_id)?;
        self.send::<(), serde_json::Value>(Method::DELETE, &path, None, expected_version)
            .await?;
        Ok(())
    }

    /// Starts a multi-step transition; it shows as `pending_transition` until completed
    /// or aborted.
    pub async fn begin_transition(
        &self,
        agent_id: &str,
        transition: &TransitionRequest,
    ) -> Result<BeginTransitionResponse, ClientError> {
        let path = format!("{}/transitions/begin", agent_path(agent_id)?);
        self.call(Method::POST, &path, Some(transition), None).await
    }

    /// Completes the pending transition `transition_id`, optionally with its data.
    pub async fn complete_transition(
        &self,
        agent_id: &str,
        transition_id: &str,
        state_data: Option<serde_json::Value>,
    ) -> Result<TransitionResponse, ClientError> {
        let path = format!(
            "{}/transitions/{}/complete",
            agent_path(agent_id)?,
            id_segment(transition_id)?
        );
        let body = CompleteTransitionRequest { state_data };
        self.call(Method::POST, &path, Some(&body), None).await
    }

    /// Aborts the pending transition `transition_id`; it is logged as failed.
    pub async fn abort_transition(
        &self,
        agent_id: &str,
        transition_id: &str,
        error: Option<String>,
    ) -> Result<TransitionResponse, ClientError> {
        let path = format!(
            "{}/transitions/{}/abort",
            agent_path(agent_id)?,
            id_segment(transition_id)?
        );
        let body = AbortTransitionRequest { error };
        self.call(Method::POST, &path, Some(&body), None).await
    }

    /// Appends messages to the agent's conversation; returns their sequence numbers.
    pub async fn append_messages(
        &self,
        agent_id: &str,
        messages: Vec<NewMessage>,
        expected_version: Option<u64>,
    ) -> Result<AppendMessagesResponse, ClientError> {
        let path = format!("{}/messages", agent_path(agent_id)?);
        let body = AppendMessagesRequest { messages };
        self.call(Method::POST, &path, Some(&body), expected_version)
            .await
    }

    /// The conversation, oldest first: messages with `seq > after`, at most `limit`.
    pub async fn get_messages(
        &self,
        agent_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Message>, ClientError> {
        let path = format!(
            "{}/messages?after={after}&limit={limit}",
            agent_path(agent_id)?
        );
        let page: Option<MessagesPage> = self.send::<(), _>(Method::GET, &path, None, None).await?;
        Ok(page.map(|p| p.messages).unwrap_or_default())
    }

    /// The latest `n` messages, oldest first.
    pub async fn last_messages(&self, agent_id: &str, n: u32) -> Result<Vec<Message>, ClientError> {
        let path = format!("{}/messages?last={n}", agent_path(agent_id)?);
        let page: Option<MessagesPage> = self.send::<(), _>(Method::GET, &path, None, None).await?;
        Ok(page.map(|p| p.messages).unwrap_or_default())
    }

    /// Removes and returns the latest message.
    pub async fn pop_message(&self, agent_id: &str) -> Result<PopMessageResponse, ClientError> {
        let path = format!("{}/messages/last", agent_path(agent_id)?);
        self.call::<(), _>(Method::DELETE, &path, None, None).await
    }

    /// Removes the whole conversation; returns the agent's new version.
    pub async fn clear_messages(&self, agent_id: &str) -> Result<u64, ClientError> {
        let path = format!("{}/messages", agent_path(agent_id)?);
        let v: VersionResponse = self
            .call::<(), _>(Method::DELETE, &path, None, None)
            .await?;
        Ok(v.version)
    }

    /// Stores a framework checkpoint in a thread (created if absent).
    pub async fn put_thread_checkpoint(
        &self,
        thread_id: &str,
        req: &PutThreadCheckpointRequest,
    ) -> Result<PutThreadCheckpointResponse, ClientError> {
        let path = format!("{}/checkpoints", thread_path(thread_id)?);
        self.call(Method::POST, &path, Some(req), None).await
    }

    /// Stores a task's writes against a thread's checkpoint.
    pub async fn put_thread_writes(
        &self,
        thread_id: &str,
        req: &PutThreadWritesRequest,
    ) -> Result<u64, ClientError> {
        let path = format!("{}/writes", thread_path(thread_id)?);
        let v: VersionResponse = self.call(Method::POST, &path, Some(req), None).await?;
        Ok(v.version)
    }

    /// A thread's checkpoint (the latest of the namespace without an id), or `None`.
    pub async fn thread_checkpoint(
        &self,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: Option<&str>,
    ) -> Result<Option<ThreadCheckpointTuple>, ClientError> {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        let mut path = format!(
            "{}/checkpoint?checkpoint_ns={}",
            thread_path(thread_id)?,
            utf8_percent_encode(checkpoint_ns, NON_ALPHANUMERIC)
        );
        if let Some(id) = checkpoint_id {
            path.push_str(&format!(
                "&checkpoint_id={}",
                utf8_percent_encode(id, NON_ALPHANUMERIC)
            ));
        }
        self.send::<(), _>(Method::GET, &path, None, None).await
    }

    /// Checkpoints matching `q`, greatest id first.
    pub async fn search_checkpoints(
        &self,
        q: &SearchCheckpointsRequest,
    ) -> Result<Vec<ThreadCheckpointTuple>, ClientError> {
        let page: ThreadCheckpointsPage = self
            .call(Method::POST, "/v1/checkpoints/search", Some(q), None)
            .await?;
        Ok(page.checkpoints)
    }

    /// Deletes a thread: its checkpoints and the agent. Absent is fine.
    pub async fn delete_thread(&self, thread_id: &str) -> Result<(), ClientError> {
        let path = thread_path(thread_id)?;
        self.send::<(), serde_json::Value>(Method::DELETE, &path, None, None)
            .await?;
        Ok(())
    }

    /// Copies every checkpoint of `source` into `target`.
    pub async fn copy_thread(&self, source: &str, target: &str) -> Result<u64, ClientError> {
        let path = format!("{}/copy", thread_path(source)?);
        let body = CopyThreadRequest {
            target_thread_id: target.to_string(),
        };
        let r: CopyThreadResponse = self.call(Method::POST, &path, Some(&body), None).await?;
        Ok(r.checkpoints_copied)
    }

    /// Prunes threads' checkpoints; returns how many were deleted.
    pub async fn prune_threads(
        &self,
        thread_ids: Vec<String>,
        strategy: PruneStrategy,
    ) -> Result<u64, ClientError> {
        let body = PruneRequest {
            thread_ids,
            strategy,
        };
        let r: CheckpointsDeletedResponse = self
            .call(Method::POST, "/v1/checkpoints/prune", Some(&body), None)
            .await?;
        Ok(r.checkpoints_deleted)
    }

    /// Deletes the checkpoints of these runs, in any thread.
    pub async fn delete_for_runs(&self, run_ids: Vec<String>) -> Result<u64, ClientError> {
        let body = DeleteForRunsRequest { run_ids };
        let r: CheckpointsDeletedResponse = self
            .call(
                Method::POST,
                "/v1/checkpoints/delete_for_runs",
                Some(&body),
                None,
            )
            .await?;
        Ok(r.checkpoints_deleted)
    }

    /// What channels contributed along a checkpoint's ancestors.
    pub async fn delta_history(
        &self,
        thread_id: &str,
        req: &DeltaHistoryRequest,
    ) -> Result<DeltaHistoryResponse, ClientError> {
        let path = format!("{}/delta_history", thread_path(thread_id)?);
        self.call(Method::POST, &path, Some(req), None).await
    }

    /// Takes a checkpoint of the agent's current state.
    pub async fn checkpoint(
        &self,
        agent_id: &str,
        label: Option<String>,
    ) -> Result<CheckpointResponse, ClientError> {
        let path = format!("{}/checkpoints", agent_path(agent_id)?);
        self.call(
            Method::POST,
            &path,
            Some(&CheckpointRequest { label }),
            None,
        )
        .await
    }

    /// The agent's checkpoints, oldest first.
    pub async fn list_checkpoints(&self, agent_id: &str) -> Result<Vec<Checkpoint>, ClientError> {
        let path = format!("{}/checkpoints", agent_path(agent_id)?);
        let page: Option<CheckpointsPage> =
            self.send::<(), _>(Method::GET, &path, None, None).await?;
        Ok(page.map(|p| p.checkpoints).unwrap_or_default())
    }

    /// Restores a checkpoint as the agent's new version (logged with trigger `rollback`).
    pub async fn rollback(
        &self,
        agent_id: &str,
        checkpoint_id: &str,
        expected_version: Option<u64>,
    ) -> Result<TransitionResponse, ClientError> {
        let path = format!("{}/rollback", agent_path(agent_id)?);
        let body = RollbackRequest {
            checkpoint_id: checkpoint_id.to_string(),
        };
        self.call(Method::POST, &path, Some(&body), expected_version)
            .await
    }

    /// Recomputes the state from a checkpoint and the log; `apply` makes it current.
    pub async fn replay(
        &self,
        agent_id: &str,
        checkpoint_id: &str,
        apply: bool,
    ) -> Result<ReplayResponse, ClientError> {
        let path = format!("{}/replay", agent_path(agent_id)?);
        let body = ReplayRequest {
            checkpoint_id: checkpoint_id.to_string(),
            apply,
        };
        self.call(Method::POST, &path, Some(&body), None).await
    }

    /// Hands a conversation to another agent; retrying with the same `transfer_id`
    /// returns the first result.
    pub async fn transfer(&self, transfer: &TransferRequest) -> Result<Transfer, ClientError> {
        self.call(Method::POST, "/v1/transfers", Some(transfer), None)
            .await
    }

    /// A transfer's record, or `None` if it never happened.
    pub async fn get_transfer(&self, transfer_id: &str) -> Result<Option<Transfer>, ClientError> {
        let path = format!("/v1/transfers/{}", id_segment(transfer_id)?);
        self.send::<(), _>(Method::GET, &path, None, None).await
    }

    /// Several operations on several agents, all or nothing.
    pub async fn batch(&self, batch: &BatchRequest) -> Result<BatchResponse, ClientError> {
        self.call(Method::POST, "/v1/batch", Some(batch), None)
            .await
    }

    /// A call whose success always has a body.
    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        if_match: Option<u64>,
    ) -> Result<R, ClientError> {
        self.send(method, path, body, if_match)
            .await?
            .ok_or(ClientError::BadResponse { status: 200 })
    }

    /// A page of agents; `query` holds the filters and the cursor of the page.
    pub async fn list_agents(&self, query: &AgentsQuery) -> Result<AgentsPage, ClientError> {
        let mut q = Vec::new();
        let mut add = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                q.push(format!("{k}={}", encode_query(v)));
            }
        };
        add("prefix", query.prefix.as_deref());
        add("state", query.state.as_deref());
        add("type", query.agent_type.as_deref());
        let after = query
            .updated_after
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        add("updated_after", after.as_deref());
        add("failed", query.failed.then_some("true"));
        add("cursor", query.cursor.as_deref());
        let limit = query.limit.map(|l| l.to_string());
        add("limit", limit.as_deref());
        self.call::<(), _>(
            Method::GET,
            &format!("/v1/agents?{}", q.join("&")),
            None,
            None,
        )
        .await
    }

    /// A page of threads with framework checkpoints, ids after `cursor`.
    pub async fn list_threads(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<ThreadsPage, ClientError> {
        let path = format!(
            "/v1/threads?prefix={}&cursor={}&limit={limit}",
            encode_query(prefix),
            encode_query(cursor.unwrap_or(""))
        );
        self.call::<(), _>(Method::GET, &path, None, None).await
    }

    /// A page of transfers in order of id; with `agent`, those from or to it.
    pub async fn list_transfers(
        &self,
        agent: Option<&str>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<TransfersPage, ClientError> {
        let mut path = format!(
            "/v1/transfers?cursor={}&limit={limit}",
            encode_query(cursor.unwrap_or(""))
        );
        if let Some(a) = agent {
            path.push_str(&format!("&agent={}", encode_query(a)));
        }
        self.call::<(), _>(Method::GET, &path, None, None).await
    }

    /// A page of everything that happened to an agent, oldest first.
    pub async fn timeline(
        &self,
        agent_id: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<TimelinePage, ClientError> {
        let mut path = format!("{}/timeline?limit={limit}", agent_path(agent_id)?);
        if let Some(c) = cursor {
            path.push_str(&format!("&cursor={}", encode_query(c)));
        }
        self.call::<(), _>(Method::GET, &path, None, None).await
    }

    /// A page of a thread's checkpoints without values, greatest id first.
    pub async fn thread_history(
        &self,
        thread_id: &str,
        checkpoint_ns: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<ThreadHistoryPage, ClientError> {
        let path = format!(
            "{}/history?checkpoint_ns={}&cursor={}&limit={limit}",
            thread_path(thread_id)?,
            encode_query(checkpoint_ns),
            encode_query(cursor.unwrap_or(""))
        );
        self.call::<(), _>(Method::GET, &path, None, None).await
    }

    /// One checkpoint of a thread (the latest without an id), decoded for reading.
    pub async fn thread_view(
        &self,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: Option<&str>,
    ) -> Result<Option<ThreadView>, ClientError> {
        let mut path = format!(
            "{}/view?checkpoint_ns={}",
            thread_path(thread_id)?,
            encode_query(checkpoint_ns)
        );
        if let Some(id) = checkpoint_id {
            path.push_str(&format!("&checkpoint_id={}", encode_query(id)));
        }
        self.send::<(), _>(Method::GET, &path, None, None).await
    }

    pub async fn status(&self) -> Result<StatusResponse, ClientError> {
        self.send::<(), _>(Method::GET, "/v1/status", None, None)
            .await?
            .ok_or(ClientError::BadResponse { status: 200 })
    }

    /// `true` once the sidecar has replayed its WAL and serves requests.
    pub async fn ready(&self) -> bool {
        let req = Request::get(format!("{}/readyz", self.base))
            .body(Full::new(Bytes::new()))
            .expect("static request is valid");
        matches!(
            tokio::time::timeout(self.timeout, self.http.request(req)).await,
            Ok(Ok(resp)) if resp.status() == StatusCode::OK
        )
    }

    /// Sends one request; `Ok(None)` for 404 on a GET and for empty success bodies.
    async fn send<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        if_match: Option<u64>,
    ) -> Result<Option<R>, ClientError> {
        let is_get = method == Method::GET;
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header(header::ACCEPT, self.codec.content_type());
        if let Some(v) = if_match {
            req = req.header(header::IF_MATCH, format!("\"{v}\""));
        }
        if let Some(d) = self.durability {
            req = req.header(Durability::HEADER, d.as_str());
        }
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let bytes = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, self.codec.content_type());
                Bytes::from(self.codec.encode(b)?)
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| ClientError::InvalidRequest(e.to_string()))?;

        let call = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?;
            let status = resp.status();
            let codec = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(Codec::from_media_type)
                .unwrap_or(self.codec);
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            Ok::<_, ClientError>((status, codec, body))
        };
        let (status, codec, body) = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))??;

        if status.is_success() {
            if body.is_empty() {
                return Ok(None);
            }
            return Ok(Some(codec.decode(&body)?));
        }
        if is_get && status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        match codec.decode::<ErrorBody>(&body) {
            Ok(body) => Err(ClientError::Api {
                status: status.as_u16(),
                body,
            }),
            Err(_) => Err(ClientError::BadResponse {
                status: status.as_u16(),
            }),
        }
    }
}

/// A query parameter's value, percent-encoded.
fn encode_query(v: &str) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    utf8_percent_encode(v, NON_ALPHANUMERIC).to_string()
}

/// The filters and page of [`Client::list_agents`]; every field set narrows.
#[derive(Debug, Clone, Default)]
pub struct AgentsQuery {
    pub prefix: Option<String>,
    pub state: Option<String>,
    pub agent_type: Option<String>,
    pub updated_after: Option<chrono::DateTime<chrono::Utc>>,
    /// Only agents with a refused transition in their log.
    pub failed: bool,
    /// The `next_cursor` of the page before.
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// An id as a URL path segment; refuses ids the server would refuse anyway, so the
/// caller learns early and nothing odd reaches the URL.
fn id_segment(id: &str) -> Result<&str, ClientError> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(ClientError::InvalidRequest(format!(
            "id {id:?} must be 1 to 128 of A-Z a-z 0-9 - _ . :"
        )));
    }
    Ok(id)
}

fn agent_path(agent_id: &str) -> Result<String, ClientError> {
    Ok(format!("/v1/agents/{}", id_segment(agent_id)?))
}

fn thread_path(thread_id: &str) -> Result<String, ClientError> {
    Ok(format!("/v1/threads/{}", id_segment(thread_id)?))
}

impl StatePersistence for Client {
    type Error = ClientError;

    async fn save_state(
        &self,
        agent_id: &str,
        state: &SaveStateRequest,
        expected_version: Option<u64>,
    ) -> Result<u64, ClientError> {
        let path = agent_path(agent_id)?;
        let resp: Option<VersionResponse> = self
            .send(Method::PUT, &path, Some(state), expected_version)
            .await?;
        resp.map(|r| r.version)
            .ok_or(ClientError::BadResponse { status: 200 })
    }

    async fn load_state(&self, agent_id: &str) -> Result<Option<PersistedState>, ClientError> {
        let path = agent_path(agent_id)?;
        self.send::<(), _>(Method::GET, &path, None, None).await
    }

    async fn record_transition(
        &self,
        agent_id: &str,
        transition: &TransitionRequest,
    ) -> Result<TransitionResponse, ClientError> {
        let path = format!("{}/transitions", agent_path(agent_id)?);
        self.send(Method::POST, &path, Some(transition), None)
            .await?
            .ok_or(ClientError::BadResponse { status: 200 })
    }

    async fn get_transitions(
        &self,
        agent_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StateTransition>, ClientError> {
        let path = format!(
            "{}/transitions?after={after}&limit={limit}",
            agent_path(agent_id)?
        );
        let page: Option<TransitionsPage> =
            self.send::<(), _>(Method::GET, &path, None, None).await?;
        Ok(page.map(|p| p.transitions).unwrap_or_default())
    }
}
