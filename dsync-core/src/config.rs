//! The node's configuration: cluster shape, timing, limits and the seed, validated once at start.

use crate::planted::PlantedBug;
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
    /// The cluster's first boot: this node has never granted anything, so it serves at once. Only correct
    /// when that is certain; a node that merely finds no state should use [`Start::Bootstrap`].
    FirstBoot,
    /// A restart. The node grants nothing for the quarantine. Without a durable floor it first learns
    /// the highest fencing token from a read quorum of peers; with one (from [`crate::Event::PersistFloor`])
    /// it needs no peer, so a whole cluster can restart.
    Restart {
        /// The last floor the embedder persisted and acknowledged, if it keeps one.
        durable_floor: Option<u64>,
    },
    /// "This node believes it has no history, but may be wrong" (a new or wiped state directory). It grants
    /// nothing and starts no lock round until it has asked every peer: if all `n − 1` are themselves fresh
    /// (or booted counting this start as fresh) it boots like [`Start::FirstBoot`]; if any has history it
    /// continues exactly as `Restart { durable_floor: None }` started at the same instant (PROTOCOL.md §6.5).
    Bootstrap,
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
    /// A safety mechanism to switch off, for the simulator's self-test. Leave it `None`: builds without
    /// the `planted-bugs` feature refuse anything else ([`ConfigError::PlantedBugNotCompiled`]).
    pub planted_bug: Option<PlantedBug>,
}

impl Config {
    /// Defaults for node `id` of `nodes`: lease 30 s, refresh every 10 s, ρ = 1 %, attempts of 1 s,
    /// backoff 5 ms – 500 ms, queries of 1 s.
    #[must_use]
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
            planted_bug: None,
        }
    }

    /// Whether `bug` is planted; a constant `false` without the `planted-bugs` feature, so production
    /// builds compile the switches away.
    #[inline]
    pub(crate) fn bug(&self, bug: PlantedBug) -> bool {
        cfg!(feature = "planted-bugs") && self.planted_bug == Some(bug)
    }

    /// How long a locker keeps an unrefreshed grant, on its own clock: `L·(1+ρ)`.
    #[must_use]
    pub fn locker_hold(&self) -> Duration {
        scale_ppm(self.lease, self.max_drift_ppm, true)
    }

    /// How long a holder trusts a confirmed round, on its own clock, from the round's send time: `L·(1−ρ)`.
    #[must_use]
    pub fn holder_validity(&self) -> Duration {
        if self.bug(PlantedBug::NoDriftMargin) {
            return self.locker_hold();
        }
        scale_ppm(self.lease, self.max_drift_ppm, false)
    }

    /// The restart quarantine in force: the configured one, or `L·(1+ρ)`.
    #[must_use]
    pub fn effective_quarantine(&self) -> Duration {
        self.quarantine.unwrap_or_else(|| self.locker_hold())
    }

    /// How long a locker keeps a reservation for a waiting lock that stopped retrying.
    pub(crate) fn reservation_ttl(&self) -> Duration {
        (self.backoff_max + self.attempt_timeout) * 2
    }

    /// Checks every field; the error names the first one that is wrong, with the values involved and a fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use ConfigError as E;
        if let (Some(bug), false) = (self.planted_bug, cfg!(feature = "planted-bugs")) {
            return Err(E::PlantedBugNotCompiled { bug });
        }
        if self.nodes == 0 || self.nodes > MAX_NODES {
            return Err(E::Nodes { nodes: self.nodes });
        }
        if self.id >= self.nodes {
            return Err(E::Id { id: self.id, nodes: self.nodes });
        }
        if self.max_drift_ppm > MAX_DRIFT_PPM {
            return Err(E::Drift { ppm: self.max_drift_ppm });
        }
        for (field, d) in [
            ("lease", self.lease),
            ("refresh_interval", self.refresh_interval),
            ("attempt_timeout", self.attempt_timeout),
            ("backoff_min", self.backoff_min),
            ("query_timeout", self.query_timeout),
        ] {
            if d.is_zero() {
                return Err(E::Zero { field });
            }
        }
        let (lease, drift_ppm) = (self.lease, self.max_drift_ppm);
        let validity = self.holder_validity();
        if self.refresh_interval + self.attempt_timeout >= validity {
            let (refresh_interval, attempt_timeout) = (self.refresh_interval, self.attempt_timeout);
            return Err(E::RefreshTooLate { refresh_interval, attempt_timeout, lease, drift_ppm });
        }
        if self.backoff_min > self.backoff_max {
            return Err(E::Backoff { backoff_min: self.backoff_min, backoff_max: self.backoff_max });
        }
        if let Some(quarantine) = self.quarantine {
            if quarantine < self.locker_hold() {
                return Err(E::QuarantineTooShort { quarantine, lease, drift_ppm });
            }
        }
        if self.persist_floor && self.floor_chunk == 0 {
            return Err(E::FloorChunkZero);
        }
        let l = &self.limits;
        for (name, value, min) in [
            ("max_resources_per_lock", l.max_resources_per_lock, 1),
            ("max_resource_len", l.max_resource_len, 1),
            ("max_grants", l.max_grants, 1),
            ("max_pending", l.max_pending, 1),
            ("max_queries", l.max_queries, 1),
            ("max_message_size", l.max_message_size, 64),
        ] {
            if value < min {
                return Err(E::Limit { name, value, min });
            }
        }
        Ok(())
    }

    /// Checks that a node may start this way (a lone node cannot learn a floor from peers).
    pub(crate) fn validate_start(&self, start: Start) -> Result<(), ConfigError> {
        if let Start::Restart { durable_floor: None } = start {
            // Floor recovery needs a read quorum of *other* nodes.
            if self.nodes - 1 < read_quorum(self.nodes) {
                return Err(ConfigError::RestartNeedsDurableFloor { nodes: self.nodes });
            }
        }
        Ok(())
    }
}

