//! The Redis yardstick: a `redis-server` started for the run, a minimal RESP client (so
//! Redis GETs are timed by the same harness, runtime and histogram as the sidecar's
//! reads), and `redis-benchmark`'s own p50 for a second opinion.
//!
//! Hazard: Redis is optional. Every function says why it could not run, and the caller
//! reports that instead of a figure.

use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::free_port;

/// Largest bulk reply accepted (the yardstick's values are a few KiB).
const REPLY_BYTES_MAX: usize = 16 * 1024 * 1024;

pub struct RedisServer {
    pub addr: SocketAddr,
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

    /// `redis-benchmark -t set,get` at `clients` connections with `value_bytes` values:
    /// the GET line's p50 in microseconds.
    pub fn benchmark_get_p50_us(&self, clients: usize, value_bytes: usize) -> Result<f64, String> {
        let requests = (20_000 * clients.max(1)).clamp(20_000, 200_000);
        let out = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .args(["-t", "set,get", "--csv"])
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
        for line in lines {
            let cols: Vec<&str> = line.split(',').map(|c| c.trim_matches('"')).collect();
            if cols.first() == Some(&"GET") {
                let ms: f64 = cols
                    .get(p50_col)
                    .and_then(|v| v.parse().ok())
                    .ok_or("unreadable p50 in redis-benchmark's GET line")?;
                return Ok(ms * 1000.0);
            }
        }
        Err("no GET line in redis-benchmark's output".into())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One RESP connection: commands out, one reply in.
pub struct RespConn {
    stream: BufReader<TcpStream>,
    line: String,
}

impl RespConn {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<RespConn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RespConn {
            stream: BufReader::new(stream),
            line: String::new(),
        })
    }

    async fn command(&mut self, args: &[&[u8]]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(64 + args.iter().map(|a| a.len()).sum::<usize>());
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.stream.get_mut().write_all(&out).await
    }

    /// Reads a simple-string, error or bulk reply; a bulk's bytes are returned.
    async fn reply(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        self.line.clear();
        self.stream.read_line(&mut self.line).await?;
        let line = self.line.trim_end();
        match line.as_bytes().first() {
            Some(b'+') => Ok(None),
            Some(b'-') => Err(bad(format!("redis error: {line}"))),
            Some(b'$') => {
                let len: i64 = line[1..]
                    .parse()
                    .map_err(|_| bad(format!("bad bulk length: {line}")))?;
                if len < 0 {
                    return Ok(None);
                }
                let len = len as usize;
                if len > REPLY_BYTES_MAX {
                    return Err(bad(format!("bulk of {len} bytes is too large")));
                }
                let mut buf = vec![0; len + 2];
                self.stream.read_exact(&mut buf).await?;
                buf.truncate(len);
                Ok(Some(buf))
            }
            _ => Err(bad(format!("unexpected reply: {line:?}"))),
        }
    }

    pub async fn set(&mut self, key: &str, value: &[u8]) -> std::io::Result<()> {
        self.command(&[b"SET", key.as_bytes(), value]).await?;
        self.reply().await.map(|_| ())
    }

    /// GET; an absent key is an error (the yardstick only reads keys it wrote).
    pub async fn get(&mut self, key: &str) -> std::io::Result<Vec<u8>> {
        self.command(&[b"GET", key.as_bytes()]).await?;
        self.reply().await?.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("no key {key}"))
        })
    }
}
