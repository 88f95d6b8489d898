//! Resource exhaustion: one node flooding lock requests is refused `Overloaded` once it has used its share
//! of a locker's table, every other node keeps its guaranteed share, and the waiter bookkeeping a flooding
//! node can occupy is bounded too. Requests are injected as raw messages from a peer, as a flooding or
//! runaway peer would send them.

mod support;

use dsync_core::wire::{LockMsg, Outcome};
use dsync_core::{DenyReason, Event, FailReason, Message, Mode};
use support::{secs, Cluster, Msg};

const W: Mode = Mode::Write;

/// 60 entries per locker in a 3-node cluster: a guaranteed share of 60 / (2·3) = 10 per origin, 30 shared.
const MAX: usize = 60;
const SHARE: usize = 10;
const POOL: usize = MAX - 3 * SHARE;

fn small_table(c: &mut dsync_core::Config) {
    c.limits.max_grants = MAX;
}

/// Takes the in-flight messages matching `pred` out of the network.
fn take(c: &mut Cluster, pred: impl Fn(&Msg) -> bool) -> Vec<Msg> {
    let (taken, rest): (Vec<Msg>, Vec<Msg>) = c.inflight.drain(..).partition(|m| pred(m));
    c.inflight.extend(rest);
    taken
}

fn write_request(uid: u64, ticket: u64, resources: &[String]) -> Message {
    Message::Lock(LockMsg { uid, ticket, mode: W, proposal: 1 + uid, resources: resources.to_vec() })
}

/// `from` asks node 0's locker directly; returns the outcome (the reply never reaches `from`'s coordinator,
/// which would release a grant it does not know).
fn ask(c: &mut Cluster, from: usize, uid: u64, ticket: u64, resources: &[String]) -> Outcome {
    c.with_node(0, |n, now| n.handle_message(now, from, write_request(uid, ticket, resources)));
    let replies = take(c, |m| m.from == 0 && m.to == from && matches!(m.message, Message::LockReply { .. }));
    match replies.as_slice() {
        [Msg { message: Message::LockReply { uid: u, outcome, .. }, .. }] if *u == uid => *outcome,
        other => panic!("expected one reply to uid {uid}, got {other:?}"),
    }
}

/// `from` floods node 0 with `count` single-resource requests; returns how many were granted, after
/// checking that every refusal said `Overloaded`.
fn flood(c: &mut Cluster, from: usize, first_uid: u64, count: u64) -> usize {
    let mut granted = 0;
    for uid in first_uid..first_uid + count {
        match ask(c, from, uid, uid, &[format!("flood-{from}-{uid}")]) {
            Outcome::Granted => granted += 1,
            Outcome::Denied(reason) => assert_eq!(reason, DenyReason::Overloaded, "uid {uid}"),
        }
    }
    granted
}

fn held_by(c: &Cluster, locker: usize, owner: usize) -> usize {
    c.node(locker).grants(c.now).iter().filter(|e| e.owner == owner).count()
}

#[test]
fn a_flooding_peer_gets_its_share_and_the_pool_then_overloaded_and_others_keep_their_share() {
    let mut c = Cluster::new(3, small_table);
    let granted = flood(&mut c, 1, 1, 1000);
    assert_eq!(granted, SHARE + POOL, "node 1 may use its own share and the shared pool, nothing more");
    assert_eq!(c.node(0).grant_count(), SHARE + POOL, "the table stays bounded under the flood");
    assert_eq!(c.node(0).counters().denials, 1000 - (SHARE + POOL) as u64);

    // Node 2 and node 0's own application still get exactly their guaranteed shares there.
    assert_eq!(flood(&mut c, 2, 1, 100), SHARE);
    let mut c2 = Cluster::new(3, small_table);
    flood(&mut c2, 1, 1, 1000);
    let own: Vec<_> = (0..SHARE + 5).map(|i| c2.lock(0, W, &[&format!("own-{i}")], Some(secs(1)))).collect();
    c2.run_for(secs(3));
    assert_eq!(held_by(&c2, 0, 0), SHARE, "node 0's application keeps its share of its own locker");
    assert!(own.iter().take(SHARE).all(|&l| c2.is_valid(0, l)), "the first {SHARE} locks are held");
    for i in 0..3 {
        c2.node(i).check_invariants().unwrap();
    }
    c.node(0).check_invariants().unwrap();
}

