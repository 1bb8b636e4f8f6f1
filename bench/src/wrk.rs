//! `wrk`, the HTTP load generator the cache-hit target names as the sidecar's yardstick
//! (with `redis-benchmark --threads 2` on the Redis side): a C client with two threads,
//! so the comparison is not about the tool's own client.

use std::process::Command;
use std::time::Duration;

/// What one `wrk` run measured.
#[derive(Debug, Clone, Copy)]
pub struct WrkRun {
    pub requests_per_sec: f64,
    pub p50_us: f64,
}

/// `wrk --latency` against `url` with `connections` connections (two threads, or one
/// for a single connection: wrk needs a connection per thread) and the given headers.
pub fn get(
    url: &str,
    connections: usize,
    duration: Duration,
    headers: &[&str],
) -> Result<WrkRun, String> {
    let threads = connections.clamp(1, 2);
    let mut cmd = Command::new("wrk");
    cmd.args([
        "--latency",
        "-t",
        &threads.to_string(),
        "-c",
        &connections.to_string(),
    ])
    .args(["-d", &format!("{}s", duration.as_secs().max(1))]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .arg(url)
        .output()
        .map_err(|e| format!("wrk not runnable ({e}); apt-get install wrk"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse(&text).ok_or_else(|| format!("unreadable wrk output: {}", text.trim()))
}

fn parse(text: &str) -> Option<WrkRun> {
    let requests_per_sec = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let p50 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("50%"))?
        .trim();
    Some(WrkRun {
        requests_per_sec,
        p50_us: duration_us(p50)?,
    })
}

/// wrk's `812.00us`, `1.47ms`, `2.01s`.
fn duration_us(s: &str) -> Option<f64> {
    let (number, scale) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|v| v * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rate_and_the_median() {
        let out = "Running 5s test @ http://127.0.0.1:7798/v1/agents/a1
  1 threads and 1 connections
  Latency Distribution
     50%   18.00us
     75%   21.00us
     99%  718.00us
  253593 requests in 5.00s, 310.29MB read
Requests/sec:  50718.63
Transfer/sec:     62.06MB
";
        let r = parse(out).unwrap();
        assert_eq!(r.requests_per_sec, 50718.63);
        assert_eq!(r.p50_us, 18.0);
        assert_eq!(duration_us("1.47ms"), Some(1470.0));
        assert_eq!(duration_us("2.00s"), Some(2e6));
    }
}
