//! HTTP plumbing the route modules share: content negotiation, bodies read through the
//! size limit and decoded strictly, preconditions, durability, query parameters, and
//! responses (errors included).
//!
//! Hazards: every input is hostile until parsed. Bodies are read through a size limit,
//! decoded into typed requests that refuse unknown fields, and every failure becomes a
//! 4xx with the documented error body. Nothing here panics on input.

use agentstate_protocol::{Codec, Durability, ErrorCode};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::{de::DeserializeOwned, Serialize};

use super::{guard, ApiError, App, HttpResponse};
use crate::engine::{Precondition, PAGE_LIMIT_MAX};

/// Default page size of log reads and listings.
pub(super) const PAGE_LIMIT_DEFAULT: u32 = 100;

/// 405, with the methods the path has (`Allow`, which RFC 9110 requires on a 405).
pub(super) fn method_not_allowed(method: &Method, path: &str, allow: String) -> ApiError {
    ApiError {
        allow: Some(allow),
        ..ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed on {path}"),
        )
    }
}

pub(super) fn not_found(path: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no such endpoint: {path}"))
}

pub(super) fn with_etag(
    resp: Result<HttpResponse, ApiError>,
    version: u64,
) -> Result<HttpResponse, ApiError> {
    let mut resp = resp?;
    set_etag(&mut resp, version);
    Ok(resp)
}

/// The codec of the response: `Accept` if it names one we speak, else the request's
/// `Content-Type`, else JSON.
pub(super) fn response_codec(headers: &HeaderMap) -> Codec {
    let get = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    get(header::ACCEPT)
        .and_then(Codec::from_accept)
        .or_else(|| get(header::CONTENT_TYPE).and_then(Codec::from_media_type))
        .unwrap_or(Codec::Json)
}

/// A body that may be absent: empty means the type's default.
pub(super) async fn decode_optional_body<T: DeserializeOwned + Default>(
    app: &App,
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let (codec, bytes) = read_body(app, req).await?;
    if bytes.is_empty() {
        return Ok(T::default());
    }
    expect_map(codec, &bytes)?;
    codec
        .decode(&bytes)
        .map_err(|e| ApiError::malformed(e.to_string()))
}

pub(super) async fn decode_body<T: DeserializeOwned>(
    app: &App,
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let (codec, bytes) = read_body(app, req).await?;
    if bytes.is_empty() {
        return Err(ApiError::malformed("request body is empty"));
    }
    expect_map(codec, &bytes)?;
    codec
        .decode(&bytes)
        .map_err(|e| ApiError::malformed(e.to_string()))
}

/// Every request body is a map (a JSON object). Checked before decoding, since serde
/// would also read a struct from an array of its fields in order.
pub(super) fn expect_map(codec: Codec, bytes: &[u8]) -> Result<(), ApiError> {
    let is_map = match codec {
        Codec::Json => bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'),
        // fixmap, map 16, map 32.
        Codec::MsgPack => matches!(bytes.first(), Some(0x80..=0x8f | 0xde | 0xdf)),
    };
    if is_map {
        Ok(())
    } else {
        Err(ApiError::malformed(
            "the request body must be a map (a JSON object)",
        ))
    }
}

/// The body's codec (from `Content-Type`, which a body must have) and bytes, read
/// through the size limit.
pub(super) async fn read_body(
    app: &App,
    req: Request<Incoming>,
) -> Result<(Codec, Bytes), ApiError> {
    // No type is not JSON: a browser's `no-cors` post sends none (see `guard`).
    let codec = match req.headers().get(header::CONTENT_TYPE) {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(Codec::from_media_type).ok_or_else(|| {
            guard::count_media_type_refusal();
            ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "Content-Type {v:?} is not supported; use application/json or application/msgpack"
                ),
            )
        })?),
    };
    let max = app.body_bytes_max;
    let too_large = || {
        ApiError::new(
            ErrorCode::TooLarge,
            format!("request body exceeds {max} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let bytes = Limited::new(req.into_body(), max)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large()
            } else {
                ApiError::malformed(format!("cannot read request body: {e}"))
            }
        })?
        .to_bytes();
    match codec {
        Some(codec) => Ok((codec, bytes)),
        None if bytes.is_empty() => Ok((Codec::Json, bytes)),
        None => {
            guard::count_media_type_refusal();
            Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "the request body has no Content-Type; send application/json or application/msgpack",
            ))
        }
    }
}

