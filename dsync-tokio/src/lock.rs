//! The application's handles: [`Mutex`], [`RwLock`] and the [`Guard`] they return.

use crate::driver::{Command, Grant, Patience, Released};
use crate::error::LockError;
use crate::handoff::{reply, ReplyRx};
use crate::node::Shared;
use dsync_core::{Mode, NodeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// A distributed mutual-exclusion lock over one or more resources, like `tokio::sync::Mutex`.
#[derive(Clone, Debug)]
pub struct Mutex {
    shared: Arc<Shared>,
    resources: Vec<String>,
}

/// A distributed reader-writer lock over one or more resources, like `tokio::sync::RwLock`.
#[derive(Clone, Debug)]
pub struct RwLock {
    shared: Arc<Shared>,
    resources: Vec<String>,
}

impl Mutex {
    pub(crate) fn new(shared: Arc<Shared>, resources: Vec<String>) -> Self {
        Mutex { shared, resources }
    }

    /// Waits until the lock is held by this node's caller. It never gives up: while others hold the lock it
    /// waits its turn (waiters are served in ticket order), and while no quorum of serving nodes is reachable
    /// (peers down, partitioned or still starting) it retries with backoff — and at once when a peer comes
    /// up — so it resolves when the quorum is back. It fails only with [`LockError::ShutDown`],
    /// [`LockError::Overloaded`] (too many waiting calls on this node) or [`LockError::Invalid`]. Use
    /// [`Mutex::try_lock_for`] to bound the wait.
    pub async fn lock(&self) -> Result<Guard, LockError> {
        acquire(&self.shared, Mode::Write, &self.resources, Patience::Wait(None)).await
    }

    /// One attempt, without waiting for others to release: [`LockError::WouldBlock`] if others hold or
    /// reserve the resources, [`LockError::NoQuorum`] if a quorum of serving nodes did not answer. It takes
    /// about one round trip (at most the core's `attempt_timeout` when peers are silent).
    pub async fn try_lock(&self) -> Result<Guard, LockError> {
        acquire(&self.shared, Mode::Write, &self.resources, Patience::Once).await
    }

    /// Like [`Mutex::lock`], giving up after `timeout` with [`LockError::Timeout`] (others held it) or
    /// [`LockError::NoQuorum`] (no quorum reachable). A zero timeout is [`Mutex::try_lock`].
    pub async fn try_lock_for(&self, timeout: Duration) -> Result<Guard, LockError> {
        acquire(&self.shared, Mode::Write, &self.resources, patience(timeout)).await
    }

    /// The resources this lock covers, sorted.
    pub fn resources(&self) -> &[String] {
        &self.resources
    }
}

impl RwLock {
    pub(crate) fn new(shared: Arc<Shared>, resources: Vec<String>) -> Self {
        RwLock { shared, resources }
    }

    /// Waits for shared access; never gives up (see [`Mutex::lock`]).
    pub async fn read(&self) -> Result<Guard, LockError> {
        acquire(&self.shared, Mode::Read, &self.resources, Patience::Wait(None)).await
    }

    /// Waits for exclusive access; never gives up (see [`Mutex::lock`]).
    pub async fn write(&self) -> Result<Guard, LockError> {
        acquire(&self.shared, Mode::Write, &self.resources, Patience::Wait(None)).await
    }

    /// Shared access in one attempt: [`LockError::WouldBlock`] if a writer holds or reserves it,
    /// [`LockError::NoQuorum`] without a quorum (see [`Mutex::try_lock`]).
    pub async fn try_read(&self) -> Result<Guard, LockError> {
        acquire(&self.shared, Mode::Read, &self.resources, Patience::Once).await
    }

    /// Exclusive access in one attempt (see [`Mutex::try_lock`]).
    pub async fn try_write(&self) -> Result<Guard, LockError> {
        acquire(&self.shared, Mode::Write, &self.resources, Patience::Once).await
    }

    /// Shared access, giving up after `timeout`; a zero timeout is [`RwLock::try_read`].
    pub async fn try_read_for(&self, timeout: Duration) -> Result<Guard, LockError> {
        acquire(&self.shared, Mode::Read, &self.resources, patience(timeout)).await
    }

    /// Exclusive access, giving up after `timeout`; a zero timeout is [`RwLock::try_write`].
    pub async fn try_write_for(&self, timeout: Duration) -> Result<Guard, LockError> {
        acquire(&self.shared, Mode::Write, &self.resources, patience(timeout)).await
    }

    /// The resources this lock covers, sorted.
    pub fn resources(&self) -> &[String] {
        &self.resources
    }
}

/// The `lock()` call's end of its request. If the future is dropped before the answer arrives, it stops
/// waiting *first* and then tells the driver `Abandon`: so whenever the driver sees the abandon (even before
/// the request it overtook on the way), it also sees the reply closed and starts nothing. A grant already on
/// its way comes back to the driver or is dropped with the reply, and either way is released.
struct Pending<'a> {
    shared: &'a Shared,
    req: u64,
    answer: ReplyRx<Result<Grant, LockError>>,
    armed: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.answer.close();
            let _ = self.shared.control.send(Command::Abandon { req: self.req });
        }
    }
}

