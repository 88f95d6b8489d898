//! Late frames from a dead connection: the one reordering TCP cannot produce but the transport contract
//! allows.
//!
//! Over dsync-tokio's TCP link (the one simulated here), the connection engine serves one connection per
//! peer at a time and hands the driver everything an old connection delivered before anything from its
//! successor, so a node's messages arrive in the order they were sent even across a reconnect. The
//! protocol does not rely on that: the network "may lose,
//! duplicate, delay and reorder messages" (PROTOCOL.md §1), a user's own [`Transport`] may well deliver a
//! dead connection's last frames late, and fast rejoin (§6.7, step 2) is argued for exactly that case — a
//! grant sent by a node's previous incarnation arriving after the new one's `Rejoin`.
//!
//! [`Reordering`] wraps each node's real transport and, when the harness *stalls* node `v`'s messages from
//! `x` ([`Stalls::stall`]), withholds them from `v`'s driver until the connection they came on is gone
//! (`PeerDown(x)`) and the next connection has delivered its first messages — then hands them over, right
//! behind the newer ones. That is the worst a reordering network can do to a restarted node's rejoin. A
//! stall that sees no reconnect is released in order at its end ([`Stalls::release`]), reordering nothing.

use dsync_tokio::engine::Stats;
use dsync_tokio::{Transport, TransportEvent};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Where a stall of one sender stands.
#[derive(Debug)]
enum Stage {
    /// Its messages are withheld.
    Withholding,
    /// Its connection went down; withheld messages wait for the first messages of the next one.
    Reconnecting,
}

#[derive(Default)]
struct NodeStalls {
    /// Per sender being stalled: its stage and what was withheld, in arrival order.
    stalled: Vec<(usize, Stage, Vec<TransportEvent>)>,
    /// Withheld messages released, to be handed to the driver next.
    released: VecDeque<TransportEvent>,
}

/// The harness's switches over every node's [`Reordering`] transport (cheap to clone).
#[derive(Clone)]
pub struct Stalls {
    nodes: Arc<Vec<(Mutex<NodeStalls>, Notify)>>,
    /// How many times withheld messages were handed over behind a newer connection's.
    reordered: Arc<AtomicU64>,
}

impl Stalls {
    /// Switches for `n` nodes, none stalled.
    pub fn new(n: usize) -> Self {
        Stalls {
            nodes: Arc::new((0..n).map(|_| (Mutex::default(), Notify::new())).collect()),
            reordered: Arc::default(),
        }
    }

    /// How many times withheld messages were handed over behind a newer connection's: whether a run's
    /// stalls reordered anything at all.
    pub fn reordered(&self) -> u64 {
        self.reordered.load(Ordering::Relaxed)
    }

    /// Node `v` crashed: what was withheld from its driver dies with it (a new incarnation never receives
    /// what was sent to the old one), and its stalls end.
    pub fn forget(&self, v: usize) {
        if let Some(mut s) = self.node(v) {
            *s = NodeStalls::default();
        }
    }

    fn node(&self, v: usize) -> Option<std::sync::MutexGuard<'_, NodeStalls>> {
        self.nodes.get(v).map(|(m, _)| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// From now on, node `v`'s driver does not see messages from `x` until their connection is replaced (or
    /// [`Stalls::release`]). Does nothing if that stall is already on.
    pub fn stall(&self, v: usize, x: usize) {
        if let Some(mut s) = self.node(v) {
            if !s.stalled.iter().any(|(p, _, _)| *p == x) {
                s.stalled.push((x, Stage::Withholding, Vec::new()));
            }
        }
    }

    /// Ends the stall of `v`'s messages from `x`: what was withheld goes to the driver now, in order.
    pub fn release(&self, v: usize, x: usize) {
        if let Some(mut s) = self.node(v) {
            if let Some(i) = s.stalled.iter().position(|(p, _, _)| *p == x) {
                let (_, _, held) = s.stalled.remove(i);
                s.released.extend(held);
            }
        }
        if let Some((_, wake)) = self.nodes.get(v) {
            wake.notify_waiters();
        }
    }

    /// Node `v`'s transport `inner`, under these switches.
    pub fn wrap<T: Transport>(&self, v: usize, inner: T) -> Reordering<T> {
        Reordering { inner, stalls: self.clone(), v }
    }

    /// Whether `ev` is withheld (then it is kept), and what a connection change does to the stalls.
    fn filter(&self, v: usize, ev: TransportEvent) -> Option<TransportEvent> {
        let Some(mut s) = self.node(v) else { return Some(ev) };
        let s = &mut *s;
        match &ev {
            TransportEvent::Messages { from, .. } => {
                let Some(i) = s.stalled.iter().position(|(p, _, _)| p == from) else { return Some(ev) };
                match s.stalled[i].1 {
                    Stage::Withholding => {
                        s.stalled[i].2.push(ev);
                        None
                    }
                    // The new connection's first messages, then the dead one's.
                    Stage::Reconnecting => {
                        let (_, _, held) = s.stalled.remove(i);
                        if !held.is_empty() {
                            self.reordered.fetch_add(1, Ordering::Relaxed);
                        }
                        s.released.extend(held);
                        Some(ev)
                    }
                }
            }
            TransportEvent::PeerDown(x) => {
                if let Some(st) = s.stalled.iter_mut().find(|(p, _, _)| p == x) {
                    st.1 = Stage::Reconnecting;
                }
                Some(ev)
            }
            TransportEvent::PeerUp(_) => Some(ev),
        }
    }

    fn take_released(&self, v: usize) -> Option<TransportEvent> {
        self.node(v)?.released.pop_front()
    }
}

/// A node's transport under the harness's [`Stalls`]; otherwise exactly the wrapped one.
pub struct Reordering<T> {
    inner: T,
    stalls: Stalls,
    v: usize,
}

impl<T: Transport> Transport for Reordering<T> {
    fn send(&mut self, to: usize, message: &dsync_core::Message) {
        self.inner.send(to, message);
    }

