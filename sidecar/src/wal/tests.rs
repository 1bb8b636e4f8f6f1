use std::path::Path;

use super::*;

fn opts(dir: &Path) -> WalOptions {
    WalOptions {
        dir: dir.to_path_buf(),
        segment_bytes_max: 64 * 1024,
        fsync: true,
    }
}

type Replayed = Vec<(u64, Vec<u8>)>;

/// Opens the WAL and collects every replayed record.
fn open_collect(o: WalOptions) -> Result<(Wal, Replayed), WalError> {
    let mut seen = Vec::new();
    let (wal, _) = Wal::open(o, |lsn, body| {
        seen.push((lsn, body.to_vec()));
        Ok(())
    })?;
    Ok((wal, seen))
}

fn body(i: u64) -> Vec<u8> {
    format!("record number {i}").into_bytes()
}

/// Appends `body(i)` for each `i` of `lsns`, each waited until durable.
async fn append_durable(wal: &Wal, lsns: std::ops::RangeInclusive<u64>) {
    for i in lsns {
        let mut a = wal.append(&body(i), true).unwrap();
        assert_eq!(a.lsn, i, "appended at the LSN its body names");
        a.wait_durable().await.unwrap();
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn appends_replay_in_order_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, seen) = open_collect(opts(dir.path())).unwrap();
    assert!(seen.is_empty());
    for i in 1..=100 {
        let mut a = wal.append(&body(i), true).unwrap();
        assert_eq!(a.lsn, i);
        a.wait_durable().await.unwrap();
    }
    wal.close();
    let (wal, seen) = open_collect(opts(dir.path())).unwrap();
    assert_eq!(seen.len(), 100);
    for (i, (lsn, b)) in seen.iter().enumerate() {
        assert_eq!(
            (*lsn, b.as_slice()),
            (i as u64 + 1, body(i as u64 + 1).as_slice())
        );
    }
    assert_eq!(wal.append(b"next", false).unwrap().lsn, 101);
    wal.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_covers_many_writers_with_one_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_collect(opts(dir.path())).unwrap();
    let writers = 64;
    let per_writer = 20;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let wal = wal.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                let mut a = wal.append(&body(w * 1000 + i), true).unwrap();
                a.wait_durable().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let records = writers * per_writer;
    let batches = wal.batches();
    eprintln!("{records} records in {batches} batches");
    // Every writer waits for its fsync before its next append, so with 64 writers a
    // batch holds many records: far fewer syncs than records.
    assert!(
        batches * 4 <= records,
        "{records} records took {batches} batches"
    );
    wal.close();
    let (_, seen) = open_collect(opts(dir.path())).unwrap();
    assert_eq!(seen.len() as u64, records);
}

#[tokio::test]
async fn a_torn_tail_at_any_byte_is_cut_back_to_the_last_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_collect(opts(dir.path())).unwrap();
    append_durable(&wal, 1..=3).await;
    wal.close();
    let seg = segments(dir.path()).pop().unwrap();
    let full = fs::read(&seg).unwrap();
    let [two, three_records] = records_end(&full, [2, 3]);
    let two_records = after_end(&full, two);
    assert!(
        full[after_end(&full, three_records)..]
            .iter()
            .all(|b| *b == 0),
        "zero fill after"
    );
    // A write torn anywhere in the third record, over zero fill (a preallocated segment)
    // or at the file's end (a segment as older versions wrote it).
    for cut in two_records..three_records {
        for zero_filled in [true, false] {
            let case = tempfile::tempdir().unwrap();
            let path = case.path().join(seg.file_name().unwrap());
            let mut bytes = full[..cut].to_vec();
            if zero_filled {
                bytes.resize(full.len(), 0);
            }
            fs::write(&path, &bytes).unwrap();
            let (wal, seen) = open_collect(opts(case.path())).unwrap();
            assert_eq!(seen.len(), 2, "cut at {cut}");
            // The log goes on from the cut, with the next LSN.
            wal.append(b"after", true)
                .unwrap()
                .wait_durable()
                .await
                .unwrap();
            wal.close();
            let after = fs::read(&path).unwrap();
            let end = two_records + record::HEADER_LEN + 1 + 5 + BATCH_END_BYTES;
            assert_eq!(after[..two_records], full[..two_records], "cut at {cut}");
            assert!(
                matches!(
                    record::decode(&after[two_records..]),
                    Decoded::Record { lsn: 3, .. }
                ),
                "cut at {cut}: the next record follows the two whole ones"
            );
            assert!(
                after[end..].iter().all(|b| *b == 0),
                "cut at {cut} (zero filled: {zero_filled}): nothing of the torn record is left"
            );
        }
    }
}

