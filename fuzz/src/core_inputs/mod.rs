//! Target `core_inputs`: a cluster of 1–5 dsync-core nodes driven by an arbitrary sequence of inputs.
//!
//! The input is a [`input::Setup`] and a list of [`input::Action`]s decoded with `arbitrary`: real
//! messages delivered, lost, duplicated, misattributed or tampered with; forged messages of every kind
//! from any peer index (out of range and the node itself included); clock steps and timer firings;
//! application commands; peers going up and down; crashes with and without a durable floor.
//!
//! After every action the touched node must not have panicked and must keep its local invariants:
//! `Node::check_invariants` (no two conflicting grants on a resource, the grant index agreeing with the
//! table, fencing marks covering granted tokens, pending locks within the limit), every transmit to
//! another real node and decodable within the size limit, every event about a lock or query the
//! application has and in life-cycle order ([`book`]), and no timeout that is already in the past.

pub mod book;
pub mod cluster;
pub mod input;

use arbitrary::{Arbitrary, Unstructured};

/// Actions per input at most, so one input stays fast.
const MAX_ACTIONS: usize = 512;

/// The fuzz body.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = input::Setup::arbitrary(&mut u) else { return };
    let mut cluster = cluster::Cluster::new(&setup);
    for _ in 0..MAX_ACTIONS {
        if u.is_empty() {
            break;
        }
        let Ok(action) = input::Action::arbitrary(&mut u) else { break };
        cluster.apply(&action);
    }
}