/// The largest drift bound `Config::validate` accepts: 10 %.
const MAX_DRIFT_PPM: u32 = 100_000;

/// Why a configuration was refused. Its `Display` names the values involved and how to fix them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The cluster size is outside 1..=64.
    Nodes {
        /// The size given.
        nodes: usize,
    },
    /// The node index is not below the cluster size.
    Id {
        /// The index given.
        id: usize,
        /// The cluster size.
        nodes: usize,
    },
    /// The drift bound is above 100 000 ppm (10 %).
    Drift {
        /// The bound given, in parts per million.
        ppm: u32,
    },
    /// A duration that must be positive is zero.
    Zero {
        /// The `Config` field.
        field: &'static str,
    },
    /// `refresh_interval + attempt_timeout` does not leave a refresh round time to finish before the
    /// holder's validity `lease·(1−ρ)` ends.
    RefreshTooLate {
        /// The configured refresh interval.
        refresh_interval: Duration,
        /// The configured attempt timeout.
        attempt_timeout: Duration,
        /// The configured lease.
        lease: Duration,
        /// The configured drift bound ρ, ppm.
        drift_ppm: u32,
    },
    /// `backoff_min` exceeds `backoff_max`.
    Backoff {
        /// The configured smallest backoff.
        backoff_min: Duration,
        /// The configured largest backoff.
        backoff_max: Duration,
    },
    /// The restart quarantine is below `lease·(1+ρ)`: old grants could still be believed when it ends.
    QuarantineTooShort {
        /// The configured quarantine.
        quarantine: Duration,
        /// The configured lease.
        lease: Duration,
        /// The configured drift bound ρ, ppm.
        drift_ppm: u32,
    },
    /// `persist_floor` is set with a `floor_chunk` of 0.
    FloorChunkZero,
    /// A limit is below its minimum (1, or 64 bytes for the message size).
    Limit {
        /// The [`Limits`] field.
        name: &'static str,
        /// Its value.
        value: usize,
        /// The smallest accepted value.
        min: usize,
    },
    /// A node that cannot reach a read quorum of peers (a 1-node cluster) needs a durable floor to restart.
    RestartNeedsDurableFloor {
        /// The cluster size.
        nodes: usize,
    },
    /// [`Config::planted_bug`] is set in a build without the `planted-bugs` feature, which would ignore it.
    PlantedBugNotCompiled {
        /// The bug asked for.
        bug: PlantedBug,
    },
}

/// A duration as people read it: "11 s", "2.97 s", "200 ms"; to two decimals, rounded up or down.
struct Human(Duration, bool);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        let (unit, name) = if ns >= 1_000_000_000 { (1_000_000_000u128, "s") } else { (1_000_000, "ms") };
        let step = unit / 100;
        let hundredths = if self.1 { ns.div_ceil(step) } else { ns / step };
        let (int, frac) = (hundredths / 100, hundredths % 100);
        match (frac, frac % 10) {
            (0, _) => write!(f, "{int} {name}"),
            (_, 0) => write!(f, "{int}.{} {name}", frac / 10),
            _ => write!(f, "{int}.{frac:02} {name}"),
        }
    }
}

