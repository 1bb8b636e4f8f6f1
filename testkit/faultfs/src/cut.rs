//! Power cuts: the new durable image built from the old one plus some of what was not
//! durable, chosen by a mode and a seed. The same model state, mode and seed always give
//! the same image (the random choices come from a SplitMix64 stream drawn in inode and
//! page order).
//!
//! After a cut the volatile view is the new image, as after a reboot and a remount:
//! nothing is unsynced, and every handle opened before it answers `EIO`.

use std::fmt;

use crate::image::{Body, Image, Ino, Node, PAGE};
use crate::model::{apply_write, FileLog, FileOp, Model};

/// Which of the unsynced changes survive a cut.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CutMode {
    /// Nothing unsynced survives: file data as at each file's last fsync, directory
    /// entries as at each directory's last fsync.
    #[default]
    DropAll,
    /// Each unsynced 4 KiB page of each file is kept (its latest content) or dropped
    /// (its content at the last fsync) at random: holes of old data among new. The size
    /// is, at random, the durable size or any size the file had since its last fsync;
    /// bytes past both the old and the new content read as zeros. Directory changes are
    /// all dropped, as in `DropAll`.
    Pages,
    /// Every unsynced write of each file survives, in order, except its last write
    /// request, which survives only up to a random `sector` boundary (an absolute file
    /// offset that is a multiple of `sector`, maybe the write's start: nothing of it).
    /// A write that extends the file extends it only as far as its surviving part.
    /// Truncates after that last write still apply. Directory changes are all dropped.
    TornTail { sector: u32 },
    /// The unsynced directory changes, in the order they happened across all
    /// directories, survive as a random prefix (from none to all): the order a metadata
    /// journal commits in. File data as in `DropAll`, so that this mode tests names
    /// alone; a file whose name survives but that was never fsynced is empty.
    DirPrefix,
}

/// What a cut threw away.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CutReport {
    pub mode: CutMode,
    pub seed: u64,
    /// Files with data or size changes since their last fsync.
    pub unsynced_files: usize,
    /// Write requests since those files' last fsync.
    pub unsynced_writes: usize,
    /// Last writes cut short (`TornTail`).
    pub writes_torn: usize,
    /// Pages of those files that read differently after the cut than before it (a page
    /// past the new end counts; a file that is gone counts whole).
    pub pages_dropped: u64,
    /// Bytes of those files that read differently after the cut than before it,
    /// counted within the size before it.
    pub bytes_dropped: u64,
    /// Directory changes not durable at the cut (a cross-directory rename is two).
    pub dir_ops_pending: usize,
    /// Of those, how many did not survive.
    pub dir_ops_dropped: usize,
    /// Inodes of the volatile view that the new image does not have.
    pub inodes_lost: usize,
}

impl fmt::Display for CutReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cut {:?} seed {}: {} unsynced files ({} writes): {} bytes / {} pages dropped, \
             {} writes torn; {} of {} directory changes dropped; {} inodes lost",
            self.mode,
            self.seed,
            self.unsynced_files,
            self.unsynced_writes,
            self.bytes_dropped,
            self.pages_dropped,
            self.writes_torn,
            self.dir_ops_dropped,
            self.dir_ops_pending,
            self.inodes_lost,
        )
    }
}

/// SplitMix64: small, and the same stream for a seed in every version of this crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 if `n` is 0); the modulo bias is negligible here.
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn coin(&mut self) -> bool {
        self.next() >> 63 == 1
    }
}

