//! The `metrics` feature: the driver publishes the core's counters, the transport's counters and the
//! serving/ready/peers_up gauges through the [`metrics`] facade, labelled with the node's index (`node`) and
//! the cluster's name (`cluster`).
//!
//! Cost: every handle is registered once, when the node starts; after each turn of the driver loop the
//! publisher compares the core's counters (plain integers the driver owns) with the last values it published
//! and adds the differences to the handles. No allocation, no system call, no lock of ours; what an increment
//! costs is the installed recorder's (an atomic add for the common exporters, nothing without a recorder). One
//! turn handles a batch of up to 64 inputs, so it is per batch, not per message.
//!
//! The transport's counters change outside the driver (a refused connection does not wake it, and an idle
//! node's driver may sleep indefinitely), so a small task of their own publishes them every
//! [`TRANSPORT_EVERY`] and once more when the node stops.
//!
//! Names and help texts are those of `dsync-node --admin-addr`'s `/metrics`, so dashboards work with either.

use crate::engine::Stats;
use crate::status::{Phase, Published};
use dsync_core::quorum::quorum;
use dsync_core::{Counters, Mode};
use metrics::{counter, describe_counter, describe_gauge, gauge, Counter, Gauge, Label};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the transport's counters are published.
pub(crate) const TRANSPORT_EVERY: Duration = Duration::from_secs(1);

/// One core counter: its metric name, help text, and how to read it.
type CoreCounter = (&'static str, &'static str, fn(&Counters) -> u64);

/// Every field of [`Counters`], with the help text of dsync-tools' `/metrics`.
const CORE: [CoreCounter; 16] = [
    ("dsync_grants_total", "Grants this node's locker gave.", |c| c.grants),
    ("dsync_denials_total", "Requests this node's locker denied (any reason).", |c| c.denials),
    ("dsync_quarantined_denials_total", "Denials because the locker was in its restart quarantine.", |c| {
        c.quarantined_denials
    }),
    ("dsync_stale_token_denials_total", "Denials because a proposed fencing token was not above the mark.", |c| {
        c.stale_token_denials
    }),
    ("dsync_expirations_total", "Grants this node's locker expired because they were not refreshed.", |c| {
        c.expirations
    }),
    ("dsync_retries_total", "Acquisition attempts after the first, over all locks.", |c| c.retries),
    ("dsync_acquired_total", "Locks acquired by this node's applications.", |c| c.acquired),
    ("dsync_failed_total", "Acquisitions that failed.", |c| c.failed),
    ("dsync_lost_total", "Held locks lost (their holders were told to stop).", |c| c.lost),
    (
        "dsync_late_grants_released_total",
        "Grants that arrived for attempts already given up, and were released.",
        |c| c.late_grants_released,
    ),
    (
        "dsync_dead_grants_released_total",
        "Grants of this node's earlier incarnations found after a restart, and released.",
        |c| c.dead_grants_released,
    ),
    ("dsync_rejoins_total", "Restart quarantines ended early because every peer answered the rejoin.", |c| c.rejoins),
    ("dsync_messages_in_total", "Messages handed in by the transport.", |c| c.messages_in),
    ("dsync_messages_out_total", "Messages queued for the transport.", |c| c.messages_out),
    ("dsync_invalid_messages_total", "Messages ignored: from unknown nodes, or invalid for their context.", |c| {
        c.invalid_messages
    }),
    ("dsync_stale_replies_total", "Replies ignored because their round was over.", |c| c.stale_replies),
];

/// One transport counter: its metric name, help text, and which of the engine's atomics it reads.
type TransportCounter = (&'static str, &'static str, fn(&Stats) -> u64);

const TRANSPORT: [TransportCounter; 4] = [
    ("dsync_transport_dropped_total", "Messages the transport dropped: the peer was down or its queue full.", |s| {
        s.dropped.load(Ordering::Relaxed)
    }),
    (
        "dsync_transport_rejected_total",
        "Connections refused (failed authentication) or cut for a protocol violation.",
        |s| s.rejected.load(Ordering::Relaxed),
    ),
    ("dsync_transport_writes_total", "Writes to connections.", |s| s.writes.load(Ordering::Relaxed)),
    ("dsync_transport_frames_total", "Frames sent or queued.", |s| s.frames.load(Ordering::Relaxed)),
];

