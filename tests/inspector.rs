//! The inspector's routes against the real binary, on both backends: the agent listing
//! paged (past 1,000 agents on the embedded store) with every filter, while some agents are still in the backlog
//! and again once all are in the backend; the thread and transfer listings; an agent's
//! timeline (paged or not, the same entries in time order); a thread's history and
//! decoded view; the inspector's writes (rollback, abort, fork) with their reasons in
//! the log, and refused without `--ui-writes`; the page under its Content-Security-Policy.

#[macro_use]
mod common;

use std::collections::BTreeSet;

use agentstate_protocol::{
    AgentsQuery, Client, NewMessage, SaveStateRequest, StatePersistence, TimelineKind,
    TransferRequest, TransitionRequest,
};
use common::{eventually, msgpack_list, raw, start_with, thread_blob, thread_put, Backend};
use serde_json::{json, Value};

/// Agents listed: past a thousand on the embedded store; fewer on SecantusDB, which
/// renews a lease per agent and cannot keep up with a thousand on these machines (the
/// paging is the same code).
fn agents(backend: &Backend) -> (usize, u32) {
    match backend {
        Backend::Embedded => (1_205, 500),
        Backend::Mongo => (205, 50),
    }
}

fn save(agent_type: Option<&str>, state: &str) -> SaveStateRequest {
    SaveStateRequest {
        agent_type: agent_type.map(str::to_string),
        state_name: state.into(),
        state_data: Some(json!({ "n": 1 })),
        metadata: None,
    }
}

/// Waits until the backend holds everything (a thousand agents take SecantusDB a while).
async fn drained(c: &Client) {
    eventually(
        std::time::Duration::from_secs(120),
        "backlog drained",
        || {
            let c = c.clone();
            async move { c.status().await.ok().filter(|s| s.backlog_agents == 0) }
        },
    )
    .await;
}

/// Every agent id a listing gives, page after page, and the number of pages.
async fn all_ids(c: &Client, mut q: AgentsQuery) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let page = c.list_agents(&q).await.unwrap();
        pages += 1;
        ids.extend(page.agents.into_iter().map(|a| a.agent_id));
        match page.next_cursor {
            Some(next) => q.cursor = Some(next),
            None => return (ids, pages),
        }
        assert!(pages < 100, "the listing does not end");
    }
}

