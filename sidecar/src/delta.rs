//! Delta channel values. A list-valued channel (LangGraph's `messages` under
//! `add_messages`) mostly grows by a few items a step; a client may then send only the
//! new items, as a blob that `extends` the version it grew from. Such a blob's value is
//! a MessagePack array of the added items, and the value it stands for is the base's
//! array followed by them: the array header rewritten, the bodies concatenated, byte for
//! byte what serializing the whole list gives.
//!
//! A delta blob records the version it extends and its root (the whole value at the
//! bottom of its chain, and its depth above it); a checkpoint records the root of each
//! channel whose value is a delta. Versions only grow along a chain, so a chain lies in
//! one range of versions, `root..=version`: a read fetches that range at once and walks
//! it down by `extends`, and a prune walks it the same way to keep every blob a
//! remaining checkpoint stands on.

use agentstate_protocol::{Payload, Typed};
use bytes::{BufMut, BytesMut};

/// The only payload type whose values can be extended: MessagePack arrays.
pub const DELTA_TYPE: &str = "msgpack";

/// Longest chain a value may stand on. What a read puts together is bounded by it;
/// clients start a new whole value well before (the Python saver after 128).
pub const CHAIN_MAX: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeltaError {
    #[error("a delta's value must be of type {DELTA_TYPE:?}, not {0:?}")]
    Type(String),
    #[error("a delta's value must be a MessagePack array")]
    NotArray,
}

/// The item count of a MessagePack array and where its items start.
fn array_header(data: &[u8]) -> Option<(u64, usize)> {
    match *data.first()? {
        b @ 0x90..=0x9f => Some((u64::from(b & 0x0f), 1)),
        0xdc => Some((
            u64::from(u16::from_be_bytes(data.get(1..3)?.try_into().ok()?)),
            3,
        )),
        0xdd => Some((
            u64::from(u32::from_be_bytes(data.get(1..5)?.try_into().ok()?)),
            5,
        )),
        _ => None,
    }
}

/// The shortest header for an array of `n` items (what every MessagePack writer emits).
fn put_header(out: &mut BytesMut, n: u64) {
    match n {
        0..=15 => out.put_u8(0x90 | n as u8),
        16..=0xffff => {
            out.put_u8(0xdc);
            out.put_u16(n as u16);
        }
        _ => {
            out.put_u8(0xdd);
            out.put_u32(n as u32);
        }
    }
}

/// Whether `value` can be a delta (or a base): an array in MessagePack.
pub fn check(value: &Typed) -> Result<(), DeltaError> {
    if value.type_ != DELTA_TYPE {
        return Err(DeltaError::Type(value.type_.clone()));
    }
    array_header(&value.data.0)
        .map(|_| ())
        .ok_or(DeltaError::NotArray)
}

/// The whole value a chain stands for: `parts[0]` the whole base, the rest deltas in
/// order.
pub fn materialize(parts: &[&Typed]) -> Result<Typed, DeltaError> {
    let mut count = 0u64;
    let mut bodies = Vec::with_capacity(parts.len());
    for p in parts {
        if p.type_ != DELTA_TYPE {
            return Err(DeltaError::Type(p.type_.clone()));
        }
        let (n, start) = array_header(&p.data.0).ok_or(DeltaError::NotArray)?;
        count += n;
        bodies.push(&p.data.0[start..]);
    }
    if count > u64::from(u32::MAX) {
        return Err(DeltaError::NotArray);
    }
    let mut out = BytesMut::with_capacity(5 + bodies.iter().map(|b| b.len()).sum::<usize>());
    put_header(&mut out, count);
    for b in bodies {
        out.put_slice(b);
    }
    Ok(Typed {
        type_: DELTA_TYPE.to_string(),
        data: Payload(out.freeze()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn packed(items: &[String]) -> Typed {
        Typed {
            type_: DELTA_TYPE.into(),
            data: Payload(Bytes::from(rmp_serde::to_vec(items).unwrap())),
        }
    }

    fn strings(from: usize, to: usize) -> Vec<String> {
        (from..to).map(|i| format!("item {i}")).collect()
    }

    #[test]
    fn a_chain_reads_as_the_whole_list_serialized_at_every_header_size() {
        // Across the fixarray, array16 and array32 boundaries.
        for (a, b, c) in [
            (0, 3, 5),
            (10, 15, 17),
            (15, 16, 16),
            (60_000, 65_535, 70_000),
        ] {
            let parts = [
                packed(&strings(0, a)),
                packed(&strings(a, b)),
                packed(&strings(b, c)),
            ];
            let whole = materialize(&parts.iter().collect::<Vec<_>>()).unwrap();
            assert_eq!(whole, packed(&strings(0, c)), "{a} {b} {c}");
        }
    }

    #[test]
    fn only_msgpack_arrays_extend() {
        let json = Typed {
            type_: "json".into(),
            data: Payload(Bytes::from_static(b"[]")),
        };
        assert_eq!(check(&json), Err(DeltaError::Type("json".into())));
        let map = Typed {
            type_: DELTA_TYPE.into(),
            data: Payload(Bytes::from_static(&[0x80])),
        };
        assert_eq!(check(&map), Err(DeltaError::NotArray));
        let empty = Typed {
            type_: DELTA_TYPE.into(),
            data: Payload::default(),
        };
        assert_eq!(check(&empty), Err(DeltaError::NotArray));
        let cut = Typed {
            type_: DELTA_TYPE.into(),
            data: Payload(Bytes::from_static(&[0xdc, 0x01])),
        };
        assert_eq!(check(&cut), Err(DeltaError::NotArray));
        assert!(materialize(&[&packed(&strings(0, 2)), &map]).is_err());
    }
}