#[test]
fn a_lone_busy_node_may_use_more_than_half_of_the_table() {
    let mut c = Cluster::new(3, small_table);
    let granted = flood(&mut c, 2, 1, 100);
    assert!(granted > MAX / 2, "the pool is shared, not split: {granted} of {MAX}");
}

#[test]
fn an_application_flooding_its_node_is_refused_overloaded_while_the_other_nodes_still_lock() {
    let mut c = Cluster::new(3, small_table);
    let flood: Vec<_> = (0..100).map(|i| c.lock(1, W, &[&format!("f{i}")], Some(secs(2)))).collect();
    c.run_for(secs(4));
    let acquired = flood.iter().filter(|&&l| c.acquired(1, l).is_some()).count();
    let overloaded = flood.iter().filter(|&&l| c.failed(1, l).map(|f| f.1) == Some(FailReason::Overloaded)).count();
    assert_eq!(acquired, SHARE + POOL, "every locker admits node 1's share plus the pool");
    assert_eq!(overloaded, 100 - acquired, "every other lock of the flood fails Overloaded");
    // Nodes 0 and 2 lock as usual, granted by every locker (the flooded ones included).
    let a = c.lock(0, W, &["a"], Some(secs(2)));
    let b = c.lock(2, W, &["b"], Some(secs(2)));
    c.settle();
    assert!(c.is_valid(0, a) && c.is_valid(2, b));
    for i in 0..3 {
        let table = c.node(i).grants(c.now);
        assert!(table.iter().any(|e| e.resource == "a") && table.iter().any(|e| e.resource == "b"), "node {i}");
        c.node(i).check_invariants().unwrap();
    }
    c.assert_safe();
}

#[test]
fn a_grant_costs_one_entry_per_resource() {
    let mut c = Cluster::new(3, small_table);
    let five = |uid: u64| (0..5).map(|r| format!("m{uid}-{r}")).collect::<Vec<_>>();
    let mut granted = 0;
    for uid in 1..=20 {
        if ask(&mut c, 1, uid, uid, &five(uid)) == Outcome::Granted {
            granted += 1;
        }
    }
    assert_eq!(granted * 5, SHARE + POOL, "eight locks of five resources fill node 1's share and the pool");
}

#[test]
fn released_and_expired_grants_give_the_budget_back() {
    let mut c = Cluster::new(3, small_table);
    assert_eq!(flood(&mut c, 1, 1, 100), SHARE + POOL);
    // Releasing five grants makes room for exactly five more.
    for uid in 1..=5 {
        c.with_node(0, |n, now| n.handle_message(now, 1, Message::Unlock { uid, ticket: Some(uid), reply: false }));
    }
    assert_eq!(flood(&mut c, 1, 1000, 100), 5);
    // Never refreshed, every grant expires; then the whole budget is there again.
    let lease = c.cfgs[0].locker_hold();
    c.run_for(lease + secs(1));
    assert_eq!(c.node(0).grant_count(), 0);
    assert_eq!(flood(&mut c, 1, 2000, 100), SHARE + POOL);
    c.node(0).check_invariants().unwrap();
}

