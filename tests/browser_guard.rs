//! The listener beside a browser, over the wire: a foreign `Host` is refused on every
//! route the OpenAPI description lists, a write a browser sent from another site or
//! origin is refused, and a body without a JSON or MessagePack `Content-Type` is 415;
//! nothing is changed by any of them, each is counted by reason, and requests from curl
//! and the SDKs (no `Origin`, no `Sec-Fetch-Site`) and on the Unix socket still pass.
//! `clients/python/tests/test_browser.py` makes the same attacks from real Chromium.

mod common;

use agentstate_protocol::{SaveStateRequest, StatePersistence};
use bytes::Bytes;
use common::{raw, unix_http, workspace_root, RawResponse, Sidecar};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every (method, path) the OpenAPI description lists, ids filled in.
fn described_routes() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(workspace_root().join("sidecar/openapi.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut routes = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let path = path.replace("{id}", "a").replace("{tid}", "t1");
        for method in ops.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(routes.len() > 30, "{routes:?}");
    routes
}

async fn saved(sidecar: &Sidecar) -> u64 {
    sidecar
        .client()
        .load_state("a")
        .await
        .unwrap()
        .expect("agent a still there")
        .version
}

fn refused_total(metrics: &str, reason: &str) -> f64 {
    let key = format!("agentstate_requests_refused_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn assert_refused(r: &RawResponse, status: u16, code: &str, what: &str) {
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (status, code),
        "{what}: {:?}",
        r.body
    );
}

#[tokio::test]
async fn a_foreign_host_is_refused_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(&dir.path().join("data"), &[]).await;
    let port = sidecar.url().rsplit(':').next().unwrap().to_string();
    let save = SaveStateRequest {
        state_name: "idle".into(),
        ..Default::default()
    };
    sidecar.client().save_state("a", &save, None).await.unwrap();

    let foreign = format!("attacker.example:{port}");
    for (method, path) in described_routes() {
        let r = raw(
            &method,
            &format!("{}{path}", sidecar.url()),
            &[("host", &foreign), ("content-type", "application/json")],
            "{}",
        )
        .await;
        assert_refused(&r, 403, "host_not_allowed", &format!("{method} {path}"));
    }
    // The refusal quotes the Host it was sent, as JSON a browser must not sniff.
    let r = raw(
        "GET",
        &format!("{}/v1/agents/a", sidecar.url()),
        &[("host", "<script>x</script>.example")],
        "",
    )
    .await;
    assert_refused(&r, 403, "host_not_allowed", "a Host with markup");
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");

    // Paths the description does not list too, and a Host with no port.
    let r = raw(
        "GET",
        &format!("{}/nowhere", sidecar.url()),
        &[("host", "attacker.example")],
        "",
    )
    .await;
    assert_refused(&r, 403, "host_not_allowed", "unknown path");
    assert_eq!(saved(&sidecar).await, 1, "nothing changed");

    // HTTP/1.0 without a Host at all.
    let mut s = tokio::net::TcpStream::connect(sidecar.url().trim_start_matches("http://"))
        .await
        .unwrap();
    s.write_all(b"GET /v1/agents/a HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.0 403") && answer.contains("host_not_allowed"),
        "{answer}"
    );
    assert!(!answer.contains("idle"), "{answer}");

    // Loopback names and addresses pass.
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("app.localhost:{port}"),
    ] {
        let r = raw(
            "GET",
            &format!("{}/v1/agents/a", sidecar.url()),
            &[("host", &host)],
            "",
        )
        .await;
        assert_eq!(r.status, 200, "{host}");
    }
    let metrics = raw("GET", &format!("{}/metrics", sidecar.url()), &[], "").await;
    let n = refused_total(&String::from_utf8_lossy(&metrics.body), "host");
    assert!(n >= described_routes().len() as f64 + 2.0, "counted {n}");
}

#[tokio::test]
async fn allowed_hosts_adds_names() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        &dir.path().join("data"),
        &["--allowed-hosts", "agentstate.default.svc,other.example"],
    )
    .await;
    for (host, status) in [
        ("agentstate.default.svc:7700", 200),
        ("OTHER.example", 200),
        ("third.example", 403),
    ] {
        let r = raw(
            "GET",
            &format!("{}/healthz", sidecar.url()),
            &[("host", host)],
            "",
        )
        .await;
        assert_eq!(r.status, status, "{host}");
    }
}

