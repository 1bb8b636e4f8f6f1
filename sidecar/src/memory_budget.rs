//! One memory budget for the sidecar's three in-memory bounds: the backlog (acknowledged
//! changes not yet in the backend), the read cache, and the thread cache (threads' latest
//! framework checkpoints).
//!
//! Each has its own flag, and each default alone used to be 256 MiB: in a pod with a
//! 256 MiB limit, the three together got the sidecar OOM-killed under ordinary load. Like
//! the JVM's `MaxRAMPercentage` or Go's `GOMEMLIMIT`, the sidecar now reads its
//! container's memory limit (cgroup v2 `memory.max`, else v1 `memory.limit_in_bytes`, the
//! lowest along the cgroup's ancestors) unless `--memory-limit-bytes` gives one, and
//! sizes the bounds that were not given to fit inside [`BOUNDS_PERCENT`] of it. The rest
//! is for what no bound covers: the runtime, connections and request bodies, flush
//! batches being encoded, allocator slack, and the page cache of WAL writes, which the
//! kernel charges to the same cgroup.
//!
//! Hazards: a bound given explicitly always wins, even past the budget (then a warning
//! says so, and `k8s/validate.py` refuses such manifests); with no limit found, the
//! bounds keep their fixed defaults.

use std::path::{Path, PathBuf};

/// The share of the memory limit the three bounds may take together.
pub const BOUNDS_PERCENT: u64 = 50;

/// Each bound's default where no memory limit is known.
pub const UNLIMITED_DEFAULT_BYTES: u64 = 256 * 1024 * 1024;

/// How the budget is divided among bounds not given explicitly: backlog, cache, thread
/// cache. The backlog decides how long a backend outage is ridden out, the cache how
/// many agents are read without the backend; threads' checkpoints are rebuilt from the
/// backend at the cost of one read.
const WEIGHTS: [u64; 3] = [2, 2, 1];

/// The smallest each bound is given, however small the limit: the backlog's floor is
/// the least `--backlog-bytes-max` accepts.
const FLOOR_BYTES: [u64; 3] = [64 * 1024, 1024 * 1024, 1024 * 1024];

/// A limit this large is "no limit" (cgroup v1 writes 2^63 rounded down to a page).
const NO_LIMIT_BYTES: u64 = 1 << 60;

/// Where the memory limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    Flag,
    CgroupV2,
    CgroupV1,
    /// No limit found: the bounds keep their fixed defaults.
    None,
}

impl LimitSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitSource::Flag => "--memory-limit-bytes",
            LimitSource::CgroupV2 => "cgroup v2 memory.max",
            LimitSource::CgroupV1 => "cgroup v1 memory.limit_in_bytes",
            LimitSource::None => "none",
        }
    }
}

/// The three bounds as flags gave them (`None`: not given).
#[derive(Debug, Clone, Copy, Default)]
pub struct Requested {
    pub backlog_bytes_max: Option<u64>,
    pub cache_bytes_max: Option<u64>,
    pub thread_cache_bytes_max: Option<u64>,
}

/// The bounds in force, and the limit they were fitted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit_bytes: Option<u64>,
    pub source: LimitSource,
    pub backlog_bytes_max: u64,
    pub cache_bytes_max: u64,
    pub thread_cache_bytes_max: u64,
}

impl Budget {
    /// Sizes the bounds not given in `requested` to fit `limit` (see the module doc).
    pub fn fit(requested: Requested, limit_bytes: Option<u64>, source: LimitSource) -> Budget {
        let asked = [
            requested.backlog_bytes_max,
            requested.cache_bytes_max,
            requested.thread_cache_bytes_max,
        ];
        let sized = match limit_bytes {
            None => asked.map(|a| a.unwrap_or(UNLIMITED_DEFAULT_BYTES)),
            Some(limit) => {
                let total = limit / 100 * BOUNDS_PERCENT;
                let given: u64 = asked.iter().flatten().sum();
                let left = total.saturating_sub(given);
                let weights: u64 = (0..3)
                    .filter(|&i| asked[i].is_none())
                    .map(|i| WEIGHTS[i])
                    .sum();
                let mut sized = [0; 3];
                for i in 0..3 {
                    sized[i] = asked[i].unwrap_or_else(|| {
                        (left / weights.max(1) * WEIGHTS[i])
                            .clamp(FLOOR_BYTES[i], UNLIMITED_DEFAULT_BYTES)
                    });
                }
                sized
            }
        };
        Budget {
            limit_bytes,
            source: if limit_bytes.is_some() {
                source
            } else {
                LimitSource::None
            },
            backlog_bytes_max: sized[0],
            cache_bytes_max: sized[1],
            thread_cache_bytes_max: sized[2],
        }
    }

    /// The three bounds together.
    pub fn bounds_bytes(&self) -> u64 {
        self.backlog_bytes_max + self.cache_bytes_max + self.thread_cache_bytes_max
    }

    /// Whether the bounds fit the budget's share of the limit (always, without a limit).
    pub fn fits(&self) -> bool {
        self.limit_bytes
            .is_none_or(|l| self.bounds_bytes() <= l / 100 * BOUNDS_PERCENT)
    }
}

