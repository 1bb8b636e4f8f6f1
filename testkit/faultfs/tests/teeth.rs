//! The filesystem shows its teeth on a real mount: what was not made durable is lost by
//! a power cut, and what was is kept, for plain files and for SQLite.
//!
//! Each test mounts its own filesystem in a temporary directory, which needs root and
//! `/dev/fuse` (as on the project's machines and CI); without them the test fails and
//! says so.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use agentstate_faultfs::{CutMode, FaultFs, PAGE};

/// A mounted faultfs in a fresh temporary directory, unmounted before the directory goes.
struct Mount {
    fs: Option<FaultFs>,
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Mount {
    fn new() -> Mount {
        let dir = tempfile::tempdir().expect("a temporary directory for the mountpoint");
        let root = dir.path().to_path_buf();
        let fs = FaultFs::mount(&root).unwrap_or_else(|e| {
            panic!(
                "these tests mount a FUSE filesystem and need root and /dev/fuse \
                 (/dev/fuse present: {}; running as uid {}): {e}",
                Path::new("/dev/fuse").exists(),
                // SAFETY: geteuid cannot fail and touches no memory.
                unsafe { libc::geteuid() }
            )
        });
        Mount {
            fs: Some(fs),
            _dir: dir,
            root,
        }
    }

    fn fs(&self) -> &FaultFs {
        self.fs.as_ref().expect("mounted")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn cut(&self, mode: CutMode, seed: u64) -> agentstate_faultfs::CutReport {
        let r = self.fs().cut(mode, seed);
        eprintln!("{r}");
        r
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(fs) = self.fs.take() {
            if let Err(e) = fs.unmount() {
                eprintln!("unmount: {e}");
            }
        }
    }
}

fn sync_dir(dir: &Path) {
    File::open(dir).unwrap().sync_all().unwrap();
}

fn write_file(path: &Path, bytes: &[u8], sync: bool) {
    let mut f = File::create(path).unwrap();
    f.write_all(bytes).unwrap();
    if sync {
        f.sync_all().unwrap();
    }
}

#[test]
fn unsynced_data_is_lost_and_synced_data_survives_drop_all() {
    let m = Mount::new();
    let (synced, unsynced) = (m.path("synced"), m.path("unsynced"));
    write_file(&synced, b"", true);
    write_file(&unsynced, b"", true);
    sync_dir(&m.root);

    let f = OpenOptions::new().write(true).open(&synced).unwrap();
    f.write_all_at(b"durable", 0).unwrap();
    f.sync_data().unwrap();
    f.write_all_at(b" and then some", 7).unwrap();
    drop(f);
    fs::write(&unsynced, b"never synced").unwrap();
    assert_eq!(fs::read(&synced).unwrap(), b"durable and then some");
    assert_eq!(fs::read(&unsynced).unwrap(), b"never synced");

    let r = m.cut(CutMode::DropAll, 1);
    assert_eq!(fs::read(&synced).unwrap(), b"durable");
    assert_eq!(fs::read(&unsynced).unwrap(), b"");
    assert_eq!(r.bytes_dropped, 14 + 12);
}

#[test]
fn a_synced_file_is_lost_without_its_directory_sync() {
    // `kept` and `lost` are both written and fsynced; only `kept`'s directory is synced.
    let setup = || {
        let m = Mount::new();
        fs::create_dir(m.path("d")).unwrap();
        sync_dir(&m.root);
        write_file(&m.path("d/kept"), b"kept", true);
        sync_dir(&m.path("d"));
        write_file(&m.path("d/lost"), b"lost", true);
        assert_eq!(fs::read(m.path("d/lost")).unwrap(), b"lost");
        m
    };
    // A seed whose cut drops (or keeps) the one pending directory change.
    let seed_dropping = |m: &Mount, mode, dropped| {
        (0..100)
            .find(|&s| m.fs().preview_cut(mode, s).1.dir_ops_dropped == dropped)
            .expect("some seed does it")
    };
    for mode in [CutMode::DropAll, CutMode::DirPrefix] {
        let m = setup();
        let seed = seed_dropping(&m, mode, 1);
        assert_eq!(m.cut(mode, seed).dir_ops_dropped, 1);
        assert!(!m.path("d/lost").exists(), "{mode:?}");
        assert_eq!(fs::read(m.path("d/kept")).unwrap(), b"kept", "{mode:?}");
    }
    // A prefix that keeps the name keeps the fsynced data under it.
    let m = setup();
    let seed = seed_dropping(&m, CutMode::DirPrefix, 0);
    m.cut(CutMode::DirPrefix, seed);
    assert_eq!(fs::read(m.path("d/lost")).unwrap(), b"lost");
}

#[test]
fn pages_mode_leaves_holes_reproducibly() {
    let pages = 32;
    let run = |seed| {
        let m = Mount::new();
        let path = m.path("f");
        write_file(&path, &vec![b'o'; pages * PAGE as usize], true);
        sync_dir(&m.root);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&vec![b'n'; pages * PAGE as usize], 0)
            .unwrap();
        drop(f);
        let r = m.cut(CutMode::Pages, seed);
        (fs::read(&path).unwrap(), r.pages_dropped)
    };
    let (data, dropped) = run(7);
    assert_eq!(data.len(), pages * PAGE as usize);
    let kinds: Vec<u8> = data.chunks(PAGE as usize).map(|p| p[0]).collect();
    for (page, kind) in data.chunks(PAGE as usize).zip(&kinds) {
        assert!(
            page.iter().all(|b| b == kind),
            "each page all old or all new"
        );
    }
    let old = kinds.iter().filter(|&&k| k == b'o').count();
    assert!(old > 0 && old < pages, "holes of old among new: {kinds:?}");
    assert_eq!(dropped, old as u64);
    assert_eq!(run(7), (data.clone(), dropped), "same seed, same result");
    assert_ne!(run(8).0, data, "another seed, another result");
}

#[test]
fn torn_tail_cuts_the_last_write_at_a_sector_boundary() {
    let m = Mount::new();
    let path = m.path("log");
    write_file(&path, b"", true);
    sync_dir(&m.root);
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[b'a'; 1000], 0).unwrap();
    f.write_all_at(&[b'b'; 3000], 1000).unwrap();
    drop(f);
    let r = m.cut(CutMode::TornTail { sector: 512 }, 3);
    assert_eq!(r.writes_torn, 1);
    let data = fs::read(&path).unwrap();
    assert!(data.len() >= 1000 && data.len() < 4000, "{}", data.len());
    assert!(
        data[..1000].iter().all(|&b| b == b'a'),
        "earlier write whole"
    );
    assert!(data[1000..].iter().all(|&b| b == b'b'));
    assert!(
        data.len() == 1000 || data.len().is_multiple_of(512),
        "cut at a 512-byte boundary: {}",
        data.len()
    );
    // Over seeds, every boundary comes up.
    let mut lens = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(0).unwrap();
        f.write_all_at(&[b'a'; 1000], 0).unwrap();
        f.sync_all().unwrap();
        f.write_all_at(&[b'b'; 3000], 1000).unwrap();
        drop(f);
        m.cut(CutMode::TornTail { sector: 512 }, seed);
        lens.insert(fs::metadata(&path).unwrap().len());
    }
    let want = [1000, 1024, 1536, 2048, 2560, 3072, 3584]
        .into_iter()
        .collect();
    assert_eq!(lens, want);
}

