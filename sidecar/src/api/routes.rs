//! The route table: every (method, path template) the API answers, and the resolution of
//! a request's method and path against it.
//!
//! The router dispatches on [`RouteId`] only, and a [`RouteId`] only comes out of
//! [`resolve`], which reads nothing but [`ROUTES`]: a route missing from the table cannot
//! be answered, and a route in the table without a handler does not compile (the
//! dispatch is an exhaustive `match`). The OpenAPI description (`sidecar/openapi.json`)
//! is checked against this table both ways (`openapi.rs`).
//!
//! Templates use `{name}` for one path segment; the names are those of the OpenAPI
//! description's path parameters, and the templates double as the `route` label of the
//! request metrics (bounded: no ids).

/// What a request asks for, once resolved: a group of routes (each served by its own
/// module, `match`ing its own enum exhaustively), then the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    /// Health, status and the description of the API (`ops`).
    Ops(OpsRoute),
    /// Under `/v1/agents/{id}` (`agents`).
    Agent(AgentRoute),
    /// Under `/v1/threads/{id}` (`threads`).
    Thread(ThreadRoute),
    /// Calls that span agents or threads: listings, transfers, batches, searches
    /// (`collections`).
    Collection(CollectionRoute),
    /// The web inspector's files and writes (`inspector`).
    Inspector(InspectorRoute),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsRoute {
    Healthz,
    Readyz,
    Metrics,
    Status,
    Usage,
    OpenApi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentRoute {
    Get,
    Put,
    Delete,
    PostTransition,
    ListTransitions,
    BeginTransition,
    CompleteTransition,
    AbortTransition,
    AppendMessages,
    ListMessages,
    ClearMessages,
    PopMessage,
    TakeCheckpoint,
    ListCheckpoints,
    Rollback,
    Replay,
    Timeline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadRoute {
    PutCheckpoint,
    PutWrites,
    GetCheckpoint,
    Delete,
    Copy,
    DeltaHistory,
    History,
    View,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectionRoute {
    ListAgents,
    ListThreads,
    ListTransfers,
    Transfer,
    GetTransfer,
    Batch,
    SearchCheckpoints,
    PruneCheckpoints,
    DeleteForRuns,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InspectorRoute {
    /// The page, its script and its style sheet.
    Page,
    Script,
    Style,
    /// What the inspector may do here.
    Info,
    Rollback,
    Abort,
    Fork,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// Upper-case HTTP method.
    pub method: &'static str,
    pub template: &'static str,
    pub id: RouteId,
}

const fn r(method: &'static str, template: &'static str, id: RouteId) -> Route {
    Route {
        method,
        template,
        id,
    }
}

use AgentRoute as A;
use CollectionRoute as C;
use InspectorRoute as I;
use OpsRoute as O;
use RouteId::{Agent, Collection, Inspector, Ops, Thread};
use ThreadRoute as T;

/// Every route the server answers. No two templates match the same path (checked by a
/// test below), so the order does not matter.
#[rustfmt::skip]
pub const ROUTES: &[Route] = &[
    r("GET", "/healthz", Ops(O::Healthz)),
    r("GET", "/readyz", Ops(O::Readyz)),
    r("GET", "/metrics", Ops(O::Metrics)),
    r("GET", "/v1/status", Ops(O::Status)),
    r("GET", "/v1/usage", Ops(O::Usage)),
    r("GET", "/v1/openapi.json", Ops(O::OpenApi)),
    r("GET", "/v1/agents", Collection(C::ListAgents)),
    r("GET", "/v1/agents/{id}", Agent(A::Get)),
    r("PUT", "/v1/agents/{id}", Agent(A::Put)),
    r("DELETE", "/v1/agents/{id}", Agent(A::Delete)),
    r("POST", "/v1/agents/{id}/transitions", Agent(A::PostTransition)),
    r("GET", "/v1/agents/{id}/transitions", Agent(A::ListTransitions)),
    r("POST", "/v1/agents/{id}/transitions/begin", Agent(A::BeginTransition)),
    r("POST", "/v1/agents/{id}/transitions/{tid}/complete", Agent(A::CompleteTransition)),
    r("POST", "/v1/agents/{id}/transitions/{tid}/abort", Agent(A::AbortTransition)),
    r("POST", "/v1/agents/{id}/messages", Agent(A::AppendMessages)),
    r("GET", "/v1/agents/{id}/messages", Agent(A::ListMessages)),
    r("DELETE", "/v1/agents/{id}/messages", Agent(A::ClearMessages)),
    r("DELETE", "/v1/agents/{id}/messages/last", Agent(A::PopMessage)),
    r("POST", "/v1/agents/{id}/checkpoints", Agent(A::TakeCheckpoint)),
    r("GET", "/v1/agents/{id}/checkpoints", Agent(A::ListCheckpoints)),
    r("POST", "/v1/agents/{id}/rollback", Agent(A::Rollback)),
    r("POST", "/v1/agents/{id}/replay", Agent(A::Replay)),
    r("GET", "/v1/agents/{id}/timeline", Agent(A::Timeline)),
    r("GET", "/v1/transfers", Collection(C::ListTransfers)),
    r("POST", "/v1/transfers", Collection(C::Transfer)),
    r("GET", "/v1/transfers/{id}", Collection(C::GetTransfer)),
    r("POST", "/v1/batch", Collection(C::Batch)),
    r("GET", "/v1/threads", Collection(C::ListThreads)),
    r("POST", "/v1/threads/{id}/checkpoints", Thread(T::PutCheckpoint)),
    r("POST", "/v1/threads/{id}/writes", Thread(T::PutWrites)),
    r("GET", "/v1/threads/{id}/checkpoint", Thread(T::GetCheckpoint)),
    r("DELETE", "/v1/threads/{id}", Thread(T::Delete)),
    r("POST", "/v1/threads/{id}/copy", Thread(T::Copy)),
    r("POST", "/v1/threads/{id}/delta_history", Thread(T::DeltaHistory)),
    r("GET", "/v1/threads/{id}/history", Thread(T::History)),
    r("GET", "/v1/threads/{id}/view", Thread(T::View)),
    r("POST", "/v1/checkpoints/search", Collection(C::SearchCheckpoints)),
    r("POST", "/v1/checkpoints/prune", Collection(C::PruneCheckpoints)),
    r("POST", "/v1/checkpoints/delete_for_runs", Collection(C::DeleteForRuns)),
    r("GET", "/ui", Inspector(I::Page)),
    r("GET", "/ui/app.js", Inspector(I::Script)),
    r("GET", "/ui/app.css", Inspector(I::Style)),
    r("GET", "/v1/inspector", Inspector(I::Info)),
    r("POST", "/v1/inspector/agents/{id}/rollback", Inspector(I::Rollback)),
    r("POST", "/v1/inspector/agents/{id}/transitions/{tid}/abort", Inspector(I::Abort)),
    r("POST", "/v1/inspector/threads/{id}/fork", Inspector(I::Fork)),
];

/// A path's segments, as templates and paths split alike.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

/// The path parameters if `path` fits `template`, in template order.
fn matches<'p>(template: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let mut params = Vec::new();
    let mut t = segments(template);
    let mut p = segments(path);
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(params),
            (Some(ts), Some(ps)) if ts.starts_with('{') => params.push(ps),
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return None,
        }
    }
}

/// How a request resolves.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved<'p> {
    /// The route and its path parameters, in template order (not yet validated).
    Found(RouteId, Vec<&'p str>),
    /// The path exists with other methods: the value of the `Allow` header.
    MethodNotAllowed(String),
    NotFound,
}

pub fn resolve<'p>(method: &str, path: &'p str) -> Resolved<'p> {
    let mut allow: Vec<&str> = Vec::new();
    for route in ROUTES {
        if let Some(params) = matches(route.template, path) {
            if route.method == method {
                return Resolved::Found(route.id, params);
            }
            allow.push(route.method);
        }
    }
    if allow.is_empty() {
        Resolved::NotFound
    } else {
        Resolved::MethodNotAllowed(allow.join(", "))
    }
}

