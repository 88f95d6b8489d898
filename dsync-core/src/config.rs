//! The node's configuration: cluster shape, timing, limits and the seed, validated once at start.

use crate::quorum::{read_quorum, MAX_NODES};
use crate::time::{scale_ppm, Duration};
use core::fmt;

/// Hard bounds that keep every table and message of a node finite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Resources one lock may name (MinIO: 1000).
    pub max_resources_per_lock: usize,
    /// Bytes in one resource name.
    pub max_resource_len: usize,
    /// Grant entries one locker holds at once, counting one per resource a grant names; beyond it requests
    /// are denied `Overloaded`. Half of it is held back in equal guaranteed shares of `max_grants / (2·nodes)`
    /// per requesting node, so one node flooding requests cannot deny the others (the rest is shared).
    pub max_grants: usize,
    /// Locks this node's application may have waiting to be acquired (MinIO rejects beyond 1000). Lockers
    /// also remember at most this many waiting locks per requesting node, so every node needs the same value.
    pub max_pending: usize,
    /// Holder queries and force-unlocks in flight at once.
    pub max_queries: usize,
    /// Entries one locker returns to a holder query.
    pub max_query_entries: usize,
    /// Bytes of one encoded message; transports pass it to [`crate::wire::decode`].
    pub max_message_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_resources_per_lock: 1000,
            max_resource_len: 1024,
            max_grants: 1 << 21,
            max_pending: 1000,
            max_queries: 64,
            max_query_entries: 10_000,
            max_message_size: 4 << 20,
        }
    }
}

/// How a node starts: first boot of a cluster, or a restart that may have lost grants it gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The cluster's first boot: this node has never granted anything, so it serves at once.
    FirstBoot,
    /// A restart. The node grants nothing for the quarantine. Without a durable floor it first learns
    /// the highest fencing token from a read quorum of peers; with one (from [`crate::Event::PersistFloor`])
    /// it needs no peer, so a whole cluster can restart.
    Restart {
        /// The last floor the embedder persisted and acknowledged, if it keeps one.
        durable_floor: Option<u64>,
    },
}

/// Safety mechanisms that `dsync-sim` switches off one at a time to prove its checkers can fail.
/// Only compiled with the `planted-bugs` feature.
#[cfg(feature = "planted-bugs")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PlantedBug {
    /// Write quorum one smaller than the rule (two writers can meet only in disjoint quorums).
    WriteQuorumTooSmall,
    /// Read quorum one smaller than the rule (a reader and a writer can coexist).
    ReadQuorumTooSmall,
    /// A restarted node grants at once, while grants it gave before the crash may be believed.
    NoRestartQuarantine,
    /// Lockers grant write proposals that do not exceed their fencing high-water mark.
    NoFencingCheck,
    /// A restarted node without a durable floor skips recovering the fencing floor from its peers.
    NoFloorRecovery,
    /// Holder validity counted from when the quorum's replies arrived, not from when the round was sent.
    ValidityFromReceive,
    /// Holder validity of `lease·(1+ρ)` instead of `lease·(1−ρ)`: it trusts its clock not to run slow.
    NoDriftMargin,
    /// Lockers never expire grants (a dead holder's locks stay forever).
    NoLockerExpiry,
    /// The coordinator ignores grants that arrive after the attempt gave up (they leak until expiry).
    KeepLateGrants,
}

#[cfg(feature = "planted-bugs")]
impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 9] = [
        PlantedBug::WriteQuorumTooSmall,
        PlantedBug::ReadQuorumTooSmall,
        PlantedBug::NoRestartQuarantine,
        PlantedBug::NoFencingCheck,
        PlantedBug::NoFloorRecovery,
        PlantedBug::ValidityFromReceive,
        PlantedBug::NoDriftMargin,
        PlantedBug::NoLockerExpiry,
        PlantedBug::KeepLateGrants,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::WriteQuorumTooSmall => "write-quorum-too-small",
            PlantedBug::ReadQuorumTooSmall => "read-quorum-too-small",
            PlantedBug::NoRestartQuarantine => "no-restart-quarantine",
            PlantedBug::NoFencingCheck => "no-fencing-check",
            PlantedBug::NoFloorRecovery => "no-floor-recovery",
            PlantedBug::ValidityFromReceive => "validity-from-receive",
            PlantedBug::NoDriftMargin => "no-drift-margin",
            PlantedBug::NoLockerExpiry => "no-locker-expiry",
            PlantedBug::KeepLateGrants => "keep-late-grants",
        }
    }

    /// The bug with this command-line name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// A node's configuration. Build it with [`Config::new`] and adjust fields; [`crate::Node::new`] validates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Cluster size `n`, 1 to 64.
    pub nodes: usize,
    /// This node's index, `0..nodes`.
    pub id: usize,
    /// The lease `L`. Lockers keep an unrefreshed grant for `L·(1+ρ)` of their clock; holders trust it
    /// for `L·(1−ρ)` of theirs from the moment the confirming round was *sent*.
    pub lease: Duration,
    /// How often a holder refreshes (must leave room for a refresh round before validity ends).
    pub refresh_interval: Duration,
    /// The bound `ρ` on any clock's rate error, in parts per million (10 000 = 1 %). At most 100 000.
    pub max_drift_ppm: u32,
    /// How long one acquisition, refresh or floor round waits for answers.
    pub attempt_timeout: Duration,
    /// Smallest retry backoff after a contended attempt.
    pub backoff_min: Duration,
    /// Largest retry backoff (the jittered exponential backoff is capped here).
    pub backoff_max: Duration,
    /// How long holder queries, force-unlocks and releases wait for answers.
    pub query_timeout: Duration,
    /// Restart quarantine; `None` means the minimum safe value `L·(1+ρ)` (see PROTOCOL.md).
    pub quarantine: Option<Duration>,
    /// Whether the embedder persists the fencing floor ([`crate::Event::PersistFloor`]); needed to survive
    /// a restart of the whole cluster with fencing intact.
    pub persist_floor: bool,
    /// How far ahead of granted tokens the persisted floor is kept, so persisting is rare.
    pub floor_chunk: u64,
    /// Bounds on tables and messages.
    pub limits: Limits,
    /// Seeds jitter and uid generation. Give each start of each node a different seed in production.
    pub seed: u64,
    /// A safety mechanism to switch off, for the simulator's self-test.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<PlantedBug>,
}

