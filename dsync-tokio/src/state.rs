//! The state directory: which node of which cluster it belongs to, and the durable fencing floor.
//!
//! Two files per node, so several nodes may share one directory:
//! - `identity-<id>`: `cluster=<name>` and `node=<id> of <n>`, written (and fsynced) before the node serves. A
//!   directory that names another cluster or index is refused: copying node 1's directory to node 2, or
//!   pointing two clusters at one directory, must not pass for that node's history.
//! - `fencing-floor-<id>`: the last floor the core asked to persist (PROTOCOL.md §7.3).
//!
//! What a directory decides (PROTOCOL.md §6.5): a floor file means the node ran before, so it restarts with
//! that floor; no floor file means the node *believes* it is new and starts as
//! [`dsync_core::Start::Bootstrap`], which serves at once only if every other node says it is new too and
//! otherwise restarts safely. So a wiped or replaced directory costs a quarantine, never a double grant.

use crate::error::StartError;
use dsync_core::Start;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A node's files in its state directory.
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    floor: PathBuf,
}

impl StateDir {
    /// Opens (creating if needed) `dir` for node `id` of `nodes` in `cluster`, checks it belongs to this node,
    /// and says how the node must start.
    pub(crate) fn open(dir: &Path, cluster: &str, id: usize, nodes: usize) -> Result<(StateDir, Start), StartError> {
        let fail = |path: &Path, problem: &str, source: Option<std::io::Error>| StartError::StateDir {
            path: path.to_path_buf(),
            problem: problem.to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(dir, "cannot create it", Some(e)))?;
        let identity_path = dir.join(format!("identity-{id}"));
        let expected = identity(cluster, id, nodes);
        match std::fs::read_to_string(&identity_path) {
            Ok(found) if found == expected => {}
            Ok(found) => {
                let problem = format!(
                    "it belongs to another node or cluster (it says {:?}, this node is {:?}); give every node \
                     its own directory, or remove the file if the cluster was really reconfigured",
                    found.trim().replace('\n', ", "),
                    expected.trim().replace('\n', ", "),
                );
                return Err(fail(&identity_path, &problem, None));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_durably(&identity_path, &expected)
                .map_err(|e| fail(&identity_path, "cannot write it", Some(e)))?,
            Err(e) => return Err(fail(&identity_path, "cannot read it", Some(e))),
        }
        let floor = dir.join(format!("fencing-floor-{id}"));
        let start = match std::fs::read_to_string(&floor) {
            Ok(s) => match s.trim().parse() {
                Ok(f) => Start::Restart { durable_floor: Some(f) },
                // Guessing would risk reissuing fencing tokens.
                Err(_) => {
                    return Err(fail(
                        &floor,
                        "does not hold a fencing floor (a number); restore it from a backup",
                        None,
                    ))
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Start::Bootstrap,
            Err(e) => return Err(fail(&floor, "cannot read it", Some(e))),
        };
        Ok((StateDir { floor }, start))
    }

    /// Writes the floor durably (temporary file, fsync, rename, fsync of the directory).
    pub(crate) fn write_floor(&self, floor: u64) -> std::io::Result<()> {
        write_durably(&self.floor, &format!("{floor}\n"))
    }

    /// The floor file, for log lines.
    pub(crate) fn floor_path(&self) -> &Path {
        &self.floor
    }
}

/// Persists floors for the driver one write at a time. Every write goes through the same temporary file and
/// rename, so two writes in flight could interleave and leave a *lower* floor on disk than the one
/// confirmed to the core (which would then reissue tokens after a crash); instead a request that arrives
/// during a write waits, and only the highest waiting floor is written next.
#[derive(Debug)]
pub(crate) struct FloorWriter {
    state: StateDir,
    writing: bool,
    next: Option<u64>,
    /// `Ok(floor)` once written durably, `Err(floor)` when the write failed (logged).
    done: tokio::sync::mpsc::UnboundedSender<Result<u64, u64>>,
}

impl FloorWriter {
    pub(crate) fn new(state: StateDir, done: tokio::sync::mpsc::UnboundedSender<Result<u64, u64>>) -> Self {
        FloorWriter { state, writing: false, next: None, done }
    }

    /// The core asked for `floor` to be persisted.
    pub(crate) fn request(&mut self, floor: u64) {
        if self.writing {
            self.next = Some(self.next.map_or(floor, |n| n.max(floor)));
        } else {
            self.spawn(floor);
        }
    }

    /// The write in flight ended (its outcome arrived on `done`): start the next one, if any.
    pub(crate) fn finished(&mut self) {
        self.writing = false;
        if let Some(next) = self.next.take() {
            self.spawn(next);
        }
    }

    fn spawn(&mut self, floor: u64) {
        self.writing = true;
        let (state, done) = (self.state.clone(), self.done.clone());
        tokio::task::spawn_blocking(move || {
            let outcome = state.write_floor(floor).map(|()| floor).map_err(|e| {
                tracing::warn!(
                    path = %state.floor_path().display(),
                    error = %e,
                    "could not persist the fencing floor: write locks wait until it can be"
                );
                floor
            });
            let _ = done.send(outcome);
        });
    }
}

fn identity(cluster: &str, id: usize, nodes: usize) -> String {
    format!("cluster={}\nnode={id} of {nodes}\n", cluster.escape_default())
}

fn write_durably(path: &Path, contents: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dsync-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn an_empty_directory_bootstraps_and_a_floor_restarts() {
        let dir = tmp("empty");
        let (state, start) = StateDir::open(&dir, "c", 1, 3).unwrap();
        assert_eq!(start, Start::Bootstrap);
        state.write_floor(4242).unwrap();
        let (_, start) = StateDir::open(&dir, "c", 1, 3).unwrap();
        assert_eq!(start, Start::Restart { durable_floor: Some(4242) });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_of_another_node_or_cluster_is_refused() {
        let dir = tmp("other");
        StateDir::open(&dir, "orders", 1, 3).unwrap();
        // Node 1's directory copied to node 2 is fine only for node 2's own files: the identity is per index.
        std::fs::copy(dir.join("identity-1"), dir.join("identity-2")).unwrap();
        let err = StateDir::open(&dir, "orders", 2, 3).unwrap_err().to_string();
        assert!(err.contains("belongs to another node or cluster"), "{err}");
        assert!(err.contains("identity-2"), "{err}");
        let err = StateDir::open(&dir, "payments", 1, 3).unwrap_err().to_string();
        assert!(err.contains("orders") && err.contains("payments"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn floor_writes_never_overlap_and_the_highest_waiting_one_is_written_next() {
        let dir = tmp("writer");
        let (state, _) = StateDir::open(&dir, "c", 0, 3).unwrap();
        let (done, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
        let mut writer = FloorWriter::new(state, done);
        writer.request(10);
        writer.request(30); // both wait for the write of 10; only the higher one is written
        writer.request(20);
        assert_eq!(outcomes.recv().await, Some(Ok(10)));
        writer.finished();
        assert_eq!(outcomes.recv().await, Some(Ok(30)));
        writer.finished();
        assert!(outcomes.try_recv().is_err(), "a superseded floor was written");
        assert_eq!(std::fs::read_to_string(dir.join("fencing-floor-0")).unwrap().trim(), "30");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_floor_is_an_error_naming_the_file() {
        let dir = tmp("corrupt");
        StateDir::open(&dir, "c", 0, 1).unwrap();
        std::fs::write(dir.join("fencing-floor-0"), "garbage").unwrap();
        let err = StateDir::open(&dir, "c", 0, 1).unwrap_err().to_string();
        assert!(err.contains("fencing-floor-0") && err.contains("does not hold a fencing floor"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_uncreatable_directory_names_its_path() {
        let file = tmp("file");
        std::fs::write(&file, "not a directory").unwrap();
        let err = StateDir::open(&file.join("sub"), "c", 0, 1).unwrap_err();
        assert!(err.to_string().contains(&*file.display().to_string()), "{err}");
        assert!(std::error::Error::source(&err).is_some());
        std::fs::remove_file(&file).unwrap();
    }
}