/// `If-Match: "3"` (or `3`) and `If-None-Match: *`.
pub(super) fn precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    if let Some(v) = headers.get(header::IF_MATCH) {
        let s = v.to_str().unwrap_or("").trim();
        let digits = s
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(s);
        return digits
            .parse::<u64>()
            .map(Precondition::Version)
            .map_err(|_| {
                ApiError::malformed(format!("If-Match must be a version like \"3\", got {v:?}"))
            });
    }
    if let Some(v) = headers.get(header::IF_NONE_MATCH) {
        return if v.as_bytes() == b"*" {
            Ok(Precondition::Absent)
        } else {
            Err(ApiError::malformed("If-None-Match supports only *"))
        };
    }
    Ok(Precondition::None)
}

/// `?durability=` wins over the `Agentstate-Durability` header; `local` by default. Both
/// are checked when both are given: a bad value is refused wherever it is.
pub(super) fn durability<B>(req: &Request<B>) -> Result<Durability, ApiError> {
    let parse = |s: &str| {
        Durability::parse(s).ok_or_else(|| {
            ApiError::malformed(format!(
                "durability must be local, remote or memory, got {s:?}"
            ))
        })
    };
    let from_query = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("durability=")))
        .map(parse)
        .transpose()?;
    let from_header = req
        .headers()
        .get(Durability::HEADER)
        .map(|v| parse(v.to_str().unwrap_or("?")))
        .transpose()?;
    Ok(from_query.or(from_header).unwrap_or_default())
}

/// Paging parameters of log reads.
pub(super) struct Query {
    pub after: u64,
    pub limit: u32,
    /// The latest N instead of a page after `after`.
    pub last: Option<u32>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Result<Query, ApiError> {
        let mut q = Query {
            after: 0,
            limit: PAGE_LIMIT_DEFAULT,
            last: None,
        };
        for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "after" => {
                    q.after = v.parse().map_err(|_| {
                        ApiError::malformed(format!(
                            "after must be a non-negative integer, got {v:?}"
                        ))
                    })?
                }
                "limit" => {
                    q.limit = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=PAGE_LIMIT_MAX).contains(n))
                        .ok_or_else(|| {
                            ApiError::malformed(format!(
                                "limit must be an integer from 1 to {PAGE_LIMIT_MAX}, got {v:?}"
                            ))
                        })?
                }
                "last" => {
                    q.last = Some(
                        v.parse()
                            .ok()
                            .filter(|n| (1..=PAGE_LIMIT_MAX).contains(n))
                            .ok_or_else(|| {
                                ApiError::malformed(format!(
                                    "last must be an integer from 1 to {PAGE_LIMIT_MAX}, got {v:?}"
                                ))
                            })?,
                    )
                }
                // Other parameters (durability) are read elsewhere.
                _ => {}
            }
        }
        Ok(q)
    }
}

/// A percent-decoded path segment.
pub(super) fn decode_path_param(segment: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::malformed(format!("path segment {segment:?} is not UTF-8")))
}

/// A percent-encoded query value (`+` is a space, as forms send it).
pub(super) fn decode_query_value(key: &str, v: &str) -> Result<String, ApiError> {
    let spaced = v.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::malformed(format!("query parameter {key} is not UTF-8")))
}

pub(super) fn encode<T: Serialize>(
    status: StatusCode,
    codec: Codec,
    body: &T,
) -> Result<HttpResponse, ApiError> {
    let bytes = codec
        .encode(body)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("cannot encode response: {e}")))?;
    Ok(bytes_response(status, codec, Bytes::from(bytes)))
}

/// A response of already encoded `body`.
pub(super) fn bytes_response(status: StatusCode, codec: Codec, body: Bytes) -> HttpResponse {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(codec.content_type()),
    );
    resp
}

