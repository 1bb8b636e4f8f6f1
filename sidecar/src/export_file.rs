//! The export file: agents and transfers as JSON Lines, written by `agentstate export`
//! and read by `agentstate import`.
//!
//! Every line is one JSON object whose `type` says what it is, in this order:
//! 1. `header`: `{"type": "header", "format": "agentstate-export", "version": 2,
//!    "created_at", "backend", "agentstate_version"}`;
//! 2. per agent, an `agent` line (`{"type": "agent", "state": {...}, "transition_seq",
//!    "message_seq"}`, the state as `GET /v1/agents/{id}` shows it), then its
//!    `transition`, `message` and `checkpoint` lines, each in `seq` (or age) order and
//!    each naming its `agent_id`; the entries are as the API shows them;
//!    A thread (an agent holding framework checkpoints) has, after those, its
//!    `thread_checkpoint` lines (oldest first), `thread_blob` lines (channel values as
//!    stored: a delta stays a delta, with `extends` and `root`) and `thread_write`
//!    lines, payloads in base64 (format version 2);
//! 3. `transfer` lines, as `GET /v1/transfers/{id}` shows them;
//! 4. `end`, with the counts of what came before: a file without it was cut short.
//!
//! An agent's history is on lines of its own, not in its `agent` line, so that no line
//! grows with a conversation: a reader holds one line, and one agent, at a time.
//! Readers ignore fields they do not know; a file of a newer format version is refused.
//!
//! Hazard: the reader trusts nothing: lines are bounded ([`LINE_BYTES_MAX`]), every
//! error names its line, and a file is only whole once its `end` line agrees with it.

use std::collections::HashSet;
use std::io::{self, BufRead, Read, Write};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{
    AgentRecord, Checkpoint, ExportedAgent, Message, PersistedState, StateTransition, StoredBlob,
    StoredWrite, ThreadCheckpoint, Transfer,
};

/// The `format` of the header line.
pub const FORMAT: &str = "agentstate-export";
/// The format version this build writes and the newest it reads (2: threads' framework
/// checkpoints).
pub const VERSION: u32 = 2;
/// Longest line read: a checkpoint line holds a whole state, which a request of the
/// largest body allowed (`--body-bytes-max`, 64 MiB at most) can make.
pub const LINE_BYTES_MAX: usize = 80 * 1024 * 1024;

/// The first line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub created_at: DateTime<Utc>,
    /// The backend it was exported from (`sqlite`, `mongodb`), for the reader's
    /// information.
    #[serde(default)]
    pub backend: String,
    #[serde(default)]
    pub agentstate_version: String,
}

impl Header {
    pub fn new(backend: &str, created_at: DateTime<Utc>) -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            created_at,
            backend: backend.into(),
            agentstate_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// What a file holds: the `end` line's fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub agents: u64,
    pub transitions: u64,
    pub messages: u64,
    pub checkpoints: u64,
    pub transfers: u64,
    #[serde(default)]
    pub thread_checkpoints: u64,
    #[serde(default)]
    pub thread_blobs: u64,
    #[serde(default)]
    pub thread_writes: u64,
}

impl Counts {
    fn add(&mut self, a: &ExportedAgent) {
        self.agents += 1;
        self.transitions += a.transitions.len() as u64;
        self.messages += a.messages.len() as u64;
        self.checkpoints += a.checkpoints.len() as u64;
        self.thread_checkpoints += a.thread.checkpoints.len() as u64;
        self.thread_blobs += a.thread.blobs.len() as u64;
        self.thread_writes += a.thread.writes.len() as u64;
    }
}

/// An `agent` line: the record without its history.
#[derive(Debug, Serialize, Deserialize)]
struct AgentLine<S> {
    state: S,
    transition_seq: u64,
    message_seq: u64,
}

/// A line as written: its `type`, then the fields of `body`.
#[derive(Serialize)]
struct Tagged<'a, T> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

/// A `message` line's body: a message does not name its agent, the line does.
#[derive(Serialize)]
struct MessageLine<'a> {
    agent_id: &'a str,
    #[serde(flatten)]
    message: &'a Message,
}

/// A `thread_blob` or `thread_write` line's body: neither names its thread, the line
/// does.
#[derive(Serialize, Deserialize)]
struct ThreadLine<T> {
    agent_id: String,
    #[serde(flatten)]
    item: T,
}

/// Writes an export file, line by line.
pub struct Writer<W: Write> {
    out: W,
    counts: Counts,
}

