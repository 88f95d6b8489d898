//! The fuzzer's vocabulary for `core_inputs`: a cluster setup and a sequence of actions, decoded from raw
//! bytes with `arbitrary`. Small domains (a few resource names, node indices modulo the cluster size, ids
//! drawn from those already seen on the wire) keep random inputs colliding with real protocol state.

use arbitrary::Arbitrary;
use dsync_core::wire::{LockMsg, Outcome, WireEntry};
use dsync_core::{DenyReason, ForceTarget, Message, Mode, Standing};
use std::time::Duration;

/// Resource names lock requests draw from: six ordinary ones, the empty name, and one longer than the
/// tight name limit.
pub const NAMES: [&str; 8] = ["a", "b", "c", "d", "e", "é", "", "a-name-longer-than-16"];

/// The names a bit mask selects, in [`NAMES`] order.
pub fn names(mask: u8) -> Vec<String> {
    NAMES.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, n)| n.to_string()).collect()
}

/// The cluster under test.
#[derive(Arbitrary, Debug)]
pub struct Setup {
    /// Cluster size minus one, modulo 5 (1 to 5 nodes).
    pub nodes: u8,
    /// Whether nodes persist their fencing floor (and so may restart with a durable one).
    pub persist_floor: bool,
    /// Small table limits, so overload paths are reachable; otherwise the defaults.
    pub tight_limits: bool,
    /// Seeds every node's PRNG.
    pub seed: u64,
}

/// How far the shared clock moves.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Advance {
    /// Up to 65 ms.
    Micros(u16),
    /// Up to 65 s.
    Millis(u16),
    /// Up to 255 s: past any lease.
    Secs(u8),
}

impl Advance {
    /// The duration.
    pub fn duration(self) -> Duration {
        match self {
            Advance::Micros(u) => Duration::from_micros(u.into()),
            Advance::Millis(m) => Duration::from_millis(m.into()),
            Advance::Secs(s) => Duration::from_secs(s.into()),
        }
    }
}

/// A number that is either one already seen on the wire (uids, tickets, query ids, tokens) or arbitrary.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Pick {
    /// The `i`-th seen value (modulo how many were seen).
    Seen(u8),
    /// This value.
    Raw(u64),
}

impl Pick {
    /// The value, drawing from `seen`.
    pub fn get(self, seen: &[u64]) -> u64 {
        match self {
            Pick::Seen(i) if !seen.is_empty() => seen[usize::from(i) % seen.len()],
            Pick::Seen(i) => u64::from(i),
            Pick::Raw(v) => v,
        }
    }
}

/// One step of the scenario. Node fields are taken modulo the cluster size; peer fields are raw, so
/// out-of-range and self indices reach the core too.
#[derive(Arbitrary, Debug)]
#[allow(missing_docs)] // each variant's doc says what its fields mean
pub enum Action {
    /// Delivers the `pick`-th queued message of `node` to its destination.
    Deliver { node: u8, pick: u8 },
    /// Loses it.
    Drop { node: u8, pick: u8 },
    /// Delivers a copy and keeps it queued (duplication).
    Duplicate { node: u8, pick: u8 },
    /// Delivers it as if sent by `claimed` (a transport that authenticated the wrong peer).
    Misattribute { node: u8, pick: u8, claimed: u8 },
    /// Delivers an altered copy.
    Tamper { node: u8, pick: u8, tweak: Tweak },
    /// Delivers a forged message to `to` from `from`.
    Inject { to: u8, from: u8, msg: Forged },
    /// Advances the clock and fires `node`'s timers.
    Tick { node: u8, advance: Advance },
    /// Advances the clock and fires every node's timers.
    TickAll { advance: Advance },
    /// The application asks for a lock on the names `mask` selects, with an optional deadline in ms.
    Lock { node: u8, write: bool, mask: u8, deadline_ms: Option<u16> },
    /// Unlocks one of the node's locks (or an unknown id).
    Unlock { node: u8, pick: u8 },
    /// Cancels one of the node's locks (or an unknown id).
    Cancel { node: u8, pick: u8 },
    /// Holder query for one name or all.
    Query { node: u8, name: Option<u8> },
    /// Force-unlock of one name.
    ForceResource { node: u8, name: u8 },
    /// Force-unlock of one attempt (owner raw, uid from the wire or arbitrary).
    ForceUid { node: u8, owner: u8, uid: Pick },
    /// The transport reports `peer` up.
    PeerUp { node: u8, peer: u8 },
    /// The transport reports `peer` down.
    PeerDown { node: u8, peer: u8 },
    /// The node crashes and restarts (with its durable floor when it keeps one and `durable`).
    Restart { node: u8, durable: bool },
    /// The embedder acknowledges the floor the node last asked to persist.
    FloorPersisted { node: u8 },
}

