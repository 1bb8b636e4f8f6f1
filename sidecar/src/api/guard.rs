//! The listener beside a browser: a page from any origin can send requests to
//! `127.0.0.1`, and a DNS-rebinding page can read the answers under its own name. Three
//! checks, before a request reaches a handler, keep both out:
//!
//! - **Host.** On TCP, the `Host` (or HTTP/2 `:authority`) must name this sidecar: a
//!   loopback name (`localhost`, `*.localhost`) or address, the address the connection
//!   arrived at (a kubelet probe or a scrape by pod IP), or a name given with
//!   `--allowed-hosts`. A rebinding page's requests carry the page's own name, so they
//!   are refused; a missing Host is refused too.
//! - **Origin.** On TCP, unsafe methods (POST, PUT, PATCH, DELETE) sent by a browser for
//!   another site are refused: `Sec-Fetch-Site: cross-site` or `same-site`, or (from
//!   browsers that do not send it) an `Origin` other than the sidecar's own. This is the
//!   algorithm of Go 1.25's `CrossOriginProtection`. Requests with neither header (curl,
//!   the SDKs) pass.
//! - **Content-Type** (in `read_body`, for both transports): a request body must say it
//!   is JSON or MessagePack, so a `no-cors` form or `Blob` post, which cannot set such a
//!   type without a preflight, is refused with 415 before anything is decoded.
//!
//! The Unix socket is exempt from the first two: only its owner can connect (mode 0600),
//! and no browser can.

use std::net::{IpAddr, SocketAddr};

use agentstate_protocol::ErrorCode;
use http::{header, Method, Request};

use super::ApiError;
use crate::metrics as m;

/// How a request reached the sidecar.
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    /// TCP, with the local address the connection was accepted on.
    Tcp {
        local: SocketAddr,
    },
    Unix,
}

/// The names, besides loopback ones, that a request's `Host` may carry.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    /// Lower-case names without a port or a trailing dot.
    names: Vec<String>,
    /// `*` was given: every name (for a listener behind a proxy that checks names).
    any: bool,
}

impl AllowedHosts {
    /// From `--allowed-hosts`: names, or `*` for any.
    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        let mut allowed = AllowedHosts::default();
        for name in names {
            let name = normalize(name.as_ref());
            if name == "*" {
                allowed.any = true;
            } else if !name.is_empty() {
                allowed.names.push(name);
            }
        }
        allowed
    }

    fn allows(&self, name: &str) -> bool {
        self.any || self.names.iter().any(|n| n == name)
    }
}

fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Why a request was refused, as the metric's label.
#[derive(Debug, Clone, Copy)]
enum Refused {
    Host,
    CrossOrigin,
}

fn refuse(why: Refused, message: String) -> ApiError {
    let (code, label) = match why {
        Refused::Host => (ErrorCode::HostNotAllowed, "host"),
        Refused::CrossOrigin => (ErrorCode::CrossOrigin, "cross_origin"),
    };
    metrics::counter!(m::REQUESTS_REFUSED_TOTAL, "reason" => label).increment(1);
    ApiError::new(code, message)
}

/// Notes a body refused for its `Content-Type` (the check itself is in `read_body`).
pub fn count_media_type_refusal() {
    metrics::counter!(m::REQUESTS_REFUSED_TOTAL, "reason" => "media_type").increment(1);
}

/// Checks a request's `Host` and, for unsafe methods, its origin.
pub fn check<B>(
    allowed: &AllowedHosts,
    transport: Transport,
    req: &Request<B>,
) -> Result<(), ApiError> {
    let Transport::Tcp { local } = transport else {
        return Ok(());
    };
    let host = request_host(req).ok_or_else(|| {
        refuse(
            Refused::Host,
            "the request has no Host header; the sidecar answers only requests addressed to it"
                .into(),
        )
    })?;
    if !host_allowed(allowed, local, host) {
        return Err(refuse(
            Refused::Host,
            format!(
                "Host {host:?} is not an allowed name for this sidecar; loopback names and \
                 addresses are, and --allowed-hosts adds others"
            ),
        ));
    }
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let get = |name| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("(not text)"))
    };
    match get("sec-fetch-site") {
        Some("same-origin" | "none") => return Ok(()),
        Some(site) => {
            return Err(refuse(
                Refused::CrossOrigin,
                format!(
                    "{} refused: a browser sent it from another site (Sec-Fetch-Site: {site})",
                    req.method()
                ),
            ))
        }
        None => {}
    }
    match get(header::ORIGIN.as_str()) {
        None => Ok(()),
        Some(origin) if origin_is(origin, host) => Ok(()),
        Some(origin) => Err(refuse(
            Refused::CrossOrigin,
            format!(
                "{} refused: a browser sent it from origin {origin:?}, not from this sidecar",
                req.method()
            ),
        )),
    }
}

/// The request's authority: `Host`, or the URI's (HTTP/2, absolute-form requests).
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    match req.headers().get(header::HOST) {
        Some(v) => v.to_str().ok().filter(|h| !h.is_empty()),
        None => req.uri().authority().map(|a| a.as_str()),
    }
}

