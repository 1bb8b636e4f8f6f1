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

/// What a request asks for, once resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    Healthz,
    Readyz,
    Metrics,
    Status,
    Usage,
    OpenApi,
    GetAgent,
    PutAgent,
    DeleteAgent,
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
    Transfer,
    GetTransfer,
    Batch,
    PutThreadCheckpoint,
    PutThreadWrites,
    GetThreadCheckpoint,
    DeleteThread,
    CopyThread,
    DeltaHistory,
    SearchCheckpoints,
    PruneCheckpoints,
    DeleteForRuns,
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

/// Every route the server answers. No two templates match the same path (checked by a
/// test below), so the order does not matter.
pub const ROUTES: &[Route] = &[
    r("GET", "/healthz", RouteId::Healthz),
    r("GET", "/readyz", RouteId::Readyz),
    r("GET", "/metrics", RouteId::Metrics),
    r("GET", "/v1/status", RouteId::Status),
    r("GET", "/v1/usage", RouteId::Usage),
    r("GET", "/v1/openapi.json", RouteId::OpenApi),
    r("GET", "/v1/agents/{id}", RouteId::GetAgent),
    r("PUT", "/v1/agents/{id}", RouteId::PutAgent),
    r("DELETE", "/v1/agents/{id}", RouteId::DeleteAgent),
    r(
        "POST",
        "/v1/agents/{id}/transitions",
        RouteId::PostTransition,
    ),
    r(
        "GET",
        "/v1/agents/{id}/transitions",
        RouteId::ListTransitions,
    ),
    r(
        "POST",
        "/v1/agents/{id}/transitions/begin",
        RouteId::BeginTransition,
    ),
    r(
        "POST",
        "/v1/agents/{id}/transitions/{tid}/complete",
        RouteId::CompleteTransition,
    ),
    r(
        "POST",
        "/v1/agents/{id}/transitions/{tid}/abort",
        RouteId::AbortTransition,
    ),
    r("POST", "/v1/agents/{id}/messages", RouteId::AppendMessages),
    r("GET", "/v1/agents/{id}/messages", RouteId::ListMessages),
    r("DELETE", "/v1/agents/{id}/messages", RouteId::ClearMessages),
    r(
        "DELETE",
        "/v1/agents/{id}/messages/last",
        RouteId::PopMessage,
    ),
    r(
        "POST",
        "/v1/agents/{id}/checkpoints",
        RouteId::TakeCheckpoint,
    ),
    r(
        "GET",
        "/v1/agents/{id}/checkpoints",
        RouteId::ListCheckpoints,
    ),
    r("POST", "/v1/agents/{id}/rollback", RouteId::Rollback),
    r("POST", "/v1/agents/{id}/replay", RouteId::Replay),
    r("POST", "/v1/transfers", RouteId::Transfer),
    r("GET", "/v1/transfers/{id}", RouteId::GetTransfer),
    r("POST", "/v1/batch", RouteId::Batch),
    r(
        "POST",
        "/v1/threads/{id}/checkpoints",
        RouteId::PutThreadCheckpoint,
    ),
    r("POST", "/v1/threads/{id}/writes", RouteId::PutThreadWrites),
    r(
        "GET",
        "/v1/threads/{id}/checkpoint",
        RouteId::GetThreadCheckpoint,
    ),
    r("DELETE", "/v1/threads/{id}", RouteId::DeleteThread),
    r("POST", "/v1/threads/{id}/copy", RouteId::CopyThread),
    r(
        "POST",
        "/v1/threads/{id}/delta_history",
        RouteId::DeltaHistory,
    ),
    r("POST", "/v1/checkpoints/search", RouteId::SearchCheckpoints),
    r("POST", "/v1/checkpoints/prune", RouteId::PruneCheckpoints),
    r(
        "POST",
        "/v1/checkpoints/delete_for_runs",
        RouteId::DeleteForRuns,
    ),
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
            Resolved::Found(RouteId::AbortTransition, vec!["a1", "t-9"])
        );
        assert_eq!(
            resolve("POST", "/v1/agents/a1/transitions/begin"),
            Resolved::Found(RouteId::BeginTransition, vec!["a1"])
        );
        assert_eq!(
            resolve("GET", "/v1/openapi.json"),
            Resolved::Found(RouteId::OpenApi, vec![])
        );
        assert_eq!(
            resolve("PATCH", "/v1/agents/a1"),
            Resolved::MethodNotAllowed("GET, PUT, DELETE".into())
        );
        assert_eq!(resolve("GET", "/v1/agents/a1/nope"), Resolved::NotFound);
        assert_eq!(resolve("GET", "/v1/agents/a1/"), Resolved::NotFound);
        assert_eq!(resolve("GET", "/"), Resolved::NotFound);
        assert_eq!(
            resolve("GET", "/v1/agents/"),
            Resolved::Found(RouteId::GetAgent, vec![""]),
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
