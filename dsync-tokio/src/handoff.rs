//! The two one-way signals that cross between an application's handles and the driver task: the answer to a
//! `lock()` call ([`reply`]) and a guard's "lease lost" flag ([`lost_signal`]).
//!
//! They are ours rather than tokio's `oneshot`/`watch` so that their races can be model-checked with loom
//! (`RUSTFLAGS="--cfg dsync_loom" cargo test -p dsync-tokio --lib loom`): under that cfg the atomics, mutexes
//! and `Arc`s below are loom's. What the models check is in `loom_models.rs`.
//!
//! Both keep their shared state behind one small mutex: every operation is a handful of instructions, nothing
//! is awaited or woken while it is held, and values are dropped only after it is released — dropping a
//! [`crate::driver::Grant`] sends a release, which must never happen under our own lock.

#[cfg(dsync_loom)]
use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(dsync_loom))]
use std::sync::{Arc, Mutex, MutexGuard};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Locks `m`, ignoring poisoning: the state is a plain enum or list that every writer leaves consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(dsync_loom)]
    {
        m.lock().unwrap()
    }
    #[cfg(not(dsync_loom))]
    {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// ---------------------------------------------------------------------------------------------------------
// The answer to one request.

enum Slot<T> {
    /// No answer yet; the receiver's waker, once it has been polled.
    Waiting(Option<Waker>),
    /// Answered, not yet taken.
    Full(T),
    /// The receiver took the answer.
    Taken,
    /// The sender went away without answering.
    Abandoned,
    /// The receiver went away; answers are handed back to the sender.
    Closed,
}

/// The driver's end of a [`reply`].
pub(crate) struct ReplyTx<T> {
    slot: Arc<Mutex<Slot<T>>>,
    sent: bool,
}

/// The handle's end of a [`reply`]: a future of the answer, or `Err(Dropped)` if the driver went away.
pub(crate) struct ReplyRx<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

/// The driver dropped a request without answering it (it stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dropped;

/// A single-answer channel. If the receiver is gone, [`ReplyTx::send`] hands the value back, so the sender
/// decides what becomes of it (for a grant: it is dropped, which releases it). If the receiver goes away after
/// the answer arrived, the answer is dropped with it. Either way a value is dropped exactly once.
pub(crate) fn reply<T>() -> (ReplyTx<T>, ReplyRx<T>) {
    let slot = Arc::new(Mutex::new(Slot::Waiting(None)));
    (ReplyTx { slot: slot.clone(), sent: false }, ReplyRx { slot })
}

impl<T> ReplyTx<T> {
    /// Whether the receiver has stopped waiting (an answer would come straight back).
    pub(crate) fn is_closed(&self) -> bool {
        matches!(*lock(&self.slot), Slot::Closed)
    }

    /// Delivers `value`, or returns it if the receiver has gone away.
    pub(crate) fn send(mut self, value: T) -> Result<(), T> {
        self.sent = true;
        let mut slot = lock(&self.slot);
        match std::mem::replace(&mut *slot, Slot::Taken) {
            Slot::Waiting(waker) => {
                *slot = Slot::Full(value);
                drop(slot);
                if let Some(w) = waker {
                    w.wake();
                }
                Ok(())
            }
            other => {
                // Only `Closed` is reachable: the sender is consumed by its one send.
                *slot = other;
                Err(value)
            }
        }
    }
}

impl<T> Drop for ReplyTx<T> {
    fn drop(&mut self) {
        if self.sent {
            return;
        }
        let mut slot = lock(&self.slot);
        if let Slot::Waiting(waker) = std::mem::replace(&mut *slot, Slot::Abandoned) {
            drop(slot);
            if let Some(w) = waker {
                w.wake();
            }
        } else {
            *slot = Slot::Closed;
        }
    }
}

impl<T> Future for ReplyRx<T> {
    type Output = Result<T, Dropped>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = lock(&self.slot);
        match std::mem::replace(&mut *slot, Slot::Taken) {
            Slot::Full(v) => Poll::Ready(Ok(v)),
            Slot::Waiting(old) => {
                let waker = match old {
                    Some(w) if w.will_wake(cx.waker()) => w,
                    _ => cx.waker().clone(),
                };
                *slot = Slot::Waiting(Some(waker));
                Poll::Pending
            }
            Slot::Abandoned => {
                *slot = Slot::Abandoned;
                Poll::Ready(Err(Dropped))
            }
            other => {
                // Polled again after completion: keep answering "gone" rather than panicking.
                *slot = other;
                Poll::Ready(Err(Dropped))
            }
        }
    }
}

impl<T> ReplyRx<T> {
    /// Stops waiting: later answers are handed back to the sender, and an answer that arrived but was never
    /// taken is dropped here (outside the lock).
    pub(crate) fn close(&mut self) {
        let mut slot = lock(&self.slot);
        let old = std::mem::replace(&mut *slot, Slot::Closed);
        drop(slot);
        drop(old);
    }
}

impl<T> Drop for ReplyRx<T> {
    fn drop(&mut self) {
        self.close();
    }
}

// ---------------------------------------------------------------------------------------------------------
// "Lease lost".

struct LostState {
    lost: bool,
    /// Wakers of pending `wait()` futures, by the future's id, so a dropped future removes its own.
    waiters: Vec<(u64, Waker)>,
    next_id: u64,
}

/// The driver's end of a guard's lost flag. Firing is permanent; dropping it (the driver stopped) fires too.
pub(crate) struct LostTx {
    state: Arc<Mutex<LostState>>,
}

/// A guard's view of its lost flag.
#[derive(Clone)]
pub(crate) struct LostRx {
    state: Arc<Mutex<LostState>>,
}

/// A fresh, unfired flag.
pub(crate) fn lost_signal() -> (LostTx, LostRx) {
    let state = Arc::new(Mutex::new(LostState { lost: false, waiters: Vec::new(), next_id: 0 }));
    (LostTx { state: state.clone() }, LostRx { state })
}

impl LostTx {
    /// Marks the lease lost and wakes every waiter.
    pub(crate) fn fire(&self) {
        let waiters = {
            let mut s = lock(&self.state);
            s.lost = true;
            std::mem::take(&mut s.waiters)
        };
        for (_, w) in waiters {
            w.wake();
        }
    }
}

impl Drop for LostTx {
    fn drop(&mut self) {
        self.fire();
    }
}

impl LostRx {
    /// Whether the flag has fired.
    pub(crate) fn is_lost(&self) -> bool {
        lock(&self.state).lost
    }

    /// Resolves once the flag has fired.
    pub(crate) fn wait(&self) -> LostWait<'_> {
        LostWait { rx: self, id: None }
    }
}

/// The future returned by [`LostRx::wait`].
pub(crate) struct LostWait<'a> {
    rx: &'a LostRx,
    id: Option<u64>,
}

impl Future for LostWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = lock(&self.rx.state);
        if s.lost {
            return Poll::Ready(());
        }
        // Registered under the same lock that `fire` takes after setting the flag, so a wake cannot slip
        // between the check above and the registration below.
        match self.id {
            Some(id) => {
                if let Some(entry) = s.waiters.iter_mut().find(|(i, _)| *i == id) {
                    if !entry.1.will_wake(cx.waker()) {
                        entry.1 = cx.waker().clone();
                    }
                }
            }
            None => {
                let id = s.next_id;
                s.next_id += 1;
                s.waiters.push((id, cx.waker().clone()));
                drop(s);
                self.id = Some(id);
            }
        }
        Poll::Pending
    }
}

impl Drop for LostWait<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            lock(&self.rx.state).waiters.retain(|(i, _)| *i != id);
        }
    }
}