/// The memory limit of the cgroup this process runs in, looked up under `root` (`/` in
/// production; a test's tree otherwise): the lowest limit along the cgroup's path, since
/// a parent's limit binds its children.
pub fn cgroup_limit(root: &Path) -> Option<(u64, LimitSource)> {
    let membership = std::fs::read_to_string(root.join("proc/self/cgroup")).ok()?;
    let mut v1 = None;
    let mut v2 = None;
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path.to_string());
        }
    }
    let cgroup = root.join("sys/fs/cgroup");
    // v1 first: where both are mounted (hybrid), the memory controller is v1's.
    if let Some(path) = v1 {
        let limit = lowest_along(&cgroup.join("memory"), &path, "memory.limit_in_bytes");
        if let Some(l) = limit {
            return Some((l, LimitSource::CgroupV1));
        }
    }
    if let Some(path) = v2 {
        if let Some(l) = lowest_along(&cgroup, &path, "memory.max") {
            return Some((l, LimitSource::CgroupV2));
        }
        // Hybrid hosts mount v2 at `unified`.
        if let Some(l) = lowest_along(&cgroup.join("unified"), &path, "memory.max") {
            return Some((l, LimitSource::CgroupV2));
        }
    }
    None
}

/// The lowest limit in `file` from `mount/path` up to `mount`. A container usually sees
/// its own cgroup as the mount's root, whatever path `/proc/self/cgroup` names.
fn lowest_along(mount: &Path, path: &str, file: &str) -> Option<u64> {
    let mut dir: PathBuf = mount.join(path.trim_start_matches('/'));
    let mut lowest: Option<u64> = None;
    loop {
        if let Some(l) = read_limit(&dir.join(file)) {
            lowest = Some(lowest.map_or(l, |low| low.min(l)));
        }
        if dir == mount || !dir.pop() || !dir.starts_with(mount) {
            break;
        }
    }
    lowest
}

/// A limit file's value; `None` for "max", no file, or no real limit.
fn read_limit(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|&l| l > 0 && l < NO_LIMIT_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn without_a_limit_the_defaults_hold() {
        let b = Budget::fit(Requested::default(), None, LimitSource::CgroupV2);
        assert_eq!(b.source, LimitSource::None);
        assert_eq!(b.bounds_bytes(), 3 * UNLIMITED_DEFAULT_BYTES);
        assert!(b.fits());
    }

    #[test]
    fn the_bounds_share_half_of_the_limit_and_explicit_ones_win() {
        // The k8s base: a 256 MiB limit, the backlog given as 64 MiB.
        let requested = Requested {
            backlog_bytes_max: Some(64 * MIB),
            ..Default::default()
        };
        let b = Budget::fit(requested, Some(256 * MIB), LimitSource::CgroupV1);
        assert_eq!(b.backlog_bytes_max, 64 * MIB);
        assert_eq!(b.bounds_bytes() / MIB, 127, "{b:?}");
        assert_eq!(b.cache_bytes_max, 2 * b.thread_cache_bytes_max);
        assert!(b.fits());

        let b = Budget::fit(Requested::default(), Some(256 * MIB), LimitSource::CgroupV2);
        assert_eq!(b.backlog_bytes_max, b.cache_bytes_max);
        assert!(
            b.bounds_bytes() <= 128 * MIB && b.bounds_bytes() > 127 * MIB,
            "{b:?}"
        );

        // A large limit: each bound stops at its old default.
        let b = Budget::fit(
            Requested::default(),
            Some(64 * 1024 * MIB),
            LimitSource::Flag,
        );
        assert_eq!(b.bounds_bytes(), 3 * UNLIMITED_DEFAULT_BYTES);

        // Explicit bounds past the budget are kept, and reported as not fitting.
        let requested = Requested {
            backlog_bytes_max: Some(200 * MIB),
            ..Default::default()
        };
        let b = Budget::fit(requested, Some(256 * MIB), LimitSource::Flag);
        assert_eq!(b.backlog_bytes_max, 200 * MIB);
        assert_eq!((b.cache_bytes_max, b.thread_cache_bytes_max), (MIB, MIB));
        assert!(!b.fits());
    }

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = root.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        root
    }

    #[test]
    fn the_limit_is_read_from_cgroup_v2_or_v1_the_lowest_along_the_path() {
        let v2 = tree(&[
            ("proc/self/cgroup", "0::/kubepods/pod1/ctr\n"),
            ("sys/fs/cgroup/kubepods/pod1/ctr/memory.max", "268435456\n"),
            ("sys/fs/cgroup/kubepods/pod1/memory.max", "536870912\n"),
            ("sys/fs/cgroup/kubepods/memory.max", "max\n"),
        ]);
        assert_eq!(
            cgroup_limit(v2.path()),
            Some((256 * MIB, LimitSource::CgroupV2))
        );
        // In a cgroup namespace the container's cgroup is the root.
        let ns = tree(&[
            ("proc/self/cgroup", "0::/\n"),
            ("sys/fs/cgroup/memory.max", "134217728\n"),
        ]);
        assert_eq!(
            cgroup_limit(ns.path()),
            Some((128 * MIB, LimitSource::CgroupV2))
        );
        let v1 = tree(&[
            (
                "proc/self/cgroup",
                "5:cpu,cpuacct:/x\n4:memory:/process_api/abc/test\n0::/\n",
            ),
            (
                "sys/fs/cgroup/memory/process_api/abc/test/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes",
                "268435456\n",
            ),
        ]);
        assert_eq!(
            cgroup_limit(v1.path()),
            Some((256 * MIB, LimitSource::CgroupV1))
        );
        let none = tree(&[
            ("proc/self/cgroup", "0::/\n"),
            ("sys/fs/cgroup/memory.max", "max\n"),
        ]);
        assert_eq!(cgroup_limit(none.path()), None);
        assert_eq!(cgroup_limit(Path::new("/nonexistent")), None);
    }
}
