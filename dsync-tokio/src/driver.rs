//! The driver: one task per node that owns the `dsync_core::Node`, its single timer, the transport, and the
//! replies owed to application handles. It is the only place where time is read and effects happen.
//!
//! Loop: wait for the first of (a release or cancellation from a handle, a transport event, a command, the
//! core's deadline, a persisted floor); feed it to the core; then drain the core — transmits to the
//! transport (one flush per turn, so a batch of inbound messages yields one write per peer), then events to
//! the waiting handles — and re-arm the one timer.

use crate::error::LockError;
use crate::handles::{CoreAction, Handles, LockReply, ReleaseReply};
use crate::handoff::LostRx;
use crate::planted::{Bugs, PlantedBug};
use crate::state::{FloorWriter, StateDir};
use crate::status::{Phase, Published};
use crate::transport::{Transport, TransportEvent};
use dsync_core::{Counters, Event, ForceTarget, HolderEntry, Instant, LockId, Mode, Node as Core, NodeSet, QueryId};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

/// How long a `lock()` call keeps trying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Patience {
    /// Until acquired (`None`) or until the timeout passes.
    Wait(Option<Duration>),
    /// One attempt: `try_lock` and friends.
    Once,
}

/// What handles ask of the driver.
pub(crate) enum Command {
    Lock {
        req: u64,
        mode: Mode,
        resources: Vec<String>,
        patience: Patience,
        reply: LockReply,
    },
    /// A guard was released (explicitly, with a reply, or by drop) or its grant was never taken.
    Release {
        lock: LockId,
        reply: Option<ReleaseReply>,
    },
    /// A `lock()` future was dropped before it completed.
    Abandon {
        req: u64,
    },
    Holders {
        resource: Option<String>,
        reply: oneshot::Sender<Result<Holders, LockError>>,
    },
    ForceUnlock {
        target: ForceTarget,
        reply: oneshot::Sender<Result<ForceReport, LockError>>,
    },
    Counters {
        reply: oneshot::Sender<Counters>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    /// Stop now without releasing anything (simulates the process dying).
    Crash {
        reply: oneshot::Sender<()>,
    },
}

/// Releases a lock when dropped, unless disarmed. Sending on an unbounded channel needs no runtime and never
/// blocks, so dropping a guard is safe anywhere.
pub(crate) struct Releaser {
    pub(crate) control: mpsc::UnboundedSender<Command>,
    pub(crate) lock: LockId,
    pub(crate) armed: bool,
}

impl Drop for Releaser {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.control.send(Command::Release { lock: self.lock, reply: None });
        }
    }
}

/// A holder query's answer ([`crate::Node::holders_report`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holders {
    /// Who holds what, merged from the nodes that answered.
    pub entries: Vec<HolderEntry>,
    /// The nodes that answered: a minority's answer, or a partitioned node's, may miss grants.
    pub answered: NodeSet,
    /// Whether some locker cut its list at its limit.
    pub truncated: bool,
}

/// What a force-unlock did: the grants it removed and which nodes answered. A node that did not answer may
/// still hold a matching grant (and may remove it later, when the command reaches it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForceReport {
    /// Grants removed, summed over the nodes that answered.
    pub removed: usize,
    /// The nodes that answered.
    pub answered: NodeSet,
}

/// What a successful acquisition hands to the application. Dropping it (e.g. because the `lock()` future was
/// cancelled while the reply was in flight) releases the lock.
pub(crate) struct Grant {
    pub(crate) releaser: Releaser,
    pub(crate) token: u64,
    pub(crate) grantors: NodeSet,
    pub(crate) mode: Mode,
    pub(crate) lost: LostRx,
}

/// The outcome of an explicit release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Released {
    /// Nodes that confirmed dropping their grant.
    pub confirmed: usize,
    /// Nodes that had granted the lock (the rest expire by lease).
    pub grantors: usize,
}

/// A shutdown in progress: who to tell, and until when to wait for release confirmations.
type Stopping = Option<(oneshot::Sender<()>, tokio::time::Instant)>;

pub(crate) struct Driver<T: Transport> {
    core: Core,
    transport: T,
    origin: tokio::time::Instant,
    commands: mpsc::Receiver<Command>,
    control: mpsc::UnboundedReceiver<Command>,
    /// Persists floors one at a time; `None` without a state directory (floors are then acknowledged at once).
    floors: Option<FloorWriter>,
    floors_done: mpsc::UnboundedReceiver<Result<u64, u64>>,
    handles: Handles,
    holder_queries: BTreeMap<QueryId, oneshot::Sender<Result<Holders, LockError>>>,
    force_queries: BTreeMap<QueryId, oneshot::Sender<Result<ForceReport, LockError>>>,
    /// Peers with a live connection, as the transport reported them.
    peers_up: NodeSet,
    status: watch::Sender<Published>,
    /// Whether the "nobody knows a floor" hint was logged (once per start).
    told_no_floor: bool,
    /// Whether a durable floor has been written since start (always true without a state directory): until
    /// then the locker denies write locks, so the node is not ready.
    floor_durable: bool,
    bugs: Bugs,
    /// The `metrics` feature's publisher, if the node was started with one ([`Driver::with_metrics`]).
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::Publisher>,
}

