//! A conversation across three agents that survives a sidecar crash.
//!
//! The Greeter learns the user's name and hands the conversation to the Haiku writer;
//! then the sidecar is killed (`kill -9`) and restarted; the Haiku writer, starting from
//! nothing but what the sidecar kept, writes for the right user on the right topic, and
//! hands over to the Git assistant.
//!
//! ```sh
//! cargo build -p agentstate && cargo run -p agentstate-protocol --example conversation_demo
//! ```
//!
//! It starts its own sidecar (the `agentstate` binary from `target/debug`, or the one
//! named by `AGENTSTATE_BIN`) on a free port, with a fresh data dir and the example agent
//! types. Exits non-zero if anything the agents were told was lost.

#[path = "agents/mod.rs"]
mod agents;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentstate_protocol::Client;

struct Sidecar {
    bin: PathBuf,
    data_dir: PathBuf,
    listen: String,
    child: Option<Child>,
}

impl Sidecar {
    fn spawn(&mut self) {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agent-types.toml");
        let child = Command::new(&self.bin)
            .args(["serve", "--listen", &self.listen, "--data-dir"])
            .arg(&self.data_dir)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn wait_ready(&self, client: &Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !client.ready().await {
            assert!(Instant::now() < deadline, "sidecar not ready after 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn sidecar_binary() -> PathBuf {
    if let Ok(bin) = std::env::var("AGENTSTATE_BIN") {
        return bin.into();
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    for profile in ["debug", "release"] {
        let bin = target.join(profile).join("agentstate");
        if bin.exists() {
            return bin;
        }
    }
    eprintln!(
        "no agentstate binary: run `cargo build -p agentstate` first (or set AGENTSTATE_BIN)"
    );
    std::process::exit(2);
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let data = std::env::temp_dir().join(format!("agentstate-demo-{}", std::process::id()));
    let mut sidecar = Sidecar {
        bin: sidecar_binary(),
        data_dir: data.clone(),
        listen: format!("127.0.0.1:{port}"),
        child: None,
    };
    sidecar.spawn();
    let client = Client::new(format!("http://127.0.0.1:{port}"));
    sidecar.wait_ready(&client).await;
    println!("sidecar up on 127.0.0.1:{port}, data in {}", data.display());

    let restarting = &mut sidecar;
    let transcript = agents::conversation(&client, "demo", || async {
        println!("-- kill -9 the sidecar, then start it again --");
        restarting.kill9();
        restarting.spawn();
        restarting.wait_ready(&client).await;
    })
    .await;
    let transcript = match transcript {
        Ok(t) => t,
        Err(e) => {
            eprintln!("conversation failed: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };

    println!("\nthe Git assistant's conversation (handed over twice, across the crash):");
    for m in &transcript.git_messages {
        let from = m
            .metadata
            .get("transferred_from")
            .map_or(String::new(), |f| {
                format!("  [from {}]", f["agent_id"].as_str().unwrap_or("?"))
            });
        println!(
            "  #{:<2} {:>9}: {}{from}",
            m.seq,
            m.role,
            m.content.replace('\n', " / ")
        );
    }
    println!("\nfinal states:");
    for s in [&transcript.greeter, &transcript.haiku, &transcript.git] {
        println!("  {:<14} {:<13} v{}", s.agent_id, s.state_name, s.version);
    }

    let mut failures = Vec::new();
    if !transcript.haiku_text.contains("autumn") {
        failures.push("the haiku is not about the topic handed over");
    }
    if !transcript.answer.starts_with("Ada,") {
        failures.push("the Git assistant does not know the user's name");
    }
    if !transcript
        .git_messages
        .iter()
        .any(|m| m.content.contains("I'm Ada"))
    {
        failures.push("the first greeting did not reach the Git assistant");
    }
    if transcript.git.state_name != "done" {
        failures.push("the Git assistant did not finish");
    }
    drop(sidecar);
    let _ = std::fs::remove_dir_all(&data);
    if failures.is_empty() {
        println!("\ncontext intact across the restart");
        std::process::ExitCode::SUCCESS
    } else {
        for f in &failures {
            eprintln!("FAILED: {f}");
        }
        std::process::ExitCode::FAILURE
    }
}
