//! `dsync-core`: the sans-IO state machine of dsync, a masterless distributed read/write lock.
//!
//! Every node of an `n`-node cluster (1 to 64) is both a **locker**, which keeps a table of the grants it
//! has given, and a **coordinator**, which acquires locks for its own application by broadcasting each
//! request to all `n` lockers (its own included, without the network) and succeeding when a quorum
//! grants it. Grants are leases that holders refresh; a holder that cannot refresh in time is told its
//! lock is `Lost`. Every write lock carries a fencing token greater than that of every earlier
//! conflicting write lock, which protected stores check. A node that restarts without its state grants
//! nothing until everything it may have granted before has expired. `PROTOCOL.md` at the repository root
//! states the rules and argues their safety.
//!
//! This crate performs no I/O, reads no clock and owns no randomness beyond a seeded PRNG: the caller
//! passes time in and moves messages between nodes. `dsync-tokio` drives it over TCP, `dsync-sim` over a
//! simulated network in virtual time.
//!
//! # The run loop
//!
//! 1. Feed inputs: [`Node::handle_message`] for each message a peer sent (with the sender's index),
//!    [`Node::handle_timeout`] when the instant from [`Node::poll_timeout`] passes, [`Node::handle_peer_up`] /
//!    [`Node::handle_peer_down`] as the transport sees peers come and go, and the application's commands
//!    ([`Node::lock`], [`Node::unlock`], [`Node::cancel`], [`Node::query_holders`], [`Node::force_unlock`]).
//! 2. After each input, drain [`Node::poll_transmit`] (send each message to its node), then
//!    [`Node::poll_event`] (tell the application), then re-arm one timer at [`Node::poll_timeout`].
//!
//! Every input takes `now`, the caller's monotonic clock. Extra `handle_timeout` calls are harmless.
//!
//! ```
//! use dsync_core::{Config, Event, Instant, Mode, Node, Start};
//!
//! // Three nodes in memory; node 0's application takes a write lock on "orders".
//! let mut nodes: Vec<Node> = (0..3)
//!     .map(|id| Node::new(Config::new(3, id), Instant::ZERO, Start::FirstBoot).unwrap())
//!     .collect();
//! let now = Instant::from_millis(1);
//! let lock = nodes[0].lock(now, Mode::Write, ["orders"], None).unwrap();
//!
//! // Move messages until the network is quiet (a real transport does this over sockets).
//! let mut events = Vec::new();
//! loop {
//!     let mut moved = false;
//!     for from in 0..nodes.len() {
//!         while let Some(t) = nodes[from].poll_transmit() {
//!             nodes[t.to].handle_message(now, from, t.message);
//!             moved = true;
//!         }
//!         while let Some(e) = nodes[from].poll_event() {
//!             if e != Event::Serving { // each node reports once that its locker serves
//!                 events.push((from, e));
//!             }
//!         }
//!     }
//!     if !moved {
//!         break;
//!     }
//! }
//! let Some((0, Event::Acquired { lock: acquired, token, grantors, .. })) = events.first() else {
//!     panic!("expected node 0 to acquire, got {events:?}");
//! };
//! assert_eq!(*acquired, lock);
//! assert!(grantors.len() >= 2); // a quorum granted (the third grant may arrive just after)
//! assert_eq!(nodes[0].lock_info(lock).unwrap().grantors.len(), 3); // ... and joins the lock
//! assert!(*token >= 1); // the fencing token to hand to the protected store
//! assert!(nodes[0].is_valid(lock, now));
//!
//! // Node 1 cannot take the same lock while node 0 holds it.
//! let other = nodes[1].lock(now, Mode::Write, ["orders"], Some(Instant::from_millis(50))).unwrap();
//! # let _ = other;
//! assert!(nodes[0].poll_timeout().is_some()); // node 0 will refresh its lease
//! ```
//!
//! # Paths
//!
//! Every public type has exactly one path. What an application names to drive a node — [`Node`], its
//! [`Config`], the [`Event`]s, [`Message`] and the other types in `Node`'s signatures — lives at the crate
//! root. Three modules hold what only transports, tools and tests need: [`wire`] (the message bodies and
//! the envelope codec), [`quorum`] (quorum arithmetic) and [`rng`] (the seeded generator the simulator
//! shares). Nothing is re-exported under a second name.
//!
//! # Planted bugs
//!
//! [`PlantedBug`] and [`Config::planted_bug`] exist in every build, so `Config` has the same shape whatever
//! features Cargo unifies across a workspace. Only a build with the `planted-bugs` feature (which
//! `dsync-sim` enables) honours the field; in any other build every switch is a constant `false` that the
//! compiler removes, and [`Config::validate`] refuses a planted bug rather than ignore it. A `--cfg` flag
//! would avoid feature unification, but a cfg cannot be set for one dependency, so the simulator would need
//! global `RUSTFLAGS` that reach every crate of its build.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod config;
mod coordinator;
mod event;
mod fencing;
mod hash;
mod invariants;
mod locker;
mod message;
mod mode;
mod node;
mod nodeset;
mod outbox;
mod planted;
mod query;
pub mod quorum;
mod rejoin;
pub mod rng;
mod sweep;
mod time;
mod timers;
pub mod wire;

pub use config::{Config, ConfigError, Limits, Start};
pub use coordinator::LockInfo;
pub use event::{Counters, Event, FailReason, HolderEntry, LockId, QueryId, RequestError, ServingState};
pub use message::{DenyReason, ForceTarget, Message, Standing};
pub use mode::Mode;
pub use node::Node;
pub use nodeset::NodeSet;
pub use outbox::Transmit;
pub use planted::PlantedBug;
pub use time::{Duration, Instant};
