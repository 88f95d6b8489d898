//! Fencing-token bookkeeping of one locker: the floor, the high-water mark, and the durable floor.
//!
//! Each resource carries a mark (the highest write token granted on it); resources this locker has
//! forgotten, and everything before a restart, fold into one `floor` that every mark is at least. A write
//! grant needs a proposal above the marks of all its resources (see [`crate::locker`]); this module keeps
//! the numbers those checks read, and decides when the embedder must persist a new durable floor.

use crate::config::{Config, Start};
use crate::event::Event;
use crate::outbox::Io;
use crate::PlantedBug;

/// Proposals more than this far above anything the locker knows are refused as invalid, so one bad
/// message cannot push a mark to `u64::MAX` and end all future writes.
pub(crate) const MAX_TOKEN_JUMP: u64 = 1 << 40;

#[derive(Debug)]
pub(crate) struct Fencing {
    /// Lower bound of every resource's mark (forgotten resources, restart floor).
    floor: u64,
    /// The highest token this locker granted or learned.
    max: u64,
    /// False while a restarted node without a durable floor has not yet learned it from its peers.
    known: bool,
    durable: Option<Durable>,
}

#[derive(Debug)]
struct Durable {
    /// The embedder acknowledged storing this: every token granted is at most this.
    persisted: u64,
    /// The floor most recently asked for.
    requested: u64,
    chunk: u64,
}

impl Fencing {
    pub(crate) fn new(cfg: &Config, start: Start) -> Self {
        let (floor, known) = match start {
            Start::FirstBoot => (0, true),
            Start::Restart { durable_floor: Some(f) } => (f, true),
            Start::Restart { durable_floor: None } => (0, cfg.bug(PlantedBug::NoFloorRecovery)),
            // Unknown until the bootstrap decides: 0 at a first boot, else recovered like a restart's.
            Start::Bootstrap => (0, false),
        };
        let durable =
            cfg.persist_floor.then_some(Durable { persisted: floor, requested: floor, chunk: cfg.floor_chunk });
        Fencing { floor, max: floor, known, durable }
    }

    pub(crate) fn floor(&self) -> u64 {
        self.floor
    }

    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    pub(crate) fn known(&self) -> bool {
        self.known
    }

    /// A resource's mark is forgotten: the floor keeps covering it.
    pub(crate) fn fold(&mut self, mark: u64) {
        self.floor = self.floor.max(mark);
    }

    /// The floor learned from a read quorum of peers after a restart.
    pub(crate) fn learn(&mut self, floor: u64) {
        self.floor = self.floor.max(floor);
        self.max = self.max.max(floor);
        self.known = true;
    }

    /// Whether a write proposal is sane and covered by the persisted floor.
    pub(crate) fn admits(&self, proposal: u64) -> Result<(), crate::DenyReason> {
        if proposal > self.max.saturating_add(MAX_TOKEN_JUMP) {
            return Err(crate::DenyReason::Invalid);
        }
        match &self.durable {
            Some(d) if proposal > d.persisted => Err(crate::DenyReason::FloorPending),
            _ => Ok(()),
        }
    }

    /// A write was granted with `token`, or a denied proposal showed how high tokens are about to go.
    pub(crate) fn record(&mut self, token: u64) {
        self.max = self.max.max(token);
    }

    /// Asks the embedder to persist a new floor when granted tokens come within half a chunk of the
    /// requested one, so grants rarely wait for storage.
    pub(crate) fn request_persist(&mut self, wanted: u64, io: &mut Io) {
        if !self.known {
            // A floor we do not know yet must not overwrite the embedder's: a crash before recovery would
            // bring this node back as `Restart { durable_floor }` below tokens the cluster already issued.
            return;
        }
        if let Some(d) = &mut self.durable {
            let need = self.max.max(wanted);
            if need.saturating_add(d.chunk / 2) >= d.requested {
                d.requested = need.saturating_add(d.chunk);
                io.emit(Event::PersistFloor { floor: d.requested });
            }
        }
    }

    /// The embedder stored `floor`.
    pub(crate) fn persisted(&mut self, floor: u64) {
        if let Some(d) = &mut self.durable {
            // Only a floor we asked for counts: an acknowledgement cannot raise it past the request.
            d.persisted = d.persisted.max(floor.min(d.requested));
        }
    }
}
