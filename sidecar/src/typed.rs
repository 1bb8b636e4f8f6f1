//! Reading what a framework serialised: values for the inspector to show, and a
//! checkpoint's body with its id and time changed (a fork).
//!
//! The serialisers known are LangGraph's (`langgraph.checkpoint.serde.jsonplus`): `json`,
//! `msgpack` with its extension types, `null` and `empty`. An object LangGraph packs as an
//! extension (a message, a pydantic model, a dataclass) is shown as a map naming its
//! class under `$type`, with its fields beside. Anything else is shown as size and first
//! bytes, never guessed at.
//!
//! Hazards: the bytes are untrusted. Decoding is bounded by rmpv's own depth limit, and a
//! value that does not decode is shown raw, never refused.

use agentstate_protocol::{Payload, RenderedValue, Typed};
use bytes::Bytes;
use serde_json::{Map, Number, Value};

/// Bytes shown, in hex, of a value not decoded.
const HEX_BYTES: usize = 64;

/// LangGraph's extension codes (`jsonplus.py`).
const EXT_CONSTRUCTOR_SINGLE_ARG: i8 = 0;
const EXT_CONSTRUCTOR_POS_ARGS: i8 = 1;
const EXT_CONSTRUCTOR_KW_ARGS: i8 = 2;
const EXT_METHOD_SINGLE_ARG: i8 = 3;
const EXT_PYDANTIC_V1: i8 = 4;
const EXT_PYDANTIC_V2: i8 = 5;

/// `value` for reading: decoded where the serialiser is known.
pub fn render(value: &Typed) -> RenderedValue {
    let bytes = &value.data.0;
    let decoded = match value.type_.as_str() {
        "json" => serde_json::from_slice::<Value>(bytes).ok(),
        "msgpack" => read_msgpack(bytes).map(|v| to_json(&v)),
        "null" | "empty" => Some(Value::Null),
        _ => None,
    };
    let hex = decoded.is_none().then(|| {
        bytes
            .iter()
            .take(HEX_BYTES)
            .map(|b| format!("{b:02x}"))
            .collect()
    });
    RenderedValue {
        type_: value.type_.clone(),
        decoded: decoded.is_some(),
        value: decoded,
        bytes: bytes.len() as u64,
        hex,
    }
}

/// A checkpoint body (a map) with its `id` and `ts` replaced; `None` if the body is not
/// a map in a serialiser this module knows.
pub fn with_id(body: &Typed, id: &str, ts: &str) -> Option<Typed> {
    let set = |map: &mut Vec<(rmpv::Value, rmpv::Value)>| {
        for (k, v) in map.iter_mut() {
            match k.as_str() {
                Some("id") => *v = rmpv::Value::from(id),
                Some("ts") => *v = rmpv::Value::from(ts),
                _ => {}
            }
        }
    };
    let data = match body.type_.as_str() {
        "msgpack" => {
            let mut v = read_msgpack(&body.data.0)?;
            let rmpv::Value::Map(map) = &mut v else {
                return None;
            };
            set(map);
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &v).ok()?;
            out
        }
        "json" => {
            let mut v: Value = serde_json::from_slice(&body.data.0).ok()?;
            let map = v.as_object_mut()?;
            map.insert("id".into(), Value::from(id));
            map.insert("ts".into(), Value::from(ts));
            serde_json::to_vec(&v).ok()?
        }
        _ => return None,
    };
    Some(Typed {
        type_: body.type_.clone(),
        data: Payload(Bytes::from(data)),
    })
}

/// One whole MessagePack value, nothing after it.
fn read_msgpack(bytes: &[u8]) -> Option<rmpv::Value> {
    let mut rest = bytes;
    let v = rmpv::decode::read_value(&mut rest).ok()?;
    rest.is_empty().then_some(v)
}

