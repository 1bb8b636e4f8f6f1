//! Crash-consistency harness: concurrent writers run a mixed workload (saves, one-step
//! transitions, multi-step transitions begun then completed or aborted, message appends,
//! checkpoints and rollbacks, transfers, batches) while the sidecar is killed (`kill -9`)
//! at random moments and restarted, round after round.
//!
//! Each writer owns its agents, so it knows exactly what every acknowledged call made of
//! them: each version's state (name, data, pending transition), each log entry, message
//! and checkpoint. After every restart the harness reads back every agent's state and
//! what was written since the round began (every tenth round and at the end: everything,
//! checkpoints too), and fails on an acknowledged write missing or different, a version
//! gone backwards, or a call cut off by the kill that shows half done (it must show wholly
//! or not at all). At the end, once flushed, MongoDB must hold exactly what the sidecar
//! serves.
//!
//! Power cuts: the same workload and checks with the data dir on the fault-injecting
//! filesystem of `testkit/faultfs` (embedded store), the power cut in each round's fault
//! mode at the moment of the kill, so that what was not made durable is dropped too
//! (`chaos_power_cut::*`, 10 rounds per mode by default; `tests/power_cut.rs` has more
//! rounds of a smaller workload).
//!
//! Seeded: it prints its seed; `AGENTSTATE_TEST_SEED=<seed>` replays the same choices
//! (the kill moments are times, so the interleaving still varies). `AGENTSTATE_CHAOS_ROUNDS`
//! sets the rounds (default 20); `AGENTSTATE_SOAK_SECS` keeps going for that long (soak
//! mode; with both set, whichever ends first), e.g.
//! `AGENTSTATE_SOAK_SECS=600 cargo test --test chaos chaos::mongo -- --nocapture`.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentstate_faultfs::{CutMode, FaultFs};
use agentstate_protocol::{
    BatchOperation, BatchRequest, Client, ClientError, NewMessage, PersistedState,
    SaveStateRequest, StatePersistence, StateTransition, TransferRequest, TransitionRequest,
};
use common::{eventually, find_all, seed, start_with, Backend};
use mongodb::bson::{doc, Bson, Document};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};

const WRITERS: usize = 6;
const AGENTS_PER_WRITER: usize = 4;
/// Operations in one batch, at most.
const BATCH_OPS_MAX: usize = 4;
/// Messages in one append, at most.
const APPEND_MESSAGES_MAX: usize = 3;
/// Rounds between progress lines.
const PROGRESS_EVERY_ROUNDS: usize = 50;
/// Rounds between full checks. In between, a check reads each agent's state and the log
/// and conversation from where the round began: reading every agent's whole history
/// after every kill would make a long soak quadratic.
const FULL_CHECK_EVERY_ROUNDS: usize = 10;

fn agent(w: usize, i: usize) -> String {
    format!("w{w}-a{i}")
}

/// The `n` of a document the harness wrote: every write that sets data sets
/// `{"n": <unique>, "w": <writer>}`, so `n` tells the versions' data apart.
fn n_of(d: &Value) -> Option<u64> {
    d.get("n").and_then(Value::as_u64)
}

/// A multi-step transition begun and not finished.
#[derive(Debug, Clone, PartialEq)]
struct Pending {
    id: String,
    to_state: String,
    /// The `n` of the data given at `begin`, if any.
    n: Option<u64>,
}

/// An agent's state at one version, as far as the harness tells states apart.
#[derive(Debug, Clone, PartialEq)]
struct State {
    version: u64,
    state_name: String,
    n: Option<u64>,
    pending: Option<Pending>,
}

impl State {
    fn of(s: &PersistedState) -> State {
        State {
            version: s.version,
            state_name: s.state_name.clone(),
            n: n_of(&s.state_data),
            pending: s.pending_transition.as_ref().map(|p| Pending {
                id: p.id.clone(),
                to_state: p.to_state.clone(),
                n: p.state_data.as_ref().and_then(n_of),
            }),
        }
    }
}

/// One entry of the transition log, as acknowledged.
#[derive(Debug, Clone, PartialEq)]
struct Logged {
    /// Known when the answer carried it (a batch's answer does not).
    id: Option<String>,
    to_state: String,
    trigger: String,
    success: bool,
}

impl Logged {
    fn matches(&self, t: &StateTransition) -> bool {
        self.id.as_ref().is_none_or(|id| *id == t.id)
            && self.to_state == t.to_state
            && self.trigger == t.trigger
            && self.success == t.success
    }
}

/// What the sidecar acknowledged for one agent.
#[derive(Debug, Clone, Default)]
struct Acked {
    /// Its state at the highest acknowledged version.
    state: Option<State>,
    transitions: BTreeMap<u64, Logged>,
    messages: BTreeMap<u64, String>,
    /// Checkpoint id -> the state it captured.
    checkpoints: BTreeMap<String, State>,
}

/// A call the kill cut off: it may have happened or not, but wholly or not at all.
#[derive(Debug, Clone)]
struct InDoubt {
    what: String,
    /// Each agent it changes, with its version before the call and after it.
    versions: Vec<(String, u64, u64)>,
}

