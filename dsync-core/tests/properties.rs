//! Properties over random schedules: mutual exclusion, fencing order, the wire format, quorum intersection.

mod support;

use dsync_core::quorum::{read_quorum, write_quorum, MAX_NODES};
use dsync_core::wire::{self, LockMsg, Outcome, WireEntry};
use dsync_core::{Config, DenyReason, ForceTarget, Message, Mode};
use proptest::prelude::*;
use support::{ms, secs, Cluster};

const RESOURCES: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Debug)]
enum Op {
    /// `res` is a non-empty bit mask over [`RESOURCES`]; `deadline` in ms, or none.
    Lock {
        node: usize,
        write: bool,
        res: u8,
        deadline: Option<u64>,
    },
    Unlock {
        node: usize,
        pick: usize,
    },
    Cancel {
        node: usize,
        pick: usize,
    },
    Deliver {
        pick: usize,
    },
    Drop {
        pick: usize,
    },
    Duplicate {
        pick: usize,
    },
    DeliverAll,
    /// Advance time; with `deliver`, messages flow (zero latency) while time passes, else they pile up.
    Advance {
        ms: u64,
        deliver: bool,
    },
    /// Crash a node (only while fewer than a minority are down).
    Crash {
        node: usize,
    },
    /// Restart a crashed node without state.
    Restart {
        node: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let node = 0usize..7;
    let pick = any::<usize>();
    let deadline = prop_oneof![Just(None), (50u64..3_000).prop_map(Some)];
    let duration = prop_oneof![1u64..200, 200u64..5_000, 5_000u64..40_000];
    prop_oneof![
        4 => (node.clone(), any::<bool>(), 1u8..8, deadline)
            .prop_map(|(node, write, res, deadline)| Op::Lock { node, write, res, deadline }),
        2 => (node.clone(), pick).prop_map(|(node, pick)| Op::Unlock { node, pick }),
        1 => (node.clone(), pick).prop_map(|(node, pick)| Op::Cancel { node, pick }),
        8 => pick.prop_map(|pick| Op::Deliver { pick }),
        1 => pick.prop_map(|pick| Op::Drop { pick }),
        1 => pick.prop_map(|pick| Op::Duplicate { pick }),
        1 => Just(Op::DeliverAll),
        3 => (duration, any::<bool>()).prop_map(|(ms, deliver)| Op::Advance { ms, deliver }),
        1 => node.clone().prop_map(|node| Op::Crash { node }),
        1 => node.prop_map(|node| Op::Restart { node }),
    ]
}

fn schedule() -> impl Strategy<Value = (usize, u64, Vec<Op>)> {
    (3usize..=7, any::<u64>(), prop::collection::vec(op(), 1..80))
}

/// Runs a schedule on a fresh cluster, then heals everything and lets it run for a while. The harness
/// checks mutual exclusion after every step and records the order of acquisitions.
fn run(n: usize, seed: u64, ops: &[Op], tweak: impl Fn(&mut Config)) -> Cluster {
    let mut c = Cluster::with_seed(n, seed, tweak);
    for op in ops {
        match *op {
            Op::Lock { node, write, res, deadline } => {
                let node = node % n;
                if !c.is_up(node) {
                    continue;
                }
                let names: Vec<&str> = (0..3).filter(|b| res & (1 << b) != 0).map(|b| RESOURCES[b]).collect();
                let mode = if write { Mode::Write } else { Mode::Read };
                let _ = c.try_lock(node, mode, &names, deadline.map(ms));
            }
            Op::Unlock { node, pick } | Op::Cancel { node, pick } => {
                let node = node % n;
                if !c.is_up(node) || c.requests[node].is_empty() {
                    continue;
                }
                let lock = c.requests[node][pick % c.requests[node].len()].lock;
                if matches!(op, Op::Unlock { .. }) {
                    c.unlock(node, lock);
                } else {
                    c.cancel(node, lock);
                }
            }
            Op::Deliver { pick } | Op::Drop { pick } | Op::Duplicate { pick } => {
                if c.inflight.is_empty() {
                    continue;
                }
                let idx = pick % c.inflight.len();
                match op {
                    Op::Deliver { .. } => c.deliver_at(idx),
                    Op::Drop { .. } => drop(c.inflight.remove(idx)),
                    _ => {
                        let m = c.inflight[idx].clone();
                        c.inflight.push_back(m);
                    }
                }
            }
            Op::DeliverAll => c.deliver_all(),
            Op::Advance { ms: d, deliver } => {
                let t = c.now + ms(d);
                if deliver {
                    c.run_until(t);
                } else {
                    c.fire_timers_until(t);
                }
            }
            Op::Crash { node } => {
                let node = node % n;
                let down = (0..n).filter(|&i| !c.is_up(i)).count();
                if c.is_up(node) && down < (n - 1) / 2 {
                    c.crash(node);
                }
            }
            Op::Restart { node } => {
                let node = node % n;
                if !c.is_up(node) {
                    c.restart(node, None);
                }
            }
        }
    }
    c.heal();
    for i in 0..n {
        if !c.is_up(i) {
            c.restart(i, None);
        }
    }
    c.run_for(secs(120));
    c
}

fn cases(n: u32) -> ProptestConfig {
    // A fixed seed keeps CI reproducible; explore new schedules with PROPTEST_RNG_SEED=<n> (or a new seed here).
    let seed = std::env::var("PROPTEST_RNG_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x00d5_7c0e);
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases(160))]