fn to_json(v: &rmpv::Value) -> Value {
    use rmpv::Value as M;
    match v {
        M::Nil => Value::Null,
        M::Boolean(b) => Value::Bool(*b),
        M::Integer(i) => i
            .as_i64()
            .map(Value::from)
            .or_else(|| i.as_u64().map(Value::from))
            .unwrap_or(Value::Null),
        M::F32(f) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        M::F64(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        M::String(s) => Value::String(s.as_str().map_or_else(
            || String::from_utf8_lossy(s.as_bytes()).into_owned(),
            str::to_string,
        )),
        M::Binary(b) => {
            let mut m = Map::new();
            m.insert("$bytes".into(), Value::from(b.len()));
            Value::Object(m)
        }
        M::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        M::Map(entries) => {
            Value::Object(entries.iter().map(|(k, v)| (key(k), to_json(v))).collect())
        }
        M::Ext(code, data) => ext(*code, data),
    }
}

fn key(k: &rmpv::Value) -> String {
    match k.as_str() {
        Some(s) => s.to_string(),
        None => to_json(k).to_string(),
    }
}

/// A LangGraph extension: `[module, name, args...]` packed inside.
fn ext(code: i8, data: &[u8]) -> Value {
    let mut m = Map::new();
    let parts = read_msgpack(data);
    let items = parts.as_ref().and_then(rmpv::Value::as_array);
    let (Some(items), true) = (items, (0..=EXT_PYDANTIC_V2).contains(&code)) else {
        m.insert("$ext".into(), Value::from(code));
        m.insert("$bytes".into(), Value::from(data.len()));
        return Value::Object(m);
    };
    let name = |i: usize| items.get(i).and_then(rmpv::Value::as_str).unwrap_or("?");
    m.insert(
        "$type".into(),
        Value::from(format!("{}.{}", name(0), name(1))),
    );
    let args = items.get(2).map(to_json).unwrap_or(Value::Null);
    match (code, args) {
        (EXT_CONSTRUCTOR_KW_ARGS | EXT_PYDANTIC_V1 | EXT_PYDANTIC_V2, Value::Object(fields)) => {
            m.extend(fields)
        }
        (EXT_CONSTRUCTOR_SINGLE_ARG | EXT_METHOD_SINGLE_ARG, arg) => {
            m.insert("$value".into(), arg);
        }
        (EXT_CONSTRUCTOR_POS_ARGS, args) | (_, args) => {
            m.insert("$args".into(), args);
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value as M;

    fn packed(v: &M) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    fn typed(type_: &str, data: Vec<u8>) -> Typed {
        Typed {
            type_: type_.into(),
            data: Payload(Bytes::from(data)),
        }
    }

    #[test]
    fn langgraph_messages_read_as_their_class_and_fields() {
        let message = M::Ext(
            EXT_PYDANTIC_V2,
            packed(&M::Array(vec![
                "langchain_core.messages.human".into(),
                "HumanMessage".into(),
                M::Map(vec![("content".into(), "hi <b>".into())]),
                "model_validate_json".into(),
            ])),
        );
        let r = render(&typed(
            "msgpack",
            packed(&M::Array(vec![message, 7.into()])),
        ));
        assert!(r.decoded);
        assert_eq!(
            r.value.unwrap(),
            serde_json::json!([
                {"$type": "langchain_core.messages.human.HumanMessage", "content": "hi <b>"},
                7
            ])
        );
    }

    #[test]
    fn unknown_or_broken_values_are_shown_raw() {
        let r = render(&typed("pickle", vec![0x80, 0x04]));
        assert!(!r.decoded);
        assert_eq!((r.bytes, r.hex.as_deref()), (2, Some("8004")));
        let r = render(&typed("msgpack", vec![0x92, 0x01]));
        assert!(!r.decoded, "a truncated array is not decoded");
        let r = render(&typed("msgpack", vec![0x01, 0x02]));
        assert!(!r.decoded, "trailing bytes are not decoded");
        let r = render(&typed("msgpack", packed(&M::Ext(42, vec![1, 2, 3]))));
        assert_eq!(
            r.value.unwrap(),
            serde_json::json!({"$ext": 42, "$bytes": 3})
        );
    }

    #[test]
    fn a_fork_changes_only_the_id_and_time() {
        let body = M::Map(vec![
            ("v".into(), 1.into()),
            ("id".into(), "old".into()),
            ("ts".into(), "then".into()),
            (
                "channel_versions".into(),
                M::Map(vec![("a".into(), "1".into())]),
            ),
        ]);
        let forked = with_id(&typed("msgpack", packed(&body)), "new", "now").unwrap();
        assert_eq!(
            render(&forked).value.unwrap(),
            serde_json::json!({"v": 1, "id": "new", "ts": "now", "channel_versions": {"a": "1"}})
        );
        let json = with_id(
            &typed("json", br#"{"id":"old","v":1}"#.to_vec()),
            "new",
            "now",
        );
        assert_eq!(
            render(&json.unwrap()).value.unwrap(),
            serde_json::json!({"id": "new", "ts": "now", "v": 1})
        );
        assert!(with_id(&typed("pickle", vec![1]), "new", "now").is_none());
        assert!(with_id(&typed("msgpack", packed(&M::from(3))), "new", "now").is_none());
    }
}
