//! The file operations a node's state directory needs, as a seam: the operating system's file system by
//! default ([`OsDisk`]), a simulated one (whose unsynced writes a crash drops) in `dsync-sim`'s stack.
//!
//! The durable write of a file — temporary file, fsync, rename, fsync of the directory — is written once in
//! this crate on top of these calls, so a simulator exercises the very sequence production runs.

use std::io::{self, Write};
use std::path::Path;

/// File operations on the state directory. Every path is inside the directory given to
/// [`NodeBuilder::state_dir`](crate::NodeBuilder::state_dir).
pub trait Disk: Send + Sync + 'static {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The whole file as text; an error of kind `NotFound` when it does not exist.
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
    /// Creates or truncates `path` and writes `contents` (not yet durable).
    fn write(&self, path: &Path, contents: &[u8]) -> io::Result<()>;
    /// Makes `path`'s contents durable (fsync).
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to` (not yet durable).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes `dir`'s entries (a rename into it) durable (fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Whether these calls may block the thread: then the driver runs floor writes on tokio's blocking
    /// pool. A simulated disk answers `false`, and writes run on the driver's runtime, deterministically.
    fn blocking(&self) -> bool {
        true
    }
}

/// The operating system's file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsDisk;

impl Disk for OsDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        std::fs::File::create(path)?.write_all(contents)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        // fsync flushes the file's data whichever descriptor asks.
        std::fs::OpenOptions::new().write(true).open(path)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        #[cfg(unix)]
        std::fs::File::open(dir)?.sync_all()?;
        // Elsewhere a directory cannot be opened for fsync; the rename is as durable as the platform makes it.
        #[cfg(not(unix))]
        let _ = dir;
        Ok(())
    }
}
