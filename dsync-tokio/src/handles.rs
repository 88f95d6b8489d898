//! The driver's book of application handles: who waits for which acquisition, which guards are alive, and
//! who waits for a release confirmation. It never talks to the core itself; each method says what the core
//! must be told ([`CoreAction`]), so the same code runs in the driver and in the loom models.
//!
//! The one rule every method keeps: a lock the core holds for this node is in exactly one of `waiting`
//! (an acquisition someone awaits), `held` (a live guard) or `releasing` (an explicit release awaiting
//! confirmations) — or it has been handed back to the core with `Unlock`/`Cancel`. That is what makes a
//! release neither lost nor doubled, whichever of drop, `release()`, cancellation, lease loss and shutdown
//! comes first.

use crate::driver::{Command, Grant, Released, Releaser};
use crate::error::LockError;
use crate::handoff::{lost_signal, LostTx, ReplyTx};
use dsync_core::{LockId, Mode, NodeSet};
use std::collections::BTreeMap;
use tokio::sync::mpsc;

/// Where an acquisition's outcome goes.
pub(crate) type LockReply = ReplyTx<Result<Grant, LockError>>;
/// Where an explicit release's outcome goes.
pub(crate) type ReleaseReply = ReplyTx<Released>;

/// What the driver must do to the core after a bookkeeping step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CoreAction {
    /// Nothing.
    None,
    /// Release, asking the grantors to confirm.
    Unlock(LockId),
    /// Release (or stop acquiring) without waiting for anyone.
    Cancel(LockId),
}

struct Waiting {
    req: u64,
    mode: Mode,
    reply: LockReply,
}

pub(crate) struct Handles {
    /// Cloned into every guard's releaser.
    control: mpsc::UnboundedSender<Command>,
    waiting: BTreeMap<LockId, Waiting>,
    /// `lock()` call id → its acquisition, so a dropped future can find what to cancel.
    by_req: BTreeMap<u64, LockId>,
    held: BTreeMap<LockId, LostTx>,
    releasing: BTreeMap<LockId, Option<ReleaseReply>>,
}

impl Handles {
    pub(crate) fn new(control: mpsc::UnboundedSender<Command>) -> Self {
        Handles {
            control,
            waiting: BTreeMap::new(),
            by_req: BTreeMap::new(),
            held: BTreeMap::new(),
            releasing: BTreeMap::new(),
        }
    }

    /// Guards alive.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// Whether explicit or shutdown releases still await confirmations.
    pub(crate) fn releasing(&self) -> bool {
        !self.releasing.is_empty()
    }

    /// The core accepted call `req` as acquisition `lock`.
    pub(crate) fn started(&mut self, lock: LockId, req: u64, mode: Mode, reply: LockReply) {
        self.waiting.insert(lock, Waiting { req, mode, reply });
        self.by_req.insert(req, lock);
    }

    /// The `lock()` future of call `req` was dropped. A call already answered is not found here: its grant
    /// travels back through the reply (see [`Handles::acquired`]).
    pub(crate) fn abandoned(&mut self, req: u64) -> CoreAction {
        match self.by_req.remove(&req) {
            Some(lock) => {
                self.waiting.remove(&lock);
                CoreAction::Cancel(lock)
            }
            None => CoreAction::None,
        }
    }

    /// The core acquired `lock`. Hands a guard's grant to the caller; if nobody waits any more, gives it back.
    pub(crate) fn acquired(&mut self, lock: LockId, token: u64, grantors: NodeSet, keep_orphans: bool) -> CoreAction {
        let Some(w) = self.waiting.remove(&lock) else {
            return CoreAction::Unlock(lock);
        };
        self.by_req.remove(&w.req);
        let (lost_tx, lost) = lost_signal();
        let releaser = Releaser { control: self.control.clone(), lock, armed: true };
        self.held.insert(lock, lost_tx);
        // A caller that went away hands the grant back; dropping it queues its release like any guard drop.
        if let Err(grant) = w.reply.send(Ok(Grant { releaser, token, grantors, mode: w.mode, lost })) {
            if keep_orphans {
                // The planted bug: nobody will ever release this grant, and the driver refreshes it.
                std::mem::forget(grant);
            } else {
                drop(grant);
            }
        }
        CoreAction::None
    }

    /// The acquisition of `lock` ended without it.
    pub(crate) fn failed(&mut self, lock: LockId, error: LockError) {
        if let Some(w) = self.waiting.remove(&lock) {
            self.by_req.remove(&w.req);
            let _ = w.reply.send(Err(error));
        }
    }

    /// The lease of `lock` is gone; its guard (if alive) learns it. Returns whether a guard was told.
    pub(crate) fn lost(&mut self, lock: LockId) -> bool {
        match self.held.remove(&lock) {
            Some(tx) => {
                tx.fire();
                true
            }
            None => false,
        }
    }

    /// A guard was released: explicitly (`reply` set) or by drop. A lock no longer held (lost, or released
    /// by shutdown) is not released twice; an explicit caller then hears "nothing confirmed".
    pub(crate) fn release(&mut self, lock: LockId, reply: Option<ReleaseReply>) -> CoreAction {
        if self.held.remove(&lock).is_none() {
            if let Some(r) = reply {
                let _ = r.send(Released { confirmed: 0, grantors: 0 });
            }
            return CoreAction::None;
        }
        match reply {
            // An explicit release waits for every grantor's confirmation.
            Some(r) => {
                self.releasing.insert(lock, Some(r));
                CoreAction::Unlock(lock)
            }
            // A dropped guard waits for nothing.
            None => CoreAction::Cancel(lock),
        }
    }

    /// The core finished releasing `lock`.
    pub(crate) fn released(&mut self, lock: LockId, confirmed: usize, grantors: usize) {
        if let Some(Some(reply)) = self.releasing.remove(&lock) {
            let _ = reply.send(Released { confirmed, grantors });
        }
    }

    /// Shutdown begins: every guard learns its lease is over, every pending call fails with `ShutDown`, and the
    /// driver is told which locks to hand back to the core.
    pub(crate) fn shut_down(&mut self) -> Vec<CoreAction> {
        let mut actions = Vec::with_capacity(self.held.len() + self.waiting.len());
        for (lock, lost) in std::mem::take(&mut self.held) {
            lost.fire();
            self.releasing.insert(lock, None);
            actions.push(CoreAction::Unlock(lock));
        }
        for (lock, w) in std::mem::take(&mut self.waiting) {
            let _ = w.reply.send(Err(LockError::ShutDown));
            actions.push(CoreAction::Cancel(lock));
        }
        self.by_req.clear();
        // Map order must not decide the order of core calls (which would change message order run to run).
        actions.sort_by_key(|a| match a {
            CoreAction::Unlock(l) | CoreAction::Cancel(l) => l.0,
            CoreAction::None => 0,
        });
        actions
    }

    /// The driver stopped: whatever is still pending or held ends here.
    pub(crate) fn stopped(&mut self) {
        for (_, w) in std::mem::take(&mut self.waiting) {
            let _ = w.reply.send(Err(LockError::ShutDown));
        }
        for (_, lost) in std::mem::take(&mut self.held) {
            lost.fire();
        }
        self.by_req.clear();
        self.releasing.clear();
    }
}