impl Model {
    /// Cuts the power: replaces the volatile view (and the durable image) by what
    /// `mode` and `seed` keep. The caller must have stopped every writer first (killed
    /// the process with SIGKILL and waited for it): a write arriving after the cut
    /// comes through a handle the cut forgot, and fails with `EIO`.
    pub fn cut(&mut self, mode: CutMode, seed: u64) -> CutReport {
        let mut rng = Rng(seed);
        let mut img = self.durable.clone();
        let mut report = CutReport {
            mode,
            seed,
            dir_ops_pending: self.dir_ops.len(),
            ..CutReport::default()
        };

        let keep_ops = match mode {
            CutMode::DirPrefix => rng.below(self.dir_ops.len() + 1),
            _ => 0,
        };
        for op in &self.dir_ops[..keep_ops] {
            op.apply(&mut img);
        }
        report.dir_ops_dropped = self.dir_ops.len() - keep_ops;

        for (ino, log) in &self.logs {
            report.unsynced_files += 1;
            report.unsynced_writes += log
                .ops
                .iter()
                .filter(|op| matches!(op, FileOp::Write { .. }))
                .count();
            let Some(Node {
                body: Body::File(base),
                ..
            }) = img.nodes.get_mut(ino)
            else {
                continue;
            };
            match mode {
                CutMode::DropAll | CutMode::DirPrefix => {}
                CutMode::Pages => {
                    let latest = self.volatile.node(*ino).and_then(Node::data);
                    *base = pages(base, latest.unwrap_or_default(), log, &mut rng);
                }
                CutMode::TornTail { sector } => {
                    if tear(base, log, u64::from(sector.max(1)), &mut rng) {
                        report.writes_torn += 1;
                    }
                }
            }
        }

        img.collect_garbage();
        for ino in self.logs.keys() {
            let before = self.volatile.node(*ino).and_then(Node::data);
            let after = img.node(*ino).and_then(Node::data);
            let (bytes, pages) = loss(before.unwrap_or_default(), after.unwrap_or_default());
            report.bytes_dropped += bytes;
            report.pages_dropped += pages;
        }
        report.inodes_lost = self
            .volatile
            .nodes
            .keys()
            .filter(|ino| !img.nodes.contains_key(ino))
            .count();
        self.restart_from(img);
        report
    }

    /// The inodes a kernel may hold in its caches: those of the volatile view.
    pub(crate) fn volatile_inos(&self) -> Vec<Ino> {
        self.volatile.nodes.keys().copied().collect()
    }
}

/// `Pages`: the durable bytes `old`, with each dirty page taken from `new` or not.
fn pages(old: &[u8], new: &[u8], log: &FileLog, rng: &mut Rng) -> Vec<u8> {
    let mut sizes = vec![old.len() as u64];
    for &s in &log.sizes {
        if !sizes.contains(&s) {
            sizes.push(s);
        }
    }
    let size = sizes[rng.below(sizes.len())];
    let mut out = vec![0u8; size as usize];
    for p in 0..size.div_ceil(PAGE) {
        let src = if log.dirty.contains(&p) && rng.coin() {
            new
        } else {
            old
        };
        let lo = (p * PAGE) as usize;
        let hi = ((p + 1) * PAGE).min(size) as usize;
        let avail = hi.min(src.len());
        if lo < avail {
            out[lo..avail].copy_from_slice(&src[lo..avail]);
        }
    }
    out
}

/// `TornTail`: replays the log on `data`, the last write cut at a sector boundary.
/// Returns whether there was a write to tear.
fn tear(data: &mut Vec<u8>, log: &FileLog, sector: u64, rng: &mut Rng) -> bool {
    let last = log
        .ops
        .iter()
        .rposition(|op| matches!(op, FileOp::Write { .. }));
    for (i, op) in log.ops.iter().enumerate() {
        match op {
            FileOp::SetLen(size) => data.resize(*size as usize, 0),
            FileOp::Write { off, data: bytes } if Some(i) == last => {
                let end = off + bytes.len() as u64;
                let mut cuts = vec![*off];
                let mut b = (off / sector + 1) * sector;
                while b < end {
                    cuts.push(b);
                    b += sector;
                }
                let at = cuts[rng.below(cuts.len())];
                apply_write(data, *off, &bytes[..(at - off) as usize]);
            }
            FileOp::Write { off, data: bytes } => apply_write(data, *off, bytes),
        }
    }
    last.is_some()
}