#[test]
fn a_rename_over_a_file_without_the_dir_sync_leaves_the_old_file() {
    let m = Mount::new();
    let (f, tmp) = (m.path("state"), m.path("state.tmp"));
    write_file(&f, b"old", true);
    sync_dir(&m.root);
    write_file(&tmp, b"new", true);
    fs::rename(&tmp, &f).unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"new");
    m.cut(CutMode::DropAll, 1);
    assert_eq!(fs::read(&f).unwrap(), b"old");
    assert!(!tmp.exists());

    // With the directory synced, the rename holds.
    write_file(&tmp, b"new", true);
    fs::rename(&tmp, &f).unwrap();
    sync_dir(&m.root);
    m.cut(CutMode::DropAll, 1);
    assert_eq!(fs::read(&f).unwrap(), b"new");
}

#[test]
fn handles_from_before_a_cut_fail_with_eio() {
    let m = Mount::new();
    let path = m.path("f");
    write_file(&path, b"x", true);
    sync_dir(&m.root);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    m.cut(CutMode::DropAll, 0);
    let mut buf = [0u8; 1];
    let e = f.read_at(&mut buf, 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(5), "EIO: {e}");
    assert_eq!(f.sync_all().unwrap_err().raw_os_error(), Some(5));
    drop(f);
    assert_eq!(fs::read(&path).unwrap(), b"x", "reopened, it reads again");
}

#[test]
fn unmounting_with_a_file_still_open_detaches_the_mount() {
    let mut m = Mount::new();
    let f = File::create(m.path("f")).unwrap();
    let fs = m.fs.take().unwrap();
    let busy = fs.unmount().expect_err("busy: a file is open");
    assert_eq!(busy.raw_os_error(), Some(libc::EBUSY), "{busy}");
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(m.root.to_str().unwrap()), "detached");
    // The detached filesystem still serves the open file until it is closed.
    f.sync_all().unwrap();
}