/// ρ in percent: "1%", "0.1%", "5%".
struct Percent(u32);

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (int, mut frac, mut digits) = (self.0 / 10_000, self.0 % 10_000, 4);
        if frac == 0 {
            return write!(f, "{int}%");
        }
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        write!(f, "{int}.{frac:0digits$}%")
    }
}

/// The smallest lease whose `lease·(1 ± ρ)` reaches `target` (`grow`: `1+ρ`, else `1−ρ`).
fn lease_for(target: Duration, ppm: u32, grow: bool) -> Duration {
    let factor = if grow { 1_000_000 + u128::from(ppm) } else { 1_000_000 - u128::from(ppm) };
    let ns = (target.as_nanos() * 1_000_000).div_ceil(factor.max(1));
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (up, down) = (true, false);
        match *self {
            ConfigError::Nodes { nodes } => {
                write!(f, "cluster size {nodes} is outside 1..=64: set nodes to between 1 and 64")
            }
            ConfigError::Id { id, nodes } => {
                write!(f, "node index {id} is not below the cluster size {nodes}: use an index in 0..{nodes}")
            }
            ConfigError::Drift { ppm } => write!(
                f,
                "drift bound {ppm} ppm ({}) exceeds {MAX_DRIFT_PPM} ppm (10%): lower max_drift_ppm to at most {MAX_DRIFT_PPM}",
                Percent(ppm)
            ),
            ConfigError::Zero { field } => write!(f, "{field} is zero: make it positive"),
            ConfigError::RefreshTooLate { refresh_interval, attempt_timeout, lease, drift_ppm } => {
                let validity = scale_ppm(lease, drift_ppm, false);
                let sum = refresh_interval + attempt_timeout;
                write!(
                    f,
                    "refresh_interval ({}) + attempt_timeout ({}) = {} must be below lease·(1−ρ) = {} (lease {}, ρ {}): ",
                    Human(refresh_interval, up),
                    Human(attempt_timeout, up),
                    Human(sum, up),
                    Human(validity, down),
                    Human(lease, up),
                    Percent(drift_ppm)
                )?;
                if attempt_timeout < validity {
                    write!(f, "lower refresh_interval to below {} or ", Human(validity - attempt_timeout, down))?;
                }
                write!(f, "raise lease above {}", Human(lease_for(sum, drift_ppm, false), up))
            }
            ConfigError::Backoff { backoff_min, backoff_max } => write!(
                f,
                "backoff_min ({}) exceeds backoff_max ({}): lower backoff_min or raise backoff_max",
                Human(backoff_min, up),
                Human(backoff_max, up)
            ),
            ConfigError::QuarantineTooShort { quarantine, lease, drift_ppm } => {
                let hold = scale_ppm(lease, drift_ppm, true);
                write!(
                    f,
                    "quarantine ({}) must be at least lease·(1+ρ) = {} (lease {}, ρ {}): raise quarantine to at least {} or leave it None",
                    Human(quarantine, down),
                    Human(hold, up),
                    Human(lease, up),
                    Percent(drift_ppm),
                    Human(hold, up)
                )
            }
            ConfigError::FloorChunkZero => {
                f.write_str("floor_chunk is 0 while persist_floor is set: make it positive (default 65536)")
            }
            ConfigError::Limit { name, value, min } => {
                write!(f, "limits.{name} is {value}, below its minimum {min}: raise it to at least {min}")
            }
            ConfigError::RestartNeedsDurableFloor { nodes } => write!(
                f,
                "a node of a {nodes}-node cluster cannot recover its fencing floor from peers (it needs {} other nodes): restart it with a durable floor or as Start::Bootstrap",
                read_quorum(nodes)
            ),
            ConfigError::PlantedBugNotCompiled { bug } => write!(
                f,
                "planted bug {} is set but this build lacks the planted-bugs feature: leave planted_bug None",
                bug.name()
            ),
        }
    }
}

