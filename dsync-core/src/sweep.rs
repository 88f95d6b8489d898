//! The sweep of a restarted node: asks each peer once for the grants it holds, and releases those owned by
//! this node's earlier incarnations (PROTOCOL.md §6.6), so a crash does not block their resources for a
//! whole lease.

use crate::outbox::Io;
use crate::wire::WireEntry;
use crate::Message;
use crate::NodeSet;
use alloc::collections::BTreeSet;

/// Which peers this incarnation has swept, under which query id.
#[derive(Debug)]
pub(crate) struct Sweep {
    /// This incarnation with the top bit set: holder queries count up from 1, so they never share it.
    qid: u64,
    /// Peers whose answer to the latest query arrived (a duplicate answer is ignored).
    swept: NodeSet,
}

impl Sweep {
    /// Starts sweeping every peer believed reachable; the others are asked when they come up.
    pub(crate) fn start(incarnation: u64, io: &mut Io) -> Sweep {
        let sweep = Sweep { qid: incarnation | (1 << 63), swept: NodeSet::EMPTY };
        let mut ask = io.reachable();
        ask.remove(io.me);
        io.send_to(ask, Message::Query { qid: sweep.qid, resource: None });
        sweep
    }

    /// Whether `qid` is this sweep's.
    pub(crate) fn owns(&self, qid: u64) -> bool {
        qid == self.qid
    }

    /// `peer` came up (again): ask it (again). Its earlier answer may have been lost, or a `Lock` of a dead
    /// incarnation may have reached it late; asking costs one query per reconnection.
    pub(crate) fn on_peer_up(&mut self, peer: usize, io: &mut Io) {
        self.swept.remove(peer);
        io.send(peer, Message::Query { qid: self.qid, resource: None });
    }

    /// `from`'s grants: releases there every grant owned by this node that `issued` says this incarnation
    /// did not issue (so an earlier, dead incarnation did). Returns how many were released.
    pub(crate) fn on_reply(
        &mut self,
        from: usize,
        entries: &[WireEntry],
        issued: impl Fn(u64) -> bool,
        release_all: bool,
        io: &mut Io,
    ) -> u64 {
        if !self.swept.insert(from) {
            return 0; // a duplicate answer: its grants were handled with the first
        }
        // A multi-resource grant is listed once per resource; one Unlock removes it everywhere.
        let dead: BTreeSet<u64> =
            entries.iter().filter(|e| e.owner == io.me && (release_all || !issued(e.uid))).map(|e| e.uid).collect();
        for &uid in &dead {
            io.send(from, Message::Unlock { uid, ticket: None, reply: false });
        }
        dead.len() as u64
    }
}
