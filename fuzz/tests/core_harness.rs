//! The `core_inputs` harness itself: scripted action sequences reach deep protocol states, and its
//! checks fire on a broken life cycle (so a silent fuzzer means something).

use dsync_core::{Event, Instant, LockId, Mode};
use dsync_fuzz::core_inputs::book::Book;
use dsync_fuzz::core_inputs::cluster::Cluster;
use dsync_fuzz::core_inputs::input::{Action, Advance, Forged, Pick, Setup};

fn deliver_everything(c: &mut Cluster, nodes: u8) {
    for _ in 0..64 {
        for node in 0..nodes {
            c.apply(&Action::Deliver { node, pick: 0 });
        }
    }
}

#[test]
fn a_scripted_run_acquires_refreshes_releases_and_survives_abuse() {
    let mut c = Cluster::new(&Setup { nodes: 2, persist_floor: true, tight_limits: true, seed: 1 });
    c.apply(&Action::Lock { node: 0, write: true, mask: 0b11, deadline_ms: Some(500) });
    c.apply(&Action::Lock { node: 1, write: false, mask: 0b10, deadline_ms: None });
    deliver_everything(&mut c, 3);
    assert!(c.acquired() >= 1, "the write lock was not acquired");
    // Refresh rounds, then forged and tampered traffic from every kind of sender.
    for _ in 0..3 {
        c.apply(&Action::TickAll { advance: Advance::Millis(1100) });
        deliver_everything(&mut c, 3);
    }
    for from in [0, 1, 2, 3, 200] {
        c.apply(&Action::Inject { to: 0, from, msg: Forged::Wake { ticket: Pick::Seen(0) } });
        c.apply(&Action::Inject { to: 1, from, msg: Forged::Unlock { uid: Pick::Seen(1), ticket: None, reply: true } });
        c.apply(&Action::Inject {
            to: 2,
            from,
            msg: Forged::FloorReply { qid: Pick::Seen(2), floor: Some(Pick::Raw(u64::MAX)), standing: 1 },
        });
    }
    c.apply(&Action::Restart { node: 2, durable: true });
    c.apply(&Action::PeerDown { node: 0, peer: 2 });
    c.apply(&Action::Unlock { node: 0, pick: 0 });
    c.apply(&Action::Query { node: 1, name: None });
    deliver_everything(&mut c, 3);
    c.apply(&Action::TickAll { advance: Advance::Secs(10) });
}

#[test]
#[should_panic(expected = "does not have")]
fn an_event_for_an_unknown_lock_fails_the_target() {
    Book::default().event(&Event::Lost { lock: LockId(5) }, 3, false, Instant::ZERO);
}

#[test]
#[should_panic(expected = "not being released")]
fn a_release_of_a_lock_still_held_fails_the_target() {
    let mut book = Book::default();
    book.issued(LockId(1), Mode::Read);
    let acquired = Event::Acquired {
        lock: LockId(1),
        token: 0,
        grantors: dsync_core::NodeSet::all(3),
        valid_until: Instant::from_millis(10),
    };
    book.event(&acquired, 3, false, Instant::ZERO);
    book.event(&Event::Released { lock: LockId(1), confirmed: 3, grantors: 3 }, 3, false, Instant::ZERO);
}

/// Found by the campaign (`corpus/core_inputs/regression-lamport-overflow`): one lock request carrying
/// ticket `u64::MAX` pushed the receiver's ticket clock to the top, and its next `lock()` overflowed.
#[test]
fn a_peer_cannot_exhaust_the_ticket_clock() {
    let mut c = Cluster::new(&Setup { nodes: 2, persist_floor: false, tight_limits: false, seed: 3 });
    let forged =
        Forged::Lock { uid: Pick::Raw(1), ticket: Pick::Raw(u64::MAX), write: true, proposal: Pick::Raw(1), mask: 1 };
    c.apply(&Action::Inject { to: 0, from: 1, msg: forged });
    c.apply(&Action::Lock { node: 0, write: true, mask: 0b10, deadline_ms: Some(100) });
    c.apply(&Action::Lock { node: 0, write: false, mask: 0b100, deadline_ms: None });
    deliver_everything(&mut c, 3);
    assert!(c.acquired() >= 2, "locks after the forged ticket were not acquired");
}
