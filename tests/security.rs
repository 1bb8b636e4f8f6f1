//! Access: the optional bearer token, the owner-only Unix socket, and credentials that
//! never show in logs or status.

mod common;

use std::os::unix::fs::PermissionsExt;

use agentstate_protocol::{ErrorCode, SaveStateRequest, StatePersistence};
use bytes::Bytes;
use common::{raw, unix_http, Sidecar};
use http_body_util::{BodyExt, Full};

const TOKEN: &str = "s3cret-token-0123456789";

#[tokio::test]
async fn a_bearer_token_guards_everything_but_the_probes() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let sidecar = Sidecar::start(
        &dir.path().join("data"),
        &["--auth-token-file", token_file.to_str().unwrap()],
    )
    .await;
    let base = sidecar.url();
    let save = SaveStateRequest {
        state_name: "idle".into(),
        ..Default::default()
    };

    let e = sidecar
        .client()
        .save_state("a", &save, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unauthorized));
    let r = raw(
        "GET",
        &format!("{base}/v1/agents/a"),
        &[("authorization", "Bearer wrong-token-0123456789")],
        "",
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "unauthorized"));
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    assert_eq!(
        raw("GET", &format!("{base}/metrics"), &[], "").await.status,
        401
    );
    // Probes need no token.
    assert_eq!(
        raw("GET", &format!("{base}/healthz"), &[], "").await.status,
        200
    );
    assert_eq!(
        raw("GET", &format!("{base}/readyz"), &[], "").await.status,
        200
    );

    let client = sidecar.client().with_token(TOKEN);
    assert_eq!(client.save_state("a", &save, None).await.unwrap(), 1);
    assert_eq!(client.load_state("a").await.unwrap().unwrap().version, 1);
}

#[tokio::test]
async fn a_short_token_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "short").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agentstate"))
        .args([
            "serve",
            "--auth-token-file",
            token_file.to_str().unwrap(),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--auth-token-file"));
}

#[tokio::test]
async fn the_unix_socket_is_owner_only_and_serves_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agentstate.sock");
    let _sidecar = Sidecar::start(
        &dir.path().join("data"),
        &["--unix-socket", socket.to_str().unwrap()],
    )
    .await;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");

    let mut send = unix_http(&socket).await;
    let put = http::Request::put("/v1/agents/u1")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"state_name":"idle"}"#)))
        .unwrap();
    let resp = send.send_request(put).await.unwrap();
    assert_eq!(resp.status(), 200);
    let get = http::Request::get("/v1/agents/u1")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(get).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let state: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(state["state_name"], "idle");
}

#[tokio::test]
async fn mongodb_credentials_are_never_logged_or_shown() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: the sidecar starts anyway and keeps retrying.
    let uri = "mongodb://agent:hunter2-password@127.0.0.1:1/?serverSelectionTimeoutMS=200";
    let sidecar = Sidecar::start(
        &dir.path().join("data"),
        &["--mongodb-uri", uri, "--backend-timeout-ms", "300"],
    )
    .await;
    let r = raw("GET", &format!("{}/v1/status", sidecar.url()), &[], "").await;
    assert_eq!(r.status, 200);
    assert!(!String::from_utf8_lossy(&r.body).contains("hunter2"));
    // A read of an unknown agent needs the backend: a clear 503, not a hang.
    let r = raw("GET", &format!("{}/v1/agents/x", sidecar.url()), &[], "").await;
    assert_eq!((r.status, r.error_code().as_str()), (503, "unavailable"));
    assert!(!String::from_utf8_lossy(&r.body).contains("hunter2"));
    let log = sidecar.log();
    assert!(
        log.contains("mongodb://***@127.0.0.1:1"),
        "the URI is logged redacted:\n{log}"
    );
    assert!(
        !log.contains("hunter2"),
        "a password leaked into the log:\n{log}"
    );
}