/// Whether `origin` (`scheme://host[:port]`) is the sidecar's own, as the request's
/// `host` names it.
fn origin_is(origin: &str, host: &str) -> bool {
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

/// The name or address in a `Host` value, without its port; `None` if it does not parse.
fn host_name(host: &str) -> Option<&str> {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        let (addr, after) = rest.split_once(']')?;
        return match after {
            "" => Some(addr),
            port => port
                .strip_prefix(':')
                .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
                .map(|_| addr),
        };
    }
    match host.rsplit_once(':') {
        None => Some(host),
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            Some(name)
        }
        Some(_) => None,
    }
}

fn host_allowed(allowed: &AllowedHosts, local: SocketAddr, host: &str) -> bool {
    let Some(name) = host_name(host) else {
        return false;
    };
    let name = normalize(name);
    if let Ok(ip) = name.parse::<IpAddr>() {
        // A page can make a browser send an address only to that address: no rebinding.
        // Still, only this sidecar's own addresses are its names.
        return ip.to_canonical().is_loopback()
            || ip.to_canonical() == local.ip().to_canonical()
            || allowed.allows(&name);
    }
    name == "localhost" || name.ends_with(".localhost") || allowed.allows(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> SocketAddr {
        "10.1.2.3:7700".parse().unwrap()
    }

    fn req(method: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri("/v1/agents/a");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn code(r: Result<(), ApiError>) -> Option<ErrorCode> {
        r.err().map(|e| e.code)
    }

    #[test]
    fn loopback_and_own_addresses_and_listed_names_are_hosts() {
        let allowed = AllowedHosts::new(["agentstate.default.svc", "Sidecar."]);
        let tcp = Transport::Tcp { local: local() };
        for host in [
            "127.0.0.1:7700",
            "127.9.9.9",
            "[::1]:7700",
            "[::ffff:127.0.0.1]:7700",
            "localhost:7700",
            "LOCALHOST.",
            "app.localhost:7700",
            "10.1.2.3:7700",
            "agentstate.default.svc:7700",
            "sidecar",
        ] {
            assert_eq!(
                code(check(&allowed, tcp, &req("GET", &[("host", host)]))),
                None,
                "{host}"
            );
        }
        for host in [
            "attacker.example:7700",
            "localhost.attacker.example",
            "10.1.2.4:7700",
            "[::2]:7700",
            "127.0.0.1:77a",
            "::1:7700",
            "",
        ] {
            assert_eq!(
                code(check(&allowed, tcp, &req("GET", &[("host", host)]))),
                Some(ErrorCode::HostNotAllowed),
                "{host:?}"
            );
        }
        assert_eq!(
            code(check(&allowed, tcp, &req("GET", &[]))),
            Some(ErrorCode::HostNotAllowed),
            "no Host"
        );
        let any = AllowedHosts::new(["*"]);
        assert_eq!(
            code(check(&any, tcp, &req("GET", &[("host", "x.example")]))),
            None
        );
        // The Unix socket has no names to check.
        assert_eq!(
            code(check(
                &allowed,
                Transport::Unix,
                &req("DELETE", &[("host", "x.example")])
            )),
            None
        );
    }

    #[test]
    fn unsafe_methods_from_other_sites_are_refused() {
        let allowed = AllowedHosts::default();
        let tcp = Transport::Tcp { local: local() };
        let host = ("host", "127.0.0.1:7700");
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<ErrorCode>);
        let cases: &[Case] = &[
            ("POST", &[], None),
            ("PUT", &[("sec-fetch-site", "same-origin")], None),
            ("DELETE", &[("sec-fetch-site", "none")], None),
            (
                "POST",
                &[("sec-fetch-site", "cross-site")],
                Some(ErrorCode::CrossOrigin),
            ),
            (
                "PATCH",
                &[("sec-fetch-site", "same-site")],
                Some(ErrorCode::CrossOrigin),
            ),
            // Sec-Fetch-Site decides when present, whatever the Origin says.
            (
                "POST",
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "http://127.0.0.1:7700"),
                ],
                Some(ErrorCode::CrossOrigin),
            ),
            ("POST", &[("origin", "http://127.0.0.1:7700")], None),
            (
                "DELETE",
                &[("origin", "http://evil.example")],
                Some(ErrorCode::CrossOrigin),
            ),
            (
                "PUT",
                &[("origin", "http://127.0.0.1:7701")],
                Some(ErrorCode::CrossOrigin),
            ),
            ("POST", &[("origin", "null")], Some(ErrorCode::CrossOrigin)),
            // Reads are never refused for their origin: the browser keeps the answer
            // from the page (no CORS headers), and the Host check stops rebinding.
            ("GET", &[("sec-fetch-site", "cross-site")], None),
        ];
        for (method, headers, want) in cases {
            let mut all = headers.to_vec();
            all.push(host);
            assert_eq!(
                code(check(&allowed, tcp, &req(method, &all))),
                *want,
                "{method} {headers:?}"
            );
        }
    }
}