/// How [`Action::Tamper`] alters a message; a tweak that does not apply to the message leaves it as is.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Tweak {
    /// Another uid.
    Uid(Pick),
    /// Another ticket (lock, unlock, wake).
    Ticket(Pick),
    /// Another outcome for a lock reply.
    Outcome(Verdict),
    /// Another mark, proposal or floor.
    Number(u64),
    /// Another refresh round.
    Seq(u32),
    /// Negates a boolean (held, removed, reply, truncated).
    Flip,
    /// The other mode.
    Mode,
    /// Other resources for a lock request.
    Names(u8),
    /// Another query id.
    Qid(Pick),
}

/// A lock reply's outcome.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Verdict {
    /// Granted.
    Granted,
    /// Denied, reason by index.
    Denied(u8),
}

impl Verdict {
    fn outcome(self) -> Outcome {
        const REASONS: [DenyReason; 7] = [
            DenyReason::Conflict,
            DenyReason::Reserved,
            DenyReason::StaleToken,
            DenyReason::Quarantined,
            DenyReason::Overloaded,
            DenyReason::Invalid,
            DenyReason::FloorPending,
        ];
        match self {
            Verdict::Granted => Outcome::Granted,
            Verdict::Denied(i) => Outcome::Denied(REASONS[usize::from(i) % REASONS.len()]),
        }
    }
}

/// One entry of a forged query reply.
#[derive(Arbitrary, Debug)]
pub struct ForgedEntry {
    name: u8,
    write: bool,
    owner: u8,
    uid: Pick,
    age_ms: u64,
    token: u64,
}

/// A forged message of every kind, with ids drawn from the wire where they matter.
#[derive(Arbitrary, Debug)]
#[allow(missing_docs)] // the variants mirror `Message`
pub enum Forged {
    Lock {
        uid: Pick,
        ticket: Pick,
        write: bool,
        proposal: Pick,
        mask: u8,
    },
    LockReply {
        uid: Pick,
        verdict: Verdict,
        mark: Pick,
    },
    Refresh {
        uid: Pick,
        seq: u32,
    },
    RefreshReply {
        uid: Pick,
        seq: u32,
        held: bool,
    },
    Unlock {
        uid: Pick,
        ticket: Option<Pick>,
        reply: bool,
    },
    UnlockReply {
        uid: Pick,
        removed: bool,
    },
    Wake {
        ticket: Pick,
    },
    Query {
        qid: Pick,
        name: Option<u8>,
    },
    QueryReply {
        qid: Pick,
        entries: Vec<ForgedEntry>,
        truncated: bool,
    },
    ForceUnlock {
        qid: Pick,
        target: Option<u8>,
        owner: u8,
        uid: Pick,
    },
    ForceUnlockReply {
        qid: Pick,
        removed: u32,
    },
    FloorQuery {
        qid: Pick,
    },
    FloorReply {
        qid: Pick,
        floor: Option<Pick>,
        standing: u8,
    },
    Rejoin {
        qid: Pick,
    },
    /// Holds as forged `Lock`s: (uid, ticket, write, token, names mask).
    RejoinReply {
        qid: Pick,
        holds: Vec<(Pick, Pick, bool, Pick, u8)>,
        complete: bool,
    },
    Revoked {
        uid: Pick,
    },
}

fn name(i: u8) -> String {
    NAMES[usize::from(i) % NAMES.len()].to_string()
}

fn mode(write: bool) -> Mode {
    if write {
        Mode::Write
    } else {
        Mode::Read
    }
}

