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

use crate::disk::Disk;
use crate::error::StartError;
use crate::planted::{Bugs, PlantedBug};
use dsync_core::Start;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A node's files in its state directory.
#[derive(Clone)]
pub(crate) struct StateDir {
    disk: Arc<dyn Disk>,
    floor: PathBuf,
    bugs: Bugs,
}

impl std::fmt::Debug for StateDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDir").field("floor", &self.floor).finish_non_exhaustive()
    }
}

impl StateDir {
    /// Opens (creating if needed) `dir` for node `id` of `nodes` in `cluster`, checks it belongs to this node,
    /// and says how the node must start.
    pub(crate) fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        (cluster, id, nodes): (&str, usize, usize),
        bugs: Bugs,
    ) -> Result<(StateDir, Start), StartError> {
        let fail = |path: &Path, problem: &str, source: Option<std::io::Error>| StartError::StateDir {
            path: path.to_path_buf(),
            problem: problem.to_string(),
            source,
        };
        disk.create_dir_all(dir).map_err(|e| fail(dir, "cannot create it", Some(e)))?;
        let identity_path = dir.join(format!("identity-{id}"));
        let expected = identity(cluster, id, nodes);
        match disk.read_to_string(&identity_path) {
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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_durably(&*disk, &identity_path, &expected, true)
                    .map_err(|e| fail(&identity_path, "cannot write it", Some(e)))?
            }
            Err(e) => return Err(fail(&identity_path, "cannot read it", Some(e))),
        }
        let floor = dir.join(format!("fencing-floor-{id}"));
        let start = match disk.read_to_string(&floor) {
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
        Ok((StateDir { disk, floor, bugs }, start))
    }

    /// Writes the floor durably (temporary file, fsync, rename, fsync of the directory).
    pub(crate) fn write_floor(&self, floor: u64) -> std::io::Result<()> {
        let sync = !self.bugs.has(PlantedBug::FloorWithoutFsync);
        write_durably(&*self.disk, &self.floor, &format!("{floor}\n"), sync)
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
        let write = move || {
            let outcome = state.write_floor(floor).map(|()| floor).map_err(|e| {
                tracing::warn!(
                    path = %state.floor_path().display(),
                    error = %e,
                    "could not persist the fencing floor: write locks wait until it can be"
                );
                floor
            });
            let _ = done.send(outcome);
        };
        if self.state.disk.blocking() {
            tokio::task::spawn_blocking(write);
        } else {
            // A simulated disk: the outcome still arrives through `done`, as from the blocking pool.
            write();
        }
    }
}

fn identity(cluster: &str, id: usize, nodes: usize) -> String {
    format!("cluster={}\nnode={id} of {nodes}\n", cluster.escape_default())
}

/// Temporary file, fsync, rename over `path`, fsync of the directory: after a crash `path` holds either
/// the old contents or the new, and once this returns, the new. (`sync` is false only for a planted bug.)
fn write_durably(disk: &dyn Disk, path: &Path, contents: &str, sync: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    disk.write(&tmp, contents.as_bytes())?;
    if sync {
        disk.sync_file(&tmp)?;
    }
    disk.rename(&tmp, path)?;
    if let (true, Some(dir)) = (sync, path.parent()) {
        disk.sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::OsDisk;

    fn open(dir: &Path, cluster: &str, id: usize, nodes: usize) -> Result<(StateDir, Start), StartError> {
        StateDir::open(Arc::new(OsDisk), dir, (cluster, id, nodes), Bugs::default())
    }

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dsync-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn an_empty_directory_bootstraps_and_a_floor_restarts() {
        let dir = tmp("empty");
        let (state, start) = open(&dir, "c", 1, 3).unwrap();
        assert_eq!(start, Start::Bootstrap);
        state.write_floor(4242).unwrap();
        let (_, start) = open(&dir, "c", 1, 3).unwrap();
        assert_eq!(start, Start::Restart { durable_floor: Some(4242) });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_of_another_node_or_cluster_is_refused() {
        let dir = tmp("other");
        open(&dir, "orders", 1, 3).unwrap();
        // Node 1's directory copied to node 2 is fine only for node 2's own files: the identity is per index.
        std::fs::copy(dir.join("identity-1"), dir.join("identity-2")).unwrap();
        let err = open(&dir, "orders", 2, 3).unwrap_err().to_string();
        assert!(err.contains("belongs to another node or cluster"), "{err}");
        assert!(err.contains("identity-2"), "{err}");
        let err = open(&dir, "payments", 1, 3).unwrap_err().to_string();
        assert!(err.contains("orders") && err.contains("payments"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn floor_writes_never_overlap_and_the_highest_waiting_one_is_written_next() {
        let dir = tmp("writer");
        let (state, _) = open(&dir, "c", 0, 3).unwrap();
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
        open(&dir, "c", 0, 1).unwrap();
        std::fs::write(dir.join("fencing-floor-0"), "garbage").unwrap();
        let err = open(&dir, "c", 0, 1).unwrap_err().to_string();
        assert!(err.contains("fencing-floor-0") && err.contains("does not hold a fencing floor"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_uncreatable_directory_names_its_path() {
        let file = tmp("file");
        std::fs::write(&file, "not a directory").unwrap();
        let err = open(&file.join("sub"), "c", 0, 1).unwrap_err();
        assert!(err.to_string().contains(&*file.display().to_string()), "{err}");
        assert!(std::error::Error::source(&err).is_some());
        std::fs::remove_file(&file).unwrap();
    }
}
