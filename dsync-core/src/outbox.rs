//! Where the locker and the coordinator put their outputs. Messages to this node itself go through a
//! loopback queue that the node drains before returning, so the own locker is used without the network.

use crate::event::{Counters, Event};
use crate::timers::Timers;
use crate::Message;
use crate::NodeSet;
use alloc::collections::VecDeque;

/// A message for the transport to deliver to node `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The destination node index.
    pub to: usize,
    /// The message (encode it with [`crate::wire::encode_into`]).
    pub message: Message,
}

/// Everything a handler may produce, plus the shared counters and timers.
#[derive(Debug)]
pub(crate) struct Io {
    pub(crate) me: usize,
    pub(crate) n: usize,
    /// Peers the transport reported down: not sent to, counted as unreachable.
    pub(crate) down: NodeSet,
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) loopback: VecDeque<Message>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) counters: Counters,
    pub(crate) timers: Timers,
}

impl Io {
    pub(crate) fn new(me: usize, n: usize) -> Self {
        Io {
            me,
            n,
            down: NodeSet::EMPTY,
            transmits: VecDeque::new(),
            loopback: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            timers: Timers::default(),
        }
    }

    /// Queues `message` for `to` (loopback when it is this node).
    pub(crate) fn send(&mut self, to: usize, message: Message) {
        if to == self.me {
            self.loopback.push_back(message);
        } else {
            self.counters.messages_out += 1;
            self.transmits.push_back(Transmit { to, message });
        }
    }

    /// Nodes a broadcast goes to: everyone not reported down (this node included).
    pub(crate) fn reachable(&self) -> NodeSet {
        NodeSet::all(self.n).difference(self.down)
    }

    /// Sends `message` to every node in `to`, cloning it for all but the last.
    pub(crate) fn send_to(&mut self, to: NodeSet, message: Message) {
        let mut it = to.iter().peekable();
        while let Some(node) = it.next() {
            if it.peek().is_some() {
                self.send(node, message.clone());
            } else {
                self.send(node, message);
                break;
            }
        }
    }

    pub(crate) fn emit(&mut self, event: Event) {
        self.events.push_back(event);
    }
}
