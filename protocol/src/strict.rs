//! Request fields read no more leniently than the OpenAPI description states.
//!
//! Serde's defaults accept more than a body's description allows, mostly in MessagePack:
//! a unit enum from its variant's index (`0` for the first), a map from `nil`, an
//! internally tagged enum from a numeric tag. These readers accept only the described
//! form: variant names as strings, maps as maps.

use std::fmt;

use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// A map field (`#[serde(default, deserialize_with = "crate::strict::map")]`): a map,
/// never `nil`.
pub fn map<'de, D: Deserializer<'de>, M: Deserialize<'de>>(d: D) -> Result<M, D::Error> {
    struct MapOnly<M>(PhantomData<M>);
    impl<'de, M: Deserialize<'de>> Visitor<'de> for MapOnly<M> {
        type Value = M;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<M, A::Error> {
            M::deserialize(MapAccessDeserializer::new(access))
        }
    }
    d.deserialize_map(MapOnly(PhantomData))
}

/// The name of a unit variant, as a string only (never a variant index).
pub fn variant_name<'de, D: Deserializer<'de>>(
    d: D,
    variants: &'static [&'static str],
) -> Result<String, D::Error> {
    struct Name(&'static [&'static str]);
    impl Visitor<'_> for Name {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "one of the strings {:?}", self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            if self.0.contains(&v) {
                Ok(v.to_string())
            } else {
                Err(E::unknown_variant(v, self.0))
            }
        }
    }
    d.deserialize_str(Name(variants))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{BatchRequest, Codec, NewMessage, PruneRequest};

    fn msgpack(v: serde_json::Value) -> Vec<u8> {
        rmp_serde::to_vec_named(&v).unwrap()
    }

    #[test]
    fn only_the_described_forms_are_read() {
        for codec_bytes in [
            msgpack(json!({"thread_ids": [], "strategy": 0})),
            msgpack(json!({"thread_ids": [], "strategy": "keep"})),
        ] {
            assert!(Codec::MsgPack.decode::<PruneRequest>(&codec_bytes).is_err());
        }
        let ok = msgpack(json!({"thread_ids": ["t"], "strategy": "keep_latest"}));
        assert!(Codec::MsgPack.decode::<PruneRequest>(&ok).is_ok());

        let nil_metadata = msgpack(json!({"role": "a", "content": "b", "metadata": null}));
        assert!(Codec::MsgPack.decode::<NewMessage>(&nil_metadata).is_err());
        let no_metadata = msgpack(json!({"role": "a", "content": "b"}));
        assert!(Codec::MsgPack.decode::<NewMessage>(&no_metadata).is_ok());

        let numeric_tag = msgpack(json!({"operations": [{"op": 1, "agent_id": "a"}]}));
        assert!(Codec::MsgPack.decode::<BatchRequest>(&numeric_tag).is_err());
    }
}
