//! The file trigger: a folder polled for files that arrived or changed. A file counts once it
//! has stayed the same (size and modification time) for one poll, so a file still being
//! copied is not taken half-written. Polling works the same on local disks, network shares
//! and mounted blob containers, where change notifications do not.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

type Seen = BTreeMap<PathBuf, (u64, Option<SystemTime>)>;

/// A polled folder.
#[derive(Debug)]
pub(crate) struct Watcher {
    dir: PathBuf,
    /// The files as of the last poll.
    last: Seen,
    /// The files as last reported.
    reported: Seen,
}

impl Watcher {
    /// A watcher of `dir`. The files already there arrive with the first stable poll: the
    /// ingest skips the ones it has (by content), so a restart misses nothing.
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            last: Seen::new(),
            reported: Seen::new(),
        }
    }

    /// The files that arrived or changed and have stayed so since the last poll.
    pub(crate) fn poll(&mut self) -> Vec<PathBuf> {
        let now = self.list();
        let arrived: Vec<PathBuf> = now
            .iter()
            .filter(|(path, state)| {
                self.last.get(*path) == Some(*state) && self.reported.get(*path) != Some(*state)
            })
            .map(|(path, _)| path.clone())
            .collect();
        for path in &arrived {
            self.reported.insert(path.clone(), now[path]);
        }
        self.reported.retain(|path, _| now.contains_key(path));
        self.last = now;
        arrived
    }

    fn list(&self) -> Seen {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Seen::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                meta.is_file()
                    .then(|| (e.path(), (meta.len(), meta.modified().ok())))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_arrives_once_it_is_stable_and_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Watcher::new(dir.path().to_path_buf());
        assert!(w.poll().is_empty());
        let file = dir.path().join("ehr.csv");
        std::fs::write(&file, "a").unwrap();
        assert!(w.poll().is_empty(), "seen once: may still be written");
        assert_eq!(w.poll(), std::slice::from_ref(&file));
        assert!(w.poll().is_empty(), "reported once");
        std::fs::write(&file, "ab").unwrap();
        assert!(w.poll().is_empty());
        assert_eq!(w.poll(), [file]);
        std::fs::write(dir.path().join(".hidden"), "x").unwrap();
        w.poll();
        assert!(w.poll().is_empty());
    }
}