#[derive(Default)]
struct Ledger {
    agents: BTreeMap<String, Acked>,
    /// Per writer, its call without an answer (a writer stops at the first).
    in_doubt: BTreeMap<usize, InDoubt>,
    /// Transfers acknowledged: id -> target.
    transfers_acked: BTreeMap<String, String>,
    /// Transfers tried this round, acknowledged or not: id -> target.
    transfers_tried: BTreeMap<String, String>,
    /// Acknowledged calls by kind (for appends and batches, also what they held).
    counts: BTreeMap<&'static str, u64>,
}

type Shared = Arc<Mutex<Ledger>>;

/// What a writer knows of one of its agents. Exact: no one else writes it, and each round
/// starts from what the sidecar serves after the restart.
#[derive(Debug, Clone, Default)]
struct Model {
    state: Option<State>,
    transition_seq: u64,
    message_seq: u64,
}

impl Model {
    fn version(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| s.version)
    }

    fn pending(&self) -> Option<&Pending> {
        self.state.as_ref().and_then(|s| s.pending.as_ref())
    }

    /// The state, one version on; the agent exists.
    fn bump(&mut self) -> &mut State {
        let s = self.state.as_mut().expect("only existing agents change");
        s.version += 1;
        s
    }

    fn put(&mut self, state_name: &str, n: u64) {
        self.state = Some(State {
            version: self.version() + 1,
            state_name: state_name.to_string(),
            n: Some(n),
            // A save replaces the state, a pending transition with it.
            pending: None,
        });
    }

    /// A one-step transition; its log entry's seq.
    fn transition(&mut self, to_state: &str, n: Option<u64>) -> u64 {
        let s = self.bump();
        s.state_name = to_state.to_string();
        s.n = n.or(s.n);
        self.transition_seq += 1;
        self.transition_seq
    }

    /// Appends `k` messages; their seqs.
    fn append(&mut self, k: usize) -> Vec<u64> {
        self.bump();
        let first = self.message_seq + 1;
        self.message_seq += k as u64;
        (first..=self.message_seq).collect()
    }
}

/// What the sidecar serves about one agent: its state, its log and conversation after
/// the seqs in `since`, and its checkpoints when read.
#[derive(Debug, Default)]
struct Observed {
    since: Since,
    state: Option<State>,
    transitions: BTreeMap<u64, StateTransition>,
    messages: BTreeMap<u64, String>,
    checkpoints: Option<BTreeMap<String, State>>,
}

/// How much of an agent's history to read: the log and conversation after these seqs.
#[derive(Debug, Clone, Copy, Default)]
struct Since {
    transition_seq: u64,
    message_seq: u64,
}

impl Observed {
    fn version(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| s.version)
    }

    fn model(&self) -> Model {
        Model {
            state: self.state.clone(),
            transition_seq: (self.transitions.keys().last().copied())
                .unwrap_or(self.since.transition_seq),
            message_seq: (self.messages.keys().last().copied()).unwrap_or(self.since.message_seq),
        }
    }
}

/// Reads an agent's state, its log and conversation after `since`, and (`full`) its
/// checkpoints.
async fn observe(client: &Client, a: &str, since: Since, full: bool) -> Observed {
    fn fail(a: &str, what: &str, e: ClientError) -> ! {
        panic!("read {what} of {a}: {e}")
    }
    let mut o = Observed {
        since,
        ..Observed::default()
    };
    let Some(s) = client
        .load_state(a)
        .await
        .unwrap_or_else(|e| fail(a, "state", e))
    else {
        return o;
    };
    o.state = Some(State::of(&s));
    loop {
        let after = (o.transitions.keys().last().copied()).unwrap_or(since.transition_seq);
        let page = client
            .get_transitions(a, after, 1000)
            .await
            .unwrap_or_else(|e| fail(a, "transitions", e));
        if page.is_empty() {
            break;
        }
        o.transitions.extend(page.into_iter().map(|t| (t.seq, t)));
    }
    loop {
        let after = (o.messages.keys().last().copied()).unwrap_or(since.message_seq);
        let page = client
            .get_messages(a, after, 1000)
            .await
            .unwrap_or_else(|e| fail(a, "messages", e));
        if page.is_empty() {
            break;
        }
        o.messages
            .extend(page.into_iter().map(|m| (m.seq, m.content)));
    }
    if !full {
        return o;
    }
    let checkpoints = client
        .list_checkpoints(a)
        .await
        .unwrap_or_else(|e| fail(a, "checkpoints", e));
    let mut read = BTreeMap::new();
    for c in checkpoints {
        assert_eq!(
            c.version, c.state.version,
            "{a}: checkpoint {} of v{} holds v{}",
            c.checkpoint_id, c.version, c.state.version
        );
        read.insert(c.checkpoint_id, State::of(&c.state));
    }
    o.checkpoints = Some(read);
    o
}

