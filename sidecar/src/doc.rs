//! JSON documents as bytes: what agents store in `state_data`, `metadata` and a
//! transfer's `context`.
//!
//! A [`Doc`] is parsed once, on the way in, straight from the request's JSON or
//! MessagePack into MessagePack bytes (no `serde_json::Value` tree), checked by
//! [`Doc::check`] without decoding, and from then on shared: a WAL record, the backlog,
//! the cache and the flush all hold the same bytes, and a clone is a reference count.
//! It is written out by walking the bytes into whatever serializer asks (MessagePack for
//! the WAL and the embedded store, BSON for MongoDB, JSON for clients that want it).
//! A tree is built only where one is needed: [`Doc::to_value`], for JSON Schema checks
//! and the rare edit (a transfer's context).
//!
//! In the WAL a document is one MessagePack `bin` value holding its bytes ([`raw`]): a
//! record is written and replayed with a copy per document, no walk. A WAL written
//! before that holds documents as nested values, which are read as well.
//!
//! Hazard: the bytes are trusted once made. They are only ever made by [`Doc`]'s own
//! writer (from a deserializer) and read back from records protected by the WAL's
//! checksums or from the backend through the same writer, so the reader treats malformed
//! bytes as an error, never as a panic.

use std::cell::Cell;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Error as _, SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Deepest nesting a document may have (BSON allows about 100).
pub const DEPTH_MAX: usize = 64;

thread_local! {
    /// Set while [`raw`] runs on this thread.
    static RAW: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (an encode or decode of a WAL record) with documents written as one `bin`
/// value holding their bytes, and read from one. Encoding and decoding do not yield, so
/// the flag cannot leak to other work on the thread; it is reset even if `f` panics.
pub fn raw<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            RAW.set(self.0);
        }
    }
    let _reset = Reset(RAW.replace(true));
    f()
}

const NIL: u8 = 0xc0;
const EMPTY_MAP: u8 = 0x80;

/// A JSON document (any JSON value) held as MessagePack bytes. `Default` is `null`.
#[derive(Clone)]
pub struct Doc(Bytes);

/// A document that is a map (metadata). `Default` is `{}`.
#[derive(Clone, PartialEq)]
pub struct DocMap(Doc);

impl Doc {
    pub fn null() -> Doc {
        Doc(Bytes::from_static(&[NIL]))
    }

    /// The document of a tree.
    pub fn from_value(value: &Value) -> Doc {
        // A `Value` always converts: it holds nothing a document cannot.
        Doc::deserialize(value).expect("a JSON value is a document")
    }

    /// The document as a tree.
    pub fn to_value(&self) -> Value {
        // The bytes were made by `Doc`'s writer; a `Value` holds any of them (a number
        // that is not finite becomes `null`, as in JSON).
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    pub fn is_null(&self) -> bool {
        self.0[..] == [NIL]
    }

    /// Its size as MessagePack.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Checks that the backend can store it: integers in the signed 64-bit range (BSON),
    /// finite numbers, no binary values, string keys without a leading `$` or a NUL, at
    /// most [`DEPTH_MAX`] levels deep. The error names the place: `field.a[2].b`.
    pub fn check(&self, field: &str) -> Result<(), String> {
        let mut rd = &self.0[..];
        let mut path = field.to_string();
        check_item(&mut rd, 0, &mut path)?;
        if !rd.is_empty() {
            return Err(format!("{field}: trailing bytes after the document"));
        }
        Ok(())
    }
}

impl Default for Doc {
    fn default() -> Self {
        Doc::null()
    }
}

impl DocMap {
    pub fn from_map(map: serde_json::Map<String, Value>) -> DocMap {
        DocMap(Doc::from_value(&Value::Object(map)))
    }

    pub fn to_map(&self) -> serde_json::Map<String, Value> {
        match self.0.to_value() {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }

    pub fn doc(&self) -> &Doc {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0 .0[..] == [EMPTY_MAP]
    }
}

impl Default for DocMap {
    fn default() -> Self {
        DocMap(Doc(Bytes::from_static(&[EMPTY_MAP])))
    }
}

/// Equal documents: the same bytes, or (keys in another order, a number written
/// another way) the same tree.
impl PartialEq for Doc {
    fn eq(&self, other: &Doc) -> bool {
        self.0 == other.0 || self.to_value() == other.to_value()
    }
}

impl fmt::Debug for Doc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_value())
    }
}