/// Where each of the first `n[i]` data records of a segment's bytes ends (batch ends
/// are passed over, not counted).
fn records_end<const N: usize>(bytes: &[u8], n: [usize; N]) -> [usize; N] {
    n.map(|count| {
        let mut off = 0;
        for i in 0..count {
            if i > 0 {
                off = after_end(bytes, off);
            }
            match record::decode(&bytes[off..]) {
                Decoded::Record { encoded_len, .. } => off += encoded_len,
                other => panic!("{other:?}"),
            }
        }
        off
    })
}

/// `off`, or just past the batch end that starts there.
fn after_end(bytes: &[u8], off: usize) -> usize {
    match record::decode(&bytes[off..]) {
        Decoded::Record {
            kind: record::KIND_BATCH_END,
            encoded_len,
            ..
        } => off + encoded_len,
        _ => off,
    }
}

/// The bytes of a batch end record.
const BATCH_END_BYTES: usize = record::HEADER_LEN + 1 + 8;

#[tokio::test]
async fn the_writer_zero_fills_ahead_and_a_scan_reads_zeros_as_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let o = WalOptions {
        segment_bytes_max: 64 * PREALLOCATE_BYTES,
        ..opts(dir.path())
    };
    let (wal, _) = open_collect(o.clone()).unwrap();
    append_durable(&wal, 1..=3).await;
    wal.close();
    let seg = segments(dir.path()).pop().unwrap();
    let bytes = fs::read(&seg).unwrap();
    let [data] = records_end(&bytes, [3]);
    let data = after_end(&bytes, data);
    assert_eq!(bytes.len() as u64, PREALLOCATE_BYTES, "a chunk ahead");
    assert!(bytes[data..].iter().all(|b| *b == 0));
    // Zero fill is no torn tail: nothing reported, nothing cut, the log goes on.
    let (stats, torn) = scan(dir.path(), |_, _| Ok(())).unwrap();
    assert!(torn.is_none());
    assert_eq!((stats.records, stats.bytes), (3, data as u64));
    let mut seen = Vec::new();
    let (wal, stats) = Wal::open(o.clone(), |lsn, _| {
        seen.push(lsn);
        Ok(())
    })
    .unwrap();
    assert_eq!((seen, stats.truncated_bytes), (vec![1, 2, 3], 0));
    wal.append(b"four", true)
        .unwrap()
        .wait_durable()
        .await
        .unwrap();
    wal.close();
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        PREALLOCATE_BYTES,
        "no growth"
    );
    let (_, seen) = open_collect(o.clone()).unwrap();
    assert_eq!(seen.last().unwrap(), &(4, b"four".to_vec()));

    // Damage followed by zeros, then a valid record: still damage in the middle.
    let mut bytes = fs::read(&seg).unwrap();
    let [one, two] = records_end(&bytes, [1, 2]);
    bytes[one..two].fill(0);
    fs::write(&seg, &bytes).unwrap();
    assert!(matches!(
        open_collect(o),
        Err(WalError::Corrupt { offset, .. }) if offset as usize == one
    ));
}

#[tokio::test]
async fn damage_before_valid_records_is_refused_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_collect(opts(dir.path())).unwrap();
    append_durable(&wal, 1..=10).await;
    wal.close();
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let [data] = records_end(&bytes, [10]);
    let at = data / 3;
    bytes[at] ^= 0x01;
    fs::write(&seg, &bytes).unwrap();
    match open_collect(opts(dir.path())) {
        Err(WalError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, seg);
            assert!(offset as usize <= at);
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a flipped bit in the middle must not be skipped"),
    }
    // Nothing was truncated by the refused open.
    assert_eq!(fs::read(&seg).unwrap(), bytes);
}

