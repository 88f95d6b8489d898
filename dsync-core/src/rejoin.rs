//! A restarted node's fast rejoin (PROTOCOL.md §6.7): asks every peer which of its locks count this node
//! as a grantor, and once all have answered completely, reinstalls them and ends the quarantine.

use crate::outbox::Io;
use crate::quorum::write_quorum;
use crate::wire::LockMsg;
use crate::Message;
use crate::NodeSet;
use alloc::vec::Vec;

/// Upper bounds of a `RejoinReply`'s encoding beyond the resource names: per hold (varints of uid, ticket,
/// proposal, mode, list length), per resource (its length varint), and for the rest of the message.
const HOLD_OVERHEAD: usize = 48;
const RESOURCE_OVERHEAD: usize = 10;
const REPLY_OVERHEAD: usize = 32;

/// Where the rejoin of this incarnation stands.
#[derive(Debug)]
pub(crate) struct Rejoin {
    /// This incarnation: replies to an earlier start carry another qid.
    qid: u64,
    /// Peers whose complete answer arrived.
    answered: NodeSet,
    /// What they reported, by holder.
    holds: Vec<(usize, LockMsg)>,
    /// Decided (reinstalled, or refused): nothing more to do.
    done: bool,
}

impl Rejoin {
    /// Starts asking every peer believed reachable (the others when they come up).
    pub(crate) fn start(incarnation: u64, io: &mut Io) -> Rejoin {
        let mut ask = io.reachable();
        ask.remove(io.me);
        io.send_to(ask, Message::Rejoin { qid: incarnation });
        Rejoin { qid: incarnation, answered: NodeSet::EMPTY, holds: Vec::new(), done: false }
    }

    /// A rejoin that has nothing to do (a first boot).
    pub(crate) fn none() -> Rejoin {
        Rejoin { qid: 0, answered: NodeSet::EMPTY, holds: Vec::new(), done: true }
    }

    /// `peer` came up: ask it, unless it answered already.
    pub(crate) fn on_peer_up(&self, peer: usize, io: &mut Io) {
        if !self.done && !self.answered.contains(peer) {
            io.send(peer, Message::Rejoin { qid: self.qid });
        }
    }

    /// `from`'s answer.
    pub(crate) fn on_reply(&mut self, from: usize, qid: u64, holds: Vec<LockMsg>, complete: bool, io: &mut Io) {
        if self.done || qid != self.qid || !complete || !self.answered.insert(from) {
            io.counters.stale_replies += 1;
            return;
        }
        self.holds.extend(holds.into_iter().map(|h| (from, h)));
    }

    /// Whether the answers allow ending the quarantine: every peer's (`quorum_only`: a write quorum's,
    /// counting this node — the planted bug).
    pub(crate) fn ready(&self, nodes: usize, me: usize, quorum_only: bool) -> bool {
        if self.done {
            return false;
        }
        if quorum_only {
            return self.answered.len() + 1 >= write_quorum(nodes);
        }
        let mut peers = NodeSet::all(nodes);
        peers.remove(me);
        peers.is_subset(self.answered)
    }

    /// Takes the reported holds; the rejoin is decided.
    pub(crate) fn finish(&mut self) -> Vec<(usize, LockMsg)> {
        self.done = true;
        core::mem::take(&mut self.holds)
    }
}

/// The answer to a `Rejoin`: `holds`, or none and `complete = false` if they would not fit `max_size` bytes.
pub(crate) fn reply(qid: u64, holds: Vec<LockMsg>, max_size: usize) -> Message {
    let size: usize = REPLY_OVERHEAD
        + holds
            .iter()
            .map(|h| HOLD_OVERHEAD + h.resources.iter().map(|r| r.len() + RESOURCE_OVERHEAD).sum::<usize>())
            .sum::<usize>();
    if size > max_size {
        return Message::RejoinReply { qid, holds: Vec::new(), complete: false };
    }
    Message::RejoinReply { qid, holds, complete: true }
}