pub(super) fn set_etag(resp: &mut HttpResponse, version: u64) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
}

pub(super) fn plain(status: StatusCode, text: String) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

pub(super) fn empty(status: StatusCode) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

pub(super) fn error_response(e: &ApiError, codec: Codec) -> HttpResponse {
    let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match encode(status, codec, &e.body()) {
        Ok(r) => r,
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode error\n".into(),
        ),
    };
    if e.code == ErrorCode::Unauthorized {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(allow) = e
        .allow
        .as_deref()
        .and_then(|a| HeaderValue::from_str(a).ok())
    {
        resp.headers_mut().insert(header::ALLOW, allow);
    }
    if let Some(secs) = e.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// The query parameters of a request, percent-decoded, in order. A parameter named twice
/// is refused: which one counts would be a guess.
pub(super) fn query_params(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let k = decode_query_value("name", k)?;
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(ApiError::malformed(format!(
                "query parameter {k} is given more than once"
            )));
        }
        let v = decode_query_value(&k, v)?;
        out.push((k, v));
    }
    Ok(out)
}

/// A query parameter the route does not take: refused, so that a misspelt filter is not
/// silently ignored.
pub(super) fn unknown_parameter(name: &str) -> ApiError {
    ApiError::malformed(format!("unknown query parameter {name:?}"))
}

/// `limit=` of a listing: 1 to the page maximum.
pub(super) fn page_limit(v: &str) -> Result<u32, ApiError> {
    v.parse()
        .ok()
        .filter(|n| (1..=PAGE_LIMIT_MAX).contains(n))
        .ok_or_else(|| {
            ApiError::malformed(format!(
                "limit must be an integer from 1 to {PAGE_LIMIT_MAX}, got {v:?}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preconditions_parse() {
        let mut h = HeaderMap::new();
        assert_eq!(precondition(&h).unwrap(), Precondition::None);
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"7\""));
        assert_eq!(precondition(&h).unwrap(), Precondition::Version(7));
        h.insert(header::IF_MATCH, HeaderValue::from_static("7"));
        assert_eq!(precondition(&h).unwrap(), Precondition::Version(7));
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"x\""));
        assert!(precondition(&h).is_err());
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert_eq!(precondition(&h).unwrap(), Precondition::Absent);
    }

    #[test]
    fn paging_parameters_are_checked() {
        let q = Query::parse(Some("after=5&limit=10")).unwrap();
        assert_eq!((q.after, q.limit), (5, 10));
        assert!(Query::parse(Some("after=-1")).is_err());
        assert!(Query::parse(Some("limit=0")).is_err());
        assert!(Query::parse(Some("limit=100000")).is_err());
    }

    #[test]
    fn path_parameters_are_percent_decoded() {
        assert_eq!(decode_path_param("a%3Ab").unwrap(), "a:b");
        assert_eq!(decode_path_param("plain").unwrap(), "plain");
        assert!(decode_path_param("%FF").is_err());
    }

    #[test]
    fn bodies_are_maps() {
        assert!(expect_map(Codec::Json, b" \n{}").is_ok());
        assert!(expect_map(Codec::Json, b"[\"idle\"]").is_err());
        assert!(expect_map(Codec::MsgPack, &[0x80]).is_ok());
        assert!(expect_map(Codec::MsgPack, &[0x90]).is_err());
    }

    #[test]
    fn durability_from_query_or_header() {
        let req = Request::get("/v1/agents/a?durability=memory")
            .body(())
            .unwrap();
        assert_eq!(durability(&req).unwrap(), Durability::Memory);
        let req = Request::get("/v1/agents/a")
            .header(Durability::HEADER, "remote")
            .body(())
            .unwrap();
        assert_eq!(durability(&req).unwrap(), Durability::Remote);
        let req = Request::get("/v1/agents/a?durability=disk")
            .body(())
            .unwrap();
        assert!(durability(&req).is_err());
        let req = Request::get("/v1/agents/a?durability=memory")
            .header(Durability::HEADER, "disk")
            .body(())
            .unwrap();
        assert!(
            durability(&req).is_err(),
            "a bad header is refused beside a good query"
        );
    }
}