/// A zero timeout asks once instead of failing before any answer could arrive.
fn patience(timeout: Duration) -> Patience {
    if timeout.is_zero() {
        Patience::Once
    } else {
        Patience::Wait(Some(timeout))
    }
}

async fn acquire(
    shared: &Arc<Shared>,
    mode: Mode,
    resources: &[String],
    patience: Patience,
) -> Result<Guard, LockError> {
    let req = shared.next_req.fetch_add(1, Ordering::Relaxed);
    let (reply, answer) = reply();
    let cmd = Command::Lock { req, mode, resources: resources.to_vec(), patience, reply };
    let mut pending = Pending { shared, req, answer, armed: true };
    shared.commands.send(cmd).await.map_err(|_| LockError::ShutDown)?;
    let outcome = (&mut pending.answer).await;
    pending.armed = false;
    let grant = outcome.map_err(|_| LockError::ShutDown)?;
    Ok(Guard { grant: grant?, _node: shared.clone() })
}

/// A held lock. Dropping it releases the lock on every node, without blocking and without needing a runtime
/// in the dropping thread. Pass [`Guard::fencing_token`] to whatever the lock protects.
///
/// A guard keeps its node running: the node shuts down when the last [`crate::Node`], lock handle *and*
/// guard are gone (or on [`crate::Node::shutdown`]), so `start().await?.mutex(..).lock().await?` in one
/// expression gives a guard whose lease is kept.
#[derive(Debug)]
pub struct Guard {
    grant: Grant,
    /// Holds the driver's command channel open, so the driver does not shut down under a live guard.
    _node: Arc<Shared>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant").field("lock", &self.releaser.lock).field("token", &self.token).finish()
    }
}

impl Guard {
    /// The fencing token: strictly greater than every earlier conflicting write lock's token. Stores that
    /// reject writes with tokens below the highest they have seen make stale holders harmless.
    pub fn fencing_token(&self) -> u64 {
        self.grant.token
    }

    /// The nodes that granted this lock.
    pub fn holders(&self) -> Vec<usize> {
        self.grant.grantors.iter().collect()
    }

    /// The nodes that granted this lock, as a set.
    pub fn grantors(&self) -> NodeSet {
        self.grant.grantors
    }

    /// Read or write.
    pub fn mode(&self) -> Mode {
        self.grant.mode
    }

    /// Whether the lease has been lost (or the node shut down): stop touching the resource.
    pub fn is_lost(&self) -> bool {
        self.grant.lost.is_lost()
    }

    /// Resolves when the lease is lost or the node shuts down; the holder must then stop using the resource.
    pub async fn lost(&self) {
        // A driver that stops fires every flag, so this cannot wait for a lease that no longer exists.
        self.grant.lost.wait().await
    }

    /// Releases the lock and reports how many nodes confirmed.
    pub async fn release(mut self) -> Result<Released, LockError> {
        self.grant.releaser.armed = false;
        let (reply, answer) = reply();
        let lock = self.grant.releaser.lock;
        self.grant
            .releaser
            .control
            .send(Command::Release { lock, reply: Some(reply) })
            .map_err(|_| LockError::ShutDown)?;
        answer.await.map_err(|_| LockError::ShutDown)
    }
}