/// The template a path fits, whatever the method, as a metric label; `other` if none.
pub fn template(path: &str) -> &'static str {
    ROUTES
        .iter()
        .find(|r| matches(r.template, path).is_some())
        .map_or("other", |r| r.template)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_resolve_to_their_route_with_parameters() {
        assert_eq!(
            resolve("POST", "/v1/agents/a1/transitions/t-9/abort"),
            Resolved::Found(Agent(A::AbortTransition), vec!["a1", "t-9"])
        );
        assert_eq!(
            resolve("POST", "/v1/agents/a1/transitions/begin"),
            Resolved::Found(Agent(A::BeginTransition), vec!["a1"])
        );
        assert_eq!(
            resolve("GET", "/v1/openapi.json"),
            Resolved::Found(Ops(O::OpenApi), vec![])
        );
        assert_eq!(
            resolve("PATCH", "/v1/agents/a1"),
            Resolved::MethodNotAllowed("GET, PUT, DELETE".into())
        );
        assert_eq!(resolve("GET", "/v1/agents/a1/nope"), Resolved::NotFound);
        assert_eq!(resolve("GET", "/v1/agents/a1/"), Resolved::NotFound);
        assert_eq!(resolve("GET", "/"), Resolved::NotFound);
        assert_eq!(
            resolve("GET", "/v1/agents"),
            Resolved::Found(Collection(C::ListAgents), vec![])
        );
        assert_eq!(
            resolve("POST", "/v1/inspector/threads/t/fork"),
            Resolved::Found(Inspector(I::Fork), vec!["t"])
        );
        assert_eq!(
            resolve("GET", "/v1/agents/"),
            Resolved::Found(Agent(A::Get), vec![""]),
            "an empty id is the handler's to refuse (400), like any bad id"
        );
        assert_eq!(
            template("/v1/agents/x/messages/last"),
            "/v1/agents/{id}/messages/last"
        );
        assert_eq!(template("/v1/nope"), "other");
    }

    #[test]
    fn every_route_is_listed_once_and_no_two_templates_overlap() {
        for (i, a) in ROUTES.iter().enumerate() {
            assert!(a.template.starts_with('/'), "{}", a.template);
            for b in &ROUTES[i + 1..] {
                assert_ne!(a.id, b.id, "{:?} listed twice", a.id);
                if a.template == b.template {
                    assert_ne!(
                        a.method, b.method,
                        "{} {} listed twice",
                        a.method, a.template
                    );
                    continue;
                }
                // Two different templates overlap when, segment by segment, each pair is
                // equal or has a parameter on either side.
                let (ta, tb): (Vec<_>, Vec<_>) = (
                    segments(a.template).collect(),
                    segments(b.template).collect(),
                );
                let overlap = ta.len() == tb.len()
                    && ta
                        .iter()
                        .zip(&tb)
                        .all(|(x, y)| x == y || x.starts_with('{') || y.starts_with('{'));
                assert!(
                    !overlap,
                    "{} and {} match the same paths",
                    a.template, b.template
                );
            }
        }
    }
}