    /// (1) Never two conflicting locks that both believe they hold at the same instant.
    #[test]
    fn no_two_conflicting_holders_are_valid_at_once((n, seed, ops) in schedule()) {
        let c = run(n, seed, &ops, |_| {});
        prop_assert!(c.violations.is_empty(), "{:#?}", c.violations);
    }

    /// (2) Write locks on a shared resource, in the order they were acquired, have increasing tokens.
    #[test]
    fn fencing_tokens_of_successive_conflicting_writes_increase((n, seed, ops) in schedule()) {
        let c = run(n, seed, &ops, |_| {});
        if let Some(v) = c.fencing_violation() {
            prop_assert!(false, "{}", v);
        }
    }
}

// ----- wire -----

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", "[a-z]{0,4}"]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Read), Just(Mode::Write)]
}

fn outcome() -> impl Strategy<Value = Outcome> {
    use DenyReason::*;
    prop_oneof![
        Just(Outcome::Granted),
        prop::sample::select(vec![Conflict, Reserved, StaleToken, Quarantined, Overloaded, Invalid, FloorPending])
            .prop_map(Outcome::Denied),
    ]
}

fn entry() -> impl Strategy<Value = WireEntry> {
    (text(), mode(), 0..MAX_NODES, any::<u64>(), any::<u64>(), any::<u64>())
        .prop_map(|(resource, mode, owner, uid, age_ms, token)| WireEntry { resource, mode, owner, uid, age_ms, token })
}