/// Observes every writer's agents: all of it (`models` None), or from where the writers'
/// `models` stood.
async fn observe_all(client: &Client, models: Option<&[Vec<Model>]>) -> BTreeMap<String, Observed> {
    let mut seen = BTreeMap::new();
    for w in 0..WRITERS {
        for i in 0..AGENTS_PER_WRITER {
            let a = agent(w, i);
            let since = models.map_or(Since::default(), |m| Since {
                transition_seq: m[w][i].transition_seq,
                message_seq: m[w][i].message_seq,
            });
            let o = observe(client, &a, since, models.is_none()).await;
            seen.insert(a, o);
        }
    }
    seen
}

/// What the checks saw, over all rounds.
#[derive(Debug, Default)]
struct Stats {
    /// Acknowledged `begin`s found still pending after a kill.
    pending_after_kill: u64,
    /// Calls cut off by a kill that turned out to have happened, or not.
    in_doubt_applied: u64,
    in_doubt_not_applied: u64,
}

/// Every acknowledged write is there as acknowledged; every call cut off by the kill
/// happened wholly or not at all.
fn verify(ledger: &Ledger, seen: &BTreeMap<String, Observed>, round: usize, stats: &mut Stats) {
    for (a, acked) in &ledger.agents {
        let Some(want) = &acked.state else { continue };
        let o = &seen[a];
        let Some(got) = &o.state else {
            panic!(
                "round {round}: {a} lost: v{} was acknowledged, the sidecar has no such agent",
                want.version
            );
        };
        assert!(
            got.version >= want.version,
            "round {round}: {a} went back to v{} after v{} was acknowledged",
            got.version,
            want.version
        );
        if got.version == want.version {
            assert_eq!(
                got, want,
                "round {round}: {a} v{} is not the state acknowledged",
                want.version
            );
            if want.pending.is_some() {
                stats.pending_after_kill += 1;
            }
        }
        for (seq, logged) in acked.transitions.range(o.since.transition_seq + 1..) {
            match o.transitions.get(seq) {
                None => {
                    panic!("round {round}: {a} transition #{seq} lost (acknowledged: {logged:?})")
                }
                Some(t) => assert!(
                    logged.matches(t),
                    "round {round}: {a} transition #{seq} is {t:?}, acknowledged as {logged:?}"
                ),
            }
        }
        for (seq, content) in acked.messages.range(o.since.message_seq + 1..) {
            assert_eq!(
                o.messages.get(seq),
                Some(content),
                "round {round}: {a} message #{seq} lost or changed"
            );
        }
        let Some(checkpoints) = &o.checkpoints else {
            continue;
        };
        for (id, state) in &acked.checkpoints {
            assert_eq!(
                checkpoints.get(id),
                Some(state),
                "round {round}: {a} checkpoint {id} lost or changed"
            );
        }
    }
    for (w, d) in &ledger.in_doubt {
        let before = d.versions.iter().all(|(a, v, _)| seen[a].version() == *v);
        let after = d.versions.iter().all(|(a, _, v)| seen[a].version() == *v);
        let now: Vec<(&String, u64)> = d
            .versions
            .iter()
            .map(|(a, _, _)| (a, seen[a].version()))
            .collect();
        assert!(
            before || after,
            "round {round}: w{w}'s {} cut off by the kill shows half done: (agent, before, after) {:?}, now {now:?}",
            d.what,
            d.versions
        );
        // Calls that change no version (a checkpoint) count as not applied.
        if after && !before {
            stats.in_doubt_applied += 1;
        } else {
            stats.in_doubt_not_applied += 1;
        }
    }
}

/// Every transfer tried this round happened wholly or not at all; acknowledged ones did.
async fn verify_transfers(client: &Client, ledger: &Ledger, round: usize) {
    for (id, target) in &ledger.transfers_tried {
        let t = client.get_transfer(id).await.unwrap();
        let dst = client.load_state(target).await.unwrap();
        assert_eq!(
            t.is_some(),
            dst.is_some(),
            "round {round}: transfer {id} is half done"
        );
        if ledger.transfers_acked.contains_key(id) {
            assert!(
                t.is_some(),
                "round {round}: acknowledged transfer {id} lost"
            );
        }
    }
}

/// One writer: random calls on its own agents until the sidecar dies.
struct Writer {
    client: Client,
    w: usize,
    round: usize,
    rng: StdRng,
    ledger: Shared,
    models: Vec<Model>,
    /// Counts this round's writes; with the round, makes `n` and contents unique.
    n: u64,
}

impl Writer {
    async fn run(mut self) {
        while self.step().await {}
    }

    fn fresh(&mut self) -> u64 {
        self.n += 1;
        self.round as u64 * 1_000_000 + self.n
    }

    fn data(&self, n: u64) -> Value {
        json!({ "n": n, "w": self.w })
    }

