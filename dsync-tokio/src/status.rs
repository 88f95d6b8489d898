//! What a node is doing, for readiness probes and the application: [`Status`] and [`Serving`].
//!
//! The driver publishes a snapshot after every turn in which something changed (a peer came or went, the
//! core started or ended a quarantine, floor answers arrived); [`crate::Node::status`] reads the latest and
//! [`crate::Node::ready`] waits for one that is ready.

use dsync_core::quorum::quorum;
use dsync_core::{Mode, NodeSet, ServingState};
use std::time::Duration;

/// Whether this node's locker grants locks, and if not, what it waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Serving {
    /// It grants locks.
    Serving,
    /// It started without history ([`crate::NodeBuilder::bootstrap`] or an empty state directory) and waits
    /// until every other node has said whether it is new too: then it serves at once, or (if any node has
    /// history) it restarts safely with a quarantine. A brand-new cluster forms once all its nodes are up.
    Bootstrapping {
        /// Peers that have not answered yet (or answered "still deciding" with an older incarnation).
        waiting_for: Vec<usize>,
    },
    /// It restarted and grants nothing until every grant its previous run gave has surely expired.
    Quarantined {
        /// Time left.
        left: Duration,
        /// Whether it already knows its fencing floor.
        floor_known: bool,
    },
    /// Its quarantine is over but it still needs the fencing floor from a read quorum of peers.
    RecoveringFloor {
        /// Peers that told their floor.
        known: Vec<usize>,
        /// Peers that answered that they do not know theirs either (restarted without state themselves).
        unknown: Vec<usize>,
        /// How many peers must tell it.
        needed: usize,
    },
    /// It would serve, but first writes its first durable fencing floor to the state directory (one fsync);
    /// until then lockers deny write locks.
    PersistingFloor,
    /// The node has stopped.
    Stopped,
}

/// A snapshot of a node's state, from [`crate::Node::status`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// This node's index.
    pub id: usize,
    /// The cluster size.
    pub nodes: usize,
    /// Whether this node grants locks.
    pub serving: Serving,
    /// Peers with an authenticated connection, in index order.
    pub peers_up: Vec<usize>,
    /// Serving, and connected to enough peers for a write quorum (this node included): a lock asked for now
    /// is decided in about one round trip unless others hold it. Peers may still be starting.
    pub ready: bool,
}

impl Status {
    /// Whether a write quorum of nodes (this one included) is connected.
    pub fn quorum_connected(&self) -> bool {
        self.peers_up.len() + 1 >= quorum(self.nodes, Mode::Write)
    }
}

/// What the driver publishes: like [`Status`] but with the quarantine's end as an instant, so a snapshot does
/// not change merely because time passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) serving: Phase,
    pub(crate) peers_up: NodeSet,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Serving,
    Bootstrapping { waiting: NodeSet },
    Quarantined { until: tokio::time::Instant, floor_known: bool },
    RecoveringFloor { known: NodeSet, unknown: NodeSet, needed: usize },
    PersistingFloor,
    Stopped,
}

impl Phase {
    /// Translates the core's state; `to_tokio` maps the core's clock to tokio's.
    pub(crate) fn from_core(
        state: ServingState,
        to_tokio: impl Fn(dsync_core::Instant) -> tokio::time::Instant,
    ) -> Phase {
        match state {
            ServingState::Serving => Phase::Serving,
            ServingState::Bootstrapping { waiting, .. } => Phase::Bootstrapping { waiting },
            ServingState::Quarantined { until, floor_known } => {
                Phase::Quarantined { until: to_tokio(until), floor_known }
            }
            ServingState::RecoveringFloor { known, unknown, needed } => {
                Phase::RecoveringFloor { known, unknown, needed }
            }
            _ => Phase::Stopped,
        }
    }
}

impl Published {
    /// The peers a bootstrap waits for; the empty set before the first publication (so the first wait is
    /// logged), `None` once past bootstrapping.
    pub(crate) fn waiting(&self) -> Option<NodeSet> {
        match &self.serving {
            Phase::Bootstrapping { waiting } => Some(*waiting),
            Phase::Stopped => Some(NodeSet::EMPTY),
            _ => None,
        }
    }

    pub(crate) fn snapshot(&self, id: usize, nodes: usize) -> Status {
        let list = |s: NodeSet| s.iter().collect::<Vec<_>>();
        let serving = match &self.serving {
            Phase::Serving => Serving::Serving,
            Phase::Bootstrapping { waiting } => Serving::Bootstrapping { waiting_for: list(*waiting) },
            Phase::Quarantined { until, floor_known } => Serving::Quarantined {
                left: until.saturating_duration_since(tokio::time::Instant::now()),
                floor_known: *floor_known,
            },
            Phase::RecoveringFloor { known, unknown, needed } => {
                Serving::RecoveringFloor { known: list(*known), unknown: list(*unknown), needed: *needed }
            }
            Phase::PersistingFloor => Serving::PersistingFloor,
            Phase::Stopped => Serving::Stopped,
        };
        let mut status = Status { id, nodes, serving, peers_up: list(self.peers_up), ready: false };
        status.ready = status.serving == Serving::Serving && status.quorum_connected();
        status
    }
}
