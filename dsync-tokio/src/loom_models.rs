//! loom models of what crosses between application handles and the driver: a guard dropped on another
//! thread, the `lost` notification, shutdown while locks are held, and a `lock()` future dropped at each of
//! its await points. Run with
//! `RUSTFLAGS="--cfg dsync_loom" cargo test -p dsync-tokio --lib --release loom`.
//!
//! The application side is the real [`Mutex`]/[`Guard`] code; the driver side is the real [`Handles`] book
//! driven by a small loop standing in for the driver task, with the core reduced to "does it still hold the
//! lock". Every model checks, over every interleaving loom explores:
//! - no lost release: when everything settles, the core holds nothing;
//! - no double release: the core is never told to release a lock it no longer holds;
//! - no missed `lost`, no deadlock: every wait finishes (loom fails a model whose threads all block).
//!
//! tokio's channels are not loom-aware, so their operations are single steps here; our own primitives
//! (`handoff`) and everything around them are explored.

use crate::driver::{Command, Released};
use crate::error::LockError;
use crate::handles::{CoreAction, Handles};
use crate::lock::{Guard, Mutex};
use crate::node::Shared;
use dsync_core::{LockId, NodeSet};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc as LoomArc;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::sync::mpsc;

const LOCK: LockId = LockId(7);

/// The core, reduced to what the handle book may get wrong.
#[derive(Default)]
struct FakeCore {
    /// The core holds (or is acquiring) `LOCK` for this node.
    holds: bool,
    /// An explicit release awaits its confirmation.
    confirming: bool,
}

impl FakeCore {
    fn apply(&mut self, action: CoreAction) {
        match action {
            CoreAction::None => {}
            CoreAction::Unlock(l) => {
                assert!(self.holds, "double release of {l:?}");
                self.holds = false;
                self.confirming = true;
            }
            CoreAction::Cancel(l) => {
                assert!(self.holds, "double release of {l:?}");
                self.holds = false;
            }
        }
    }
}

/// The driver's side of one model: the handle book, the fake core, and the channels' receiving ends.
struct Driver {
    handles: Handles,
    core: FakeCore,
    commands: mpsc::Receiver<Command>,
    control: mpsc::UnboundedReceiver<Command>,
    shutting_down: bool,
}

impl Driver {
    /// Takes one waiting command, if any, as the driver task would.
    fn step(&mut self) -> bool {
        let cmd = match self.control.try_recv() {
            Ok(c) => c,
            Err(_) => match self.commands.try_recv() {
                Ok(c) => c,
                Err(_) => return false,
            },
        };
        match cmd {
            Command::Lock { req, mode, reply, .. } => {
                if self.shutting_down {
                    let _ = reply.send(Err(LockError::ShutDown));
                } else if !reply.is_closed() {
                    self.core.holds = true;
                    self.handles.started(LOCK, req, mode, reply);
                }
            }
            Command::Release { lock, reply } => {
                let action = self.handles.release(lock, reply);
                self.core.apply(action);
            }
            Command::Abandon { req } => {
                let action = self.handles.abandoned(req);
                self.core.apply(action);
            }
            _ => unreachable!("the models send no other command"),
        }
        true
    }

    /// The core's side of a finished explicit release.
    fn confirm(&mut self) {
        if std::mem::take(&mut self.core.confirming) {
            self.handles.released(LOCK, 1, 1);
        }
    }

    /// Runs until the application side is done and nothing is left to do. `turn` is the core's move (a grant,
    /// a lost lease, a shutdown) and says whether it did anything.
    fn run_until(&mut self, done: &AtomicBool, mut turn: impl FnMut(&mut Self) -> bool) {
        loop {
            // Read before looking for commands, so nothing the application sent before finishing is missed.
            let app_done = done.load(Ordering::Acquire);
            let progressed = self.step();
            self.confirm();
            // The driver task awaits between commands; let the application run there too.
            loom::thread::yield_now();
            if progressed {
                continue;
            }
            // The core acts only between commands, so a command the application sent just before can land on
            // either side of it, as loom schedules the threads.
            let acted = turn(self);
            if app_done && !acted {
                return;
            }
        }
    }
}

/// A node's handle side and driver side, wired together with real channels.
fn wire() -> (Arc<Shared>, Driver) {
    let (commands_tx, commands) = mpsc::channel(16);
    let (control_tx, control) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        commands: commands_tx,
        control: control_tx.clone(),
        next_req: AtomicU64::new(0),
        id: 0,
        nodes: 1,
        local_addr: None,
        status: tokio::sync::watch::channel(crate::status::Published {
            serving: crate::status::Phase::Serving,
            peers_up: dsync_core::NodeSet::EMPTY,
        })
        .1,
        transport_stats: None,
    });
    let driver = Driver {
        handles: Handles::new(control_tx),
        core: FakeCore::default(),
        commands,
        control,
        shutting_down: false,
    };
    (shared, driver)
}

/// The application's thread: `body` gets a lock handle on this node; `done` is set once it returns.
fn spawn_app<T: 'static>(
    shared: &Arc<Shared>,
    done: &LoomArc<AtomicBool>,
    body: impl FnOnce(Mutex) -> T + 'static,
) -> loom::thread::JoinHandle<T> {
    let (shared, done) = (shared.clone(), done.clone());
    loom::thread::spawn(move || {
        let out = body(Mutex::new(shared, vec!["r".into()]));
        done.store(true, Ordering::Release);
        out
    })
}

/// The core's first move in every model: grant the lock once it is being acquired.
fn grant_once(d: &mut Driver, granted: &mut bool) -> bool {
    let act = d.core.holds && !*granted;
    if act {
        *granted = true;
        grant(d);
    }
    act
}

