//! What the black-box tests (`tests/common`) and the benches (`bench/`) both need to run
//! the product for real: a MongoDB-wire server ([`secantus`]) and the `agentstate`
//! binary ([`sidecar`]) as child processes. Errors are `String`s that say what to do;
//! tests panic with them, benches print them (a bench never reports a figure it did not
//! measure).

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

pub mod secantus;
pub mod sidecar;

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("testkit/procs lies two levels below the workspace root")
        .to_path_buf()
}

/// A free port on loopback (free when asked: bind it soon).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A log file's text, empty if it cannot be read.
pub fn read_log(path: &Path) -> String {
    let mut log = String::new();
    let _ = File::open(path).and_then(|mut f| f.read_to_string(&mut log));
    log
}
