//! Input checks of the threads API: what a put or a write must be before anything
//! is read or logged.

use agentstate_protocol::{PutThreadCheckpointRequest, PutThreadWritesRequest};
use serde_json::Value;

use crate::delta;
use crate::engine::{EngineError, EngineResult};
use crate::validate;

/// Longest namespace (and task path), in characters.
const NS_CHARS_MAX: usize = 1024;

pub(super) fn invalid(e: impl ToString) -> EngineError {
    EngineError::Validation(e.to_string())
}

/// Namespaces may be empty (the root); otherwise bounded, no control characters.
pub(super) fn check_ns(ns: &str) -> EngineResult<()> {
    if ns.chars().count() > NS_CHARS_MAX || ns.chars().any(char::is_control) {
        return Err(invalid(format!(
            "checkpoint_ns must be at most {NS_CHARS_MAX} characters, none of them a control"
        )));
    }
    Ok(())
}

pub(super) fn check_put(req: &PutThreadCheckpointRequest) -> EngineResult<()> {
    check_ns(&req.checkpoint_ns)?;
    validate::name("checkpoint_id", &req.checkpoint_id).map_err(invalid)?;
    if let Some(p) = &req.parent_checkpoint_id {
        validate::name("parent_checkpoint_id", p).map_err(invalid)?;
    }
    validate::name("checkpoint.type", &req.checkpoint.type_).map_err(invalid)?;
    validate::document_tree("metadata", &Value::Object(req.metadata.clone())).map_err(invalid)?;
    for (channel, version) in &req.channel_versions {
        validate::name("channel", channel).map_err(invalid)?;
        validate::name("channel version", version).map_err(invalid)?;
    }
    for b in &req.blobs {
        validate::name("blob channel", &b.channel).map_err(invalid)?;
        validate::name("blob version", &b.version).map_err(invalid)?;
        validate::name("blob type", &b.value.type_).map_err(invalid)?;
        if let Some(base) = &b.extends {
            validate::name("blob extends", base).map_err(invalid)?;
            // What makes a delta inapplicable is a conflict: the client sends the whole
            // value instead.
            let refuse = |why: String| {
                EngineError::Conflict(format!(
                    "blob {} extends {base}: {why}; send the whole value",
                    b.channel
                ))
            };
            // Versions grow along a chain, so a chain lies in one range of versions.
            if *base >= b.version {
                return Err(refuse("a delta must extend an older version".into()));
            }
            delta::check(&b.value).map_err(|e| refuse(e.to_string()))?;
            if req.parent_checkpoint_id.is_none() {
                return Err(refuse("the checkpoint has no parent".into()));
            }
        }
    }
    Ok(())
}

pub(super) fn check_writes(req: &PutThreadWritesRequest) -> EngineResult<()> {
    check_ns(&req.checkpoint_ns)?;
    validate::name("checkpoint_id", &req.checkpoint_id).map_err(invalid)?;
    validate::name("task_id", &req.task_id).map_err(invalid)?;
    if req.task_path.chars().count() > NS_CHARS_MAX || req.task_path.chars().any(char::is_control) {
        return Err(invalid(format!(
            "task_path must be at most {NS_CHARS_MAX} characters, none of them a control"
        )));
    }
    if req.writes.is_empty() {
        return Err(invalid("writes must not be empty"));
    }
    for w in &req.writes {
        validate::name("write channel", &w.channel).map_err(invalid)?;
        validate::name("write type", &w.value.type_).map_err(invalid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use agentstate_protocol::{NewThreadWrite, Payload, ThreadBlob, Typed};
    use bytes::Bytes;

    use super::*;

    fn typed(type_: &str, data: &'static [u8]) -> Typed {
        Typed {
            type_: type_.into(),
            data: Payload(Bytes::from_static(data)),
        }
    }

    /// A put with one blob of `m` at `v2`, extending `extends`, under parent `p`.
    fn put(
        value: Typed,
        extends: Option<&str>,
        parent: Option<&str>,
    ) -> PutThreadCheckpointRequest {
        PutThreadCheckpointRequest {
            checkpoint_ns: String::new(),
            checkpoint_id: "c2".into(),
            parent_checkpoint_id: parent.map(str::to_string),
            checkpoint: typed("json", b"{}"),
            metadata: Default::default(),
            channel_versions: [("m".to_string(), "v2".to_string())].into(),
            blobs: vec![ThreadBlob {
                channel: "m".into(),
                version: "v2".into(),
                value,
                extends: extends.map(str::to_string),
            }],
        }
    }

    fn refusal(r: EngineResult<()>) -> String {
        match r {
            Err(EngineError::Conflict(m)) => format!("conflict: {m}"),
            Err(EngineError::Validation(m)) => format!("validation: {m}"),
            other => panic!("not refused as expected: {other:?}"),
        }
    }

    #[test]
    fn namespaces_are_bounded_and_printable() {
        assert!(check_ns("").is_ok());
        assert!(check_ns(&"n".repeat(NS_CHARS_MAX)).is_ok());
        assert!(refusal(check_ns(&"n".repeat(NS_CHARS_MAX + 1))).contains("at most 1024"));
        assert!(refusal(check_ns("a\nb")).contains("control"));
    }

    #[test]
    fn a_delta_must_be_an_applicable_msgpack_array() {
        let list = typed("msgpack", &[0x91, 0xa1, b'x']);
        assert!(check_put(&put(list.clone(), Some("v1"), Some("c1"))).is_ok());
        assert!(
            check_put(&put(typed("json", b"[]"), None, None)).is_ok(),
            "whole: any type"
        );
        // What makes a delta inapplicable is a conflict: the client sends it whole.
        let cases = [
            (put(list.clone(), Some("v3"), Some("c1")), "older version"),
            (put(list.clone(), Some("v2"), Some("c1")), "older version"),
            (put(typed("json", b"[]"), Some("v1"), Some("c1")), "msgpack"),
            (
                put(typed("msgpack", &[0x80]), Some("v1"), Some("c1")),
                "array",
            ),
            (put(list.clone(), Some("v1"), None), "no parent"),
        ];
        for (req, why) in cases {
            let m = refusal(check_put(&req));
            assert!(m.starts_with("conflict: ") && m.contains(why), "{m}");
            assert!(m.contains("send the whole value"), "{m}");
        }
        // A name that breaks the rules is bad input, as any name is.
        let m = refusal(check_put(&put(list, Some("v\u{1}"), Some("c1"))));
        assert!(
            m.starts_with("validation: ") && m.contains("blob extends"),
            "{m}"
        );
    }

    #[test]
    fn writes_need_a_task_and_at_least_one_write() {
        let mut req = PutThreadWritesRequest {
            checkpoint_ns: String::new(),
            checkpoint_id: "c1".into(),
            task_id: "t".into(),
            task_path: String::new(),
            writes: vec![NewThreadWrite {
                idx: 0,
                channel: "m".into(),
                value: typed("json", b"1"),
            }],
        };
        assert!(check_writes(&req).is_ok());
        req.task_path = "a\u{7}".into();
        assert!(refusal(check_writes(&req)).contains("task_path"));
        req.task_path = String::new();
        req.writes.clear();
        assert!(refusal(check_writes(&req)).contains("must not be empty"));
    }
}
