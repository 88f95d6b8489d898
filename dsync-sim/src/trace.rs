//! The run's trace: a running FNV-1a hash over every processed event (time, kind, node, details), and
//! optionally the human-readable event log. The hash is what `--check-determinism` compares; formatting
//! lines is skipped unless a log is wanted, because it would dominate the run time.

/// What a hashed trace record is about. The discriminant is the record's tag in the hash, so the order
/// of the variants is part of the trace format: add new ones at the end, or every seed's hash changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Tag {
    /// A message handed to its receiver.
    Deliver = 1,
    /// A node's timer fired.
    Timer,
    /// A lock was acquired.
    Acquired,
    /// A lock attempt failed.
    Failed,
    /// A held lock was lost.
    Lost,
    /// A client request was issued.
    Request,
    /// A client unlocked.
    Unlock,
    /// A fenced write landed at the register.
    Write,
    /// A node's floor write became durable.
    FloorPersisted,
    /// A fault was applied.
    Fault,
    /// A node restarted.
    Restart,
    /// The failure detector told a node a peer went up or down.
    PeerNotice,
    /// An end phase began.
    Phase,
    /// A node reported `Serving` or `Quarantined`.
    Serving,
}

/// Event log and running hash.
#[derive(Clone, Debug)]
pub struct Trace {
    hash: u64,
    lines: Option<Vec<String>>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Trace {
    /// A trace that keeps the log lines when `log` is set.
    pub fn new(log: bool) -> Self {
        Trace { hash: FNV_OFFSET, lines: log.then(Vec::new) }
    }

    /// Folds `words` into the hash.
    #[inline]
    pub fn mix(&mut self, words: &[u64]) {
        for w in words {
            for b in w.to_le_bytes() {
                self.hash = (self.hash ^ b as u64).wrapping_mul(FNV_PRIME);
            }
        }
    }

    /// Folds one record into the hash: true time `at`, `tag`, then `words`.
    #[inline]
    pub fn record(&mut self, at: u64, tag: Tag, words: &[u64]) {
        self.mix(&[at, tag as u64]);
        self.mix(words);
    }

    /// Folds bytes into the hash.
    pub fn mix_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.hash = (self.hash ^ b as u64).wrapping_mul(FNV_PRIME);
        }
    }

    /// Whether log lines are kept (callers skip formatting otherwise).
    #[inline]
    pub fn logging(&self) -> bool {
        self.lines.is_some()
    }

    /// Appends a log line stamped with true time `at`. Lines are not hashed (the structured words are),
    /// so a run hashes the same with and without its log.
    pub fn log(&mut self, at: u64, line: String) {
        if let Some(lines) = &mut self.lines {
            lines.push(format!("{:>12.6}s {line}", at as f64 / 1e9));
        }
    }

    /// The hash so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The log lines (empty when not logging).
    pub fn lines(&self) -> &[String] {
        self.lines.as_deref().unwrap_or(&[])
    }
}