const SERVING: (&str, &str) = ("dsync_serving", "1 while this node's locker grants locks, else 0.");
const READY: (&str, &str) = ("dsync_ready", "1 while serving with a write quorum of nodes connected, else 0.");
const PEERS_UP: (&str, &str) = ("dsync_peers_up", "Peers with an authenticated connection.");

/// The labels of every series of one node.
fn labels(id: usize, cluster: &str) -> [Label; 2] {
    [Label::new("node", id.to_string()), Label::new("cluster", cluster.to_owned())]
}

/// The driver's publisher: registered handles and the last values published.
pub(crate) struct Publisher {
    nodes: usize,
    core: [Counter; 16],
    /// The core's counters as last published.
    core_last: Counters,
    serving: Gauge,
    ready: Gauge,
    peers_up: Gauge,
    /// (serving, ready, peers up) as last published; `None` before the first publication.
    gauges_last: Option<(bool, bool, usize)>,
}

impl Publisher {
    /// Describes the metrics and registers this node's handles with the recorder installed now (as with any
    /// `metrics` user, a recorder installed later does not see them).
    pub(crate) fn new(id: usize, nodes: usize, cluster: &str) -> Self {
        let labels = labels(id, cluster);
        for (name, help, _) in CORE {
            describe_counter!(name, help);
        }
        let core = CORE.map(|(name, _, _)| counter!(name, labels.iter()));
        for (name, help) in [SERVING, READY, PEERS_UP] {
            describe_gauge!(name, help);
        }
        Publisher {
            nodes,
            core,
            core_last: Counters::default(),
            serving: gauge!(SERVING.0, labels.iter()),
            ready: gauge!(READY.0, labels.iter()),
            peers_up: gauge!(PEERS_UP.0, labels.iter()),
            gauges_last: None,
        }
    }

    /// Adds what changed since the last call: counter deltas, and the gauges if the status moved.
    pub(crate) fn publish(&mut self, counters: &Counters, status: &Published) {
        if *counters != self.core_last {
            for (i, (_, _, read)) in CORE.iter().enumerate() {
                let (now, last) = (read(counters), read(&self.core_last));
                if now != last {
                    self.core[i].increment(now.saturating_sub(last));
                }
            }
            self.core_last.clone_from(counters);
        }
        let serving = status.serving == Phase::Serving;
        let peers_up = status.peers_up.len();
        let ready = serving && peers_up + 1 >= quorum(self.nodes, Mode::Write);
        let next = (serving, ready, peers_up);
        if self.gauges_last != Some(next) {
            self.gauges_last = Some(next);
            self.serving.set(f64::from(u8::from(serving)));
            self.ready.set(f64::from(u8::from(ready)));
            self.peers_up.set(peers_up as f64);
        }
    }
}

/// The transport's counters: handles and the last values published.
pub(crate) struct TransportPublisher {
    stats: Arc<Stats>,
    handles: [Counter; 4],
    last: [u64; 4],
}

impl TransportPublisher {
    /// Describes the metrics and registers the handles with the recorder installed now.
    pub(crate) fn new(id: usize, cluster: &str, stats: Arc<Stats>) -> Self {
        let labels = labels(id, cluster);
        for (name, help, _) in TRANSPORT {
            describe_counter!(name, help);
        }
        let handles = TRANSPORT.map(|(name, _, _)| counter!(name, labels.iter()));
        TransportPublisher { stats, handles, last: [0; 4] }
    }

    /// Adds what changed since the last call.
    pub(crate) fn publish(&mut self) {
        for (i, (_, _, read)) in TRANSPORT.iter().enumerate() {
            let now = read(&self.stats);
            let last = &mut self.last[i];
            if now != *last {
                self.handles[i].increment(now.saturating_sub(*last));
                *last = now;
            }
        }
    }

    /// Publishes every [`TRANSPORT_EVERY`] until the driver is gone (its status sender dropped), then once
    /// more. Runs on the caller's runtime.
    pub(crate) fn spawn(mut self, mut status: watch::Receiver<Published>) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TRANSPORT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => self.publish(),
                    changed = status.changed() => if changed.is_err() {
                        break;
                    },
                }
            }
            self.publish();
        });
    }
}