impl<T: Transport> Driver<T> {
    pub(crate) fn new(
        core: Core,
        transport: T,
        (commands, control): (mpsc::Receiver<Command>, mpsc::UnboundedReceiver<Command>),
        state: Option<StateDir>,
        handles: Handles,
        status: watch::Sender<Published>,
        bugs: Bugs,
    ) -> Self {
        let (done, floors_done) = mpsc::unbounded_channel();
        let floors = state.map(|s| FloorWriter::new(s, done));
        let mut driver = Driver {
            core,
            transport,
            origin: tokio::time::Instant::now(),
            commands,
            control,
            floor_durable: floors.is_none(),
            floors,
            floors_done,
            handles,
            holder_queries: BTreeMap::new(),
            force_queries: BTreeMap::new(),
            peers_up: NodeSet::EMPTY,
            status,
            told_no_floor: false,
            bugs,
            #[cfg(feature = "metrics")]
            metrics: None,
        };
        driver.publish();
        driver
    }

    /// Publishes this node's counters and gauges through the `metrics` facade, labelled with its index and
    /// `cluster` (handles are registered with the recorder installed now). The transport's counters, which
    /// change outside the driver, are published by a task of their own.
    #[cfg(feature = "metrics")]
    pub(crate) fn with_metrics(mut self, cluster: &str) -> Self {
        use crate::metrics::{Publisher, TransportPublisher};
        let (id, nodes) = (self.core.id(), self.core.config().nodes);
        self.metrics = Some(Publisher::new(id, nodes, cluster));
        if let Some(stats) = self.transport.stats() {
            TransportPublisher::new(id, cluster, stats).spawn(self.status.subscribe());
        }
        self.publish_metrics();
        self
    }

    /// Adds the counters' changes since the last call to the `metrics` handles, and the gauges if the status
    /// moved: a few integer comparisons per driver turn, no allocation or system call (see src/metrics.rs).
    #[cfg(feature = "metrics")]
    fn publish_metrics(&mut self) {
        if let Some(m) = &mut self.metrics {
            m.publish(self.core.counters(), &self.status.borrow());
        }
    }

    /// Publishes the status if it changed (cheap when it did not: one comparison).
    fn publish(&mut self) {
        let now = self.now();
        let origin = self.origin;
        let mut serving =
            Phase::from_core(self.core.serving_state(now), |t| origin + Duration::from_nanos(t.as_nanos()));
        if serving == Phase::Serving && !self.floor_durable {
            serving = Phase::PersistingFloor;
        }
        if let Phase::RecoveringFloor { known, unknown, needed } = &serving {
            let silent = self.peers_up.difference(*known).difference(*unknown);
            if !self.told_no_floor && silent.is_empty() && known.len() < *needed && !unknown.is_empty() {
                self.told_no_floor = true;
                warn!(
                    node = self.core.id(),
                    known = known.len(),
                    unknown = unknown.len(),
                    needed,
                    "cannot learn the fencing floor: connected peers do not know theirs either, so this node \
                     grants nothing. If the whole cluster restarted without state directories, fencing history \
                     is gone: restart every node with --bootstrap (NodeBuilder::bootstrap) to form the cluster \
                     anew, and give nodes a state directory to keep fencing across restarts"
                );
            }
        }
        if let (Phase::Bootstrapping { waiting }, Some(old)) = (&serving, self.status.borrow().waiting()) {
            if *waiting != old && !waiting.is_empty() {
                info!(
                    node = self.core.id(),
                    waiting_for = ?waiting.iter().collect::<Vec<_>>(),
                    "bootstrapping: a new cluster forms once every node is up and new; waiting for these nodes"
                );
            }
        }
        let next = Published { serving, peers_up: self.peers_up };
        self.status.send_if_modified(|p| {
            if *p == next {
                false
            } else {
                *p = next;
                true
            }
        });
        #[cfg(feature = "metrics")]
        self.publish_metrics();
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(self.origin.elapsed().as_nanos() as u64)
    }

