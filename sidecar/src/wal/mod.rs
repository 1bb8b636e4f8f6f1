//! The write-ahead log: every change is appended here, and fsync'ed, before it is
//! acknowledged.
//!
//! Layout: `<data-dir>/wal/<first-lsn, 20 digits>.wal` segment files, each a run of
//! [`record`]s with consecutive LSNs. A single writer thread owns the open segment:
//! appenders put encoded records in a shared buffer and wait; the writer takes everything
//! waiting, writes it, and one `fdatasync` covers the whole batch (group commit).
//!
//! Hazards, and what this module does about them:
//! - A crash mid-write leaves a torn tail: replay stops at the first bad record of the
//!   last segment and cuts it there. Valid records may follow the damage only inside the
//!   last batch: a power cut can keep a later page of a batch whose sync had not finished
//!   and lose an earlier one. Each batch ends with a [`record::KIND_BATCH_END`] record
//!   giving its length, so the scan can tell; damage before a later batch was synced, and
//!   was acknowledged: that is refused.
//! - Damage anywhere else (a flipped bit, a missing segment) is never skipped: opening
//!   fails with [`WalError::Corrupt`] naming the file and offset.
//! - A failed write (disk full) truncates the segment back to where the batch began and
//!   fails that batch's waiters; the next batch starts with an "abandoned" record so the
//!   LSN gap reads as deliberate. A failed fsync poisons the log: after it, the kernel may
//!   have dropped the pages, and nothing written since can be trusted.
//! - Segments are deleted only when every record in them is below the LSN the backend
//!   has acknowledged ([`Wal::release_through`]).
//! - A sync that changes a file's size also writes its metadata (the size, the block
//!   map), which costs a quarter to a third more than a sync of data alone (measured in
//!   bench/README.md). So the writer zero-fills the active segment a chunk
//!   ([`PREALLOCATE_BYTES`]) ahead of its records, as PostgreSQL's and etcd's WALs do:
//!   most batches then overwrite zeros and their fdatasync writes data only. A scan
//!   takes zeros after the last record as the log's clean end, never as damage; a zero
//!   can never start a record (its length field is at least 1).

pub mod record;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use tokio::sync::oneshot;

use record::{Decoded, KIND_ABANDONED, KIND_BATCH_END, KIND_DATA};

#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    #[error("WAL write failed: {0}")]
    Write(String),
    #[error("WAL is unusable after a failed fsync or truncate: {0}")]
    Poisoned(String),
    #[error("WAL is closed")]
    Closed,
    #[error("record of {0} bytes exceeds the WAL's record limit")]
    TooLarge(usize),
    #[error(
        "corrupt WAL record in {file} at offset {offset}: {reason}. The sidecar will not \
         start over damage in the middle of its log, because records after it were \
         acknowledged; restore the segment from a copy, or move it and every later segment \
         aside to start without them (their unflushed changes are then lost)"
    )]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: Arc<io::Error>,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> WalError {
    move |source| WalError::Io {
        context: context.into(),
        source: Arc::new(source),
    }
}

#[derive(Debug, Clone)]
pub struct WalOptions {
    pub dir: PathBuf,
    /// A segment is closed and a new one started once it reaches this size.
    pub segment_bytes_max: u64,
    /// `false` skips fdatasync (benchmarks only: acknowledged writes may be lost).
    pub fsync: bool,
}

/// What `open` learned while replaying.
#[derive(Debug, Default, Clone)]
pub struct ReplayStats {
    pub segments: u64,
    pub records: u64,
    pub bytes: u64,
    /// Bytes cut from a torn tail, if any.
    pub truncated_bytes: u64,
    /// Records already in the backend, checked but not replayed.
    pub skipped: u64,
    pub last_lsn: u64,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    first_lsn: u64,
    bytes: u64,
}

/// How far ahead of its records the writer zero-fills the active segment (never past
/// the segment's bound): one size-changing sync per this many bytes of log.
pub const PREALLOCATE_BYTES: u64 = 1024 * 1024;

fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    crate::data_dir::segment(dir, first_lsn)
}