    /// One random call; `false` once the sidecar is gone.
    async fn step(&mut self) -> bool {
        let i = self.rng.gen_range(0..AGENTS_PER_WRITER);
        let roll = self.rng.gen_range(0..100);
        if self.models[i].state.is_none() {
            return if roll < 80 {
                self.save(i).await
            } else {
                self.batch().await
            };
        }
        // Transitions and transfers wait for a pending transition to finish.
        let pending = self.models[i].pending().is_some();
        match roll {
            0..20 => self.save(i).await,
            20..41 if pending => self.finish(i).await,
            20..33 => self.transition(i).await,
            33..41 => self.begin(i).await,
            41..63 => self.append(i).await,
            63..70 => self.checkpoint(i).await,
            70..75 => self.rollback(i).await,
            75..81 if pending => self.finish(i).await,
            75..81 => self.transfer(i).await,
            _ => self.batch().await,
        }
    }

    /// Notes the call about to go out, in case the kill cuts it off.
    fn doubt(&self, what: String, versions: Vec<(String, u64, u64)>) {
        let d = InDoubt { what, versions };
        self.ledger.lock().unwrap().in_doubt.insert(self.w, d);
    }

    /// After a failed call: `false` (stop) when the sidecar is gone or not ready. Any
    /// other refusal means the sidecar and the harness disagree about an agent whose every
    /// change the harness knows: the test fails.
    fn failed(&self, what: &str, e: ClientError) -> bool {
        match &e {
            ClientError::Api { status, .. } if *status != 503 => {
                panic!("round {}: w{}: {what} refused: {e}", self.round, self.w)
            }
            _ => false,
        }
    }

    /// A value in an answer the harness could predict.
    fn check_answer<T: PartialEq + std::fmt::Debug>(&self, what: &str, got: T, want: T) {
        assert_eq!(
            got, want,
            "round {}: w{}: {what} answered {got:?}, expected {want:?}",
            self.round, self.w
        );
    }

    /// Records an acknowledged call on agent `i`, now as `after`.
    fn acked(
        &mut self,
        i: usize,
        after: Model,
        kind: &'static str,
        log: impl FnOnce(&mut Acked),
    ) -> bool {
        let mut l = self.ledger.lock().unwrap();
        l.in_doubt.remove(&self.w);
        *l.counts.entry(kind).or_default() += 1;
        let e = l.agents.entry(agent(self.w, i)).or_default();
        e.state = after.state.clone();
        log(e);
        drop(l);
        self.models[i] = after;
        true
    }

    async fn save(&mut self, i: usize) -> bool {
        let a = agent(self.w, i);
        let n = self.fresh();
        let name = format!("s{}", n % 7);
        let before = self.models[i].version();
        let mut after = self.models[i].clone();
        after.put(&name, n);
        // If-Match sometimes: the harness knows the version exactly.
        let if_match = (before > 0 && self.rng.gen_bool(0.5)).then_some(before);
        self.doubt(
            format!("save {a} n={n}"),
            vec![(a.clone(), before, before + 1)],
        );
        let req = SaveStateRequest {
            agent_type: None,
            state_name: name,
            state_data: Some(self.data(n)),
            metadata: None,
        };
        match self.client.save_state(&a, &req, if_match).await {
            Ok(v) => {
                self.check_answer("save", v, after.version());
                self.acked(i, after, "saves", |_| {})
            }
            Err(e) => self.failed("save", e),
        }
    }

    async fn transition(&mut self, i: usize) -> bool {
        let a = agent(self.w, i);
        let n = self.fresh();
        let to = format!("t{}", n % 5);
        let data = self.rng.gen_bool(0.5).then_some(n);
        let before = self.models[i].version();
        let mut after = self.models[i].clone();
        let seq = after.transition(&to, data);
        self.doubt(
            format!("transition {a} to {to}"),
            vec![(a.clone(), before, before + 1)],
        );
        let req = TransitionRequest {
            to_state: to.clone(),
            trigger: "step".into(),
            state_data: data.map(|n| self.data(n)),
        };
        match self.client.record_transition(&a, &req).await {
            Ok(r) => {
                self.check_answer(
                    "transition",
                    (r.version, r.transition.seq),
                    (after.version(), seq),
                );
                let logged = Logged {
                    id: Some(r.transition.id),
                    to_state: to,
                    trigger: "step".into(),
                    success: true,
                };
                self.acked(i, after, "transitions", |e| {
                    e.transitions.insert(seq, logged);
                })
            }
            Err(e) => self.failed("transition", e),
        }
    }

    async fn begin(&mut self, i: usize) -> bool {
        let a = agent(self.w, i);
        let n = self.fresh();
        let to = format!("m{}", n % 4);
        let data = self.rng.gen_bool(0.5).then_some(n);
        let before = self.models[i].version();
        self.doubt(
            format!("begin {a} to {to}"),
            vec![(a.clone(), before, before + 1)],
        );
        let req = TransitionRequest {
            to_state: to.clone(),
            trigger: "plan".into(),
            state_data: data.map(|n| self.data(n)),
        };
        match self.client.begin_transition(&a, &req).await {
            Ok(r) => {
                self.check_answer(
                    "begin",
                    (r.version, &r.pending_transition.to_state),
                    (before + 1, &to),
                );
                let mut after = self.models[i].clone();
                after.bump().pending = Some(Pending {
                    id: r.pending_transition.id,
                    to_state: to,
                    n: data,
                });
                self.acked(i, after, "multi-step begins", |_| {})
            }
            Err(e) => self.failed("begin", e),
        }
    }