    fn flush(&mut self) {
        self.inner.flush();
    }

    async fn recv(&mut self) -> Option<TransportEvent> {
        let stalls = self.stalls.clone();
        let Some((_, wake)) = stalls.nodes.get(self.v) else { return self.inner.recv().await };
        loop {
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(ev) = stalls.take_released(self.v) {
                return Some(ev);
            }
            // Both branches are cancel-safe, and nothing is taken before the last await.
            tokio::select! {
                biased;
                _ = &mut woken => {}
                ev = self.inner.recv() => {
                    if let Some(ev) = stalls.filter(self.v, ev?) {
                        return Some(ev);
                    }
                }
            }
        }
    }

    fn try_recv(&mut self) -> Option<TransportEvent> {
        if let Some(ev) = self.stalls.take_released(self.v) {
            return Some(ev);
        }
        loop {
            let ev = self.inner.try_recv()?;
            if let Some(ev) = self.stalls.filter(self.v, ev) {
                return Some(ev);
            }
        }
    }

    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }

    fn stats(&self) -> Option<Arc<Stats>> {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsync_core::Message;

    /// A transport that hands out a fixed list of events, then waits forever.
    struct Script(VecDeque<TransportEvent>);

    impl Transport for Script {
        fn send(&mut self, _: usize, _: &Message) {}
        fn flush(&mut self) {}
        async fn recv(&mut self) -> Option<TransportEvent> {
            match self.0.pop_front() {
                Some(ev) => Some(ev),
                None => std::future::pending().await,
            }
        }
        fn try_recv(&mut self) -> Option<TransportEvent> {
            self.0.pop_front()
        }
        async fn shutdown(&mut self) {}
    }

    fn msgs(from: usize, qid: u64) -> TransportEvent {
        TransportEvent::Messages { from, messages: vec![Message::Rejoin { qid }] }
    }

    /// Each event as (kind, peer, qid) for comparison.
    fn shape(ev: &TransportEvent) -> (char, usize, u64) {
        match ev {
            TransportEvent::Messages { from, messages } => match messages.first() {
                Some(Message::Rejoin { qid }) => ('m', *from, *qid),
                _ => ('m', *from, u64::MAX),
            },
            TransportEvent::PeerUp(p) => ('u', *p, 0),
            TransportEvent::PeerDown(p) => ('d', *p, 0),
        }
    }

    fn drain(t: &mut Reordering<Script>) -> Vec<(char, usize, u64)> {
        std::iter::from_fn(|| t.try_recv()).map(|e| shape(&e)).collect()
    }

    #[test]
    fn a_dead_connections_messages_arrive_right_behind_the_next_connections_first() {
        let script =
            [msgs(2, 1), msgs(1, 9), TransportEvent::PeerDown(2), TransportEvent::PeerUp(2), msgs(2, 2), msgs(2, 3)];
        let stalls = Stalls::new(3);
        stalls.stall(0, 2);
        let mut t = stalls.wrap(0, Script(script.into()));
        let got = drain(&mut t);
        // Node 1's messages pass; node 2's first one waits for the new connection's first, then follows it.
        assert_eq!(got, [('m', 1, 9), ('d', 2, 0), ('u', 2, 0), ('m', 2, 2), ('m', 2, 1), ('m', 2, 3)]);
    }

    #[test]
    fn a_stall_without_a_reconnect_is_released_in_order() {
        let stalls = Stalls::new(2);
        stalls.stall(1, 0);
        let mut t = stalls.wrap(1, Script([msgs(0, 1), msgs(0, 2)].into()));
        assert!(drain(&mut t).is_empty(), "withheld while stalled");
        stalls.release(1, 0);
        assert_eq!(drain(&mut t), [('m', 0, 1), ('m', 0, 2)]);
    }

    #[test]
    fn a_released_message_wakes_a_waiting_receiver() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let stalls = Stalls::new(2);
            stalls.stall(1, 0);
            // Nothing follows the withheld message: `recv` would wait forever unless the release woke it.
            let mut t = stalls.wrap(1, Script([msgs(0, 7)].into()));
            assert!(t.try_recv().is_none());
            let s = stalls.clone();
            let wait = tokio::time::timeout(std::time::Duration::from_secs(30), t.recv());
            let got = tokio::join!(wait, async move { s.release(1, 0) }).0.expect("the release woke the receiver");
            assert_eq!(got.as_ref().map(shape), Some(('m', 0, 7)));
        });
    }
}