/// Appends waiting for the writer, and the bookkeeping that must change with them.
struct Pending {
    next_lsn: u64,
    buf: Vec<u8>,
    first_lsn_in_buf: u64,
    waiters: Vec<oneshot::Sender<Result<(), WalError>>>,
    /// LSNs appended but not yet applied by the caller; see [`Wal::oldest_unapplied_lsn`].
    unapplied: BTreeSet<u64>,
    poisoned: Option<String>,
    closing: bool,
}

struct Shared {
    /// Batches written (each one write and one fdatasync): records / batches is the
    /// group-commit factor.
    batches: std::sync::atomic::AtomicU64,
    pending: Mutex<Pending>,
    wake_writer: Condvar,
    segments: Mutex<VecDeque<Segment>>,
    opts: WalOptions,
}

/// Handle to the log; cheap to clone.
#[derive(Clone)]
pub struct Wal {
    shared: Arc<Shared>,
    writer: Arc<Mutex<Option<thread::JoinHandle<()>>>>,
}

/// An appended record. Until `applied` is called (or this is dropped) its LSN holds back
/// the flushed watermark, so the segment holding it cannot be released.
pub struct Appended {
    pub lsn: u64,
    /// Resolves once the record is on disk; `None` when the caller did not ask to wait.
    pub durable: Option<oneshot::Receiver<Result<(), WalError>>>,
    wal: Wal,
}

impl Appended {
    /// Waits for the fsync covering this record.
    pub async fn wait_durable(&mut self) -> Result<(), WalError> {
        match self.durable.take() {
            None => Ok(()),
            Some(rx) => rx.await.unwrap_or(Err(WalError::Closed)),
        }
    }
}

impl Drop for Appended {
    fn drop(&mut self) {
        self.wal.lock_pending().unapplied.remove(&self.lsn);
    }
}

impl Wal {
    /// Opens the log in `opts.dir`, replaying every data record through `replay` in LSN
    /// order, cutting a torn tail, then starts the writer thread.
    ///
    /// Every record is replayed; see [`Wal::open_above`] for a start that knows what the
    /// backend holds.
    pub fn open(
        opts: WalOptions,
        replay: impl FnMut(u64, &[u8]) -> anyhow::Result<()>,
    ) -> Result<(Wal, ReplayStats), WalError> {
        Self::open_above(opts, 0, 0, replay)
    }