impl Config {
    /// Defaults for node `id` of `nodes`: lease 30 s, refresh every 10 s, ρ = 1 %, attempts of 1 s,
    /// backoff 5 ms – 500 ms, queries of 1 s.
    pub fn new(nodes: usize, id: usize) -> Self {
        Config {
            nodes,
            id,
            lease: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(10),
            max_drift_ppm: 10_000,
            attempt_timeout: Duration::from_secs(1),
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(500),
            query_timeout: Duration::from_secs(1),
            quarantine: None,
            persist_floor: false,
            floor_chunk: 1 << 16,
            limits: Limits::default(),
            seed: 0,
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }

    /// Whether `bug` is planted (always `false` without the `planted-bugs` feature).
    #[allow(unused_variables)]
    #[inline]
    pub(crate) fn bug(&self, bug: Bug) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.planted_bug == Some(bug.0)
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            false
        }
    }

    /// How long a locker keeps an unrefreshed grant, on its own clock: `L·(1+ρ)`.
    pub fn locker_hold(&self) -> Duration {
        scale_ppm(self.lease, self.max_drift_ppm, true)
    }

    /// How long a holder trusts a confirmed round, on its own clock, from the round's send time: `L·(1−ρ)`.
    pub fn holder_validity(&self) -> Duration {
        if self.bug(bugs::NO_DRIFT_MARGIN) {
            return self.locker_hold();
        }
        scale_ppm(self.lease, self.max_drift_ppm, false)
    }

    /// The restart quarantine in force: the configured one, or `L·(1+ρ)`.
    pub fn effective_quarantine(&self) -> Duration {
        self.quarantine.unwrap_or_else(|| self.locker_hold())
    }

    /// How long a locker keeps a reservation for a waiting lock that stopped retrying.
    pub(crate) fn reservation_ttl(&self) -> Duration {
        (self.backoff_max + self.attempt_timeout) * 2
    }

    /// Checks every field; the error names the first one that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use ConfigError as E;
        if self.nodes == 0 || self.nodes > MAX_NODES {
            return Err(E::Nodes(self.nodes));
        }
        if self.id >= self.nodes {
            return Err(E::Id { id: self.id, nodes: self.nodes });
        }
        if self.max_drift_ppm > 100_000 {
            return Err(E::Drift(self.max_drift_ppm));
        }
        if self.lease.is_zero() {
            return Err(E::Timing("lease must be positive"));
        }
        let validity = self.holder_validity();
        if self.refresh_interval.is_zero() || self.refresh_interval + self.attempt_timeout >= validity {
            return Err(E::Timing("refresh_interval + attempt_timeout must be below lease·(1−ρ)"));
        }
        if self.attempt_timeout.is_zero() || self.attempt_timeout >= validity {
            return Err(E::Timing("attempt_timeout must be positive and below lease·(1−ρ)"));
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return Err(E::Timing("backoff_min must be positive and at most backoff_max"));
        }
        if self.query_timeout.is_zero() {
            return Err(E::Timing("query_timeout must be positive"));
        }
        if let Some(q) = self.quarantine {
            if q < self.locker_hold() {
                return Err(E::Timing("quarantine must be at least lease·(1+ρ)"));
            }
        }
        if self.persist_floor && self.floor_chunk == 0 {
            return Err(E::Timing("floor_chunk must be positive when persisting the floor"));
        }
        let l = &self.limits;
        if l.max_resources_per_lock == 0
            || l.max_resource_len == 0
            || l.max_grants == 0
            || l.max_pending == 0
            || l.max_queries == 0
            || l.max_message_size < 64
        {
            return Err(E::Limits);
        }
        Ok(())
    }

    /// Checks that a node may start this way (a lone node cannot learn a floor from peers).
    pub(crate) fn validate_start(&self, start: Start) -> Result<(), ConfigError> {
        if let Start::Restart { durable_floor: None } = start {
            // Floor recovery needs a read quorum of *other* nodes.
            if self.nodes - 1 < read_quorum(self.nodes) {
                return Err(ConfigError::RestartNeedsDurableFloor);
            }
        }
        Ok(())
    }
}