impl<W: Write> Writer<W> {
    /// Starts the file with its header.
    pub fn new(out: W, header: &Header) -> io::Result<Self> {
        let mut w = Writer {
            out,
            counts: Counts::default(),
        };
        w.line("header", header)?;
        Ok(w)
    }

    fn line<T: Serialize>(&mut self, kind: &'static str, body: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, &Tagged { kind, body })?;
        self.out.write_all(b"\n")
    }

    /// An agent and its history.
    pub fn agent(&mut self, a: &ExportedAgent) -> io::Result<()> {
        let r = &a.record;
        self.line(
            "agent",
            &AgentLine {
                state: &r.state,
                transition_seq: r.transition_seq,
                message_seq: r.message_seq,
            },
        )?;
        for t in &a.transitions {
            self.line("transition", t)?;
        }
        for m in &a.messages {
            let agent_id = &r.state.agent_id;
            self.line(
                "message",
                &MessageLine {
                    agent_id,
                    message: m,
                },
            )?;
        }
        for c in &a.checkpoints {
            self.line("checkpoint", c)?;
        }
        let t = &a.thread;
        for c in &t.checkpoints {
            self.line("thread_checkpoint", c)?;
        }
        let agent_id = &r.state.agent_id;
        for b in &t.blobs {
            let item = ThreadLine {
                agent_id: agent_id.clone(),
                item: b,
            };
            self.line("thread_blob", &item)?;
        }
        for w in &t.writes {
            let item = ThreadLine {
                agent_id: agent_id.clone(),
                item: w,
            };
            self.line("thread_write", &item)?;
        }
        self.counts.add(a);
        Ok(())
    }

    pub fn transfer(&mut self, t: &Transfer) -> io::Result<()> {
        self.line("transfer", t)?;
        self.counts.transfers += 1;
        Ok(())
    }

    /// Ends the file with the counts; returns the writer and them.
    pub fn finish(mut self) -> io::Result<(W, Counts)> {
        let counts = self.counts;
        self.line("end", &counts)?;
        self.out.flush()?;
        Ok((self.out, counts))
    }
}

/// A damaged or unreadable file: what is wrong, and on which line.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct FormatError {
    pub line: u64,
    pub message: String,
}

/// What a file holds, one at a time.
#[derive(Debug)]
pub enum Item {
    /// An agent with its history, and the line its `agent` line is on.
    Agent {
        line: u64,
        agent: Box<ExportedAgent>,
    },
    Transfer {
        line: u64,
        transfer: Transfer,
    },
}

/// One line, parsed.
enum Line {
    Header(Header),
    Agent(Box<AgentRecord>),
    Transition(StateTransition),
    Message(String, Message),
    Checkpoint(Box<Checkpoint>),
    ThreadCheckpoint(Box<ThreadCheckpoint>),
    ThreadBlob(String, Box<StoredBlob>),
    ThreadWrite(String, Box<StoredWrite>),
    Transfer(Transfer),
    End(Counts),
}

impl Line {
    fn parse(text: &str) -> Result<Line, String> {
        /// Just the type (and a message line's agent), read before the whole line.
        #[derive(Deserialize)]
        struct Head {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            agent_id: Option<String>,
        }
        let head: Head = serde_json::from_str(text)
            .map_err(|e| format!("not a JSON object with a type: {e}"))?;
        let kind = head.kind.as_str();
        let bad = |e: serde_json::Error| format!("bad {kind} line: {e}");
        Ok(match kind {
            "header" => Line::Header(serde_json::from_str(text).map_err(bad)?),
            "agent" => {
                let a: AgentLine<PersistedState> = serde_json::from_str(text).map_err(bad)?;
                Line::Agent(Box::new(AgentRecord {
                    state: a.state,
                    transition_seq: a.transition_seq,
                    message_seq: a.message_seq,
                    lease_epoch: 0,
                    encoded: Default::default(),
                }))
            }
            "transition" => Line::Transition(serde_json::from_str(text).map_err(bad)?),
            "message" => {
                let agent = head
                    .agent_id
                    .ok_or_else(|| "a message line without agent_id".to_string())?;
                Line::Message(agent, serde_json::from_str(text).map_err(bad)?)
            }
            "checkpoint" => Line::Checkpoint(serde_json::from_str(text).map_err(bad)?),
            "thread_checkpoint" => Line::ThreadCheckpoint(serde_json::from_str(text).map_err(bad)?),
            "thread_blob" => {
                let l: ThreadLine<StoredBlob> = serde_json::from_str(text).map_err(bad)?;
                Line::ThreadBlob(l.agent_id, Box::new(l.item))
            }
            "thread_write" => {
                let l: ThreadLine<StoredWrite> = serde_json::from_str(text).map_err(bad)?;
                Line::ThreadWrite(l.agent_id, Box::new(l.item))
            }
            "transfer" => Line::Transfer(serde_json::from_str(text).map_err(bad)?),
            "end" => Line::End(serde_json::from_str(text).map_err(bad)?),
            other => return Err(format!("unknown line type {other:?}")),
        })
    }
}

