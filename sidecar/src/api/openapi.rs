//! The OpenAPI 3.1 description of the API, `sidecar/openapi.json`, served as it is at
//! `GET /v1/openapi.json`.
//!
//! The file is written by hand. Its tests keep it honest: its paths and methods are the
//! route table's, both ways (below); the Python tests validate it as OpenAPI 3.1 and run
//! Schemathesis against the real binary, which checks every response against it.

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use http_body_util::Full;

use super::HttpResponse;

/// The description, as served.
pub const DESCRIPTION: &str = include_str!("../../openapi.json");

pub(super) fn response() -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from_static(DESCRIPTION.as_bytes())));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(agentstate_protocol::codec::JSON),
    );
    resp
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::super::routes::ROUTES;
    use super::*;

    /// The methods a path item may hold (OpenAPI 3.1).
    const METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn described_routes(description: &Value) -> BTreeSet<(String, String)> {
        let paths = description["paths"]
            .as_object()
            .expect("the description has paths");
        let mut routes = BTreeSet::new();
        for (path, item) in paths {
            let item = item.as_object().expect("a path item is an object");
            for method in item.keys().filter(|k| METHODS.contains(&k.as_str())) {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
        routes
    }

    fn served_routes() -> BTreeSet<(String, String)> {
        ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.template.to_string()))
            .collect()
    }

    /// The differences both ways, as a message naming each route.
    fn differences(
        described: &BTreeSet<(String, String)>,
        served: &BTreeSet<(String, String)>,
    ) -> Vec<String> {
        let undescribed = served
            .difference(described)
            .map(|(m, p)| format!("served but not described: {m} {p}"));
        let unserved = described
            .difference(served)
            .map(|(m, p)| format!("described but not served: {m} {p}"));
        undescribed.chain(unserved).collect()
    }

    #[test]
    fn the_description_names_exactly_the_routes_the_server_answers() {
        let description: Value =
            serde_json::from_str(DESCRIPTION).expect("sidecar/openapi.json is JSON");
        assert_eq!(description["openapi"], "3.1.0");
        let diff = differences(&described_routes(&description), &served_routes());
        assert!(
            diff.is_empty(),
            "sidecar/openapi.json and the route table (api/routes.rs) disagree:\n{}",
            diff.join("\n")
        );
    }

    #[test]
    fn an_extra_route_on_either_side_is_reported() {
        let set = |routes: &[(&str, &str)]| -> BTreeSet<(String, String)> {
            routes
                .iter()
                .map(|(m, p)| (m.to_string(), p.to_string()))
                .collect()
        };
        let both = [("GET", "/v1/agents/{id}"), ("PUT", "/v1/agents/{id}")];
        assert!(differences(&set(&both), &set(&both)).is_empty());
        assert_eq!(
            differences(&set(&both[..1]), &set(&both)),
            ["served but not described: PUT /v1/agents/{id}"]
        );
        assert_eq!(
            differences(&set(&both), &set(&both[1..])),
            ["described but not served: GET /v1/agents/{id}"]
        );
    }

    /// Every `{name}` of a template is a path parameter the description declares for it
    /// (on the path item or the operation), and no other.
    #[test]
    fn path_parameters_match_the_templates() {
        let description: Value = serde_json::from_str(DESCRIPTION).unwrap();
        let resolve = |v: &Value| -> Value {
            match v["$ref"].as_str() {
                Some(r) => {
                    let name = r.trim_start_matches("#/components/parameters/");
                    description["components"]["parameters"][name].clone()
                }
                None => v.clone(),
            }
        };
        for route in ROUTES {
            let item = &description["paths"][route.template];
            let op = &item[route.method.to_lowercase()];
            let declared: BTreeSet<String> = [&item["parameters"], &op["parameters"]]
                .into_iter()
                .filter_map(Value::as_array)
                .flatten()
                .map(resolve)
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap_or_default().to_string())
                .collect();
            let in_template: BTreeSet<String> = route
                .template
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .map(String::from)
                .collect();
            assert_eq!(
                declared, in_template,
                "{} {}: path parameters",
                route.method, route.template
            );
        }
    }
}