fn message() -> impl Strategy<Value = Message> {
    let u = any::<u64>;
    prop_oneof![
        (u(), u(), mode(), u(), prop::collection::vec(text(), 0..4)).prop_map(
            |(uid, ticket, mode, proposal, resources)| {
                Message::Lock(LockMsg { uid, ticket, mode, proposal, resources })
            }
        ),
        (u(), outcome(), u()).prop_map(|(uid, outcome, mark)| Message::LockReply { uid, outcome, mark }),
        (u(), any::<u32>()).prop_map(|(uid, seq)| Message::Refresh { uid, seq }),
        (u(), any::<u32>(), any::<bool>()).prop_map(|(uid, seq, held)| Message::RefreshReply { uid, seq, held }),
        (u(), any::<Option<u64>>(), any::<bool>()).prop_map(|(uid, ticket, reply)| Message::Unlock {
            uid,
            ticket,
            reply
        }),
        (u(), any::<bool>()).prop_map(|(uid, removed)| Message::UnlockReply { uid, removed }),
        u().prop_map(|ticket| Message::Wake { ticket }),
        (u(), prop::option::of(text())).prop_map(|(qid, resource)| Message::Query { qid, resource }),
        (u(), prop::collection::vec(entry(), 0..4), any::<bool>())
            .prop_map(|(qid, entries, truncated)| Message::QueryReply { qid, entries, truncated }),
        (
            u(),
            prop_oneof![
                text().prop_map(ForceTarget::Resource),
                (0..MAX_NODES, u()).prop_map(|(owner, uid)| ForceTarget::Uid { owner, uid })
            ]
        )
            .prop_map(|(qid, target)| Message::ForceUnlock { qid, target }),
        (u(), any::<u32>()).prop_map(|(qid, removed)| Message::ForceUnlockReply { qid, removed }),
        (u(), u()).prop_map(|(qid, incarnation)| Message::FloorQuery { qid, incarnation }),
        (u(), any::<Option<u64>>(), 0..3u8).prop_map(|(qid, floor, s)| {
            let standing =
                [dsync_core::Standing::Fresh, dsync_core::Standing::BootedWithYou, dsync_core::Standing::History]
                    [s as usize];
            Message::FloorReply { qid, floor, standing, incarnation: qid ^ 1 }
        }),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    /// (3a) Every message survives encoding, also appended after other bytes with `encode_into`.
    #[test]
    fn wire_round_trips_every_message(msg in message(), junk in prop::collection::vec(any::<u8>(), 0..8)) {
        let bytes = wire::encode(&msg);
        prop_assert_eq!(wire::decode(&bytes, bytes.len()), Ok(msg.clone()));
        let mut buf = junk.clone();
        wire::encode_into(&msg, &mut buf);
        prop_assert_eq!(&buf[..junk.len()], &junk[..]);
        prop_assert_eq!(&buf[junk.len()..], &bytes[..]);
    }

    /// (3b) Every strict prefix of a valid encoding is refused.
    #[test]
    fn wire_refuses_truncated_encodings(msg in message()) {
        let bytes = wire::encode(&msg);
        for len in 0..bytes.len() {
            prop_assert!(wire::decode(&bytes[..len], 1 << 20).is_err(), "prefix of {} bytes decoded", len);
        }
    }

    /// (3c) Arbitrary bytes never make `decode` panic; those it accepts re-encode to themselves.
    #[test]
    fn wire_decode_never_panics(
        version_one in any::<bool>(),
        mut bytes in prop::collection::vec(any::<u8>(), 0..96),
    ) {
        if version_one && !bytes.is_empty() {
            bytes[0] = 1; // get past the version check into the message body
        }
        if let Ok(msg) = wire::decode(&bytes, 1 << 20) {
            let again = wire::encode(&msg);
            prop_assert_eq!(wire::decode(&again, 1 << 20), Ok(msg));
        }
    }
}

// ----- quorums -----

fn sets() -> impl Strategy<Value = (usize, Vec<usize>, Vec<usize>, usize, usize)> {
    (1usize..=64).prop_flat_map(|n| {
        let perm = Just((0..n).collect::<Vec<usize>>()).prop_shuffle();
        (Just(n), perm.clone(), perm, any::<usize>(), any::<usize>())
    })
}

fn mask(nodes: &[usize]) -> u64 {
    nodes.iter().fold(0, |m, &i| m | 1 << i)
}

proptest! {
    #![proptest_config(cases(256))]

    /// (4) Any two sets of at least the write quorum intersect, and so do a read-quorum-sized and a
    /// write-quorum-sized set, for every cluster size.
    #[test]
    fn quorums_intersect((n, p, q, x, y) in sets()) {
        let (r, w) = (read_quorum(n), write_quorum(n));
        prop_assert!(1 <= r && r <= w && w <= n);
        let a = mask(&p[..w + x % (n - w + 1)]);
        let b_write = mask(&q[..w + y % (n - w + 1)]);
        let b_read = mask(&q[..r + y % (n - r + 1)]);
        prop_assert!(a & b_write != 0, "two write quorums are disjoint at n = {}", n);
        prop_assert!(a & b_read != 0, "a read and a write quorum are disjoint at n = {}", n);
        // And the write quorum is the smallest that works: two sets one node smaller can be disjoint.
        prop_assert!(2 * (w - 1) <= n);
        prop_assert_eq!(mask(&p[..w - 1]) & mask(&p[n - (w - 1)..]), 0);
    }
}

// ----- the checkers can fail -----

/// With a safety mechanism switched off, the same schedules find a violation (so the properties above
/// are not vacuous). Fencing's own planted bug needs a specific interleaving that random schedules reach
/// only rarely; `behaviour.rs` plants it in the scenario that exposes it.
#[cfg(feature = "planted-bugs")]
mod planted {
    use super::*;
    use dsync_core::PlantedBug;
    use proptest::test_runner::{RngAlgorithm, TestError, TestRng, TestRunner};

    fn finds(bug: PlantedBug, check: fn(&Cluster) -> Result<(), String>) -> bool {
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
        let mut runner = TestRunner::new_with_rng(cases(256), rng);
        let result = runner.run(&schedule(), |(n, seed, ops)| {
            let c = run(n, seed, &ops, |cfg| cfg.planted_bug = Some(bug));
            check(&c).map_err(TestCaseError::fail)
        });
        matches!(result, Err(TestError::Fail(..)))
    }

    fn exclusion(c: &Cluster) -> Result<(), String> {
        c.violations.first().map_or(Ok(()), |v| Err(v.clone()))
    }

    #[test]
    fn a_too_small_write_quorum_is_caught() {
        assert!(finds(PlantedBug::WriteQuorumTooSmall, exclusion));
    }

    #[test]
    fn a_too_small_read_quorum_is_caught() {
        assert!(finds(PlantedBug::ReadQuorumTooSmall, exclusion));
    }
}
