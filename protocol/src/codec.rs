//! MessagePack and JSON bodies, chosen by `Content-Type` / `Accept`.
//!
//! MessagePack is written as maps with field names (`rmp_serde::to_vec_named`), never as
//! positional arrays, so clients in other languages read the same shape as JSON.

use serde::{de::DeserializeOwned, Serialize};

pub const MSGPACK: &str = "application/msgpack";
pub const JSON: &str = "application/json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    MsgPack,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("invalid MessagePack body: {0}")]
    MsgPackDecode(#[from] rmp_serde::decode::Error),
    #[error("cannot encode MessagePack: {0}")]
    MsgPackEncode(#[from] rmp_serde::encode::Error),
    #[error("invalid JSON body: {0}")]
    Json(#[from] serde_json::Error),
}

impl Codec {
    /// The codec for a `Content-Type` or one `Accept` entry; `None` if unsupported.
    /// Parameters (`; charset=utf-8`) are ignored.
    pub fn from_media_type(value: &str) -> Option<Codec> {
        let essence = value.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case(MSGPACK)
            || essence.eq_ignore_ascii_case("application/x-msgpack")
            || essence.eq_ignore_ascii_case("application/vnd.msgpack")
        {
            Some(Codec::MsgPack)
        } else if essence.eq_ignore_ascii_case(JSON) {
            Some(Codec::Json)
        } else {
            None
        }
    }

    /// The codec an `Accept` header asks for: the first supported entry, else `None`
    /// (`*/*` and `application/*` count as no preference).
    pub fn from_accept(value: &str) -> Option<Codec> {
        value.split(',').find_map(Codec::from_media_type)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Codec::MsgPack => MSGPACK,
            Codec::Json => JSON,
        }
    }

    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, CodecError> {
        Ok(match self {
            Codec::MsgPack => rmp_serde::to_vec_named(value)?,
            Codec::Json => serde_json::to_vec(value)?,
        })
    }

    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        Ok(match self {
            Codec::MsgPack => rmp_serde::from_slice(bytes)?,
            Codec::Json => serde_json::from_slice(bytes)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{PersistedState, SaveStateRequest};
    use chrono::Utc;
    use serde_json::json;

    fn sample() -> PersistedState {
        let now = Utc::now();
        PersistedState {
            agent_id: "a1".into(),
            agent_type: Some("greeter".into()),
            state_name: "idle".into(),
            state_data: json!({"n": 1, "nested": {"list": [1, "two", null, 2.5]}}),
            conversation_context: json!(null),
            created_at: now,
            updated_at: now,
            version: 3,
            metadata: json!({"k": "v"}).as_object().unwrap().clone(),
            pending_transition: None,
        }
    }

    #[test]
    fn both_codecs_round_trip_a_state() {
        let state = sample();
        for codec in [Codec::MsgPack, Codec::Json] {
            let bytes = codec.encode(&state).unwrap();
            let back: PersistedState = codec.decode(&bytes).unwrap();
            assert_eq!(back, state, "{codec:?}");
        }
    }

    #[test]
    fn msgpack_is_a_map_with_field_names() {
        let bytes = Codec::MsgPack.encode(&sample()).unwrap();
        // fixmap/map16 marker, not an array marker.
        assert!(
            matches!(bytes[0], 0x80..=0x8f | 0xde | 0xdf),
            "{:#x}",
            bytes[0]
        );
        let as_json: serde_json::Value = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(as_json["state_name"], "idle");
        assert_eq!(as_json["version"], 3);
    }

    #[test]
    fn media_types_are_negotiated() {
        assert_eq!(
            Codec::from_media_type("application/json; charset=utf-8"),
            Some(Codec::Json)
        );
        assert_eq!(
            Codec::from_media_type("application/x-msgpack"),
            Some(Codec::MsgPack)
        );
        assert_eq!(Codec::from_media_type("text/plain"), None);
        assert_eq!(
            Codec::from_accept("text/html, application/msgpack"),
            Some(Codec::MsgPack)
        );
        assert_eq!(Codec::from_accept("*/*"), None);
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        assert!(Codec::Json
            .decode::<SaveStateRequest>(br#"{"state_name":1}"#)
            .is_err());
        assert!(Codec::Json
            .decode::<SaveStateRequest>(br#"{"state_name":"a","bogus":1}"#)
            .is_err());
        assert!(Codec::MsgPack
            .decode::<SaveStateRequest>(&[0x81, 0xa1])
            .is_err());
    }
}