/// Bytes (within `before`) and pages that read differently in `after`.
fn loss(before: &[u8], after: &[u8]) -> (u64, u64) {
    let bytes = before
        .iter()
        .enumerate()
        .filter(|(i, b)| after.get(*i) != Some(b))
        .count() as u64;
    let page_count = before.len().max(after.len()).div_ceil(PAGE as usize);
    let pages = (0..page_count)
        .filter(|p| {
            let range = |d: &[u8]| {
                let lo = (p * PAGE as usize).min(d.len());
                let hi = ((p + 1) * PAGE as usize).min(d.len());
                d[lo..hi].to_vec()
            };
            range(before) != range(after)
        })
        .count() as u64;
    (bytes, pages)
}

impl Model {
    /// The image a cut would leave, and its report, without cutting (for debugging).
    pub fn preview_cut(&self, mode: CutMode, seed: u64) -> (Image, CutReport) {
        let mut copy = Model::new();
        copy.durable = self.durable.clone();
        copy.volatile = self.volatile.clone();
        copy.logs = self.logs.clone();
        copy.dir_ops = self.dir_ops.clone();
        let report = copy.cut(mode, seed);
        (copy.durable, report)
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;
    use crate::image::{Kind, ROOT};

    /// A model with one durable file `f` of `pages` pages of `old`, open as `fh`.
    fn with_file(pages: u64, old: u8) -> (Model, Ino, u64) {
        let mut m = Model::new();
        let ino = m
            .create(ROOT, OsStr::new("f"), Kind::File, 0o644, 0, 0)
            .unwrap()
            .ino;
        let fh = m.open(ino).unwrap();
        let root = m.open(ROOT).unwrap();
        m.write(fh, ino, 0, &vec![old; (pages * PAGE) as usize])
            .unwrap();
        m.fsync(fh, ino, false).unwrap();
        m.fsyncdir(root, ROOT).unwrap();
        m.release(root);
        (m, ino, fh)
    }

    fn file(m: &Model) -> Vec<u8> {
        m.volatile().read("f").unwrap().to_vec()
    }

    #[test]
    fn pages_mode_keeps_some_pages_new_and_some_old_reproducibly() {
        let run = |seed| {
            let (mut m, ino, fh) = with_file(16, b'a');
            m.write(fh, ino, 0, &vec![b'b'; 16 * PAGE as usize])
                .unwrap();
            let r = m.cut(CutMode::Pages, seed);
            (file(&m), r)
        };
        let (data, r) = run(42);
        assert_eq!(data.len(), 16 * PAGE as usize);
        let page_kinds: Vec<u8> = data.chunks(PAGE as usize).map(|c| c[0]).collect();
        for (c, k) in data.chunks(PAGE as usize).zip(&page_kinds) {
            assert!(c.iter().all(|b| b == k), "a page is all old or all new");
        }
        assert!(page_kinds.contains(&b'a') && page_kinds.contains(&b'b'));
        let old = page_kinds.iter().filter(|&&k| k == b'a').count() as u64;
        assert_eq!(r.pages_dropped, old);
        assert_eq!(r.bytes_dropped, old * PAGE);
        assert_eq!(run(42), (data, r), "same seed, same cut");
        assert_ne!(run(43).0, run(42).0, "another seed, another cut");
    }

    #[test]
    fn pages_mode_picks_a_size_seen_and_zero_fills_what_no_version_had() {
        let mut sizes = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let (mut m, ino, fh) = with_file(1, b'a');
            m.write(fh, ino, 3 * PAGE, b"tail").unwrap();
            let set = crate::SetAttr {
                size: Some(2 * PAGE),
                ..Default::default()
            };
            m.setattr(ino, Some(fh), set).unwrap();
            m.cut(CutMode::Pages, seed);
            let data = file(&m);
            sizes.insert(data.len() as u64);
            assert!(data[..PAGE as usize].iter().all(|&b| b == b'a'));
            assert!(data[PAGE as usize..]
                .iter()
                .all(|&b| b == 0 || b"tail".contains(&b)));
        }
        let want = [PAGE, 2 * PAGE, 3 * PAGE + 4].into_iter().collect();
        assert_eq!(sizes, want);
    }