/// Why a configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The cluster size is outside 1..=64.
    Nodes(usize),
    /// The node index is not below the cluster size.
    Id {
        /// The index given.
        id: usize,
        /// The cluster size.
        nodes: usize,
    },
    /// The drift bound is above 100 000 ppm (10 %).
    Drift(u32),
    /// A timing relation does not hold; the text says which.
    Timing(&'static str),
    /// A limit is zero (or the message size limit is below 64 bytes).
    Limits,
    /// A node that cannot reach a read quorum of peers (a 1-node cluster) needs a durable floor to restart.
    RestartNeedsDurableFloor,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Nodes(n) => write!(f, "cluster size {n} is outside 1..=64"),
            ConfigError::Id { id, nodes } => write!(f, "node index {id} is not below the cluster size {nodes}"),
            ConfigError::Drift(p) => write!(f, "drift bound {p} ppm exceeds 100000 ppm"),
            ConfigError::Timing(why) => f.write_str(why),
            ConfigError::Limits => f.write_str("every limit must be positive (message size at least 64 bytes)"),
            ConfigError::RestartNeedsDurableFloor => {
                f.write_str("this node cannot recover its fencing floor from peers; restart it with a durable floor")
            }
        }
    }
}

impl core::error::Error for ConfigError {}

/// A planted-bug switch usable in non-feature builds (where it is always off).
#[derive(Clone, Copy)]
pub(crate) struct Bug(#[cfg(feature = "planted-bugs")] pub(crate) PlantedBug);

/// The planted-bug switches, named so call sites read the same with and without the feature.
pub(crate) mod bugs {
    use super::Bug;
    #[cfg(feature = "planted-bugs")]
    use super::PlantedBug as P;

    macro_rules! bug {
        ($name:ident, $variant:ident) => {
            #[cfg(feature = "planted-bugs")]
            pub(crate) const $name: Bug = Bug(P::$variant);
            #[cfg(not(feature = "planted-bugs"))]
            pub(crate) const $name: Bug = Bug();
        };
    }
    bug!(WRITE_QUORUM_TOO_SMALL, WriteQuorumTooSmall);
    bug!(READ_QUORUM_TOO_SMALL, ReadQuorumTooSmall);
    bug!(NO_RESTART_QUARANTINE, NoRestartQuarantine);
    bug!(NO_FENCING_CHECK, NoFencingCheck);
    bug!(NO_FLOOR_RECOVERY, NoFloorRecovery);
    bug!(VALIDITY_FROM_RECEIVE, ValidityFromReceive);
    bug!(NO_DRIFT_MARGIN, NoDriftMargin);
    bug!(NO_LOCKER_EXPIRY, NoLockerExpiry);
    bug!(KEEP_LATE_GRANTS, KeepLateGrants);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_for_every_cluster_size() {
        for n in 1..=64 {
            assert_eq!(Config::new(n, n - 1).validate(), Ok(()));
        }
    }

    #[test]
    fn rejects_sizes_indices_and_timing_that_break_the_argument() {
        assert_eq!(Config::new(0, 0).validate(), Err(ConfigError::Nodes(0)));
        assert_eq!(Config::new(65, 0).validate(), Err(ConfigError::Nodes(65)));
        assert_eq!(Config::new(3, 3).validate(), Err(ConfigError::Id { id: 3, nodes: 3 }));
        let mut c = Config::new(3, 0);
        c.quarantine = Some(c.lease);
        assert!(matches!(c.validate(), Err(ConfigError::Timing(_))), "quarantine below L(1+ρ) is unsafe");
        let mut c = Config::new(3, 0);
        c.refresh_interval = c.lease;
        assert!(matches!(c.validate(), Err(ConfigError::Timing(_))));
    }

    #[test]
    fn holder_trusts_less_than_the_locker_keeps() {
        let c = Config::new(3, 0);
        assert!(c.holder_validity() < c.lease && c.lease < c.locker_hold());
        assert!(c.effective_quarantine() >= c.locker_hold());
    }

    #[test]
    fn a_lone_node_cannot_restart_without_a_durable_floor() {
        let c = Config::new(1, 0);
        assert_eq!(
            c.validate_start(Start::Restart { durable_floor: None }),
            Err(ConfigError::RestartNeedsDurableFloor)
        );
        assert_eq!(c.validate_start(Start::Restart { durable_floor: Some(5) }), Ok(()));
        assert_eq!(Config::new(2, 0).validate_start(Start::Restart { durable_floor: None }), Ok(()));
    }
}
