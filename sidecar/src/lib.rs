//! The agentstate sidecar: durable state for AI agents on localhost.
//!
//! The modules, in the order a write goes through them, each using only those below it
//! (checked by the `layering` test):
//!
//! - [`server`] and [`admin`]: start-up, shutdown, the maintenance commands.
//! - [`api`]: HTTP, codecs, errors as status codes.
//! - [`flusher`] (WAL -> backend, in the background) and [`recovery`] (WAL -> backlog at
//!   start).
//! - [`engine`]: locks, reads, validation and logging of every call; builds operations.
//! - [`store`] (MongoDB, SQLite), [`cache`], [`backlog`] (unflushed changes), [`wal`],
//!   [`export_file`] (the file `export` writes and `import` reads).
//! - [`config`], [`memory_budget`] (the backlog and caches fitted to the container's
//!   memory limit), [`validate`] (agent types), [`metrics`].
//! - [`model`] (records and WAL operations), [`doc`] (JSON documents as bytes) and
//!   [`durable`] (file operations that survive a power cut); [`data_dir`] names every
//!   file of the data dir and says which module writes it.

pub mod admin;
pub mod api;
pub mod backlog;
pub mod cache;
pub mod config;
pub mod data_dir;
pub mod delta;
pub mod doc;
pub mod durable;
pub mod engine;
pub mod export_file;
pub mod flush_progress;
pub mod flusher;
pub mod memory_budget;
pub mod metrics;
pub mod model;
pub mod recovery;
pub mod server;
pub mod store;
pub mod typed;
pub mod validate;
pub mod wal;

#[cfg(test)]
mod layering {
    use std::path::Path;

    /// Each module's layer: a module may use only modules of lower layers.
    const LAYERS: &[(&str, u32)] = &[
        ("doc", 0),
        ("delta", 0),
        ("typed", 0),
        ("durable", 0),
        ("data_dir", 0),
        ("metrics", 0),
        ("model", 1),
        ("validate", 1),
        ("wal", 1),
        ("memory_budget", 1),
        ("config", 2),
        ("backlog", 2),
        ("flush_progress", 3),
        ("cache", 2),
        ("export_file", 2),
        ("store", 3),
        ("engine", 4),
        ("flusher", 5),
        ("recovery", 5),
        ("api", 5),
        ("server", 6),
        ("admin", 7),
    ];

    fn layer(module: &str) -> u32 {
        LAYERS
            .iter()
            .find(|(m, _)| *m == module)
            .unwrap_or_else(|| panic!("module {module} has no layer in LAYERS"))
            .1
    }

    /// The modules a source file (or every file under a folder) uses, as
    /// `(file, module)`, leaving out `own`.
    fn uses(path: &Path, own: &str, out: &mut Vec<(String, String)>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).expect("read a source folder") {
                uses(&entry.expect("a folder entry").path(), own, out);
            }
            return;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            return;
        }
        let text = std::fs::read_to_string(path).expect("read a source file");
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let used: String = line[i + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !used.is_empty() && used != own {
                    out.push((path.display().to_string(), used));
                }
            }
        }
    }

    #[test]
    fn modules_use_only_lower_layers() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut wrong = Vec::new();
        for (module, own) in LAYERS {
            let mut found = Vec::new();
            for path in [src.join(module), src.join(format!("{module}.rs"))] {
                if path.exists() {
                    uses(&path, module, &mut found);
                }
            }
            for (path, used) in found {
                if layer(&used) >= *own {
                    wrong.push(format!("{module} ({path}) uses {used}"));
                }
            }
        }
        assert!(wrong.is_empty(), "uses against the layering: {wrong:#?}");
    }
}