#[test]
fn a_node_has_at_most_max_pending_waiting_locks_remembered_per_locker() {
    const PENDING: usize = 4;
    let mut c = Cluster::new(3, |cfg| cfg.limits.max_pending = PENDING);
    let names: Vec<String> = (0..10).map(|i| format!("h{i}")).collect();
    for (i, r) in names.iter().enumerate() {
        assert_eq!(ask(&mut c, 2, 100 + i as u64, 100 + i as u64, std::slice::from_ref(r)), Outcome::Granted);
    }
    // Node 1 asks for every held resource with a new lock (ticket) each: all denied for the conflict.
    for round in 0..2u64 {
        for (i, r) in names.iter().enumerate() {
            let ticket = 1 + round * 100 + i as u64;
            let outcome = ask(&mut c, 1, ticket, ticket, std::slice::from_ref(r));
            assert_eq!(outcome, Outcome::Denied(DenyReason::Conflict));
        }
        if round == 0 {
            // The first round's reservations run out (node 1 stopped retrying them); the second round's
            // requests then find room again.
            c.now = c.now + secs(10);
        }
    }
    // Node 2 releases everything: only node 1's remembered waiters (the second round's first four) are woken.
    for i in 0..names.len() as u64 {
        let unlock = Message::Unlock { uid: 100 + i, ticket: Some(100 + i), reply: false };
        c.with_node(0, |n, now| n.handle_message(now, 2, unlock));
    }
    let woken: Vec<u64> = take(&mut c, |m| m.from == 0 && m.to == 1)
        .into_iter()
        .filter_map(|m| match m.message {
            Message::Wake { ticket } => Some(ticket),
            _ => None,
        })
        .collect();
    let expected: Vec<u64> = (0..PENDING as u64).map(|i| 101 + i).collect();
    assert_eq!(woken, expected, "at most max_pending waiting locks of one node are remembered");
    c.node(0).check_invariants().unwrap();
    assert!(c.events[0].iter().all(|(_, e)| !matches!(e, Event::Failed { .. })));
}

#[test]
fn a_holder_query_reply_always_fits_one_message() {
    // Default limits: 10 000 entries per reply, names up to 1 KiB, messages up to 4 MiB. Six thousand
    // grants with 1000-byte names would make a 6 MB reply, which the asking node's decoder refuses (over
    // TCP: a protocol violation that drops the connection). The locker cuts the list to fit instead.
    let mut c = Cluster::new(3, |_| {});
    for uid in 1..=6_000u64 {
        assert_eq!(ask(&mut c, 1, uid, uid, &[format!("{uid:0>1000}")]), Outcome::Granted);
    }
    let limit = c.cfgs[0].limits.max_message_size;
    for resource in [None, Some(format!("{:0>1000}", 17))] {
        c.with_node(0, |n, now| n.handle_message(now, 2, Message::Query { qid: 9, resource: resource.clone() }));
        let replies = take(&mut c, |m| m.from == 0 && m.to == 2 && matches!(m.message, Message::QueryReply { .. }));
        let [Msg { message: reply @ Message::QueryReply { entries, truncated, .. }, .. }] = replies.as_slice() else {
            panic!("expected one reply, got {replies:?}");
        };
        let bytes = dsync_core::wire::encode(reply);
        assert!(bytes.len() <= limit, "a {}-byte reply exceeds the {limit}-byte message limit", bytes.len());
        assert_eq!(dsync_core::wire::decode(&bytes, limit).as_ref(), Ok(reply));
        if resource.is_none() {
            assert!(*truncated && entries.len() > 3_000, "cut to fit, not emptied: {} entries", entries.len());
        } else {
            assert!(!*truncated && entries.len() == 1);
        }
    }
}

#[test]
fn a_force_unlock_naming_a_node_outside_the_cluster_is_refused_before_anything_is_sent() {
    use dsync_core::{Config, ForceTarget, Instant, Node, RequestError, Start};
    let mut node = Node::new(Config::new(3, 0), Instant::ZERO, Start::FirstBoot).expect("valid config");
    while node.poll_transmit().is_some() {}
    let target = ForceTarget::Uid { owner: 3, uid: 1 };
    assert_eq!(node.force_unlock(Instant::ZERO, target), Err(RequestError::NoSuchNode { node: 3, nodes: 3 }));
    assert!(node.poll_transmit().is_none());
    assert!(node.force_unlock(Instant::ZERO, ForceTarget::Uid { owner: 2, uid: 1 }).is_ok());
}
