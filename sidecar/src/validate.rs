//! Checks on what agents send, before anything is logged.
//!
//! A change that the backend would refuse must be refused here, at the door: once in the
//! WAL it would be retried by the flusher forever. So documents are checked against
//! BSON's limits (integer range, nesting depth, `$`-prefixed keys) as well as ours.

use serde_json::Value;

/// Deepest nesting accepted in `state_data` / `metadata` (BSON allows about 100).
pub const DEPTH_MAX: usize = 64;
/// Longest agent id.
pub const AGENT_ID_BYTES_MAX: usize = 128;
/// Longest state name, trigger or agent type.
pub const NAME_BYTES_MAX: usize = 256;

/// Agent ids: 1 to 128 of `A-Z a-z 0-9 - _ . :`; they appear in URLs and document ids.
pub fn agent_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > AGENT_ID_BYTES_MAX {
        return Err(format!(
            "agent id must be 1 to {AGENT_ID_BYTES_MAX} bytes long, got {}",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(format!(
            "agent id may only use A-Z a-z 0-9 - _ . : (found {c:?})"
        ));
    }
    Ok(())
}

/// State names, triggers, agent types: non-empty, bounded, no control characters.
pub fn name(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > NAME_BYTES_MAX {
        return Err(format!("{field} must be 1 to {NAME_BYTES_MAX} bytes long"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(())
}

/// A JSON document the backend can store as BSON.
pub fn document(field: &str, value: &Value) -> Result<(), String> {
    fn walk(v: &Value, depth: usize, path: &mut String) -> Result<(), String> {
        if depth > DEPTH_MAX {
            return Err(format!("nested deeper than {DEPTH_MAX} levels at {path}"));
        }
        match v {
            Value::Number(n) if n.is_u64() && n.as_i64().is_none() => Err(format!(
                "integer {n} at {path} is out of the 64-bit signed range"
            )),
            Value::Array(items) => items.iter().enumerate().try_for_each(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, depth + 1, path)?;
                path.truncate(len);
                Ok(())
            }),
            Value::Object(map) => map.iter().try_for_each(|(k, item)| {
                if k.starts_with('$') || k.contains('\0') {
                    return Err(format!(
                        "key {k:?} at {path} is not allowed (no leading '$', no NUL)"
                    ));
                }
                let len = path.len();
                path.push('.');
                path.push_str(k);
                walk(item, depth + 1, path)?;
                path.truncate(len);
                Ok(())
            }),
            _ => Ok(()),
        }
    }
    let mut path = field.to_string();
    walk(value, 0, &mut path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn agent_ids() {
        assert!(agent_id("greeter-1:conv.7_a").is_ok());
        assert!(agent_id("").is_err());
        assert!(agent_id("a/b").is_err());
        assert!(agent_id("é").is_err());
        assert!(agent_id(&"a".repeat(129)).is_err());
    }

    #[test]
    fn documents_must_fit_bson() {
        assert!(document("state_data", &json!({"a": [1, {"b": -3}], "c": 1.5})).is_ok());
        let e = document("state_data", &json!({"a": {"$set": 1}})).unwrap_err();
        assert!(e.contains("state_data.a"), "{e}");
        let e = document("state_data", &json!({"big": u64::MAX})).unwrap_err();
        assert!(e.contains("state_data.big"), "{e}");
        let mut deep = json!(1);
        for _ in 0..70 {
            deep = json!([deep]);
        }
        assert!(document("state_data", &deep)
            .unwrap_err()
            .contains("deeper"));
    }
}
