//! Delta channel values against the real binary, on both backends: a blob that
//! `extends` another carries only the items added to a list, and every read (the latest
//! from memory, by id, searches, after a copy, a prune, a kill -9, once flushed) answers
//! byte for byte the value a whole put would have stored. Deltas on bases the thread
//! does not hold, and deltas that are not MessagePack arrays, are refused.

#[macro_use]
mod common;

use agentstate_protocol::{
    Client, ClientError, PruneStrategy, SearchCheckpointsRequest, ThreadCheckpointTuple, Typed,
};
use common::{drained, msgpack_list, start_with, thread_blob as blob, thread_put as put, Backend};

fn list(b: &str, from: usize, to: usize) -> Typed {
    msgpack_list(b, from, to)
}

/// Each checkpoint as `id: channel@version=value` with values decoded, greatest id
/// first; values must be exactly what serializing them whole gives.
fn show(t: &ThreadCheckpointTuple) -> String {
    let values: Vec<String> = t
        .blobs
        .iter()
        .map(|b| {
            assert_eq!(b.extends, None, "reads answer whole values");
            let items: Vec<String> = rmp_serde::from_slice(&b.value.data.0).unwrap();
            let again = rmp_serde::to_vec(&items).unwrap();
            assert_eq!(&b.value.data.0[..], &again[..], "byte for byte");
            format!("{}@{}={}", b.channel, b.version, items.join(" "))
        })
        .collect();
    format!("{}: {}", t.checkpoint_id, values.join(", "))
}

async fn all(c: &Client, thread: &str) -> Vec<String> {
    let q = SearchCheckpointsRequest {
        thread_id: Some(thread.into()),
        limit: Some(1000),
        ..Default::default()
    };
    let found = c.search_checkpoints(&q).await.unwrap();
    found.iter().map(show).collect()
}

async fn latest(c: &Client, thread: &str) -> String {
    show(
        &c.thread_checkpoint(thread, "", None)
            .await
            .unwrap()
            .unwrap(),
    )
}

async fn by_id(c: &Client, thread: &str, id: &str) -> String {
    show(
        &c.thread_checkpoint(thread, "", Some(id))
            .await
            .unwrap()
            .unwrap(),
    )
}

fn code(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Api { status, body } => (status, body.error.message),
        e => panic!("not an answer: {e}"),
    }
}

const EXPECTED: [&str; 5] = [
    "05: m@v5=a0 a1 a2 a3 a4 f5 f6 f7 f8, o@o1=o0",
    "04: m@v3=a0 a1 a2 a3 a4 a5, o@o2=p0 p1",
    "03: m@v3=a0 a1 a2 a3 a4 a5, o@o1=o0",
    "02: m@v2=a0 a1 a2 a3 a4, o@o1=o0",
    "01: m@v1=a0 a1 a2",
];