    /// Completes (with new data or not) or aborts the pending transition.
    async fn finish(&mut self, i: usize) -> bool {
        let a = agent(self.w, i);
        let p = self.models[i]
            .pending()
            .cloned()
            .expect("a pending transition");
        let n = self.fresh();
        let complete = self.rng.gen_bool(0.6);
        let data = (complete && self.rng.gen_bool(0.5)).then_some(n);
        let before = self.models[i].version();
        let mut after = self.models[i].clone();
        let s = after.bump();
        s.pending = None;
        if complete {
            s.state_name = p.to_state.clone();
            s.n = data.or(p.n).or(s.n);
        }
        after.transition_seq += 1;
        let seq = after.transition_seq;
        let what = if complete { "complete" } else { "abort" };
        self.doubt(
            format!("{what} {a} {}", p.id),
            vec![(a.clone(), before, before + 1)],
        );
        let r = if complete {
            let data = data.map(|n| self.data(n));
            self.client.complete_transition(&a, &p.id, data).await
        } else {
            let reason = Some(format!("n{n}"));
            self.client.abort_transition(&a, &p.id, reason).await
        };
        match r {
            Ok(r) => {
                self.check_answer(
                    what,
                    (r.version, r.transition.seq, &r.transition.id),
                    (after.version(), seq, &p.id),
                );
                let logged = Logged {
                    id: Some(p.id),
                    to_state: p.to_state,
                    trigger: "plan".into(),
                    success: complete,
                };
                let kind = if complete {
                    "multi-step completes"
                } else {
                    "multi-step aborts"
                };
                self.acked(i, after, kind, |e| {
                    e.transitions.insert(seq, logged);
                })
            }
            Err(e) => self.failed(what, e),
        }
    }

    async fn append(&mut self, i: usize) -> bool {
        let a = agent(self.w, i);
        let k = self.rng.gen_range(1..=APPEND_MESSAGES_MAX);
        let n = self.fresh();
        let contents: Vec<String> = (0..k)
            .map(|j| format!("r{}-w{}-n{n}-{j}", self.round, self.w))
            .collect();
        let before = self.models[i].version();
        let mut after = self.models[i].clone();
        let seqs = after.append(k);
        self.doubt(
            format!("append to {a}"),
            vec![(a.clone(), before, before + 1)],
        );
        let msgs = contents
            .iter()
            .map(|c| NewMessage {
                role: "user".into(),
                content: c.clone(),
                metadata: Default::default(),
            })
            .collect();
        match self.client.append_messages(&a, msgs, None).await {
            Ok(r) => {
                self.check_answer("append", (r.version, &r.seqs), (after.version(), &seqs));
                *self
                    .ledger
                    .lock()
                    .unwrap()
                    .counts
                    .entry("messages")
                    .or_default() += k as u64;
                self.acked(i, after, "appends", |e| {
                    e.messages.extend(seqs.into_iter().zip(contents));
                })
            }
            Err(e) => self.failed("append", e),
        }
    }

    async fn checkpoint(&mut self, i: usize) -> bool {
        let a = agent(self.w, i);
        let n = self.fresh();
        let v = self.models[i].version();
        self.doubt(format!("checkpoint of {a}"), vec![(a.clone(), v, v)]);
        let label = self.rng.gen_bool(0.5).then(|| format!("c{n}"));
        match self.client.checkpoint(&a, label).await {
            Ok(r) => {
                self.check_answer("checkpoint", r.version, v);
                let state = self.models[i].state.clone().expect("the agent exists");
                let after = self.models[i].clone();
                self.acked(i, after, "checkpoints", |e| {
                    e.checkpoints.insert(r.checkpoint_id, state);
                })
            }
            Err(e) => self.failed("checkpoint", e),
        }
    }

    /// Rolls back to one of the agent's acknowledged checkpoints (takes one if none).
    async fn rollback(&mut self, i: usize) -> bool {
        let a = agent(self.w, i);
        let taken: Vec<(String, State)> = {
            let l = self.ledger.lock().unwrap();
            l.agents
                .get(&a)
                .map(|e| e.checkpoints.clone().into_iter().collect())
                .unwrap_or_default()
        };
        if taken.is_empty() {
            return self.checkpoint(i).await;
        }
        let (id, cp) = taken[self.rng.gen_range(0..taken.len())].clone();
        let before = self.models[i].version();
        let mut after = self.models[i].clone();
        let s = after.bump();
        s.state_name = cp.state_name.clone();
        s.n = cp.n;
        s.pending = None;
        after.transition_seq += 1;
        let seq = after.transition_seq;
        let if_match = self.rng.gen_bool(0.5).then_some(before);
        self.doubt(
            format!("rollback of {a} to {id}"),
            vec![(a.clone(), before, before + 1)],
        );
        match self.client.rollback(&a, &id, if_match).await {
            Ok(r) => {
                self.check_answer(
                    "rollback",
                    (r.version, r.transition.seq, &r.transition.to_state),
                    (after.version(), seq, &cp.state_name),
                );
                let logged = Logged {
                    id: Some(r.transition.id),
                    to_state: cp.state_name,
                    trigger: "rollback".into(),
                    success: true,
                };
                self.acked(i, after, "rollbacks", |e| {
                    e.transitions.insert(seq, logged);
                })
            }
            Err(e) => self.failed("rollback", e),
        }
    }

