//! [`SimDisk`]: a node's state directory on turmoil's simulated file system.
//!
//! Writes go to a *pending* state and become durable on `sync_all` / `sync_dir` — or by chance, with the
//! run's `sync_probability`, as an operating system's writeback would. A crash (`Sim::crash`) drops what
//! is still pending. So a correct fsync path (temporary file, fsync, rename, fsync of the directory, which
//! dsync-tokio writes once on top of [`dsync_tokio::Disk`]) always finds its last floor after a crash,
//! and a path that skips the fsyncs may find an older one — or none.

use std::io::{self, Write};
use std::path::Path;
use turmoil::fs::shim::std::fs;

/// dsync-tokio's [`Disk`](dsync_tokio::Disk) over `turmoil::fs`: each host has its own file system, kept
/// across a crash and restart of the host (minus unsynced writes).
#[derive(Clone, Copy, Debug, Default)]
pub struct SimDisk;

impl dsync_tokio::Disk for SimDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        // The operator provisioned the state directory: its own entry, and its parents', are durable
        // (dsync syncs the directory's *contents*, not where the directory itself lives).
        let mut at = Some(dir);
        while let Some(d) = at {
            fs::sync_dir(d)?;
            at = d.parent();
        }
        Ok(())
    }

    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        fs::read_to_string(path)
    }

    fn write(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        fs::File::create(path)?.write_all(contents)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        fs::File::open(path)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        fs::sync_dir(dir)
    }

    /// Never: the simulated disk answers at once, and the floor write must run on the driver's runtime so
    /// the run stays deterministic.
    fn blocking(&self) -> bool {
        false
    }
}