    /// [`Wal::open`] after a run whose flush progress (`flush_progress`) says the backend
    /// holds every record through `watermark`: those are checked but not replayed
    /// (replaying them would bring back what retention has since deleted there). New
    /// records are numbered above `lsn_floor` (every LSN the progress names) as well as
    /// above the last record on disk.
    ///
    /// An LSN is never given twice, even one whose record never reached the disk: a
    /// `memory` write is applied before the writer has it, so the flusher can store it and
    /// save its LSN in the flush progress (the flushed LSN, or `lsn_floor` from the
    /// flushed marks) while the log, after a crash, ends below it. Were numbering to
    /// resume at the log's end, the next start would take later acknowledged records for
    /// ones the backend holds and skip them. The numbers skipped are written first as an
    /// abandoned range, so the log still reads as continuous.
    pub fn open_above(
        opts: WalOptions,
        watermark: u64,
        lsn_floor: u64,
        mut replay: impl FnMut(u64, &[u8]) -> anyhow::Result<()>,
    ) -> Result<(Wal, ReplayStats), WalError> {
        crate::durable::create_dir_all(&opts.dir)
            .map_err(io_err(format!("create {}", opts.dir.display())))?;
        let flushed = watermark;
        let mut skipped = 0;
        let (mut segments, mut stats, torn) = scan_dir(&opts.dir, |lsn, body| {
            if lsn <= flushed {
                skipped += 1;
                return Ok(());
            }
            replay(lsn, body)
        })?;
        stats.skipped = skipped;
        if let Some(torn) = torn {
            tracing::warn!(
                file = %torn.file.display(),
                offset = torn.valid_len,
                cut_bytes = torn.cut_bytes(),
                "torn WAL tail cut"
            );
            // Zeroed, not truncated: the zero-filled space after it stays allocated.
            let f = OpenOptions::new()
                .write(true)
                .open(&torn.file)
                .map_err(io_err("open WAL segment to cut its torn tail"))?;
            write_zeros(&f, torn.valid_len, torn.garbage_end)
                .map_err(io_err("zero a torn WAL tail"))?;
            f.sync_all().map_err(io_err("sync a cut WAL segment"))?;
            stats.truncated_bytes = torn.cut_bytes();
        }
        let named = flushed.max(lsn_floor);
        let next_lsn = stats.last_lsn.max(named) + 1;
        let skipped_lsns = (named > stats.last_lsn).then_some((stats.last_lsn + 1, named));
        if skipped_lsns.is_some() {
            tracing::warn!(
                wal_last_lsn = stats.last_lsn,
                flush_progress_lsn = named,
                "the flush progress names LSNs past the end of the log (memory writes lost \
                 with the process); numbering resumes above them"
            );
        }

        // The writer appends to the last segment, or to a fresh one.
        if segments.is_empty() {
            create_segment(&opts.dir, stats.last_lsn + 1)?;
            segments.push_back(Segment {
                first_lsn: stats.last_lsn + 1,
                bytes: 0,
            });
        }
        let active = *segments.back().expect("at least one segment");
        let file = OpenOptions::new()
            .write(true)
            .open(segment_path(&opts.dir, active.first_lsn))
            .map_err(io_err("open active WAL segment"))?;
        let allocated = file
            .metadata()
            .map_err(io_err("stat active WAL segment"))?
            .len();

        let shared = Arc::new(Shared {
            batches: Default::default(),
            pending: Mutex::new(Pending {
                next_lsn,
                buf: Vec::with_capacity(1 << 16),
                first_lsn_in_buf: next_lsn,
                waiters: Vec::new(),
                unapplied: BTreeSet::new(),
                poisoned: None,
                closing: false,
            }),
            wake_writer: Condvar::new(),
            segments: Mutex::new(segments),
            opts,
        });
        let writer_shared = shared.clone();
        let handle = thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || Writer::new(writer_shared, file, active, allocated, skipped_lsns).run())
            .map_err(io_err("spawn WAL writer thread"))?;
        Ok((
            Wal {
                shared,
                writer: Arc::new(Mutex::new(Some(handle))),
            },
            stats,
        ))
    }

    fn lock_pending(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding this lock is a bug in this module; the data under it is
        // plain bookkeeping, so carry on with it rather than cascade the panic.
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Appends a data record. With `wait`, the returned [`Appended`] carries a receiver
    /// that resolves after the fsync covering it.
    pub fn append(&self, body: &[u8], wait: bool) -> Result<Appended, WalError> {
        if body.len() > record::RECORD_BYTES_MAX {
            return Err(WalError::TooLarge(body.len()));
        }
        let crc = record::body_crc(KIND_DATA, body);
        let (tx, rx) = if wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let mut p = self.lock_pending();
        if let Some(why) = &p.poisoned {
            return Err(WalError::Poisoned(why.clone()));
        }
        if p.closing {
            return Err(WalError::Closed);
        }
        let lsn = p.next_lsn;
        p.next_lsn += 1;
        if p.buf.is_empty() {
            p.first_lsn_in_buf = lsn;
        }
        record::encode_into(&mut p.buf, lsn, KIND_DATA, body, crc);
        if let Some(tx) = tx {
            p.waiters.push(tx);
        }
        p.unapplied.insert(lsn);
        drop(p);
        self.shared.wake_writer.notify_one();
        Ok(Appended {
            lsn,
            durable: rx,
            wal: self.clone(),
        })
    }

    /// The oldest LSN appended but not yet applied, or the next LSN to be assigned.
    /// Together with the caller's own unflushed LSNs this gives the flushed watermark.
    pub fn oldest_unapplied_lsn(&self) -> u64 {
        let p = self.lock_pending();
        p.unapplied.first().copied().unwrap_or(p.next_lsn)
    }

    /// The LSN of the last record appended (0 if none ever was).
    pub fn last_lsn(&self) -> u64 {
        self.lock_pending().next_lsn - 1
    }

    /// `Some(reason)` once the log refuses writes for good.
    pub fn poisoned(&self) -> Option<String> {
        self.lock_pending().poisoned.clone()
    }

    /// Deletes every closed segment whose records all have LSN <= `lsn`.
    pub fn release_through(&self, lsn: u64) -> Result<u64, WalError> {
        let mut released = 0;
        loop {
            let victim = {
                let segs = self
                    .shared
                    .segments
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                match (segs.front(), segs.get(1)) {
                    // The next segment's first LSN bounds this one's last.
                    (Some(first), Some(second)) if second.first_lsn <= lsn + 1 => *first,
                    _ => break,
                }
            };
            let path = segment_path(&self.shared.opts.dir, victim.first_lsn);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(format!("delete {}", path.display()))(e)),
            }
            self.shared
                .segments
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            released += 1;
        }
        Ok(released)
    }

    /// The directory of the segments.
    pub fn dir(&self) -> &Path {
        &self.shared.opts.dir
    }

    /// Batches written so far (one fdatasync each).
    pub fn batches(&self) -> u64 {
        self.shared
            .batches
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `(segments, bytes)` currently on disk.
    pub fn size(&self) -> (u64, u64) {
        let segs = self
            .shared
            .segments
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        (segs.len() as u64, segs.iter().map(|s| s.bytes).sum())
    }

    /// Writes out what is pending, stops the writer and waits for it.
    pub fn close(&self) {
        self.lock_pending().closing = true;
        self.shared.wake_writer.notify_one();
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// A torn tail found by a scan: bytes after the last segment's last whole record that
/// are neither a record nor zero fill.
#[derive(Debug, Clone)]
pub struct TornTail {
    pub file: PathBuf,
    pub valid_len: u64,
    /// Just past the last byte that is not zero.
    pub garbage_end: u64,
}

impl TornTail {
    /// Bytes a start cuts (zeroes).
    pub fn cut_bytes(&self) -> u64 {
        self.garbage_end - self.valid_len
    }
}

/// Writes zeros over `from..to` of `f`.
fn write_zeros(f: &File, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; to.saturating_sub(from).min(1 << 20) as usize];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        f.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Reads every segment in `dir` without changing anything (for `agentstate dump` and
/// `check`); reports a torn tail instead of cutting it.
pub fn scan(
    dir: &Path,
    replay: impl FnMut(u64, &[u8]) -> anyhow::Result<()>,
) -> Result<(ReplayStats, Option<TornTail>), WalError> {
    if !dir.exists() {
        return Ok((ReplayStats::default(), None));
    }
    let (_, stats, torn) = scan_dir(dir, replay)?;
    Ok((stats, torn))
}

/// Replays every segment in order, checking LSN continuity within and across segments.
fn scan_dir(
    dir: &Path,
    mut replay: impl FnMut(u64, &[u8]) -> anyhow::Result<()>,
) -> Result<(VecDeque<Segment>, ReplayStats, Option<TornTail>), WalError> {
    let mut segments = list_segments(dir)?;
    let mut stats = ReplayStats::default();
    let mut torn = None;
    let mut expected_lsn: Option<u64> = None;
    let count = segments.len();
    for (i, seg) in segments.iter_mut().enumerate() {
        let path = segment_path(dir, seg.first_lsn);
        if let Some(expected) = expected_lsn {
            if seg.first_lsn != expected {
                return Err(WalError::Corrupt {
                    file: path,
                    offset: 0,
                    reason: format!(
                        "segment starts at LSN {} but the previous one ends before {expected}: a segment is missing",
                        seg.first_lsn
                    ),
                });
            }
        }
        let is_last = i + 1 == count;
        let (valid_len, last_lsn, garbage_end) =
            replay_segment(&path, seg.first_lsn, is_last, &mut replay, &mut stats)?;
        if garbage_end > valid_len {
            // Only the last segment gets here (replay_segment refuses otherwise).
            torn = Some(TornTail {
                file: path,
                valid_len,
                garbage_end,
            });
        }
        seg.bytes = valid_len;
        stats.bytes += valid_len;
        expected_lsn = Some(last_lsn + 1);
    }
    stats.segments = segments.len() as u64;
    stats.last_lsn = expected_lsn.unwrap_or(1) - 1;
    Ok((segments, stats, torn))
}

fn list_segments(dir: &Path) -> Result<VecDeque<Segment>, WalError> {
    let mut firsts = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(format!("list {}", dir.display())))? {
        let entry = entry.map_err(io_err("list WAL directory"))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else {
            continue;
        };
        match stem.parse::<u64>() {
            Ok(first) if stem.len() == 20 => firsts.push(first),
            _ => tracing::warn!(file = ?name, "ignoring unexpected file in the WAL directory"),
        }
    }
    firsts.sort_unstable();
    Ok(firsts
        .into_iter()
        .map(|first_lsn| Segment {
            first_lsn,
            bytes: 0,
        })
        .collect())
}

/// Replays one segment; returns the length of its valid prefix, its last LSN
/// (`first_lsn - 1` when empty), and the end of a torn tail after the prefix (the
/// prefix's own length when only zero fill, or nothing, follows it).
fn replay_segment(
    path: &Path,
    first_lsn: u64,
    is_last: bool,
    replay: &mut impl FnMut(u64, &[u8]) -> anyhow::Result<()>,
    stats: &mut ReplayStats,
) -> Result<(u64, u64, u64), WalError> {
    let data = fs::read(path).map_err(io_err(format!("read {}", path.display())))?;
    let corrupt = |offset: usize, reason: String| WalError::Corrupt {
        file: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let mut offset = 0usize;
    let mut expected = first_lsn;
    // Whether this segment was written with batch ends (older ones were not).
    let mut batch_ends = false;
    while offset < data.len() {
        match record::decode(&data[offset..]) {
            Decoded::Record {
                lsn,
                kind,
                body,
                encoded_len,
            } => {
                if kind == KIND_BATCH_END {
                    if lsn + 1 != expected || body.len() != 8 {
                        return Err(corrupt(
                            offset,
                            format!("batch end at LSN {lsn} after LSN {}", expected - 1),
                        ));
                    }
                    batch_ends = true;
                    offset += encoded_len;
                    continue;
                }
                if kind == KIND_ABANDONED {
                    let from = body
                        .try_into()
                        .map(u64::from_le_bytes)
                        .map_err(|_| corrupt(offset, "malformed abandoned-range record".into()))?;
                    if from != expected || lsn < from {
                        return Err(corrupt(
                            offset,
                            format!(
                                "abandoned range {from}..={lsn} does not follow LSN {}",
                                expected - 1
                            ),
                        ));
                    }
                } else {
                    if lsn != expected {
                        return Err(corrupt(
                            offset,
                            format!("LSN {lsn} where {expected} was expected"),
                        ));
                    }
                    replay(lsn, body).map_err(|e| {
                        corrupt(offset, format!("cannot apply record {lsn}: {e:#}"))
                    })?;
                    stats.records += 1;
                }
                expected = lsn + 1;
                offset += encoded_len;
            }
            bad => {
                let rest = &data[offset..];
                let Some(last_nonzero) = rest.iter().rposition(|b| *b != 0) else {
                    // Zero fill: the log's clean end.
                    return Ok((offset as u64, expected - 1, offset as u64));
                };
                let reason = match bad {
                    Decoded::Corrupt(r) => r.to_string(),
                    _ => "record cut short".to_string(),
                };
                if !is_last || !in_last_batch(&data, offset, expected, batch_ends) {
                    return Err(corrupt(offset, reason));
                }
                let garbage_end = offset + last_nonzero + 1;
                return Ok((offset as u64, expected - 1, garbage_end as u64));
            }
        }
    }
    Ok((offset as u64, expected - 1, offset as u64))
}

/// Whether damage at `at` in the last segment lies in the last batch written, which a
/// power cut may have left with holes: true when nothing valid follows it (a torn tail),
/// or when what follows belongs to the same batch as the damage and no later batch
/// follows. `batch_ends`: the segment was written with batch ends (without them, valid
/// records after damage always mean damage in the middle).
fn in_last_batch(data: &[u8], at: usize, expected: u64, batch_ends: bool) -> bool {
    let Some((first, _)) = next_valid(data, at + 1, expected) else {
        return true;
    };
    // The first batch end after the damage, skipping whole records on the way.
    let mut i = first;
    let end = loop {
        match next_valid(data, i, expected) {
            None => break None,
            Some((
                m,
                Decoded::Record {
                    kind,
                    body,
                    encoded_len,
                    ..
                },
            )) => {
                if kind == KIND_BATCH_END {
                    let len = body.try_into().map(u64::from_le_bytes).unwrap_or(u64::MAX);
                    break Some((m, encoded_len, len));
                }
                i = m + encoded_len;
            }
            Some(_) => unreachable!("next_valid finds records only"),
        }
    };
    match end {
        // The batch lost its end too: the last batch, if the log writes batch ends.
        None => batch_ends,
        Some((m, encoded_len, len)) => {
            let batch_start = (m as u64).checked_sub(len);
            batch_start.is_some_and(|s| s <= at as u64)
                && next_valid(data, m + encoded_len, expected).is_none()
        }
    }
}

/// The first valid record starting at or after `from` whose LSN is plausible (a batch
/// end may carry `expected - 1`), with its offset.
fn next_valid(data: &[u8], from: usize, expected: u64) -> Option<(usize, Decoded<'_>)> {
    (from..data.len()).find_map(|i| {
        let tail = &data[i..];
        if tail.len() < record::HEADER_LEN {
            return None;
        }
        let lsn = u64::from_le_bytes(tail[8..16].try_into().expect("8 bytes"));
        // Cheap filter first: only a plausible LSN is worth a CRC check.
        if lsn.saturating_add(1) < expected || lsn >= expected.saturating_add(1 << 24) {
            return None;
        }
        match record::decode(tail) {
            r @ Decoded::Record { .. } => Some((i, r)),
            _ => None,
        }
    })
}

fn create_segment(dir: &Path, first_lsn: u64) -> Result<File, WalError> {
    let path = segment_path(dir, first_lsn);
    // Not `create_new`: a roll that failed after creating the file retries the same name.
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(format!("create {}", path.display())))?;
    // The new name must survive a crash too.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync WAL directory"))?;
    Ok(f)
}

/// The writer thread: takes batches, writes, syncs, wakes the waiters.
struct Writer {
    shared: Arc<Shared>,
    file: File,
    active: Segment,
    /// The active segment's length: records, then zero fill up to here.
    allocated: u64,
    /// A batch that failed to write left these LSNs out of the log; the next batch
    /// records that first. `(from, through)`.
    abandoned: Option<(u64, u64)>,
}

impl Writer {
    /// `skipped`: LSNs the log lacks but must never give again (see [`Wal::open_above`]);
    /// the first batch records them as abandoned.
    fn new(
        shared: Arc<Shared>,
        file: File,
        active: Segment,
        allocated: u64,
        skipped: Option<(u64, u64)>,
    ) -> Self {
        Writer {
            shared,
            file,
            active,
            allocated,
            abandoned: skipped,
        }
    }

    fn run(mut self) {
        let mut batch = Vec::with_capacity(1 << 16);
        loop {
            let (first_lsn, last_lsn, waiters) = {
                let mut p = self
                    .shared
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                while p.buf.is_empty() && !p.closing {
                    p = self
                        .shared
                        .wake_writer
                        .wait(p)
                        .unwrap_or_else(|e| e.into_inner());
                }
                if p.buf.is_empty() {
                    return; // closing, nothing left
                }
                std::mem::swap(&mut p.buf, &mut batch);
                (
                    p.first_lsn_in_buf,
                    p.next_lsn - 1,
                    std::mem::take(&mut p.waiters),
                )
            };
            let started = std::time::Instant::now();
            let result = self.write_batch(&mut batch, first_lsn, last_lsn);
            if result.is_ok() {
                metrics::histogram!(crate::metrics::WAL_FSYNC_DURATION)
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!(crate::metrics::WAL_BATCHES_TOTAL).increment(1);
                metrics::counter!(crate::metrics::WAL_RECORDS_TOTAL)
                    .increment(last_lsn + 1 - first_lsn);
            }
            batch.clear();
            if let Err(WalError::Poisoned(why)) = &result {
                tracing::error!(error = %why, "WAL poisoned; refusing further writes");
                self.shared
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .poisoned = Some(why.clone());
            }
            for w in waiters {
                // A waiter that gave up (its request was cancelled) needs no answer.
                let _ = w.send(result.clone());
            }
        }
    }

    fn write_batch(
        &mut self,
        batch: &mut Vec<u8>,
        first_lsn: u64,
        last_lsn: u64,
    ) -> Result<(), WalError> {
        let result = self.try_write_batch(batch, first_lsn, last_lsn);
        if let Err(WalError::Write(_)) = &result {
            // The batch is not in the log; say so before the next one.
            self.abandoned = Some(match self.abandoned {
                Some((from, _)) => (from, last_lsn),
                None => (first_lsn, last_lsn),
            });
        }
        result
    }

    fn try_write_batch(
        &mut self,
        batch: &mut Vec<u8>,
        first_lsn: u64,
        last_lsn: u64,
    ) -> Result<(), WalError> {
        if self.active.bytes >= self.shared.opts.segment_bytes_max {
            self.roll(first_lsn)?;
        }
        let start = self.active.bytes;
        let mut out = Vec::new();
        let to_write: &mut Vec<u8> = match self.abandoned {
            Some((from, through)) => {
                let body = from.to_le_bytes();
                record::encode_into(
                    &mut out,
                    through,
                    KIND_ABANDONED,
                    &body,
                    record::body_crc(KIND_ABANDONED, &body),
                );
                out.extend_from_slice(batch);
                &mut out
            }
            None => batch,
        };
        let len = (to_write.len() as u64).to_le_bytes();
        record::encode_into(
            to_write,
            last_lsn,
            KIND_BATCH_END,
            &len,
            record::body_crc(KIND_BATCH_END, &len),
        );
        let to_write: &[u8] = to_write;
        let end = start + to_write.len() as u64;
        if end > self.allocated {
            // Zero-fill ahead, so that the next batches' syncs change no size. A failure
            // here (disk full) leaves only zeros, which read as the log's end.
            let opts = &self.shared.opts;
            let ahead = (self.allocated + PREALLOCATE_BYTES).min(opts.segment_bytes_max);
            let target = end.max(ahead);
            if let Err(e) = write_zeros(&self.file, self.allocated, target) {
                return Err(WalError::Write(e.to_string()));
            }
            self.allocated = target;
        }
        if let Err(e) = self.file.write_all_at(to_write, start) {
            // Leave nothing half-written: zero what the batch may have written.
            if let Err(z) = write_zeros(&self.file, start, end) {
                return Err(WalError::Poisoned(format!(
                    "write failed ({e}) and zeroing it back failed ({z})"
                )));
            }
            return Err(WalError::Write(e.to_string()));
        }
        if self.shared.opts.fsync {
            if let Err(e) = self.file.sync_data() {
                return Err(WalError::Poisoned(format!("fdatasync failed: {e}")));
            }
        }
        self.abandoned = None;
        self.shared
            .batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.active.bytes += to_write.len() as u64;
        let mut segs = self
            .shared
            .segments
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(last) = segs.back_mut() {
            last.bytes = self.active.bytes;
        }
        Ok(())
    }

    fn roll(&mut self, first_lsn: u64) -> Result<(), WalError> {
        // The LSN the new segment starts with is the batch's first, or the abandoned
        // range's, whichever comes first.
        let first = self
            .abandoned
            .map_or(first_lsn, |(from, _)| from.min(first_lsn));
        let file = create_segment(&self.shared.opts.dir, first)
            .map_err(|e| WalError::Write(e.to_string()))?;
        self.allocated = file
            .metadata()
            .map_err(|e| WalError::Write(e.to_string()))?
            .len();
        self.file = file;
        self.active = Segment {
            first_lsn: first,
            bytes: 0,
        };
        self.shared
            .segments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(self.active);
        Ok(())
    }
}