impl Forged {
    /// The message, with picks resolved against `seen`.
    pub fn message(&self, seen: &[u64]) -> Message {
        let p = |x: &Pick| x.get(seen);
        match self {
            Forged::Lock { uid, ticket, write, proposal, mask } => Message::Lock(LockMsg {
                uid: p(uid),
                ticket: p(ticket),
                mode: mode(*write),
                proposal: p(proposal),
                resources: names(*mask),
            }),
            Forged::LockReply { uid, verdict, mark } => {
                Message::LockReply { uid: p(uid), outcome: verdict.outcome(), mark: p(mark) }
            }
            Forged::Refresh { uid, seq } => Message::Refresh { uid: p(uid), seq: *seq },
            Forged::RefreshReply { uid, seq, held } => Message::RefreshReply { uid: p(uid), seq: *seq, held: *held },
            Forged::Unlock { uid, ticket, reply } => {
                Message::Unlock { uid: p(uid), ticket: ticket.as_ref().map(p), reply: *reply }
            }
            Forged::UnlockReply { uid, removed } => Message::UnlockReply { uid: p(uid), removed: *removed },
            Forged::Wake { ticket } => Message::Wake { ticket: p(ticket) },
            Forged::Query { qid, name: n } => Message::Query { qid: p(qid), resource: n.map(name) },
            Forged::QueryReply { qid, entries, truncated } => Message::QueryReply {
                qid: p(qid),
                entries: entries
                    .iter()
                    .take(16)
                    .map(|e| WireEntry {
                        resource: name(e.name),
                        mode: mode(e.write),
                        owner: usize::from(e.owner),
                        uid: p(&e.uid),
                        age_ms: e.age_ms,
                        token: e.token,
                    })
                    .collect(),
                truncated: *truncated,
            },
            Forged::ForceUnlock { qid, target, owner, uid } => Message::ForceUnlock {
                qid: p(qid),
                target: match target {
                    Some(n) => ForceTarget::Resource(name(*n)),
                    None => ForceTarget::Uid { owner: usize::from(*owner), uid: p(uid) },
                },
            },
            Forged::ForceUnlockReply { qid, removed } => Message::ForceUnlockReply { qid: p(qid), removed: *removed },
            // The asker's incarnation doubles as its qid, so a picked qid is a plausible incarnation too.
            Forged::FloorQuery { qid } => Message::FloorQuery { qid: p(qid), incarnation: p(qid) },
            Forged::FloorReply { qid, floor, standing } => Message::FloorReply {
                qid: p(qid),
                floor: floor.as_ref().map(p),
                standing: [Standing::Fresh, Standing::BootedWithYou, Standing::History][usize::from(*standing % 3)],
                incarnation: p(qid) ^ u64::from(*standing),
            },
            Forged::Rejoin { qid } => Message::Rejoin { qid: p(qid) },
            Forged::RejoinReply { qid, holds, complete } => Message::RejoinReply {
                qid: p(qid),
                holds: holds
                    .iter()
                    .map(|(uid, ticket, write, token, mask)| LockMsg {
                        uid: p(uid),
                        ticket: p(ticket),
                        mode: mode(*write),
                        proposal: p(token),
                        resources: names(*mask),
                    })
                    .collect(),
                complete: *complete,
            },
            Forged::Revoked { uid } => Message::Revoked { uid: p(uid) },
        }
    }
}

impl Tweak {
    /// `msg` altered by this tweak.
    pub fn apply(self, mut msg: Message, seen: &[u64]) -> Message {
        match (&mut msg, self) {
            (Message::Lock(m), Tweak::Uid(x)) => m.uid = x.get(seen),
            (Message::Lock(m), Tweak::Ticket(x)) => m.ticket = x.get(seen),
            (Message::Lock(m), Tweak::Number(v)) => m.proposal = v,
            (Message::Lock(m), Tweak::Mode) => m.mode = mode(m.mode == Mode::Read),
            (Message::Lock(m), Tweak::Names(mask)) => m.resources = names(mask),
            (Message::LockReply { uid, .. }, Tweak::Uid(x)) => *uid = x.get(seen),
            (Message::LockReply { outcome, .. }, Tweak::Outcome(v)) => *outcome = v.outcome(),
            (Message::LockReply { mark, .. }, Tweak::Number(v)) => *mark = v,
            (Message::Refresh { uid, .. } | Message::RefreshReply { uid, .. }, Tweak::Uid(x)) => *uid = x.get(seen),
            (Message::Refresh { seq, .. } | Message::RefreshReply { seq, .. }, Tweak::Seq(s)) => *seq = s,
            (Message::RefreshReply { held, .. }, Tweak::Flip) => *held = !*held,
            (Message::Unlock { uid, .. } | Message::UnlockReply { uid, .. }, Tweak::Uid(x)) => *uid = x.get(seen),
            (Message::Revoked { uid }, Tweak::Uid(x)) => *uid = x.get(seen),
            (Message::Unlock { ticket, .. }, Tweak::Ticket(x)) => *ticket = Some(x.get(seen)),
            (Message::Unlock { reply, .. }, Tweak::Flip) => *reply = !*reply,
            (Message::UnlockReply { removed, .. }, Tweak::Flip) => *removed = !*removed,
            (Message::Wake { ticket }, Tweak::Ticket(x)) => *ticket = x.get(seen),
            (
                Message::Query { qid, .. }
                | Message::QueryReply { qid, .. }
                | Message::ForceUnlock { qid, .. }
                | Message::ForceUnlockReply { qid, .. }
                | Message::FloorQuery { qid, .. }
                | Message::FloorReply { qid, .. }
                | Message::Rejoin { qid }
                | Message::RejoinReply { qid, .. },
                Tweak::Qid(x),
            ) => *qid = x.get(seen),
            (Message::RejoinReply { complete, .. }, Tweak::Flip) => *complete = !*complete,
            (Message::QueryReply { truncated, .. }, Tweak::Flip) => *truncated = !*truncated,
            (Message::ForceUnlockReply { removed, .. }, Tweak::Number(v)) => *removed = v as u32,
            (Message::FloorReply { floor, .. }, Tweak::Number(v)) => *floor = Some(v),
            (Message::FloorReply { floor, .. }, Tweak::Flip) => *floor = None,
            _ => {}
        }
        msg
    }
}