    async fn transfer(&mut self, i: usize) -> bool {
        let a = agent(self.w, i);
        let n = self.fresh();
        let id = format!("x-r{}-w{}-n{n}", self.round, self.w);
        let target = format!("t-{id}");
        let before = self.models[i].version();
        let mut after = self.models[i].clone();
        // An untyped source stays in its state; the move is logged.
        let from_state = after.bump().state_name.clone();
        after.transition_seq += 1;
        let seq = after.transition_seq;
        self.ledger
            .lock()
            .unwrap()
            .transfers_tried
            .insert(id.clone(), target.clone());
        self.doubt(
            format!("transfer {id}"),
            vec![(a.clone(), before, before + 1)],
        );
        let req = TransferRequest {
            transfer_id: id.clone(),
            from_agent: a.clone(),
            to_agent: target.clone(),
            trigger: "handoff".into(),
            to_trigger: None,
            to_agent_type: Some("haiku".into()),
            context: Some(json!({ "round": self.round })),
            messages_max: Some(5),
        };
        match self.client.transfer(&req).await {
            Ok(t) => {
                self.check_answer("transfer", t.from_version, after.version());
                let logged = Logged {
                    id: None,
                    to_state: from_state,
                    trigger: "handoff".into(),
                    success: true,
                };
                self.ledger
                    .lock()
                    .unwrap()
                    .transfers_acked
                    .insert(id, target);
                self.acked(i, after, "transfers", |e| {
                    e.transitions.insert(seq, logged);
                })
            }
            Err(e) => self.failed("transfer", e),
        }
    }

    /// Puts, transitions and appends over the writer's agents, all or nothing.
    async fn batch(&mut self) -> bool {
        let k = self.rng.gen_range(2..=BATCH_OPS_MAX);
        let mut sim = self.models.clone();
        let mut operations = Vec::new();
        let mut versions = Vec::new();
        let mut logged: Vec<(usize, u64, Logged)> = Vec::new();
        let mut messages: Vec<(usize, u64, String)> = Vec::new();
        for _ in 0..k {
            let i = self.rng.gen_range(0..AGENTS_PER_WRITER);
            let agent_id = agent(self.w, i);
            let n = self.fresh();
            let m = &mut sim[i];
            let if_match = (m.version() > 0 && self.rng.gen_bool(0.3)).then_some(m.version());
            let op = if m.state.is_none() {
                0
            } else {
                self.rng.gen_range(0..3)
            };
            match op {
                0 => {
                    let name = format!("b{}", n % 3);
                    m.put(&name, n);
                    operations.push(BatchOperation::Put {
                        agent_id,
                        if_match,
                        agent_type: None,
                        state_name: name,
                        state_data: Some(json!({ "n": n, "w": self.w })),
                        metadata: None,
                    });
                }
                1 if m.pending().is_none() => {
                    let to = format!("t{}", n % 5);
                    let data = self.rng.gen_bool(0.5).then_some(n);
                    let seq = m.transition(&to, data);
                    logged.push((
                        i,
                        seq,
                        Logged {
                            id: None,
                            to_state: to.clone(),
                            trigger: "batch".into(),
                            success: true,
                        },
                    ));
                    operations.push(BatchOperation::Transition {
                        agent_id,
                        if_match,
                        to_state: to,
                        trigger: "batch".into(),
                        state_data: data.map(|n| json!({ "n": n, "w": self.w })),
                    });
                }
                _ => {
                    let content = format!("r{}-w{}-n{n}-b", self.round, self.w);
                    let seq = m.append(1)[0];
                    messages.push((i, seq, content.clone()));
                    operations.push(BatchOperation::Messages {
                        agent_id,
                        if_match,
                        messages: vec![NewMessage {
                            role: "user".into(),
                            content,
                            metadata: Default::default(),
                        }],
                    });
                }
            }
            versions.push(m.version());
        }
        let touched: Vec<usize> = (0..AGENTS_PER_WRITER)
            .filter(|&i| sim[i].version() != self.models[i].version())
            .collect();
        self.doubt(
            format!("batch of {k}"),
            touched
                .iter()
                .map(|&i| (agent(self.w, i), self.models[i].version(), sim[i].version()))
                .collect(),
        );
        match self.client.batch(&BatchRequest { operations }).await {
            Ok(r) => {
                let got: Vec<u64> = r.results.iter().map(|r| r.version).collect();
                self.check_answer("batch", got, versions);
                let mut l = self.ledger.lock().unwrap();
                l.in_doubt.remove(&self.w);
                *l.counts.entry("batches").or_default() += 1;
                *l.counts.entry("batch operations").or_default() += k as u64;
                for &i in &touched {
                    l.agents.entry(agent(self.w, i)).or_default().state = sim[i].state.clone();
                }
                for (i, seq, t) in logged {
                    l.agents
                        .entry(agent(self.w, i))
                        .or_default()
                        .transitions
                        .insert(seq, t);
                }
                for (i, seq, c) in messages {
                    l.agents
                        .entry(agent(self.w, i))
                        .or_default()
                        .messages
                        .insert(seq, c);
                }
                drop(l);
                self.models = sim;
                true
            }
            Err(e) => self.failed("batch", e),
        }
    }
}