#[tokio::test]
async fn segments_roll_and_are_released_only_below_the_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_collect(opts(dir.path())).unwrap();
    let big = vec![7u8; 10_000];
    for _ in 0..40 {
        wal.append(&big, true)
            .unwrap()
            .wait_durable()
            .await
            .unwrap();
    }
    let before = segments(dir.path());
    assert!(before.len() > 3, "rolled into several segments: {before:?}");
    // Nothing is released below LSN 1.
    assert_eq!(wal.release_through(0).unwrap(), 0);
    // Releasing through LSN 20 deletes only segments whose records are all <= 20.
    wal.release_through(20).unwrap();
    let after = segments(dir.path());
    assert!(after.len() < before.len());
    wal.close();
    let (_, seen) = open_collect(opts(dir.path())).unwrap();
    let first = seen.first().unwrap().0;
    assert!(
        first <= 21,
        "record 21 is still there (first replayed: {first})"
    );
    assert_eq!(seen.last().unwrap().0, 40);
    // The active segment is never released.
    let (wal, _) = open_collect(opts(dir.path())).unwrap();
    wal.release_through(u64::MAX - 1).unwrap();
    assert_eq!(segments(dir.path()).len(), 1);
    wal.close();
}

#[tokio::test]
async fn a_missing_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_collect(opts(dir.path())).unwrap();
    let big = vec![1u8; 20_000];
    for _ in 0..20 {
        wal.append(&big, true)
            .unwrap()
            .wait_durable()
            .await
            .unwrap();
    }
    wal.close();
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    fs::remove_file(&segs[1]).unwrap();
    match open_collect(opts(dir.path())) {
        Err(WalError::Corrupt { reason, .. }) => assert!(reason.contains("missing"), "{reason}"),
        other => panic!(
            "expected a missing-segment error, got {:?}",
            other.map(|_| ())
        ),
    }
}

#[tokio::test]
async fn an_abandoned_range_replays_as_a_deliberate_gap() {
    // What the writer leaves after a failed batch: records 1-2, an abandoned marker for
    // 3-4, then record 5.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    for lsn in 1..=2 {
        let b = body(lsn);
        record::encode_into(
            &mut bytes,
            lsn,
            KIND_DATA,
            &b,
            record::body_crc(KIND_DATA, &b),
        );
    }
    let from = 3u64.to_le_bytes();
    record::encode_into(
        &mut bytes,
        4,
        KIND_ABANDONED,
        &from,
        record::body_crc(KIND_ABANDONED, &from),
    );
    let b = body(5);
    record::encode_into(
        &mut bytes,
        5,
        KIND_DATA,
        &b,
        record::body_crc(KIND_DATA, &b),
    );
    fs::write(segment_path(dir.path(), 1), &bytes).unwrap();
    let (wal, seen) = open_collect(opts(dir.path())).unwrap();
    let lsns: Vec<u64> = seen.iter().map(|(l, _)| *l).collect();
    assert_eq!(lsns, [1, 2, 5]);
    assert_eq!(wal.append(b"x", false).unwrap().lsn, 6);
    wal.close();
}

#[tokio::test]
async fn the_watermark_waits_for_unapplied_records() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_collect(opts(dir.path())).unwrap();
    let a = wal.append(b"one", false).unwrap();
    let b = wal.append(b"two", false).unwrap();
    assert_eq!(wal.oldest_unapplied_lsn(), 1);
    drop(a);
    assert_eq!(wal.oldest_unapplied_lsn(), 2);
    drop(b);
    assert_eq!(wal.oldest_unapplied_lsn(), 3);
    wal.close();
}

