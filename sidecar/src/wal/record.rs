//! The on-disk record format of the WAL.
//!
//! ```text
//! +-----------+-----------+-----------+------+-----------------+
//! | len: u32  | crc: u32  | lsn: u64  | kind | body            |
//! +-----------+-----------+-----------+------+-----------------+
//!   little-endian; len counts kind + body; crc is CRC32C over
//!   (kind + body) then len then lsn, so a torn or flipped length, LSN or body fails it.
//! ```
//!
//! `kind` is [`KIND_DATA`] (the body is an operation the caller logged),
//! [`KIND_ABANDONED`] (the body is a `u64` LSN: records from that LSN up to this record's
//! LSN were never written, because a write of their batch failed; replay skips them), or
//! [`KIND_BATCH_END`] (the body is a `u64`: the bytes of the batch before it; its LSN is
//! the batch's last; it takes no LSN of its own). The batch ends let a scan tell damage in
//! the last batch, which a power cut can leave with holes since its sync may not have
//! finished, from damage in a batch synced before it.

pub const HEADER_LEN: usize = 16;
/// Largest `len` accepted. A bigger length in a header is corruption, not a record, and a
/// bound keeps a flipped length from asking for gigabytes.
pub const RECORD_BYTES_MAX: usize = 64 * 1024 * 1024;

pub const KIND_DATA: u8 = 0;
pub const KIND_ABANDONED: u8 = 1;
pub const KIND_BATCH_END: u8 = 2;

/// CRC of a record's kind and body, computed before the LSN is known so the expensive part
/// runs outside the WAL's lock.
pub fn body_crc(kind: u8, body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&[kind]), body)
}

fn finish_crc(body_crc: u32, len: u32, lsn: u64) -> u32 {
    let mut tail = [0u8; 12];
    tail[..4].copy_from_slice(&len.to_le_bytes());
    tail[4..].copy_from_slice(&lsn.to_le_bytes());
    crc32c::crc32c_append(body_crc, &tail)
}

/// Appends one encoded record to `out`.
pub fn encode_into(out: &mut Vec<u8>, lsn: u64, kind: u8, body: &[u8], body_crc: u32) {
    let len = u32::try_from(body.len() + 1).expect("record length checked by the caller");
    out.reserve(HEADER_LEN + body.len() + 1);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&finish_crc(body_crc, len, lsn).to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(body);
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    Record {
        lsn: u64,
        kind: u8,
        body: &'a [u8],
        /// Bytes the record takes on disk, header included.
        encoded_len: usize,
    },
    /// The buffer ends inside a record (a torn write if at the end of the log).
    Incomplete,
    /// The bytes here are not a valid record.
    Corrupt(&'static str),
}

/// Decodes the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < HEADER_LEN {
        return Decoded::Incomplete;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let lsn = u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"));
    let len_usize = len as usize;
    if len_usize == 0 || len_usize > RECORD_BYTES_MAX + 1 {
        return Decoded::Corrupt("record length out of range");
    }
    let Some(rest) = buf.get(HEADER_LEN..HEADER_LEN + len_usize) else {
        return Decoded::Incomplete;
    };
    let (kind, body) = (rest[0], &rest[1..]);
    if finish_crc(body_crc(kind, body), len, lsn) != crc {
        return Decoded::Corrupt("checksum mismatch");
    }
    if !matches!(kind, KIND_DATA | KIND_ABANDONED | KIND_BATCH_END) {
        return Decoded::Corrupt("unknown record kind");
    }
    Decoded::Record {
        lsn,
        kind,
        body,
        encoded_len: HEADER_LEN + len_usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(lsn: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_into(&mut out, lsn, KIND_DATA, body, body_crc(KIND_DATA, body));
        out
    }

    #[test]
    fn round_trip() {
        let bytes = encode(42, b"hello");
        assert_eq!(
            decode(&bytes),
            Decoded::Record {
                lsn: 42,
                kind: KIND_DATA,
                body: b"hello",
                encoded_len: bytes.len()
            }
        );
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let bytes = encode(7, b"some body bytes");
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Decoded::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = encode(7, b"some body bytes");
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            match decode(&b) {
                Decoded::Record { .. } => panic!("flip of bit {bit} went unnoticed"),
                Decoded::Incomplete | Decoded::Corrupt(_) => {}
            }
        }
    }

    #[test]
    fn zeroed_space_is_not_a_record() {
        assert!(matches!(decode(&[0u8; 64]), Decoded::Corrupt(_)));
    }
}