/// Reads an export file, checking its structure as it goes.
pub struct Reader<R> {
    input: R,
    /// The number of the last line read.
    line: u64,
    header: Header,
    /// A line read but not yet used (the one after an agent's last entry).
    peeked: Option<(u64, Line)>,
    counts: Counts,
    ended: bool,
    /// Ids seen, to refuse an agent or transfer twice.
    agents: HashSet<String>,
    transfers: HashSet<String>,
}

impl<R: BufRead> Reader<R> {
    /// Reads and checks the header.
    pub fn new(input: R) -> Result<Self, FormatError> {
        let mut r = Reader {
            input,
            line: 0,
            header: Header::new("", DateTime::<Utc>::UNIX_EPOCH),
            peeked: None,
            counts: Counts::default(),
            ended: false,
            agents: HashSet::new(),
            transfers: HashSet::new(),
        };
        let first = r.next_line()?;
        let header = match first {
            Some((_, Line::Header(h))) => h,
            Some((n, _)) => return Err(err(n, "the first line is not the header")),
            None => return Err(err(1, "the file is empty")),
        };
        if header.format != FORMAT {
            return Err(err(
                r.line,
                format!("format {:?} is not {FORMAT:?}", header.format),
            ));
        }
        if header.version == 0 || header.version > VERSION {
            return Err(err(
                r.line,
                format!(
                    "format version {} is not one this agentstate reads (1 to {VERSION})",
                    header.version
                ),
            ));
        }
        r.header = header;
        Ok(r)
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// What was read so far; once the end is reached, what the file holds (its `end`
    /// line agrees).
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The next line that is not blank, parsed; `None` at the end of the input.
    fn next_line(&mut self) -> Result<Option<(u64, Line)>, FormatError> {
        if let Some(l) = self.peeked.take() {
            return Ok(Some(l));
        }
        loop {
            let mut buf = Vec::new();
            let n = (&mut self.input)
                .take(LINE_BYTES_MAX as u64 + 1)
                .read_until(b'\n', &mut buf)
                .map_err(|e| err(self.line + 1, format!("cannot read: {e}")))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if buf.len() > LINE_BYTES_MAX {
                return Err(err(
                    self.line,
                    format!("longer than {LINE_BYTES_MAX} bytes"),
                ));
            }
            let text =
                std::str::from_utf8(&buf).map_err(|e| err(self.line, format!("not UTF-8: {e}")))?;
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let line = Line::parse(text).map_err(|m| err(self.line, m))?;
            return Ok(Some((self.line, line)));
        }
    }

    /// The next agent (with its history) or transfer; `None` after the `end` line,
    /// once it agrees with what came before it.
    pub fn next_item(&mut self) -> Result<Option<Item>, FormatError> {
        if self.ended {
            return Ok(None);
        }
        let Some((n, line)) = self.next_line()? else {
            return Err(err(
                self.line,
                "the file ends here, without its end line: it was cut short",
            ));
        };
        match line {
            Line::Agent(record) => self.agent(n, *record).map(Some),
            Line::Transfer(t) => {
                if !self.transfers.insert(t.transfer_id.clone()) {
                    return Err(err(n, format!("transfer {} again", t.transfer_id)));
                }
                self.counts.transfers += 1;
                Ok(Some(Item::Transfer {
                    line: n,
                    transfer: t,
                }))
            }
            Line::End(declared) => {
                if declared != self.counts {
                    return Err(err(
                        n,
                        format!(
                            "the end line counts {declared:?}, the file holds {:?}",
                            self.counts
                        ),
                    ));
                }
                if let Some((after, _)) = self.next_line()? {
                    return Err(err(after, "a line after the end line"));
                }
                self.ended = true;
                Ok(None)
            }
            Line::Header(_) => Err(err(n, "a second header line")),
            Line::Transition(t) => Err(err(
                n,
                format!("transition of {} outside its agent's lines", t.agent_id),
            )),
            Line::Message(a, _) => Err(err(n, format!("message of {a} outside its agent's lines"))),
            Line::Checkpoint(c) => Err(err(
                n,
                format!("checkpoint of {} outside its agent's lines", c.agent_id),
            )),
            Line::ThreadCheckpoint(c) => Err(err(
                n,
                format!(
                    "thread checkpoint of {} outside its agent's lines",
                    c.thread_id
                ),
            )),
            Line::ThreadBlob(a, _) | Line::ThreadWrite(a, _) => Err(err(
                n,
                format!("thread blob or write of {a} outside its agent's lines"),
            )),
        }
    }

    /// The agent whose `agent` line is line `n`, with the entries that follow it.
    fn agent(&mut self, n: u64, record: AgentRecord) -> Result<Item, FormatError> {
        let id = record.state.agent_id.clone();
        if !self.agents.insert(id.clone()) {
            return Err(err(n, format!("agent {id} again")));
        }
        let mut a = ExportedAgent {
            record,
            transitions: Vec::new(),
            messages: Vec::new(),
            checkpoints: Vec::new(),
            thread: Default::default(),
        };
        let other = |n, what: &str, of: &str| {
            err(
                n,
                format!("{what} of agent {of} among the lines of agent {id}"),
            )
        };
        loop {
            let Some((m, line)) = self.next_line()? else {
                break;
            };
            match line {
                Line::Transition(t) => {
                    if t.agent_id != id {
                        return Err(other(m, "transition", &t.agent_id));
                    }
                    if a.transitions.last().is_some_and(|p| p.seq >= t.seq) {
                        return Err(err(m, format!("transition #{} out of order", t.seq)));
                    }
                    a.transitions.push(t);
                }
                Line::Message(of, msg) => {
                    if of != id {
                        return Err(other(m, "message", &of));
                    }
                    if a.messages.last().is_some_and(|p| p.seq >= msg.seq) {
                        return Err(err(m, format!("message #{} out of order", msg.seq)));
                    }
                    a.messages.push(msg);
                }
                Line::Checkpoint(c) => {
                    if c.agent_id != id {
                        return Err(other(m, "checkpoint", &c.agent_id));
                    }
                    a.checkpoints.push(*c);
                }
                Line::ThreadCheckpoint(c) => {
                    if c.thread_id != id {
                        return Err(other(m, "thread checkpoint", &c.thread_id));
                    }
                    a.thread.checkpoints.push(*c);
                }
                Line::ThreadBlob(of, b) => {
                    if of != id {
                        return Err(other(m, "thread blob", &of));
                    }
                    a.thread.blobs.push(*b);
                }
                Line::ThreadWrite(of, w) => {
                    if of != id {
                        return Err(other(m, "thread write", &of));
                    }
                    a.thread.writes.push(*w);
                }
                line => {
                    self.peeked = Some((m, line));
                    break;
                }
            }
        }
        self.counts.add(&a);
        Ok(Item::Agent {
            line: n,
            agent: Box::new(a),
        })
    }
}

fn err(line: u64, message: impl Into<String>) -> FormatError {
    FormatError {
        line,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::record;
    use crate::model::Doc;
    use serde_json::json;

    fn agent(id: &str) -> ExportedAgent {
        let mut record = record(id, 3);
        record.transition_seq = 2;
        record.message_seq = 1;
        let at = record.state.updated_at;
        ExportedAgent {
            transitions: (1..=2)
                .map(|seq| StateTransition {
                    id: format!("t{seq}"),
                    seq,
                    agent_id: id.into(),
                    from_state: "idle".into(),
                    to_state: "busy".into(),
                    trigger: "go".into(),
                    timestamp: at,
                    success: seq == 1,
                    error: (seq == 2).then(|| "refused".into()),
                    state_data: Some(Doc::from_value(&json!({"k": seq}))),
                    reason: (seq == 3).then(|| "restored by hand".into()),
                })
                .collect(),
            messages: vec![Message {
                seq: 1,
                role: "user".into(),
                content: "hi\nthere".into(),
                timestamp: at,
                metadata: Default::default(),
            }],
            checkpoints: vec![Checkpoint {
                checkpoint_id: "c1".into(),
                agent_id: id.into(),
                version: 2,
                state: record.state.clone(),
                transition_seq: 1,
                message_seq: 1,
                created_at: at,
                label: Some("before".into()),
            }],
            record,
            thread: Default::default(),
        }
    }

    fn transfer() -> Transfer {
        Transfer {
            transfer_id: "x1".into(),
            from_agent: "a".into(),
            to_agent: "b".into(),
            trigger: "handoff".into(),
            to_trigger: None,
            context: Doc::from_value(&json!({"topic": "rust"})),
            messages_copied: 1,
            from_version: 3,
            to_version: 3,
            created_at: chrono::Utc::now(),
        }
    }

    fn file(a: &ExportedAgent, b: &ExportedAgent, t: &Transfer) -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), &Header::new("sqlite", chrono::Utc::now())).unwrap();
        w.agent(a).unwrap();
        w.agent(b).unwrap();
        w.transfer(t).unwrap();
        let (bytes, counts) = w.finish().unwrap();
        assert_eq!(
            counts,
            Counts {
                agents: 2,
                transitions: 4,
                messages: 2,
                checkpoints: 2,
                transfers: 1,
                ..Counts::default()
            }
        );
        bytes
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Item>, FormatError> {
        let mut r = Reader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(item) = r.next_item()? {
            out.push(item);
        }
        Ok(out)
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        let (a, b, t) = (agent("a"), agent("b"), transfer());
        let bytes = file(&a, &b, &t);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.lines().count(), 1 + 2 * 5 + 1 + 1, "{text}");
        assert!(text.starts_with(r#"{"type":"header","format":"agentstate-export","version":2"#));
        let items = read_all(&bytes).unwrap();
        match &items[..] {
            [Item::Agent { line: 2, agent: ra }, Item::Agent { line: 7, agent: rb }, Item::Transfer {
                line: 12,
                transfer: rt,
            }] => {
                assert_eq!((&**ra, &**rb, rt), (&a, &b, &t));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_damaged_file_is_refused_naming_the_line() {
        let bytes = file(&agent("a"), &agent("b"), &transfer());
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // Cut at a line boundary: no end line.
        let cut = lines[..8].join("\n");
        let e = read_all(cut.as_bytes()).unwrap_err();
        assert_eq!(e.line, 8);
        assert!(e.message.contains("cut short"), "{e}");
        // Cut in the middle of a line.
        let cut = &text[..text.find("\"checkpoint\"").unwrap() + 20];
        let e = read_all(cut.as_bytes()).unwrap_err();
        assert_eq!(e.line, 6, "{e}");
        assert!(e.to_string().starts_with("line 6: "), "{e}");
        // Garbled.
        let mut garbled: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        garbled[3] = garbled[3].replace("\"seq\":2", "\"seq\":\"two\"");
        let e = read_all(garbled.join("\n").as_bytes()).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        // Out of order, another agent's entry, an unknown type, counts that disagree,
        // a line after the end, a newer version.
        let swap = |i: usize, j: usize| {
            let mut l: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            l.swap(i, j);
            l.join("\n")
        };
        assert!(read_all(swap(2, 3).as_bytes())
            .unwrap_err()
            .message
            .contains("out of order"));
        let e = read_all(swap(4, 9).as_bytes()).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("among the lines of agent a"), "{e}");
        let unknown = text.replace("\"type\":\"transfer\"", "\"type\":\"transfers\"");
        assert!(read_all(unknown.as_bytes())
            .unwrap_err()
            .message
            .contains("unknown line type"));
        let counts = text.replace("\"agents\":2", "\"agents\":3");
        assert!(read_all(counts.as_bytes())
            .unwrap_err()
            .message
            .contains("end line counts"));
        let after = format!("{text}{}\n", lines[1]);
        assert!(read_all(after.as_bytes())
            .unwrap_err()
            .message
            .contains("after the end line"));
        let newer = text.replacen("\"version\":2", "\"version\":3", 1);
        let e = read_all(newer.as_bytes()).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("format version 3"), "{e}");
        // A file of format version 1 (before threads) still reads: its end line has
        // no thread counts.
        let older = text.replacen("\"version\":2", "\"version\":1", 1).replace(
            ",\"thread_checkpoints\":0,\"thread_blobs\":0,\"thread_writes\":0",
            "",
        );
        assert_ne!(older, text);
        assert_eq!(read_all(older.as_bytes()).unwrap().len(), 3);
        let twice = format!(
            "{}\n{}\n{}",
            lines[..7].join("\n"),
            lines[1],
            lines[7..].join("\n")
        );
        assert!(read_all(twice.as_bytes())
            .unwrap_err()
            .message
            .contains("agent a again"));
        assert!(read_all(b"").unwrap_err().message.contains("empty"));
    }
}
