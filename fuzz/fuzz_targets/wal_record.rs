//! The WAL record decoder and the operation decoder behind it, on arbitrary bytes: they
//! must never panic, and a record they accept must re-encode to the same bytes.
#![no_main]

use agentstate_sidecar::model::Op;
use agentstate_sidecar::wal::record::{self, Decoded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Decoded::Record { lsn, kind, body, encoded_len } = record::decode(rest) {
        let mut again = Vec::new();
        record::encode_into(&mut again, lsn, kind, body, record::body_crc(kind, body));
        assert_eq!(&again[..], &rest[..encoded_len], "re-encoding changes a record");
        if let Ok(op) = Op::decode(body) {
            let _ = op.agents();
            let _ = op.encode();
        }
        rest = &rest[encoded_len..];
    }
    let _ = Op::decode(data);
});