/// Opens the WAL with a floor of LSNs named by saved flush progress; collects the replay.
fn open_above_collect(o: WalOptions, lsn_floor: u64) -> Result<(Wal, Replayed), WalError> {
    let mut seen = Vec::new();
    let (wal, _) = Wal::open_above(o, 0, lsn_floor, |lsn, body| {
        seen.push((lsn, body.to_vec()));
        Ok(())
    })?;
    Ok((wal, seen))
}

#[tokio::test]
async fn an_lsn_the_flushed_lsn_names_is_never_given_again() {
    // `memory` records are applied before the writer has them on disk: the flusher can
    // store them and note a flushed LSN past the WAL's end. After a crash the log ends
    // below that LSN; reusing those numbers would make the next start skip acknowledged
    // records as "already flushed".
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_collect(opts(dir.path())).unwrap();
    append_durable(&wal, 1..=3).await;
    wal.close();

    // The flush progress says 61: every record through it is in the backend.
    let reopen = |watermark: u64| {
        let mut seen = Vec::new();
        let (wal, _) = Wal::open_above(opts(dir.path()), watermark, watermark, |lsn, body| {
            seen.push((lsn, body.to_vec()));
            Ok(())
        })
        .unwrap();
        (wal, seen)
    };
    let (wal, seen) = reopen(61);
    assert!(seen.is_empty(), "records 1-3 are flushed");
    let mut a = wal.append(b"local", true).unwrap();
    assert_eq!(a.lsn, 62, "numbering resumes above the flushed LSN");
    a.wait_durable().await.unwrap();
    drop(a);
    wal.close();

    let (wal, seen) = reopen(61);
    assert_eq!(
        seen,
        vec![(62, b"local".to_vec())],
        "the acknowledged record replays"
    );
    assert_eq!(wal.append(b"next", false).unwrap().lsn, 63);
    wal.close();
}

#[tokio::test]
async fn an_lsn_the_flushed_marks_name_is_never_given_again() {
    // The same with a floor from elsewhere (the flushed marks), from an empty log too.
    for records in [0u64, 2] {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open_collect(opts(dir.path())).unwrap();
        append_durable(&wal, 1..=records).await;
        wal.close();
        let (wal, _) = open_above_collect(opts(dir.path()), 40).unwrap();
        let mut a = wal.append(b"after", true).unwrap();
        assert_eq!(a.lsn, 41);
        a.wait_durable().await.unwrap();
        drop(a);
        wal.close();
        let (_, seen) = open_collect(opts(dir.path())).unwrap();
        assert_eq!(
            seen.last(),
            Some(&(41, b"after".to_vec())),
            "{records} records before"
        );
        assert_eq!(seen.len() as u64, records + 1);
    }
}