both_backends!(listings_page_past_a_thousand_agents_with_filters);
async fn listings_page_past_a_thousand_agents_with_filters(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (count, page) = agents(&backend);
    let (sidecar, _mongo) = start_with(backend, "inspector_lists", dir.path(), &[]).await;
    let c = sidecar.client();
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    // Every third agent a greeter (idle), the others untyped, alternately idle and busy.
    let kind = |i: usize| match i % 3 {
        0 => (Some("greeter"), "idle"),
        1 => (None, "idle"),
        _ => (None, "busy"),
    };
    let ids: Vec<String> = (0..count).map(|i| format!("a-{i:05}")).collect();
    let mut saves = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        let (t, s) = kind(i);
        let (c, id) = (c.clone(), id.clone());
        saves.spawn(async move { c.save_state(&id, &save(t, s), None).await.unwrap() });
        if saves.len() >= 32 {
            saves.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(done) = saves.join_next().await {
        done.unwrap();
    }
    c.save_state("b-outside", &save(None, "idle"), None)
        .await
        .unwrap();
    // Five greeters try a transition their type does not have: refused, and logged.
    let failed: Vec<String> = ids.iter().step_by(3).take(5).cloned().collect();
    for id in &failed {
        let bogus = TransitionRequest {
            to_state: "done".into(),
            trigger: "bogus".into(),
            state_data: None,
        };
        assert!(c.record_transition(id, &bogus).await.is_err());
    }

    for round in ["with a backlog", "all in the backend"] {
        let q = AgentsQuery {
            prefix: Some("a-".into()),
            limit: Some(page),
            ..Default::default()
        };
        let (listed, pages) = all_ids(&c, q.clone()).await;
        assert_eq!(listed, ids, "{round}: every agent once, in order");
        assert!(pages >= 3, "{round}: {pages} pages");

        let expect = |keep: &dyn Fn(usize) -> bool| -> Vec<String> {
            (0..count)
                .filter(|i| keep(*i))
                .map(|i| ids[i].clone())
                .collect()
        };
        let busy = AgentsQuery {
            state: Some("busy".into()),
            ..q.clone()
        };
        assert_eq!(
            all_ids(&c, busy).await.0,
            expect(&|i| i % 3 == 2),
            "{round}"
        );
        let greeters = AgentsQuery {
            agent_type: Some("greeter".into()),
            limit: Some(page / 5),
            ..q.clone()
        };
        assert_eq!(
            all_ids(&c, greeters).await.0,
            expect(&|i| i % 3 == 0),
            "{round}"
        );
        let refused = AgentsQuery {
            failed: true,
            ..q.clone()
        };
        assert_eq!(all_ids(&c, refused).await.0, failed, "{round}");
        let later = AgentsQuery {
            updated_after: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
            ..q.clone()
        };
        assert!(all_ids(&c, later).await.0.is_empty(), "{round}");
        let since = AgentsQuery {
            updated_after: Some(started),
            prefix: None,
            ..q.clone()
        };
        assert_eq!(all_ids(&c, since).await.0.len(), count + 1, "{round}");
        drained(&c).await;
    }

    // A bad filter is a 400 naming it.
    for (query, says) in [
        ("stat=idle", "unknown query parameter"),
        ("limit=0", "limit"),
        ("failed=maybe", "failed"),
        ("updated_after=yesterday", "updated_after"),
    ] {
        let r = raw(
            "GET",
            &format!("{}/v1/agents?{query}", sidecar.url()),
            &[],
            "",
        )
        .await;
        assert_eq!(r.status, 400, "{query}");
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(says), "{query}: {message}");
    }

    // Threads: three, one with two checkpoints.
    for t in ["t-1", "t-2", "t-3"] {
        let put = thread_put(
            "01",
            None,
            &[("m", "1")],
            vec![thread_blob("m", "1", msgpack_list("x", 0, 1), None)],
        );
        c.put_thread_checkpoint(t, &put).await.unwrap();
    }
    let put = thread_put(
        "02",
        Some("01"),
        &[("m", "2")],
        vec![thread_blob("m", "2", msgpack_list("x", 0, 2), None)],
    );
    c.put_thread_checkpoint("t-2", &put).await.unwrap();
    let first = c.list_threads("t-", None, 2).await.unwrap();
    let rest = c
        .list_threads("t-", first.next_cursor.as_deref(), 2)
        .await
        .unwrap();
    let threads: Vec<(String, u64, String)> = first
        .threads
        .into_iter()
        .chain(rest.threads)
        .map(|t| (t.thread_id, t.checkpoints, t.latest_checkpoint_id))
        .collect();
    assert_eq!(
        threads,
        [
            ("t-1".to_string(), 1, "01".to_string()),
            ("t-2".to_string(), 2, "02".to_string()),
            ("t-3".to_string(), 1, "01".to_string()),
        ]
    );
    assert_eq!(rest.next_cursor, None);

    // Transfers, all and by agent.
    for (n, (from, to)) in [("a-00001", "a-00002"), ("a-00004", "a-00005")]
        .iter()
        .enumerate()
    {
        let t = TransferRequest {
            transfer_id: format!("x-{n}"),
            from_agent: from.to_string(),
            to_agent: to.to_string(),
            trigger: "handoff".into(),
            ..Default::default()
        };
        c.transfer(&t).await.unwrap();
    }
    let all = c.list_transfers(None, None, 100).await.unwrap();
    assert_eq!(all.transfers.len(), 2);
    let of = c.list_transfers(Some("a-00005"), None, 100).await.unwrap();
    let ids: Vec<&str> = of
        .transfers
        .iter()
        .map(|t| t.transfer_id.as_str())
        .collect();
    assert_eq!(ids, ["x-1"]);
}

/// The kinds of a timeline's entries, with a word on each.
fn kinds(entries: &[agentstate_protocol::TimelineEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| match e.kind {
            TimelineKind::Transition => {
                let t = e.transition.as_ref().unwrap();
                let how = if t.success { "ok" } else { "refused" };
                format!("transition {} {how}", t.trigger)
            }
            TimelineKind::Message => format!("message {}", e.message.as_ref().unwrap().role),
            TimelineKind::Checkpoint => "checkpoint".into(),
            TimelineKind::Transfer => "transfer".into(),
        })
        .collect()
}