both_backends!(deltas_read_as_whole_values_everywhere);
async fn deltas_read_as_whole_values_everywhere(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (mut sidecar, _mongo) = start_with(backend, "thread_deltas", dir.path(), &[]).await;
    let c = sidecar.client();
    let t = "chat";
    c.put_thread_checkpoint(
        t,
        &put(
            "01",
            None,
            &[("m", "v1")],
            vec![blob("m", "v1", list("a", 0, 3), None)],
        ),
    )
    .await
    .unwrap();
    // The latest is read once, so memory knows the thread from here on.
    assert_eq!(latest(&c, t).await, EXPECTED[4]);
    let steps = [
        put(
            "02",
            Some("01"),
            &[("m", "v2"), ("o", "o1")],
            vec![
                blob("m", "v2", list("a", 3, 5), Some("v1")),
                blob("o", "o1", list("o", 0, 1), None),
            ],
        ),
        put(
            "03",
            Some("02"),
            &[("m", "v3"), ("o", "o1")],
            vec![blob("m", "v3", list("a", 5, 6), Some("v2"))],
        ),
        // Only `o` changes: `m` keeps its delta, and the chain under it.
        put(
            "04",
            Some("03"),
            &[("m", "v3"), ("o", "o2")],
            vec![blob("o", "o2", list("p", 0, 2), None)],
        ),
    ];
    for (i, step) in steps.iter().enumerate() {
        c.put_thread_checkpoint(t, step).await.unwrap();
        assert_eq!(latest(&c, t).await, EXPECTED[3 - i], "from memory");
    }
    // A fork from an older checkpoint extends that checkpoint's value.
    c.put_thread_checkpoint(
        t,
        &put(
            "05",
            Some("02"),
            &[("m", "v5"), ("o", "o1")],
            vec![blob("m", "v5", list("f", 5, 9), Some("v2"))],
        ),
    )
    .await
    .unwrap();
    assert_eq!(all(&c, t).await, EXPECTED);
    for (i, id) in ["05", "04", "03", "02", "01"].iter().enumerate() {
        assert_eq!(by_id(&c, t, id).await, EXPECTED[i]);
    }

    // Refused (409: send the whole value), and nothing changes: a base the thread does
    // not hold, a delta that is not a MessagePack array, a delta without a parent.
    let unknown = put(
        "06",
        Some("05"),
        &[("m", "v6")],
        vec![blob("m", "v6", list("x", 0, 1), Some("v9"))],
    );
    let (status, message) = code(c.put_thread_checkpoint(t, &unknown).await.unwrap_err());
    assert_eq!(status, 409, "{message}");
    assert!(
        message.contains("v9") && message.contains("whole value"),
        "{message}"
    );
    let mut json = blob("m", "v6", list("x", 0, 1), Some("v5"));
    json.value.type_ = "json".into();
    let not_msgpack = put("06", Some("05"), &[("m", "v6")], vec![json]);
    let (status, message) = code(c.put_thread_checkpoint(t, &not_msgpack).await.unwrap_err());
    assert_eq!(status, 409, "{message}");
    assert!(message.contains("msgpack"), "{message}");
    let newer = put(
        "06",
        Some("05"),
        &[("m", "v0")],
        vec![blob("m", "v0", list("x", 0, 1), Some("v5"))],
    );
    let (status, message) = code(c.put_thread_checkpoint(t, &newer).await.unwrap_err());
    assert_eq!(status, 409, "{message}");
    assert!(message.contains("older version"), "{message}");
    let orphan = put(
        "06",
        None,
        &[("m", "v6")],
        vec![blob("m", "v6", list("x", 0, 1), Some("v5"))],
    );
    let (status, message) = code(c.put_thread_checkpoint(t, &orphan).await.unwrap_err());
    assert_eq!(status, 409, "{message}");
    assert!(message.contains("no parent"), "{message}");
    assert_eq!(all(&c, t).await, EXPECTED);

    // A copy reads the same, before and after the flush and a kill -9.
    assert_eq!(c.copy_thread(t, "copy").await.unwrap(), 5);
    assert_eq!(all(&c, "copy").await, EXPECTED);
    sidecar.kill9();
    sidecar.restart().await;
    let c = sidecar.client();
    assert_eq!(all(&c, t).await, EXPECTED, "replayed from the WAL");
    drained(&c).await;
    sidecar.kill9();
    sidecar.restart().await;
    let c = sidecar.client();
    assert_eq!(all(&c, t).await, EXPECTED, "from the backend");
    assert_eq!(
        all(&c, "copy").await,
        EXPECTED,
        "the copy, from the backend"
    );
    assert_eq!(latest(&c, t).await, EXPECTED[0]);

    // A delta on a value read back from the backend; then prune to the latest: the
    // chain under it stays, what only older checkpoints used goes.
    c.put_thread_checkpoint(
        t,
        &put(
            "06",
            Some("05"),
            &[("m", "v6"), ("o", "o1")],
            vec![blob("m", "v6", list("g", 9, 10), Some("v5"))],
        ),
    )
    .await
    .unwrap();
    let newest = "06: m@v6=a0 a1 a2 a3 a4 f5 f6 f7 f8 g9, o@o1=o0";
    assert_eq!(latest(&c, t).await, newest);
    assert_eq!(
        c.prune_threads(vec![t.into()], PruneStrategy::KeepLatest)
            .await
            .unwrap(),
        5
    );
    assert_eq!(all(&c, t).await, [newest]);
    drained(&c).await;
    sidecar.kill9();
    sidecar.restart().await;
    let c = sidecar.client();
    assert_eq!(all(&c, t).await, [newest], "pruned, from the backend");
    // The copy is untouched by the source's prune.
    assert_eq!(all(&c, "copy").await, EXPECTED);
}