/// One batch as the writer lays it out: its records, then its end.
fn laid_out_batch(records: &[(u64, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (lsn, body) in records {
        record::encode_into(
            &mut out,
            *lsn,
            KIND_DATA,
            body,
            record::body_crc(KIND_DATA, body),
        );
    }
    let len = (out.len() as u64).to_le_bytes();
    let last = records.last().expect("a batch has records").0;
    let crc = record::body_crc(record::KIND_BATCH_END, &len);
    record::encode_into(&mut out, last, record::KIND_BATCH_END, &len, crc);
    out
}

/// Opens a log of one segment holding `bytes`; the LSNs replayed, or the error.
fn open_bytes(bytes: &[u8]) -> Result<Vec<u64>, WalError> {
    let dir = tempfile::tempdir().unwrap();
    fs::write(segment_path(dir.path(), 1), bytes).unwrap();
    let (wal, seen) = open_collect(opts(dir.path()))?;
    wal.close();
    Ok(seen.into_iter().map(|(lsn, _)| lsn).collect())
}

#[test]
fn the_writer_ends_every_batch_and_replay_checks_the_ends() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_collect(opts(dir.path())).unwrap();
    rt.block_on(async {
        append_durable(&wal, 1..=3).await;
    });
    wal.close();
    let bytes = fs::read(segments(dir.path()).pop().unwrap()).unwrap();
    let (mut at, mut batch_start, mut ends) = (0, 0, Vec::new());
    while let Decoded::Record {
        lsn,
        kind,
        body,
        encoded_len,
    } = record::decode(&bytes[at..])
    {
        if kind == record::KIND_BATCH_END {
            let len = u64::from_le_bytes(body.try_into().unwrap());
            assert_eq!(
                len as usize,
                at - batch_start,
                "the end gives the batch's length"
            );
            ends.push(lsn);
            batch_start = at + encoded_len;
        }
        at += encoded_len;
    }
    assert_eq!(ends, vec![1, 2, 3], "one end per batch, with its last LSN");
    // An end that names another LSN than the batch's last is damage.
    let mut bad = laid_out_batch(&[(1, b"a")]);
    bad.extend(laid_out_batch(&[(2, b"b")]));
    let end_of_second = bad.len() - BATCH_END_BYTES;
    let len = 10u64.to_le_bytes();
    let mut wrong = Vec::new();
    let crc = record::body_crc(record::KIND_BATCH_END, &len);
    record::encode_into(&mut wrong, 7, record::KIND_BATCH_END, &len, crc);
    bad.truncate(end_of_second);
    bad.extend(wrong);
    bad.extend(laid_out_batch(&[(3, b"c")]));
    assert!(matches!(open_bytes(&bad), Err(WalError::Corrupt { .. })));
}

#[test]
fn a_hole_in_the_last_batch_is_a_torn_tail_and_one_before_a_later_batch_is_damage() {
    let first = laid_out_batch(&[(1, b"one")]);
    let last = laid_out_batch(&[(2, b"two"), (3, b"three"), (4, b"four")]);
    let log = [first.clone(), last.clone()].concat();
    assert_eq!(open_bytes(&log).unwrap(), vec![1, 2, 3, 4]);
    let [two_end, three_end] = records_end(&last, [1, 2]);

    // A power cut kept the last batch's later pages and lost an earlier one: a hole
    // (zeros, or stale bytes) with valid records after it, inside the batch.
    for fill in [0u8, 0x5a] {
        let mut holed = log.clone();
        holed[first.len() + two_end..first.len() + three_end].fill(fill);
        assert_eq!(open_bytes(&holed).unwrap(), vec![1, 2], "fill {fill:#x}");
        // The same with the batch's end lost as well.
        let mut no_end = holed.clone();
        let end_at = log.len() - BATCH_END_BYTES;
        no_end[end_at..].fill(fill);
        assert_eq!(
            open_bytes(&no_end).unwrap(),
            vec![1, 2],
            "fill {fill:#x}, no end"
        );
    }
    // The log goes on after the cut, without the cut records.
    let dir = tempfile::tempdir().unwrap();
    let mut holed = log.clone();
    holed[first.len() + two_end..first.len() + three_end].fill(0);
    fs::write(segment_path(dir.path(), 1), &holed).unwrap();
    let (wal, seen) = open_collect(opts(dir.path())).unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(wal.append(b"after", false).unwrap().lsn, 3);
    wal.close();
    let (_, seen) = open_collect(opts(dir.path())).unwrap();
    assert_eq!(seen.last(), Some(&(3, b"after".to_vec())));

    // A hole in a batch with a later batch after it: that batch was synced before the
    // later one was written, and acknowledged. Refused, naming the offset.
    let mut early = log.clone();
    let [one_end] = records_end(&first, [1]);
    early[..one_end].fill(0);
    assert!(matches!(
        open_bytes(&early),
        Err(WalError::Corrupt { offset: 0, .. })
    ));
    // A log without batch ends (as older versions wrote) keeps the strict rule.
    let mut old = Vec::new();
    for (lsn, b) in [(1u64, &b"one"[..]), (2, b"two"), (3, b"three")] {
        record::encode_into(&mut old, lsn, KIND_DATA, b, record::body_crc(KIND_DATA, b));
    }
    let [one_end, two_end] = records_end(&old, [1, 2]);
    old[one_end..two_end].fill(0);
    assert!(matches!(open_bytes(&old), Err(WalError::Corrupt { .. })));
}