fn grant(d: &mut Driver) {
    let action = d.handles.acquired(LOCK, 1, NodeSet::single(0), false);
    d.core.apply(action);
}

/// Polls `fut` at most `polls` times with a waker that does nothing, then drops it: a caller that gives up
/// (a timeout, a `select!` branch lost) at each possible await point. `pause` lets the driver run between
/// polls and the drop (loom's scheduler prefers other threads after a yield); without it the drop usually
/// follows the last poll at once, so an abandon can overtake the request it abandons.
fn poll_then_drop<F: Future>(fut: F, polls: usize, pause: bool) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..polls {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
        if pause {
            loom::thread::yield_now();
        }
    }
    None
}

#[test]
fn loom_guard_dropped_on_another_thread_is_released_exactly_once() {
    loom::model(|| {
        let (shared, mut driver) = wire();
        let done = LoomArc::new(AtomicBool::new(false));
        let app = spawn_app(&shared, &done, |m| {
            let guard = loom::future::block_on(m.lock()).unwrap();
            // Dropped on this thread, with no runtime anywhere.
            drop(guard);
        });
        let mut granted = false;
        driver.run_until(&done, |d| grant_once(d, &mut granted));
        app.join().unwrap();
        assert!(!driver.core.holds, "release lost");
        assert_eq!(driver.handles.held(), 0);
    });
}

#[test]
fn loom_lost_wakes_a_waiting_holder() {
    loom::model(|| {
        let (tx, rx) = crate::handoff::lost_signal();
        let waiter = loom::thread::spawn(move || {
            loom::future::block_on(rx.wait());
            assert!(rx.is_lost());
        });
        tx.fire();
        waiter.join().unwrap();
    });
}

#[test]
fn loom_driver_gone_wakes_a_waiting_holder() {
    loom::model(|| {
        let (tx, rx) = crate::handoff::lost_signal();
        let waiter = loom::thread::spawn(move || loom::future::block_on(rx.wait()));
        drop(tx);
        waiter.join().unwrap();
    });
}

#[test]
fn loom_lease_lost_during_explicit_release_answers_and_releases_once() {
    loom::model(|| {
        let (shared, mut driver) = wire();
        let done = LoomArc::new(AtomicBool::new(false));
        let app = spawn_app(&shared, &done, |m| -> Result<Released, LockError> {
            let guard = loom::future::block_on(m.lock()).unwrap();
            loom::future::block_on(guard.release())
        });
        let (mut granted, mut lost) = (false, false);
        driver.run_until(&done, |d| {
            if grant_once(d, &mut granted) {
                true
            } else if granted && !lost {
                // The core loses the lease on its own (it forgets the lock without being told to).
                lost = true;
                if d.handles.lost(LOCK) {
                    d.core.holds = false;
                }
                true
            } else {
                false
            }
        });
        let released = app.join().unwrap().expect("the release is answered");
        assert!(released.confirmed <= 1);
        assert!(!driver.core.holds, "release lost");
    });
}

#[test]
fn loom_shutdown_while_held_fires_lost_and_releases_once() {
    loom::model(|| {
        let (shared, mut driver) = wire();
        let done = LoomArc::new(AtomicBool::new(false));
        let app = spawn_app(&shared, &done, |m| {
            let guard: Guard = loom::future::block_on(m.lock()).unwrap();
            // The holder watches for loss; shutdown must end the wait.
            loom::future::block_on(guard.lost());
            assert!(guard.is_lost());
            drop(guard); // its release races with shutdown's and must not double it
        });
        let mut granted = false;
        driver.run_until(&done, |d| {
            if grant_once(d, &mut granted) {
                true
            } else if granted && !d.shutting_down {
                d.shutting_down = true;
                for action in d.handles.shut_down() {
                    d.core.apply(action);
                }
                true
            } else {
                false
            }
        });
        app.join().unwrap();
        driver.handles.stopped();
        assert!(!driver.core.holds, "release lost");
    });
}

/// A `lock()` future dropped after `polls` polls, while the core grants concurrently (`grants`) or never does
/// (the resource stays busy: only the abandon can end the acquisition).
fn cancelled_lock_future_leaves_no_grant(polls: usize, pause: bool, grants: bool) {
    loom::model(move || {
        let (shared, mut driver) = wire();
        let done = LoomArc::new(AtomicBool::new(false));
        // If the grant made it out before the drop, dropping the guard releases it.
        let app = spawn_app(&shared, &done, move |m| drop(poll_then_drop(m.lock(), polls, pause)));
        let mut granted = false;
        driver.run_until(&done, |d| grants && grant_once(d, &mut granted));
        app.join().unwrap();
        assert!(!driver.core.holds, "a cancelled lock() left a grant behind");
        assert_eq!(driver.handles.held(), 0);
    });
}

#[test]
fn loom_lock_future_dropped_before_first_poll() {
    cancelled_lock_future_leaves_no_grant(0, false, true);
}

#[test]
fn loom_lock_future_dropped_while_request_in_flight() {
    cancelled_lock_future_leaves_no_grant(1, false, true);
}

#[test]
fn loom_lock_future_dropped_while_request_queued_for_a_busy_resource() {
    cancelled_lock_future_leaves_no_grant(1, false, false);
}

#[test]
fn loom_lock_future_dropped_while_waiting_for_a_busy_resource() {
    cancelled_lock_future_leaves_no_grant(1, true, false);
}

#[test]
fn loom_lock_future_dropped_while_grant_in_flight() {
    cancelled_lock_future_leaves_no_grant(2, true, true);
}