impl core::error::Error for ConfigError {}

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
        assert_eq!(Config::new(0, 0).validate(), Err(ConfigError::Nodes { nodes: 0 }));
        assert_eq!(Config::new(65, 0).validate(), Err(ConfigError::Nodes { nodes: 65 }));
        assert_eq!(Config::new(3, 3).validate(), Err(ConfigError::Id { id: 3, nodes: 3 }));
        let mut c = Config::new(3, 0);
        c.quarantine = Some(c.lease);
        assert!(matches!(c.validate(), Err(ConfigError::QuarantineTooShort { .. })), "quarantine below L(1+ρ)");
        let mut c = Config::new(3, 0);
        c.refresh_interval = c.lease;
        assert!(matches!(c.validate(), Err(ConfigError::RefreshTooLate { .. })));
    }

    #[test]
    fn holder_trusts_less_than_the_locker_keeps() {
        let c = Config::new(3, 0);
        assert!(c.holder_validity() < c.lease && c.lease < c.locker_hold());
        assert!(c.effective_quarantine() >= c.locker_hold());
    }

    #[test]
    fn a_planted_bug_is_refused_where_it_would_be_ignored() {
        let mut c = Config::new(3, 0);
        c.planted_bug = Some(PlantedBug::NoFencingCheck);
        let honoured = cfg!(feature = "planted-bugs");
        assert_eq!(c.validate().is_ok(), honoured);
        assert_eq!(c.bug(PlantedBug::NoFencingCheck), honoured);
        assert!(!c.bug(PlantedBug::NoDriftMargin));
    }

    #[test]
    fn a_lone_node_cannot_restart_without_a_durable_floor() {
        let c = Config::new(1, 0);
        assert_eq!(
            c.validate_start(Start::Restart { durable_floor: None }),
            Err(ConfigError::RestartNeedsDurableFloor { nodes: 1 })
        );
        assert_eq!(c.validate_start(Start::Bootstrap), Ok(()), "a lone bootstrapping node boots at once");
        assert_eq!(c.validate_start(Start::Restart { durable_floor: Some(5) }), Ok(()));
        assert_eq!(Config::new(2, 0).validate_start(Start::Restart { durable_floor: None }), Ok(()));
    }

    fn message(c: &Config) -> alloc::string::String {
        alloc::format!("{}", c.validate().expect_err("refused"))
    }

    #[test]
    fn a_refresh_that_cannot_finish_in_time_names_the_values_and_the_fix() {
        let mut c = Config::new(3, 0);
        c.lease = Duration::from_secs(3);
        assert_eq!(
            message(&c),
            "refresh_interval (10 s) + attempt_timeout (1 s) = 11 s must be below lease·(1−ρ) = 2.97 s \
             (lease 3 s, ρ 1%): lower refresh_interval to below 1.97 s or raise lease above 11.12 s"
        );
        c.attempt_timeout = Duration::from_secs(5);
        assert!(message(&c).ends_with("(lease 3 s, ρ 1%): raise lease above 15.16 s"), "{}", message(&c));
    }

    #[test]
    fn every_config_error_prints_its_values_and_a_fix() {
        let mut c = Config::new(3, 0);
        c.quarantine = Some(Duration::from_secs(30));
        assert_eq!(
            message(&c),
            "quarantine (30 s) must be at least lease·(1+ρ) = 30.3 s (lease 30 s, ρ 1%): \
             raise quarantine to at least 30.3 s or leave it None"
        );
        let mut c = Config::new(3, 0);
        c.max_drift_ppm = 150_000;
        assert_eq!(
            message(&c),
            "drift bound 150000 ppm (15%) exceeds 100000 ppm (10%): lower max_drift_ppm to at most 100000"
        );
        let mut c = Config::new(3, 0);
        c.backoff_min = Duration::from_millis(600);
        assert_eq!(
            message(&c),
            "backoff_min (600 ms) exceeds backoff_max (500 ms): lower backoff_min or raise backoff_max"
        );
        let mut c = Config::new(3, 0);
        c.query_timeout = Duration::ZERO;
        assert_eq!(message(&c), "query_timeout is zero: make it positive");
        let mut c = Config::new(3, 0);
        c.limits.max_message_size = 10;
        assert_eq!(message(&c), "limits.max_message_size is 10, below its minimum 64: raise it to at least 64");
        let mut c = Config::new(3, 0);
        c.persist_floor = true;
        c.floor_chunk = 0;
        assert!(message(&c).contains("floor_chunk is 0"));
        assert_eq!(message(&Config::new(3, 5)), "node index 5 is not below the cluster size 3: use an index in 0..3");
        assert!(message(&Config::new(70, 0)).starts_with("cluster size 70 is outside 1..=64"));
        let lone = ConfigError::RestartNeedsDurableFloor { nodes: 1 };
        assert!(alloc::format!("{lone}").contains("durable floor or as Start::Bootstrap"));
        let mut c = Config::new(3, 0);
        c.max_drift_ppm = 1_000;
        c.lease = Duration::from_millis(1500);
        c.attempt_timeout = Duration::from_millis(200);
        assert!(message(&c).contains("lease·(1−ρ) = 1.49 s (lease 1.5 s, ρ 0.1%)"), "{}", message(&c));
    }
}