#[test]
fn the_sidecar_s_file_calls_work() {
    // What sidecar/src/wal and durable.rs do: create_dir_all with dir syncs, a segment
    // zero-filled ahead and overwritten with pwrite, fdatasync, set_len, fsync, a
    // replace by rename, remove_file, and fs::copy.
    let m = Mount::new();
    let wal = m.path("data/wal");
    fs::create_dir_all(&wal).unwrap();
    sync_dir(&m.path("data"));
    sync_dir(&m.root);
    let seg = wal.join("00000000000000000001.wal");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&seg)
        .unwrap();
    sync_dir(&wal);
    f.write_all_at(&vec![0; 1 << 20], 0).unwrap();
    f.write_all_at(b"record one", 0).unwrap();
    f.sync_data().unwrap();
    f.write_all_at(b"record two", 10).unwrap();
    assert_eq!(fs::metadata(&seg).unwrap().len(), 1 << 20);
    let progress = m.path("data/flushed");
    fs::write(m.path("data/flushed.tmp"), b"7").unwrap();
    File::open(m.path("data/flushed.tmp"))
        .unwrap()
        .sync_all()
        .unwrap();
    fs::rename(m.path("data/flushed.tmp"), &progress).unwrap();
    sync_dir(&m.path("data"));
    fs::copy(&seg, m.path("data/copy")).unwrap();
    assert_eq!(fs::read(m.path("data/copy")).unwrap().len(), 1 << 20);
    fs::remove_file(m.path("data/copy")).unwrap();

    m.cut(CutMode::DropAll, 9);
    let data = fs::read(&seg).unwrap();
    assert_eq!(data.len(), 1 << 20);
    assert_eq!(&data[..10], b"record one");
    assert!(
        data[10..].iter().all(|&b| b == 0),
        "record two was not synced"
    );
    assert_eq!(fs::read(&progress).unwrap(), b"7");
    assert!(!m.path("data/copy").exists());

    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(10).unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs::remove_file(&seg).unwrap();
    m.cut(CutMode::DropAll, 9);
    assert_eq!(
        fs::read(&seg).unwrap(),
        b"record one",
        "the remove was not synced"
    );
}

// ---- SQLite ----
//
// The writer runs in a child process (this test binary again, running only the ignored
// `sqlite_writer_child`), so that it can be SIGKILLed like a crash: closing a connection
// would checkpoint and tidy up, which a power cut never does.

const CHILD_ENV: &str = "FAULTFS_SQLITE_CHILD";

/// In the child: open `db` in WAL mode, commit `synced` rows under `synchronous=FULL`,
/// then `more` rows under `synchronous=<mode>`, print `ready`, and wait to be killed.
#[test]
#[ignore = "the child process of the SQLite tests, which run it themselves"]
fn sqlite_writer_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [db, synced, mode, more] = parts[..] else {
        panic!("bad {CHILD_ENV}: {spec}");
    };
    let conn = rusqlite::Connection::open(db).unwrap();
    let journal: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    conn.execute_batch(
        "PRAGMA synchronous=FULL;
         CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
    )
    .unwrap();
    let insert = |n: u64| {
        conn.execute(
            "INSERT INTO t (v) VALUES (?1)",
            [format!("row {n} {}", "x".repeat(500))],
        )
        .unwrap();
    };
    let synced: u64 = synced.parse().unwrap();
    let more: u64 = more.parse().unwrap();
    for n in 0..synced {
        insert(n);
    }
    conn.execute_batch(&format!("PRAGMA synchronous={mode}"))
        .unwrap();
    for n in synced..synced + more {
        insert(n);
    }
    println!("faultfs-child ready");
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// Runs the child writer on `db` and SIGKILLs it once it has committed everything (or
/// after a minute, failing: a hung child must not hang the test run).
fn crash_sqlite_writer(db: &Path, synced: u64, mode: &str, more: u64) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["sqlite_writer_child", "--exact", "--ignored", "--nocapture"])
        .env(
            CHILD_ENV,
            format!("{}|{synced}|{mode}|{more}", db.display()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the SQLite child");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("faultfs-child ready"));
        let _ = tx.send(ready);
    });
    let ready = rx.recv_timeout(std::time::Duration::from_secs(60));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        ready,
        Ok(true),
        "the SQLite child did not commit everything within a minute: {status}"
    );
}

fn open_after_cut(db: &Path) -> (String, i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    (check, rows)
}

#[test]
fn sqlite_wal_with_synchronous_full_keeps_every_commit() {
    let m = Mount::new();
    let db = m.path("state.db");
    crash_sqlite_writer(&db, 10, "FULL", 20);
    let r = m.cut(CutMode::DropAll, 5);
    assert!(
        r.unsynced_files > 0,
        "the -shm file at least is never synced"
    );
    assert_eq!(open_after_cut(&db), ("ok".into(), 30));
}

#[test]
fn sqlite_wal_with_synchronous_off_loses_recent_commits() {
    let m = Mount::new();
    let db = m.path("state.db");
    crash_sqlite_writer(&db, 10, "OFF", 20);
    let r = m.cut(CutMode::DropAll, 5);
    assert!(r.bytes_dropped > 0);
    let (check, rows) = open_after_cut(&db);
    assert_eq!(check, "ok");
    assert_eq!(rows, 10, "the 20 commits made without fsync are gone");
}
