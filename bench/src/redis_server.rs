//! The Redis yardstick: a `redis-server` started for the run, clients of it (the `redis`
//! crate, so Redis GETs are timed by the same harness, runtime and histogram as the
//! sidecar's reads), and `redis-benchmark`'s own p50 for a second opinion.
//!
//! Hazard: Redis is optional. Every function says why it could not run, and the caller
//! reports that instead of a figure.

use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::io::tcp::TcpSettings;
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo};

use crate::free_port;

/// How long a GET may take before it counts as failed: longer than any the yardstick
/// should see, but bounded (the crate's default, 500 ms, is within reach of a busy
/// two-core machine at 64 connections).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct RedisServer {
    pub addr: SocketAddr,
    /// The server process; killed on drop.
    child: Child,
}

impl RedisServer {
    /// `redis-server` on a free loopback port, without persistence (a cache, as the
    /// sidecar's read path is).
    pub fn start() -> Result<RedisServer, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "redis-server not runnable ({e}); install it with \
                     `apt-get install -y redis-server redis-tools`"
                )
            })?;
        let mut server = RedisServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while StdTcpStream::connect_timeout(&server.addr, Duration::from_millis(100)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("redis-server exited with {status}"));
            }
            if Instant::now() > deadline {
                return Err("redis-server did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `redis-benchmark -t set,get --threads 2` at `clients` connections with
    /// `value_bytes` values: the GET line's p50 in microseconds and its requests per
    /// second. Two threads, one per core here, so its own client side is not what limits
    /// it at 64 connections.
    pub fn benchmark_get(&self, clients: usize, value_bytes: usize) -> Result<(f64, f64), String> {
        let requests = (20_000 * clients.max(1)).clamp(20_000, 200_000);
        let out = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .args(["-t", "set,get", "--csv", "--threads", "2"])
            .args(["-c", &clients.to_string()])
            .args(["-n", &requests.to_string()])
            .args(["-d", &value_bytes.to_string()])
            .output()
            .map_err(|e| format!("redis-benchmark not runnable ({e})"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let header: Vec<String> = lines
            .next()
            .ok_or("redis-benchmark printed nothing")?
            .split(',')
            .map(|c| c.trim_matches('"').to_string())
            .collect();
        let p50_col = header
            .iter()
            .position(|c| c == "p50_latency_ms")
            .ok_or("redis-benchmark's CSV has no p50_latency_ms column (Redis < 7?)")?;
        let rps_col = header
            .iter()
            .position(|c| c == "rps")
            .ok_or("redis-benchmark's CSV has no rps column")?;
        for line in lines {
            let cols: Vec<&str> = line.split(',').map(|c| c.trim_matches('"')).collect();
            if cols.first() == Some(&"GET") {
                let number = |col: usize| -> Result<f64, String> {
                    cols.get(col).and_then(|v| v.parse().ok()).ok_or_else(|| {
                        format!("unreadable column {col} in redis-benchmark's GET line")
                    })
                };
                return Ok((number(p50_col)? * 1000.0, number(rps_col)?));
            }
        }
        Err("no GET line in redis-benchmark's output".into())
    }
}

/// A connection of its own to the Redis at `addr` (one TCP connection, `TCP_NODELAY`
/// like the sidecar's client): each simulated client opens one, as each has its own to
/// the sidecar.
pub async fn connect(addr: SocketAddr) -> redis::RedisResult<MultiplexedConnection> {
    let info = ConnectionAddr::Tcp(addr.ip().to_string(), addr.port())
        .into_connection_info()?
        .set_tcp_settings(TcpSettings::default().set_nodelay(true));
    let config = AsyncConnectionConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
    redis::Client::open(info)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