#[tokio::test]
async fn writes_from_another_site_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(&dir.path().join("data"), &[]).await;
    let base = sidecar.url();
    let save = SaveStateRequest {
        state_name: "idle".into(),
        ..Default::default()
    };
    sidecar.client().save_state("a", &save, None).await.unwrap();
    let delete_a = r#"{"operations":[{"op":"delete","agent_id":"a"}]}"#;
    let json = ("content-type", "application/json");

    for headers in [
        vec![json, ("sec-fetch-site", "cross-site")],
        vec![json, ("sec-fetch-site", "same-site")],
        vec![json, ("origin", "http://attacker.example")],
        vec![json, ("origin", "null")],
    ] {
        let r = raw("POST", &format!("{base}/v1/batch"), &headers, delete_a).await;
        assert_refused(&r, 403, "cross_origin", &format!("{headers:?}"));
        let r = raw("DELETE", &format!("{base}/v1/agents/a"), &headers, "").await;
        assert_refused(&r, 403, "cross_origin", &format!("DELETE {headers:?}"));
    }
    // Reads carry no such check: without CORS headers the browser keeps the answer from
    // the page.
    let r = raw(
        "GET",
        &format!("{base}/v1/agents/a"),
        &[
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://attacker.example"),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("access-control-allow-origin").is_none());
    assert_eq!(saved(&sidecar).await, 1, "nothing changed");

    // The sidecar's own pages (the inspector) and clients without the headers pass.
    let port = base.rsplit(':').next().unwrap();
    let own = format!("http://127.0.0.1:{port}");
    for headers in [
        vec![
            json,
            ("sec-fetch-site", "same-origin"),
            ("origin", own.as_str()),
        ],
        vec![json, ("origin", own.as_str())],
        vec![json],
    ] {
        let body = r#"{"state_name":"busy"}"#;
        let r = raw("PUT", &format!("{base}/v1/agents/a"), &headers, body).await;
        assert_eq!(r.status, 200, "{headers:?}: {:?}", r.body);
    }
    let metrics = raw("GET", &format!("{base}/metrics"), &[], "").await;
    assert_eq!(
        refused_total(&String::from_utf8_lossy(&metrics.body), "cross_origin"),
        8.0
    );
}

#[tokio::test]
async fn a_body_must_say_it_is_json_or_msgpack() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agentstate.sock");
    let sidecar = Sidecar::start(
        &dir.path().join("data"),
        &["--unix-socket", socket.to_str().unwrap()],
    )
    .await;
    let base = sidecar.url();
    let save = SaveStateRequest {
        state_name: "idle".into(),
        ..Default::default()
    };
    sidecar.client().save_state("a", &save, None).await.unwrap();
    let delete_a = r#"{"operations":[{"op":"delete","agent_id":"a"}]}"#;
    for headers in [
        vec![],
        vec![("content-type", "text/plain;charset=UTF-8")],
        vec![("content-type", "application/x-www-form-urlencoded")],
        vec![("content-type", "multipart/form-data; boundary=x")],
    ] {
        let r = raw("POST", &format!("{base}/v1/batch"), &headers, delete_a).await;
        assert_refused(&r, 415, "unsupported_media_type", &format!("{headers:?}"));
    }
    assert_eq!(saved(&sidecar).await, 1, "nothing changed");
    // An optional body left out needs no type.
    let r = raw("POST", &format!("{base}/v1/agents/a/checkpoints"), &[], "").await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // On the Unix socket: any Host and Origin, but still a typed body.
    let mut send = unix_http(&socket).await;
    for (content_type, status) in [(None, 415), (Some("application/json"), 200)] {
        let mut req = http::Request::post("/v1/batch")
            .header("host", "attacker.example")
            .header("origin", "http://attacker.example");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = req.body(Full::new(Bytes::from_static(delete_a.as_bytes())));
        let resp = send.send_request(req.unwrap()).await.unwrap();
        assert_eq!(resp.status(), status, "{content_type:?}");
        let _ = resp.into_body().collect().await;
    }
    assert!(sidecar.client().load_state("a").await.unwrap().is_none());
    let metrics = raw("GET", &format!("{base}/metrics"), &[], "").await;
    assert_eq!(
        refused_total(&String::from_utf8_lossy(&metrics.body), "media_type"),
        5.0
    );
}