impl fmt::Debug for DocMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

// ---- reading the bytes ----

/// One MessagePack item's head.
enum Item<'a> {
    Nil,
    Bool(bool),
    Uint(u64),
    Int(i64),
    F32(f32),
    F64(f64),
    Str(&'a str),
    Bin(&'a [u8]),
    Array(usize),
    Map(usize),
}

fn take<'a>(rd: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if rd.len() < n {
        return Err("document ends early".into());
    }
    let (head, rest) = rd.split_at(n);
    *rd = rest;
    Ok(head)
}

fn be<const N: usize>(rd: &mut &[u8]) -> Result<[u8; N], String> {
    // `take` returned exactly N bytes.
    Ok(take(rd, N)?.try_into().expect("N bytes"))
}

fn len(rd: &mut &[u8], width: usize) -> Result<usize, String> {
    Ok(match width {
        1 => u8::from_be_bytes(be(rd)?) as usize,
        2 => u16::from_be_bytes(be(rd)?) as usize,
        _ => u32::from_be_bytes(be(rd)?) as usize,
    })
}

fn next<'a>(rd: &mut &'a [u8]) -> Result<Item<'a>, String> {
    let m = take(rd, 1)?[0];
    let str_of = |rd: &mut &'a [u8], n: usize| -> Result<Item<'a>, String> {
        let b = take(rd, n)?;
        std::str::from_utf8(b)
            .map(Item::Str)
            .map_err(|_| "string is not UTF-8".to_string())
    };
    Ok(match m {
        0x00..=0x7f => Item::Uint(m as u64),
        0x80..=0x8f => Item::Map((m & 0x0f) as usize),
        0x90..=0x9f => Item::Array((m & 0x0f) as usize),
        0xa0..=0xbf => return str_of(rd, (m & 0x1f) as usize),
        0xc0 => Item::Nil,
        0xc2 => Item::Bool(false),
        0xc3 => Item::Bool(true),
        0xc4..=0xc6 => {
            let n = len(rd, 1 << (m - 0xc4))?;
            Item::Bin(take(rd, n)?)
        }
        0xca => Item::F32(f32::from_be_bytes(be(rd)?)),
        0xcb => Item::F64(f64::from_be_bytes(be(rd)?)),
        0xcc => Item::Uint(u8::from_be_bytes(be(rd)?) as u64),
        0xcd => Item::Uint(u16::from_be_bytes(be(rd)?) as u64),
        0xce => Item::Uint(u32::from_be_bytes(be(rd)?) as u64),
        0xcf => Item::Uint(u64::from_be_bytes(be(rd)?)),
        0xd0 => Item::Int(i8::from_be_bytes(be(rd)?) as i64),
        0xd1 => Item::Int(i16::from_be_bytes(be(rd)?) as i64),
        0xd2 => Item::Int(i32::from_be_bytes(be(rd)?) as i64),
        0xd3 => Item::Int(i64::from_be_bytes(be(rd)?)),
        0xd9..=0xdb => {
            let n = len(rd, 1 << (m - 0xd9))?;
            return str_of(rd, n);
        }
        0xdc => Item::Array(len(rd, 2)?),
        0xdd => Item::Array(len(rd, 4)?),
        0xde => Item::Map(len(rd, 2)?),
        0xdf => Item::Map(len(rd, 4)?),
        0xe0..=0xff => Item::Int(m as i8 as i64),
        _ => return Err(format!("MessagePack type 0x{m:02x} is not a JSON value")),
    })
}