    /// Hands a lock back to the core as the bookkeeping asked.
    fn apply(&mut self, now: Instant, action: CoreAction) {
        match action {
            CoreAction::None => {}
            CoreAction::Unlock(lock) => {
                self.core.unlock(now, lock);
            }
            CoreAction::Cancel(lock) => {
                self.core.cancel(now, lock);
            }
        }
    }

    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.core.poll_timeout().map(|t| self.origin + Duration::from_nanos(t.as_nanos()))
    }

    pub(crate) async fn run(mut self) {
        // What the core emitted while starting (a floor to persist, `Serving`) is handled before any input: a
        // lone node with nothing else to wake it would otherwise never persist its first floor.
        self.drain();
        self.publish();
        let sleep = tokio::time::sleep_until(self.origin);
        tokio::pin!(sleep);
        let mut armed = None;
        let mut shutdown: Stopping = None;
        let mut crashed = None;
        loop {
            let next = self.deadline();
            if next != armed {
                if let Some(at) = next {
                    sleep.as_mut().reset(at);
                }
                armed = next;
            }
            tokio::select! {
                biased;
                Some(cmd) = self.control.recv() => {
                    if let Command::Crash { reply } = cmd {
                        crashed = Some(reply);
                        break;
                    }
                    self.on_command(cmd, &mut shutdown)
                }
                event = self.transport.recv() => match event {
                    Some(e) => self.on_transport(e),
                    None => break,
                },
                cmd = self.commands.recv(), if shutdown.is_none() => match cmd {
                    Some(c) => self.on_command(c, &mut shutdown),
                    None => self.begin_shutdown(None, &mut shutdown), // every handle is gone
                },
                Some(written) = self.floors_done.recv() => {
                    if let Ok(floor) = written {
                        let now = self.now();
                        self.floor_durable = true;
                        self.core.handle_floor_persisted(now, floor);
                    }
                    if let Some(f) = &mut self.floors {
                        f.finished();
                    }
                }
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                    let now = self.now();
                    self.core.handle_timeout(now);
                }
            }
            // Take whatever else is already waiting before draining, so one flush (one write per peer)
            // carries the replies to all of it. Bounded, so timers are never starved.
            for _ in 0..64 {
                let mut progressed = false;
                if let Ok(cmd) = self.control.try_recv() {
                    if let Command::Crash { reply } = cmd {
                        crashed = Some(reply);
                        break;
                    }
                    self.on_command(cmd, &mut shutdown);
                    progressed = true;
                }
                if let Some(e) = self.transport.try_recv() {
                    self.on_transport(e);
                    progressed = true;
                }
                if shutdown.is_none() {
                    if let Ok(cmd) = self.commands.try_recv() {
                        self.on_command(cmd, &mut shutdown);
                        progressed = true;
                    }
                }
                if !progressed {
                    break;
                }
            }
            if crashed.is_some() {
                break;
            }
            self.drain();
            self.publish();
            if let Some((_, until)) = &shutdown {
                if !self.handles.releasing() || tokio::time::Instant::now() >= *until {
                    break;
                }
            }
        }
        self.status.send_replace(Published { serving: Phase::Stopped, peers_up: NodeSet::EMPTY });
        #[cfg(feature = "metrics")]
        self.publish_metrics();
        self.transport.shutdown().await;
        self.handles.stopped();
        if let Some((reply, _)) = shutdown {
            let _ = reply.send(());
        }
        if let Some(reply) = crashed {
            let _ = reply.send(());
        }
        info!(node = self.core.id(), "dsync node stopped");
    }

    fn on_transport(&mut self, event: TransportEvent) {
        let now = self.now();
        match event {
            TransportEvent::Messages { from, messages } => {
                for m in messages {
                    self.core.handle_message(now, from, m);
                }
            }
            TransportEvent::PeerUp(p) => {
                // The transport logs the one INFO line (with the address); this is for tracing the core.
                debug!(node = self.core.id(), peer = p, "peer up");
                self.peers_up.insert(p);
                self.core.handle_peer_up(now, p);
            }
            TransportEvent::PeerDown(p) => {
                debug!(node = self.core.id(), peer = p, "peer down");
                self.peers_up.remove(p);
                self.core.handle_peer_down(now, p);
            }
        }
    }

    fn on_command(&mut self, cmd: Command, shutdown: &mut Stopping) {
        let now = self.now();
        match cmd {
            Command::Lock { req, mode, resources, patience, reply } => {
                if shutdown.is_some() {
                    let _ = reply.send(Err(LockError::ShutDown));
                    return;
                }
                if reply.is_closed() && !self.bugs.has(PlantedBug::AbandonOvertakesRequest) {
                    return; // the caller gave up while the request was queued (its Abandon may have overtaken it)
                }
                let started = match patience {
                    Patience::Wait(timeout) => self.core.lock(now, mode, resources, timeout.map(|d| now + d)),
                    Patience::Once => self.core.try_lock(now, mode, resources),
                };
                match started {
                    Ok(lock) => {
                        debug!(node = self.core.id(), ?lock, ?mode, "acquiring");
                        self.handles.started(lock, req, mode, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Command::Release { lock, reply } => {
                let action = self.handles.release(lock, reply);
                self.apply(now, action);
            }
            Command::Abandon { req } => {
                let action = self.handles.abandoned(req);
                if action != CoreAction::None {
                    debug!(node = self.core.id(), ?action, "acquisition abandoned by its caller");
                }
                self.apply(now, action);
            }
            Command::Holders { resource, reply } => match self.core.query_holders(now, resource) {
                Ok(q) => {
                    self.holder_queries.insert(q, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Command::ForceUnlock { target, reply } => match self.core.force_unlock(now, target) {
                Ok(q) => {
                    self.force_queries.insert(q, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Command::Counters { reply } => {
                let _ = reply.send(self.core.counters().clone());
            }
            Command::Shutdown { reply } => self.begin_shutdown(Some(reply), shutdown),
            Command::Crash { reply } => drop(reply), // handled in the loop
        }
    }

    /// Stops taking requests, releases every held lock, and waits (bounded) for the confirmations.
    fn begin_shutdown(&mut self, reply: Option<oneshot::Sender<()>>, shutdown: &mut Stopping) {
        let now = self.now();
        if shutdown.is_none() {
            info!(node = self.core.id(), held = self.handles.held(), "shutting down: releasing held locks");
            for action in self.handles.shut_down() {
                self.apply(now, action);
            }
            let until = tokio::time::Instant::now() + self.core.config().query_timeout;
            let (tx, _) = oneshot::channel();
            *shutdown = Some((reply.unwrap_or(tx), until));
        } else if let Some(r) = reply {
            // A second shutdown call waits for the first: replace the reply so the latest caller is told.
            if let Some((old, until)) = shutdown.take() {
                drop(old);
                *shutdown = Some((r, until));
            }
        }
    }

    /// Transmits first, then events; events may produce more transmits (a grant nobody wants any more).
    fn drain(&mut self) {
        loop {
            let mut sent = false;
            while let Some(t) = self.core.poll_transmit() {
                self.transport.send(t.to, &t.message);
                sent = true;
            }
            if sent {
                self.transport.flush();
            }
            let Some(event) = self.core.poll_event() else { return };
            self.on_event(event);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Acquired { lock, token, grantors, .. } => {
                debug!(node = self.core.id(), ?lock, token, "acquired");
                let keep = self.bugs.has(PlantedBug::AbandonOvertakesRequest);
                let action = self.handles.acquired(lock, token, grantors, keep);
                let now = self.now();
                self.apply(now, action);
            }
            Event::Failed { lock, reason } => {
                debug!(node = self.core.id(), ?lock, %reason, "acquisition failed");
                self.handles.failed(lock, reason.into());
            }
            Event::Lost { lock } => {
                warn!(node = self.core.id(), ?lock, "lock lost: its holder must stop using the resource");
                if !self.bugs.has(PlantedBug::LostNotSignalled) {
                    self.handles.lost(lock);
                }
            }
            Event::Released { lock, confirmed, grantors } => {
                debug!(node = self.core.id(), ?lock, confirmed, grantors, "released");
                self.handles.released(lock, confirmed, grantors);
            }
            Event::Holders { query, entries, answered, truncated } => {
                if let Some(reply) = self.holder_queries.remove(&query) {
                    let _ = reply.send(Ok(Holders { entries, answered, truncated }));
                }
            }
            Event::ForceUnlocked { query, removed, answered } => {
                if let Some(reply) = self.force_queries.remove(&query) {
                    let _ = reply.send(Ok(ForceReport { removed, answered }));
                }
            }
            Event::Serving => info!(node = self.core.id(), "serving: this node grants locks"),
            Event::Quarantined { until } => {
                let left = Duration::from_nanos(until.as_nanos().saturating_sub(self.now().as_nanos()));
                info!(
                    node = self.core.id(),
                    seconds = format_args!("{:.1}", left.as_secs_f64()),
                    "restart quarantine: granting nothing until every grant of this node's previous run has expired"
                );
            }
            Event::PersistFloor { floor } => match &mut self.floors {
                Some(writer) => writer.request(floor),
                None => {
                    let now = self.now();
                    self.core.handle_floor_persisted(now, floor);
                }
            },
            // Events a newer core adds are informational until this driver learns them.
            _ => {}
        }
    }
}