#[cfg(test)]
mod tests {
    //! What one publication does, and what it costs (an ignored test that prints the time per call). That it
    //! registers nothing after start (the only step that allocates) is checked in tests/metrics.rs.

    use super::*;
    use dsync_core::NodeSet;
    use metrics::{Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
    use std::collections::HashMap;
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    /// Like a typical exporter: one atomic per series (kept by name, to read them back).
    #[derive(Default)]
    struct Atomics(Mutex<HashMap<String, Arc<AtomicU64>>>);

    impl Atomics {
        fn cell(&self, key: &Key) -> Arc<AtomicU64> {
            self.0.lock().unwrap().entry(key.name().to_owned()).or_default().clone()
        }
        fn get(&self, name: &str) -> u64 {
            self.0.lock().unwrap()[name].load(Ordering::Relaxed)
        }
    }

    impl Recorder for Atomics {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.cell(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.cell(key))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    fn publisher(recorder: &Atomics) -> Publisher {
        metrics::with_local_recorder(recorder, || Publisher::new(0, 3, "test"))
    }

    fn status(peers: &[usize]) -> Published {
        Published { serving: Phase::Serving, peers_up: NodeSet::from_iter(peers.iter().copied()) }
    }

    /// One driver turn under load: a few messages in and out, a grant.
    fn turn(p: &mut Publisher, c: &mut Counters, peers: &Published) {
        c.messages_in += 3;
        c.messages_out += 2;
        c.grants += 1;
        p.publish(c, peers);
    }

    #[test]
    fn publications_add_the_deltas_and_follow_the_status() {
        let rec = Atomics::default();
        let mut p = publisher(&rec);
        let mut c = Counters::default();
        let (alone, quorum) = (status(&[]), status(&[1]));
        turn(&mut p, &mut c, &alone);
        assert_eq!(f64::from_bits(rec.get("dsync_serving")), 1.0);
        assert_eq!(f64::from_bits(rec.get("dsync_ready")), 0.0, "no quorum connected");
        for _ in 0..9 {
            turn(&mut p, &mut c, &quorum);
        }
        p.publish(&c, &quorum); // nothing changed: nothing added
        assert_eq!(rec.get("dsync_grants_total"), 10);
        assert_eq!(rec.get("dsync_messages_in_total"), 30);
        assert_eq!(rec.get("dsync_acquired_total"), 0);
        assert_eq!(f64::from_bits(rec.get("dsync_ready")), 1.0);
        assert_eq!(f64::from_bits(rec.get("dsync_peers_up")), 1.0);
        p.publish(&c, &Published { serving: Phase::Stopped, peers_up: NodeSet::EMPTY });
        assert_eq!(f64::from_bits(rec.get("dsync_serving")), 0.0);
    }

    #[test]
    fn transport_publications_add_the_deltas() {
        let rec = Atomics::default();
        let stats = Arc::new(Stats::default());
        let mut t = metrics::with_local_recorder(&rec, || TransportPublisher::new(0, "test", stats.clone()));
        stats.frames.fetch_add(5, Ordering::Relaxed);
        stats.rejected.fetch_add(1, Ordering::Relaxed);
        t.publish();
        t.publish();
        stats.frames.fetch_add(2, Ordering::Relaxed);
        t.publish();
        assert_eq!(rec.get("dsync_transport_frames_total"), 7);
        assert_eq!(rec.get("dsync_transport_rejected_total"), 1);
        assert_eq!(rec.get("dsync_transport_dropped_total"), 0);
    }

    /// `cargo test --release -p dsync-tokio --features metrics --lib metrics -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement: prints the time per publication"]
    fn time_per_publication() {
        let rec = Atomics::default();
        let mut p = publisher(&rec);
        let mut c = Counters::default();
        let peers = status(&[1, 2]);
        let n = 10_000_000u32;
        let start = std::time::Instant::now();
        for _ in 0..n {
            turn(&mut p, &mut c, std::hint::black_box(&peers));
        }
        println!("{:.1} ns per publication (3 series changed)", start.elapsed().as_nanos() as f64 / f64::from(n));
        let start = std::time::Instant::now();
        for _ in 0..n {
            p.publish(std::hint::black_box(&c), std::hint::black_box(&peers));
        }
        println!("{:.1} ns per publication (nothing changed)", start.elapsed().as_nanos() as f64 / f64::from(n));
    }
}