fn check_item(rd: &mut &[u8], depth: usize, path: &mut String) -> Result<(), String> {
    if depth > DEPTH_MAX {
        return Err(format!("nested deeper than {DEPTH_MAX} levels at {path}"));
    }
    match next(rd).map_err(|e| format!("{e} at {path}"))? {
        Item::Uint(n) if n > i64::MAX as u64 => Err(format!(
            "integer {n} at {path} is out of the 64-bit signed range"
        )),
        Item::F32(x) if !x.is_finite() => Err(format!("number at {path} is not finite")),
        Item::F64(x) if !x.is_finite() => Err(format!("number at {path} is not finite")),
        Item::Bin(_) => Err(format!(
            "binary value at {path}: documents hold JSON values"
        )),
        Item::Array(n) => {
            for i in 0..n {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_item(rd, depth + 1, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Item::Map(n) => {
            for _ in 0..n {
                let Item::Str(k) = next(rd).map_err(|e| format!("{e} at {path}"))? else {
                    return Err(format!("key at {path} is not a string"));
                };
                if k.starts_with('$') || k.contains('\0') {
                    return Err(format!(
                        "key {k:?} at {path} is not allowed (no leading '$', no NUL)"
                    ));
                }
                let len = path.len();
                path.push('.');
                path.push_str(k);
                check_item(rd, depth + 1, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

// ---- writing out: the bytes walked into any serializer ----

/// The next item of a shared reader, for `serialize_element` / `serialize_entry`.
struct Next<'r, 'a>(&'r Cell<&'a [u8]>);

impl Serialize for Next<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut rd = self.0.get();
        let item = next(&mut rd).map_err(S::Error::custom)?;
        self.0.set(rd);
        match item {
            Item::Nil => s.serialize_unit(),
            Item::Bool(b) => s.serialize_bool(b),
            Item::Uint(n) => s.serialize_u64(n),
            Item::Int(n) => s.serialize_i64(n),
            Item::F32(x) => s.serialize_f32(x),
            Item::F64(x) => s.serialize_f64(x),
            Item::Str(v) => s.serialize_str(v),
            Item::Bin(b) => s.serialize_bytes(b),
            Item::Array(n) => {
                let mut seq = s.serialize_seq(Some(n))?;
                for _ in 0..n {
                    seq.serialize_element(&Next(self.0))?;
                }
                seq.end()
            }
            Item::Map(n) => {
                let mut map = s.serialize_map(Some(n))?;
                for _ in 0..n {
                    map.serialize_entry(&Next(self.0), &Next(self.0))?;
                }
                map.end()
            }
        }
    }
}

impl Serialize for Doc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if RAW.get() {
            return s.serialize_bytes(&self.0);
        }
        Next(&Cell::new(&self.0[..])).serialize(s)
    }
}

impl Serialize for DocMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

// ---- reading in: any deserializer written straight to bytes ----

/// Writes the value a deserializer holds as MessagePack at the end of `.0`.
struct Writer<'b>(&'b mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for Writer<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// Reserves the widest container head; [`close`] rewrites it to the shortest.
fn open(buf: &mut Vec<u8>) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0; 5]);
    at
}

/// Writes the head of a container opened at `at` holding `n` items (`fix` is the
/// fix-size marker base, `wide` the 16-bit marker; the 32-bit one follows it).
fn close(buf: &mut Vec<u8>, at: usize, n: usize, fix: u8, wide: u8) -> Result<(), String> {
    let head: &[u8] = &match n {
        0..=15 => [fix | n as u8, 0, 0, 0, 0],
        16..=0xffff => {
            let b = (n as u16).to_be_bytes();
            [wide, b[0], b[1], 0, 0]
        }
        _ => {
            let b = u32::try_from(n)
                .map_err(|_| "container too large".to_string())?
                .to_be_bytes();
            [wide + 1, b[0], b[1], b[2], b[3]]
        }
    };
    let used = match n {
        0..=15 => 1,
        16..=0xffff => 3,
        _ => 5,
    };
    buf[at..at + used].copy_from_slice(&head[..used]);
    if used < 5 {
        buf.copy_within(at + 5.., at + used);
        buf.truncate(buf.len() - (5 - used));
    }
    Ok(())
}

fn write_str(buf: &mut Vec<u8>, v: &str) {
    let n = v.len();
    match n {
        0..=31 => buf.push(0xa0 | n as u8),
        32..=0xff => buf.extend_from_slice(&[0xd9, n as u8]),
        0x100..=0xffff => {
            buf.push(0xda);
            buf.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            buf.push(0xdb);
            buf.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    buf.extend_from_slice(v.as_bytes());
}

fn write_uint(buf: &mut Vec<u8>, n: u64) {
    match n {
        0..=0x7f => buf.push(n as u8),
        0x80..=0xff => buf.extend_from_slice(&[0xcc, n as u8]),
        0x100..=0xffff => {
            buf.push(0xcd);
            buf.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            buf.push(0xce);
            buf.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            buf.push(0xcf);
            buf.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn write_int(buf: &mut Vec<u8>, n: i64) {
    match n {
        0.. => write_uint(buf, n as u64),
        -32..=-1 => buf.push(n as i8 as u8),
        -0x80..=-33 => buf.extend_from_slice(&[0xd0, n as i8 as u8]),
        -0x8000..=-0x81 => {
            buf.push(0xd1);
            buf.extend_from_slice(&(n as i16).to_be_bytes());
        }
        -0x8000_0000..=-0x8001 => {
            buf.push(0xd2);
            buf.extend_from_slice(&(n as i32).to_be_bytes());
        }
        _ => {
            buf.push(0xd3);
            buf.extend_from_slice(&n.to_be_bytes());
        }
    }
}

impl<'de> Visitor<'de> for Writer<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.push(if v { 0xc3 } else { 0xc2 });
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        write_int(self.0, v);
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        write_uint(self.0, v);
        Ok(())
    }

    /// Widened: a document's numbers are JSON's, 64-bit floats, so JSON and MessagePack
    /// readers see the same value.
    fn visit_f32<E: de::Error>(self, v: f32) -> Result<(), E> {
        self.visit_f64(f64::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.0.push(0xcb);
        self.0.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        write_str(self.0, v);
        Ok(())
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<(), E> {
        // Kept so `check` can name where it is; documents refuse it there.
        let n = u32::try_from(v.len()).map_err(|_| E::custom("binary value too large"))?;
        self.0.push(0xc6);
        self.0.extend_from_slice(&n.to_be_bytes());
        self.0.extend_from_slice(v);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.push(NIL);
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let at = open(self.0);
        let mut n = 0;
        while seq.next_element_seed(Writer(self.0))?.is_some() {
            n += 1;
        }
        close(self.0, at, n, 0x90, 0xdc).map_err(de::Error::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let at = open(self.0);
        let mut n = 0;
        while map.next_key_seed(Writer(self.0))?.is_some() {
            map.next_value_seed(Writer(self.0))?;
            n += 1;
        }
        close(self.0, at, n, 0x80, 0xde).map_err(de::Error::custom)
    }
}

/// A document in the WAL: its bytes in one `bin` value, or (older WALs) a value.
struct RawOrValue;

impl<'de> Visitor<'de> for RawOrValue {
    type Value = Doc;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a document's bytes")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Doc, E> {
        Ok(Doc(Bytes::copy_from_slice(v)))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Doc, E> {
        Ok(Doc(Bytes::from(v)))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Doc, A::Error> {
        written(|buf| Writer(buf).visit_map(map))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Doc, A::Error> {
        written(|buf| Writer(buf).visit_seq(seq))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Doc, E> {
        written(|buf| Writer(buf).visit_str(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Doc, E> {
        written(|buf| Writer(buf).visit_bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Doc, E> {
        written(|buf| Writer(buf).visit_i64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Doc, E> {
        written(|buf| Writer(buf).visit_u64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Doc, E> {
        written(|buf| Writer(buf).visit_f64(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Doc, E> {
        Ok(Doc::null())
    }
}

thread_local! {
    /// Where documents are written before they get their own allocation: reused, so a
    /// document costs one allocation of its exact size.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The document `write` writes.
fn written<E>(write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<Doc, E> {
    let mut buf = SCRATCH.take();
    buf.clear();
    let done = write(&mut buf).map(|()| Doc(Bytes::copy_from_slice(&buf)));
    // Large documents give their buffer back to the allocator.
    if buf.capacity() <= 1 << 20 {
        SCRATCH.set(buf);
    }
    done
}

impl<'de> Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Doc, D::Error> {
        if RAW.get() {
            return d.deserialize_any(RawOrValue);
        }
        written(|buf| Writer(buf).deserialize(d))
    }
}

impl<'de> Deserialize<'de> for DocMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DocMap, D::Error> {
        let doc = Doc::deserialize(d)?;
        match doc.0.first() {
            Some(0x80..=0x8f | 0xde | 0xdf) => Ok(DocMap(doc)),
            _ => Err(de::Error::invalid_type(
                de::Unexpected::Other("a value that is not a map"),
                &"a map",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "s": "x".repeat(40), "n": -3, "big": i64::MAX, "neg": i64::MIN, "f": 1.5,
            "t": true, "z": null, "a": [1, 2, {"b": []}], "long": (0..20).collect::<Vec<_>>(),
            "m": (0..300).map(|i| (format!("k{i}"), json!(i * 1000))).collect::<serde_json::Map<_, _>>(),
        })
    }

    #[test]
    fn round_trips_through_every_codec() {
        let v = sample();
        let from_json: Doc = serde_json::from_str(&v.to_string()).unwrap();
        assert_eq!(from_json.to_value(), v);
        // The bytes are MessagePack that rmp-serde reads as the same value.
        let read: Value = rmp_serde::from_slice(from_json.as_bytes()).unwrap();
        assert_eq!(read, v);
        let from_msgpack: Doc = rmp_serde::from_slice(&rmp_serde::to_vec(&v).unwrap()).unwrap();
        assert_eq!(from_msgpack.as_bytes(), from_json.as_bytes());
        let out: Value = rmp_serde::from_slice(&rmp_serde::to_vec(&from_json).unwrap()).unwrap();
        assert_eq!(out, v);
        let bson = mongodb::bson::to_bson(&from_json).unwrap();
        let back: Doc = mongodb::bson::from_bson(bson).unwrap();
        assert_eq!(back, from_json);
        from_json.check("state_data").unwrap();
    }

    #[test]
    fn writes_the_shortest_heads() {
        let d = Doc::from_value(&json!({"a": [1]}));
        assert_eq!(d.as_bytes(), &[0x81, 0xa1, b'a', 0x91, 0x01]);
        assert!(Doc::default().is_null());
        assert!(DocMap::default().is_empty());
    }

    #[test]
    fn a_32_bit_float_is_kept_as_json_reads_it() {
        let mut msgpack = vec![0xca];
        msgpack.extend_from_slice(&0.1f32.to_be_bytes());
        let d: Doc = rmp_serde::from_slice(&msgpack).unwrap();
        assert_eq!(d.as_bytes()[0], 0xcb, "widened to a 64-bit float");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(
            serde_json::from_str::<Doc>(&json).unwrap().as_bytes(),
            d.as_bytes()
        );
    }

    #[test]
    fn equality_ignores_key_order() {
        let a: Doc = serde_json::from_str(r#"{"x":1,"y":2}"#).unwrap();
        let b: Doc = serde_json::from_str(r#"{"y":2,"x":1}"#).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, Doc::from_value(&json!({"x": 1})));
    }

    #[test]
    fn checks_what_bson_refuses() {
        let e = Doc::from_value(&json!({"a": {"$set": 1}}))
            .check("state_data")
            .unwrap_err();
        assert!(e.contains("state_data.a"), "{e}");
        let e = Doc::from_value(&json!({"big": u64::MAX}))
            .check("state_data")
            .unwrap_err();
        assert!(e.contains("state_data.big"), "{e}");
        let mut deep = json!(1);
        for _ in 0..DEPTH_MAX + 1 {
            deep = json!([deep]);
        }
        assert!(Doc::from_value(&deep).check("d").is_err());
        let bin = Doc(Bytes::from_static(&[0xc4, 2, b'a', b'b']));
        assert!(bin.check("d").unwrap_err().contains("binary"));
        let mut nan = vec![0xcb];
        nan.extend_from_slice(&f64::NAN.to_be_bytes());
        assert!(Doc(Bytes::from(nan))
            .check("d")
            .unwrap_err()
            .contains("finite"));
        let int_key = Doc(Bytes::from_static(&[0x81, 0x01, 0x02]));
        assert!(int_key.check("d").unwrap_err().contains("not a string"));
    }

    #[test]
    fn a_map_is_required_for_metadata() {
        assert!(serde_json::from_str::<DocMap>(r#"{"a":1}"#).is_ok());
        assert!(serde_json::from_str::<DocMap>("[1]").is_err());
    }

    #[test]
    fn malformed_bytes_are_an_error() {
        let d = Doc(Bytes::from_static(&[0x92, 0x01]));
        assert!(d.check("d").is_err());
        assert!(serde_json::to_string(&d).is_err());
    }
}