async fn chaos(backend: Backend) {
    run(backend, None).await;
}

/// The workload under power cuts in `mode` (see the module's doc).
async fn chaos_power_cut(mode: CutMode) {
    run(Backend::Embedded, Some(mode)).await;
}

async fn run(backend: Backend, power_cut: Option<CutMode>) {
    let seed = seed(&format!("chaos ({backend:?}, power cut {power_cut:?})"));
    let mut rng = StdRng::seed_from_u64(seed);
    let rounds: Option<usize> = std::env::var("AGENTSTATE_CHAOS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok());
    let soak = std::env::var("AGENTSTATE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    let default_rounds = if power_cut.is_some() { 10 } else { 20 };
    let rounds = rounds.or(soak.is_none().then_some(default_rounds));
    let dir = tempfile::tempdir().unwrap();
    // The data dir (`data`) is the mount; the sidecar's log beside it is not on it.
    let fs = match power_cut {
        None => None,
        Some(_) if !std::path::Path::new("/dev/fuse").exists() => {
            eprintln!("chaos: /dev/fuse is missing on this machine: no power-cut rounds run");
            return;
        }
        Some(_) => {
            let mnt = dir.path().join("data");
            std::fs::create_dir(&mnt).unwrap();
            Some(FaultFs::mount(&mnt).unwrap_or_else(|e| {
                panic!("cannot mount the fault-injecting filesystem (needs root): {e}")
            }))
        }
    };
    let (mut sidecar, mongo) =
        start_with(backend, "chaos", dir.path(), &["--flush-interval-ms", "50"]).await;
    let mut dropped = (0u64, 0u64);
    let ledger: Shared = Arc::default();
    let mut models = vec![vec![Model::default(); AGENTS_PER_WRITER]; WRITERS];
    let mut stats = Stats::default();
    let started = Instant::now();
    let mut round = 0;
    // Rounds, or as long as the soak lasts, or whichever ends first when both are set.
    while rounds.is_none_or(|r| round < r) && soak.is_none_or(|d| started.elapsed() < d) {
        let mut tasks = Vec::new();
        for (w, models) in models.iter().enumerate() {
            let writer = Writer {
                client: sidecar.client().with_timeout(Duration::from_secs(3)),
                w,
                round,
                rng: StdRng::seed_from_u64(rng.gen()),
                ledger: ledger.clone(),
                models: models.clone(),
                n: 0,
            };
            tasks.push(tokio::spawn(writer.run()));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(30..400))).await;
        sidecar.kill9();
        for t in tasks {
            // A writer's failed check fails the test with its own message.
            t.await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        }
        if let (Some(fs), Some(mode)) = (&fs, power_cut) {
            let report = fs.cut(mode, rng.gen());
            dropped.0 += report.bytes_dropped;
            dropped.1 += report.pages_dropped;
        }
        sidecar.restart().await;
        let client = sidecar.client();
        let full = (round + 1) % FULL_CHECK_EVERY_ROUNDS == 0;
        let seen = observe_all(&client, (!full).then_some(&models[..])).await;
        let mut l = std::mem::take(&mut *ledger.lock().unwrap());
        verify(&l, &seen, round, &mut stats);
        verify_transfers(&client, &l, round).await;
        l.in_doubt.clear();
        l.transfers_tried.clear();
        *ledger.lock().unwrap() = l;
        models = (0..WRITERS)
            .map(|w| {
                (0..AGENTS_PER_WRITER)
                    .map(|i| seen[&agent(w, i)].model())
                    .collect()
            })
            .collect();
        round += 1;
        if round % PROGRESS_EVERY_ROUNDS == 0 {
            eprintln!("{round} rounds in {:?}", started.elapsed());
        }
    }
    let l = std::mem::take(&mut *ledger.lock().unwrap());
    let counts: Vec<String> = l.counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    eprintln!(
        "seed {seed}: {round} kill -9 rounds in {:?} ({backend:?}, power cut {power_cut:?}: {} bytes, {} pages dropped); acknowledged: {}; {} pending transitions found pending after a kill; calls cut off by a kill: {} applied, {} not; zero lost",
        started.elapsed(),
        dropped.0,
        dropped.1,
        counts.join(", "),
        stats.pending_after_kill,
        stats.in_doubt_applied,
        stats.in_doubt_not_applied,
    );

    // Once flushed, the backend holds exactly what the sidecar serves. A long run can
    // leave much to flush into a single-threaded test server.
    let c = sidecar.client();
    let drain = Duration::from_secs(60).max(Duration::from_millis(600) * round as u32);
    eventually(drain, "an empty backlog", || {
        let c = c.clone();
        async move { c.status().await.ok().filter(|s| s.backlog_agents == 0) }
    })
    .await;
    let seen = observe_all(&c, None).await;
    verify(&l, &seen, round, &mut Stats::default());
    for id in l.transfers_acked.keys() {
        assert!(
            c.get_transfer(id).await.unwrap().is_some(),
            "acknowledged transfer {id} lost"
        );
    }
    if let Some(mongo) = mongo {
        mongo_matches(&mongo.db().await, &seen, &l).await;
    }
}

fn bson_u64(b: Option<&Bson>) -> Option<u64> {
    match b? {
        Bson::Int32(v) => u64::try_from(*v).ok(),
        Bson::Int64(v) => u64::try_from(*v).ok(),
        Bson::Double(v) if v.fract() == 0.0 && *v >= 0.0 => Some(*v as u64),
        _ => None,
    }
}

/// An agent's state as MongoDB holds it (a document of `agent_states`, or a checkpoint's
/// `state`).
fn state_of_doc(d: &Document) -> State {
    let n = |d: Option<&Bson>| match d {
        Some(Bson::Document(d)) => bson_u64(d.get("n")),
        _ => None,
    };
    State {
        version: bson_u64(d.get("version")).expect("a version"),
        state_name: d.get_str("state_name").expect("a state_name").to_string(),
        n: n(d.get("state_data")),
        pending: match d.get("pending_transition") {
            Some(Bson::Document(p)) => Some(Pending {
                id: p.get_str("id").expect("an id").to_string(),
                to_state: p.get_str("to_state").expect("a to_state").to_string(),
                n: n(p.get("state_data")),
            }),
            _ => None,
        },
    }
}

/// MongoDB holds what the sidecar serves: each agent's state, whole log, conversation
/// and checkpoints, and every acknowledged transfer.
async fn mongo_matches(db: &mongodb::Database, seen: &BTreeMap<String, Observed>, l: &Ledger) {
    for (a, o) in seen {
        let d = find_all(db, "agent_states", doc! { "_id": a }).await;
        assert_eq!(
            d.first().map(state_of_doc),
            o.state,
            "{a}: agent_states in MongoDB differs from the sidecar"
        );
        let logged: BTreeMap<u64, Logged> =
            find_all(db, "state_transitions", doc! { "agent_id": a })
                .await
                .iter()
                .map(|d| {
                    let t = Logged {
                        id: Some(d.get_str("_id").unwrap().to_string()),
                        to_state: d.get_str("to_state").unwrap().to_string(),
                        trigger: d.get_str("trigger").unwrap().to_string(),
                        success: d.get_bool("success").unwrap(),
                    };
                    (bson_u64(d.get("seq")).unwrap(), t)
                })
                .collect();
        assert_eq!(
            logged.keys().collect::<Vec<_>>(),
            o.transitions.keys().collect::<Vec<_>>(),
            "{a}: state_transitions in MongoDB differ from the sidecar's log"
        );
        for (seq, t) in &logged {
            assert!(
                t.matches(&o.transitions[seq]),
                "{a}: transition #{seq} in MongoDB is {t:?}, the sidecar serves {:?}",
                o.transitions[seq]
            );
        }
        let messages: BTreeMap<u64, String> =
            find_all(db, "conversation_history", doc! { "agent_id": a })
                .await
                .iter()
                .map(|d| {
                    let seq = bson_u64(d.get("seq")).unwrap();
                    (seq, d.get_str("content").unwrap().to_string())
                })
                .collect();
        assert_eq!(
            messages, o.messages,
            "{a}: conversation_history in MongoDB differs from the sidecar"
        );
        let checkpoints: BTreeMap<String, State> =
            find_all(db, "checkpoints", doc! { "agent_id": a })
                .await
                .iter()
                .map(|d| {
                    let state = d.get_document("state").unwrap();
                    (d.get_str("_id").unwrap().to_string(), state_of_doc(state))
                })
                .collect();
        assert_eq!(
            Some(checkpoints),
            o.checkpoints,
            "{a}: checkpoints in MongoDB differ from the sidecar"
        );
    }
    for (id, target) in &l.transfers_acked {
        let t = find_all(db, "transfers", doc! { "_id": id }).await;
        assert_eq!(t.len(), 1, "transfer {id} missing in MongoDB");
        let dst = find_all(db, "agent_states", doc! { "_id": target }).await;
        assert_eq!(
            dst.len(),
            1,
            "transfer {id}'s target {target} missing in MongoDB"
        );
    }
}

both_backends!(chaos);

mod chaos_power_cut {
    use agentstate_faultfs::CutMode;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drop_all() {
        super::chaos_power_cut(CutMode::DropAll).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages() {
        super::chaos_power_cut(CutMode::Pages).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn torn_tail_512() {
        super::chaos_power_cut(CutMode::TornTail { sector: 512 }).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn torn_tail_4096() {
        super::chaos_power_cut(CutMode::TornTail { sector: 4096 }).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dir_prefix() {
        super::chaos_power_cut(CutMode::DirPrefix).await;
    }
}