    #[test]
    fn torn_tail_keeps_all_but_the_last_write_and_cuts_that_at_a_sector() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let (mut m, ino, fh) = with_file(1, b'a');
            m.write(fh, ino, 100, &[b'b'; 300]).unwrap();
            m.write(fh, ino, 1000, &[b'c'; 2000]).unwrap();
            let r = m.cut(CutMode::TornTail { sector: 512 }, seed);
            assert_eq!(r.writes_torn, 1);
            let data = file(&m);
            assert_eq!(data.len(), PAGE as usize, "the write was inside the file");
            assert!(
                data[100..400].iter().all(|&b| b == b'b'),
                "earlier write whole"
            );
            let kept = data[1000..3000].iter().take_while(|&&b| b == b'c').count();
            assert!(data[1000 + kept..].iter().all(|&b| b == b'a'));
            assert!(
                kept == 0 || (1000 + kept).is_multiple_of(512),
                "cut at a sector boundary"
            );
            seen.insert(kept);
        }
        let want = [0, 24, 536, 1048, 1560].into_iter().collect();
        assert_eq!(seen, want, "every boundary, and nothing at all, happen");
    }

    #[test]
    fn torn_tail_of_an_extending_write_extends_only_as_far_as_it_survived() {
        for seed in 0..50 {
            let (mut m, ino, fh) = with_file(1, b'a');
            m.write(fh, ino, PAGE, &[b'b'; 4096]).unwrap();
            m.cut(CutMode::TornTail { sector: 4096 }, seed);
            assert_eq!(
                file(&m).len(),
                PAGE as usize,
                "the only cut is at its start"
            );
            let (mut m, ino, fh) = with_file(1, b'a');
            m.write(fh, ino, PAGE, &[b'b'; 1500]).unwrap();
            m.cut(CutMode::TornTail { sector: 512 }, seed);
            let len = file(&m).len() as u64;
            assert!(
                len == PAGE || len == PAGE + 512 || len == PAGE + 1024,
                "{len}"
            );
        }
    }

    #[test]
    fn dir_prefix_keeps_a_prefix_of_the_directory_changes() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..100 {
            let mut m = Model::new();
            for n in ["a", "b", "c"] {
                m.create(ROOT, OsStr::new(n), Kind::File, 0o644, 0, 0)
                    .unwrap();
            }
            m.rename(ROOT, OsStr::new("a"), ROOT, OsStr::new("z"), false)
                .unwrap();
            let r = m.cut(CutMode::DirPrefix, seed);
            let names: Vec<String> = m
                .volatile()
                .paths()
                .into_keys()
                .map(|p| p.display().to_string())
                .collect();
            let names = names.join(",");
            let prefixes = ["", "a", "a,b", "a,b,c", "b,c,z"];
            assert!(prefixes.contains(&names.as_str()), "{names}");
            assert_eq!(r.dir_ops_pending, 4);
            seen.insert(names);
        }
        assert_eq!(seen.len(), 5, "every prefix happens: {seen:?}");
    }

    #[test]
    fn dir_prefix_gives_never_synced_files_empty() {
        for seed in 0..20 {
            let mut m = Model::new();
            let ino = m
                .create(ROOT, OsStr::new("f"), Kind::File, 0o644, 0, 0)
                .unwrap()
                .ino;
            let fh = m.open(ino).unwrap();
            m.write(fh, ino, 0, b"data").unwrap();
            m.cut(CutMode::DirPrefix, seed);
            assert!(matches!(m.volatile().read("f"), None | Some(b"")));
        }
    }

    #[test]
    fn preview_leaves_the_model_alone() {
        let (mut m, ino, fh) = with_file(1, b'a');
        m.write(fh, ino, 0, b"b").unwrap();
        let (img, r) = m.preview_cut(CutMode::DropAll, 0);
        assert_eq!(img.read("f").unwrap()[0], b'a');
        assert_eq!(r.bytes_dropped, 1);
        assert_eq!(file(&m)[0], b'b');
        assert_eq!(m.stats().unsynced_writes, 1);
    }
}
