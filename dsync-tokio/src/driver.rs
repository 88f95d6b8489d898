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
use crate::transport::{Transport, TransportEvent};
use dsync_core::{Counters, Event, ForceTarget, HolderEntry, Instant, LockId, Mode, Node as Core, NodeSet, QueryId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// What handles ask of the driver.
pub(crate) enum Command {
    Lock {
        req: u64,
        mode: Mode,
        resources: Vec<String>,
        timeout: Option<Duration>,
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
        reply: oneshot::Sender<Vec<HolderEntry>>,
    },
    ForceUnlock {
        target: ForceTarget,
        reply: oneshot::Sender<usize>,
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
    pub(crate) core: Core,
    pub(crate) transport: T,
    pub(crate) origin: tokio::time::Instant,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) control: mpsc::UnboundedReceiver<Command>,
    pub(crate) floor_file: Option<PathBuf>,
    pub(crate) handles: Handles,
    pub(crate) holder_queries: HashMap<QueryId, oneshot::Sender<Vec<HolderEntry>>>,
    pub(crate) force_queries: HashMap<QueryId, oneshot::Sender<usize>>,
}

impl<T: Transport> Driver<T> {
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
        let (floor_tx, mut floor_rx) = mpsc::unbounded_channel::<u64>();
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
                Some(floor) = floor_rx.recv() => {
                    let now = self.now();
                    self.core.handle_floor_persisted(now, floor);
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
            self.drain(&floor_tx);
            if let Some((_, until)) = &shutdown {
                if !self.handles.releasing() || tokio::time::Instant::now() >= *until {
                    break;
                }
            }
        }
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
                info!(node = self.core.id(), peer = p, "peer up");
                self.core.handle_peer_up(now, p);
            }
            TransportEvent::PeerDown(p) => {
                info!(node = self.core.id(), peer = p, "peer down");
                self.core.handle_peer_down(now, p);
            }
        }
    }

    fn on_command(&mut self, cmd: Command, shutdown: &mut Stopping) {
        let now = self.now();
        match cmd {
            Command::Lock { req, mode, resources, timeout, reply } => {
                if shutdown.is_some() {
                    let _ = reply.send(Err(LockError::ShutDown));
                    return;
                }
                if reply.is_closed() {
                    return; // the caller gave up while the request was queued (its Abandon may have overtaken it)
                }
                let deadline = timeout.map(|d| now + d);
                match self.core.lock(now, mode, resources, deadline) {
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
                Err(_) => drop(reply), // the caller sees Overloaded / Invalid as a closed reply
            },
            Command::ForceUnlock { target, reply } => match self.core.force_unlock(now, target) {
                Ok(q) => {
                    self.force_queries.insert(q, reply);
                }
                Err(_) => drop(reply),
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
    fn drain(&mut self, floor_tx: &mpsc::UnboundedSender<u64>) {
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
            self.on_event(event, floor_tx);
        }
    }

    fn on_event(&mut self, event: Event, floor_tx: &mpsc::UnboundedSender<u64>) {
        match event {
            Event::Acquired { lock, token, grantors, .. } => {
                debug!(node = self.core.id(), ?lock, token, "acquired");
                let action = self.handles.acquired(lock, token, grantors);
                let now = self.now();
                self.apply(now, action);
            }
            Event::Failed { lock, reason } => {
                debug!(node = self.core.id(), ?lock, %reason, "acquisition failed");
                self.handles.failed(lock, reason.into());
            }
            Event::Lost { lock } => {
                warn!(node = self.core.id(), ?lock, "lock lost: its holder must stop using the resource");
                self.handles.lost(lock);
            }
            Event::Released { lock, confirmed, grantors } => {
                debug!(node = self.core.id(), ?lock, confirmed, grantors, "released");
                self.handles.released(lock, confirmed, grantors);
            }
            Event::Holders { query, entries, .. } => {
                if let Some(reply) = self.holder_queries.remove(&query) {
                    let _ = reply.send(entries);
                }
            }
            Event::ForceUnlocked { query, removed, .. } => {
                if let Some(reply) = self.force_queries.remove(&query) {
                    let _ = reply.send(removed);
                }
            }
            Event::PersistFloor { floor } => match self.floor_file.clone() {
                Some(path) => {
                    let tx = floor_tx.clone();
                    tokio::task::spawn_blocking(move || match crate::node::write_floor(&path, floor) {
                        Ok(()) => {
                            let _ = tx.send(floor);
                        }
                        Err(e) => warn!(path = %path.display(), error = %e, "could not persist the fencing floor"),
                    });
                }
                None => {
                    let now = self.now();
                    self.core.handle_floor_persisted(now, floor);
                }
            },
        }
    }
}