both_backends!(timeline_history_and_the_inspectors_writes);
async fn timeline_history_and_the_inspectors_writes(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (sidecar, _mongo) =
        start_with(backend, "inspector_writes", dir.path(), &["--ui-writes"]).await;
    let c = sidecar.client();
    let url = sidecar.url();
    let step = || tokio::time::sleep(std::time::Duration::from_millis(3));

    c.save_state("g", &save(Some("greeter"), "idle"), None)
        .await
        .unwrap();
    step().await;
    let greet = TransitionRequest {
        to_state: "greeting".into(),
        trigger: "user_message".into(),
        state_data: Some(json!({ "user_name": "Ada" })),
    };
    c.record_transition("g", &greet).await.unwrap();
    step().await;
    let say = |role: &str, content: &str| NewMessage {
        role: role.into(),
        content: content.into(),
        metadata: Default::default(),
    };
    c.append_messages(
        "g",
        vec![say("user", "hi <script>"), say("assistant", "hello")],
        None,
    )
    .await
    .unwrap();
    step().await;
    let cp = c.checkpoint("g", Some("greeted".into())).await.unwrap();
    step().await;
    let bogus = TransitionRequest {
        to_state: "done".into(),
        trigger: "bogus".into(),
        state_data: Some(json!({ "rejected": true })),
    };
    assert!(c.record_transition("g", &bogus).await.is_err());
    step().await;
    let handoff = TransitionRequest {
        to_state: "transferring".into(),
        trigger: "handoff".into(),
        state_data: None,
    };
    let pending = c.begin_transition("g", &handoff).await.unwrap();
    step().await;

    // The inspector aborts it, and rolls back to the checkpoint, each with a reason.
    let abort = raw(
        "POST",
        &format!(
            "{url}/v1/inspector/agents/g/transitions/{}/abort",
            pending.pending_transition.id
        ),
        &[("content-type", "application/json")],
        r#"{"reason":"stuck handoff"}"#,
    )
    .await;
    assert_eq!(abort.status, 200, "{:?}", abort.body);
    step().await;
    let rollback = |reason: &str| {
        let body = json!({ "checkpoint_id": cp.checkpoint_id, "reason": reason }).to_string();
        let url = format!("{url}/v1/inspector/agents/g/rollback");
        async move { raw("POST", &url, &[("content-type", "application/json")], body).await }
    };
    let empty = rollback(" ").await;
    assert_eq!(
        (empty.status, empty.error_code()),
        (400, "malformed".to_string())
    );
    let back = rollback("undo the bad turn").await;
    assert_eq!(back.status, 200, "{:?}", back.body);
    assert_eq!(back.json()["transition"]["reason"], "undo the bad turn");
    let state = c.load_state("g").await.unwrap().unwrap();
    assert_eq!(state.state_name, "greeting");

    let expected = [
        "transition user_message ok",
        "message user",
        "message assistant",
        "checkpoint",
        "transition bogus refused",
        "transition handoff refused",
        "transition rollback ok",
    ];
    for round in ["with a backlog", "all in the backend"] {
        let whole = c.timeline("g", None, 1000).await.unwrap();
        assert_eq!(kinds(&whole.entries), expected, "{round}");
        assert_eq!(whole.next_cursor, None);
        let refused = whole.entries[4].transition.as_ref().unwrap();
        assert!(
            refused.error.as_deref().unwrap_or("").contains("bogus"),
            "{refused:?}"
        );
        assert_eq!(refused.to_state, "done");
        assert_eq!(
            refused.state_data,
            Some(json!({ "rejected": true })),
            "the rejected payload is kept"
        );
        let aborted = whole.entries[5].transition.as_ref().unwrap();
        assert_eq!(aborted.reason.as_deref(), Some("stuck handoff"));
        // Paged two at a time, the same entries.
        let mut paged = Vec::new();
        let mut cursor = None;
        loop {
            let page = c.timeline("g", cursor.as_deref(), 2).await.unwrap();
            paged.extend(page.entries);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(paged, whole.entries, "{round}");
        drained(&c).await;
    }
    let bad = raw(
        "GET",
        &format!("{url}/v1/agents/g/timeline?cursor=x"),
        &[],
        "",
    )
    .await;
    assert_eq!(bad.status, 400);
    let none = raw("GET", &format!("{url}/v1/agents/nobody/timeline"), &[], "").await;
    assert_eq!(none.status, 404);

    // A thread of three checkpoints; forked from the first, which has one message.
    let mut parent: Option<String> = None;
    for (i, id) in ["01", "02", "03"].iter().enumerate() {
        let v = (i + 1).to_string();
        let blob = thread_blob("messages", &v, msgpack_list("m", 0, i + 1), None);
        let put = thread_put(id, parent.as_deref(), &[("messages", &v)], vec![blob]);
        c.put_thread_checkpoint("th", &put).await.unwrap();
        parent = Some(id.to_string());
    }
    let fork = raw(
        "POST",
        &format!("{url}/v1/inspector/threads/th/fork"),
        &[("content-type", "application/json")],
        r#"{"checkpoint_id":"01","reason":"try again from the start"}"#,
    )
    .await;
    assert_eq!(fork.status, 200, "{:?}", fork.body);
    let forked = fork.json()["checkpoint_id"].as_str().unwrap().to_string();
    let history = c.thread_history("th", "", None, 100).await.unwrap();
    let tree: Vec<(String, Option<String>)> = history
        .checkpoints
        .iter()
        .map(|h| (h.checkpoint_id.clone(), h.parent_checkpoint_id.clone()))
        .collect();
    assert_eq!(
        tree,
        [
            (forked.clone(), Some("01".to_string())),
            ("03".into(), Some("02".into())),
            ("02".into(), Some("01".into())),
            ("01".into(), None),
        ]
    );
    assert_eq!(history.checkpoints[0].metadata["source"], "fork");
    assert_eq!(
        history.checkpoints[0].metadata["fork_reason"],
        "try again from the start"
    );
    // The latest is the fork, with the first checkpoint's values, decoded.
    let view = c.thread_view("th", "", None).await.unwrap().unwrap();
    assert_eq!(view.checkpoint_id, forked);
    assert_eq!(view.channels["messages"].value.value, Some(json!(["m0"])));
    assert_eq!(
        view.checkpoint.value.as_ref().unwrap()["id"],
        Value::from(forked.clone())
    );
    let old = c.thread_view("th", "", Some("03")).await.unwrap().unwrap();
    assert_eq!(
        old.channels["messages"].value.value,
        Some(json!(["m0", "m1", "m2"]))
    );
    let missing = raw(
        "POST",
        &format!("{url}/v1/inspector/threads/th/fork"),
        &[("content-type", "application/json")],
        r#"{"checkpoint_id":"zz","reason":"r"}"#,
    )
    .await;
    assert_eq!(missing.status, 404);

    // The page, under its policy.
    let page = raw("GET", &format!("{url}/ui"), &[], "").await;
    assert_eq!(page.status, 200);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let script = raw("GET", &format!("{url}/ui/app.js"), &[], "").await;
    assert!(script.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let info = raw("GET", &format!("{url}/v1/inspector"), &[], "").await;
    assert_eq!(info.json()["ui_writes"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ui_writes_the_inspector_only_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (sidecar, _) = start_with(Backend::Embedded, "inspector_ro", dir.path(), &[]).await;
    let c = sidecar.client();
    c.save_state("g", &save(Some("greeter"), "idle"), None)
        .await
        .unwrap();
    let cp = c.checkpoint("g", None).await.unwrap();
    let url = sidecar.url();
    let body = json!({ "checkpoint_id": cp.checkpoint_id, "reason": "r" }).to_string();
    for path in [
        "/v1/inspector/agents/g/rollback".to_string(),
        "/v1/inspector/agents/g/transitions/t/abort".to_string(),
        "/v1/inspector/threads/g/fork".to_string(),
    ] {
        let r = raw(
            "POST",
            &format!("{url}{path}"),
            &[("content-type", "application/json")],
            body.clone(),
        )
        .await;
        assert_eq!(
            (r.status, r.error_code()),
            (403, "ui_writes_disabled".to_string()),
            "{path}"
        );
    }
    let info = raw("GET", &format!("{url}/v1/inspector"), &[], "").await;
    assert_eq!(info.json()["ui_writes"], false);
    let versions: BTreeSet<u64> = [c.load_state("g").await.unwrap().unwrap().version].into();
    assert_eq!(versions, [1].into(), "nothing changed");
}
