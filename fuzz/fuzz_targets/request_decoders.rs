//! Every request body the API decodes, in both codecs, then the checks that run before
//! anything is logged: none may panic, whatever the bytes. A document that passes its
//! check must encode to JSON and MessagePack and read back the same.
#![no_main]

use agentstate_protocol::{CheckpointRequest, Codec, ReplayRequest, RollbackRequest};
use agentstate_sidecar::doc::Doc;
use agentstate_sidecar::model::{
    AppendMessagesRequest, BatchRequest, SaveStateRequest, TransferRequest, TransitionRequest,
};
use agentstate_sidecar::validate;
use libfuzzer_sys::fuzz_target;

/// A checked document survives both codecs unchanged.
fn round_trips(doc: &Doc) {
    if doc.check("d").is_err() {
        return;
    }
    for codec in [Codec::Json, Codec::MsgPack] {
        let bytes = codec.encode(doc).expect("a checked document encodes");
        let back: Doc = codec.decode(&bytes).expect("and decodes");
        assert_eq!(&back, doc, "{codec:?} changes a document");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let codec = if selector & 1 == 0 { Codec::Json } else { Codec::MsgPack };
    match (selector >> 1) % 8 {
        0 => {
            if let Ok(r) = codec.decode::<SaveStateRequest>(body) {
                let _ = validate::name("state_name", &r.state_name);
                if let Some(d) = &r.state_data {
                    let _ = validate::document("state_data", d);
                    round_trips(d);
                }
            }
        }
        1 => {
            if let Ok(r) = codec.decode::<TransitionRequest>(body) {
                let _ = validate::name("to_state", &r.to_state);
            }
        }
        2 => {
            let _ = codec.decode::<AppendMessagesRequest>(body);
        }
        3 => {
            if let Ok(r) = codec.decode::<TransferRequest>(body) {
                let _ = validate::agent_id(&r.transfer_id);
                if let Some(c) = &r.context {
                    let _ = validate::document("context", c);
                }
            }
        }
        4 => {
            let _ = codec.decode::<BatchRequest>(body);
        }
        5 => {
            let _ = codec.decode::<CheckpointRequest>(body);
            let _ = codec.decode::<RollbackRequest>(body);
        }
        6 => {
            let _ = codec.decode::<ReplayRequest>(body);
        }
        _ => {
            if let Ok(d) = codec.decode::<Doc>(body) {
                round_trips(&d);
            }
        }
    }
});
