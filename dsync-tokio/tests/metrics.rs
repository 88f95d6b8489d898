//! The `metrics` feature: a node publishes its counters and gauges through the `metrics` facade, labelled with
//! its index and the cluster's name. A small in-test recorder (installed globally, before any node starts,
//! as an application would) keeps every value by name and labels.

mod common;

use common::{quick, soon, SECRET};
use dsync_tokio::NodeBuilder;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A series: its name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// Counters and gauges by (name, sorted labels); gauges hold an `f64`'s bits. Descriptions by name.
#[derive(Default)]
struct TestRecorder {
    values: Mutex<HashMap<Series, Arc<AtomicU64>>>,
    help: Mutex<HashMap<String, String>>,
    /// Handles registered: registration (building a key, labels and all) is the one step that allocates.
    registrations: AtomicU64,
}

fn parts(key: &Key) -> Series {
    let mut labels: Vec<_> = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
    labels.sort();
    (key.name().to_owned(), labels)
}

impl TestRecorder {
    fn cell(&self, key: &Key) -> Arc<AtomicU64> {
        self.registrations.fetch_add(1, Ordering::Relaxed);
        self.values.lock().unwrap().entry(parts(key)).or_default().clone()
    }

    fn value(&self, name: &str, node: usize, cluster: &str) -> Option<u64> {
        let labels = vec![("cluster".to_owned(), cluster.to_owned()), ("node".to_owned(), node.to_string())];
        self.values.lock().unwrap().get(&(name.to_owned(), labels)).map(|v| v.load(Ordering::Relaxed))
    }

    fn gauge(&self, name: &str, node: usize, cluster: &str) -> Option<f64> {
        self.value(name, node, cluster).map(f64::from_bits)
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.help.lock().unwrap().insert(key.as_str().to_owned(), description.into_owned());
    }
    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.help.lock().unwrap().insert(key.as_str().to_owned(), description.into_owned());
    }
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

/// The process-wide recorder, installed once.
fn recorder() -> &'static TestRecorder {
    static RECORDER: OnceLock<&'static TestRecorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let r: &'static TestRecorder = Box::leak(Box::default());
        metrics::set_global_recorder(r).expect("the only recorder of this test binary");
        r
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_increments_the_acquired_and_grants_counters_with_node_and_cluster_labels() {
    let rec = recorder();
    let cluster = "metrics-test";
    let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let b = NodeBuilder::new(addrs.clone(), i)
            .secret(SECRET)
            .cluster_name(cluster)
            .bootstrap()
            .listener(l)
            .configure(quick);
        nodes.push(b.start_tcp().await.expect("node starts"));
    }
    for n in &nodes {
        soon("ready", n.ready()).await.unwrap();
    }
    // 16 core counters, 4 transport counters, 3 gauges per node, registered once at its start.
    let registered = rec.registrations.load(Ordering::Relaxed);
    assert_eq!(registered, 3 * 23);
    // Every handle is registered at start, before anything happened.
    for i in 0..3 {
        assert_eq!(rec.value("dsync_acquired_total", i, cluster), Some(0), "node {i}");
    }
    assert_eq!(
        rec.help.lock().unwrap().get("dsync_acquired_total").map(String::as_str),
        Some("Locks acquired by this node's applications.")
    );

    let guard = soon("lock", nodes[0].mutex(["orders"]).lock()).await.unwrap();
    let grantors = guard.holders();
    assert!(grantors.len() >= 2, "a write quorum of 3 granted: {grantors:?}");

    // The driver publishes at the end of the turn that handled the grant; a later command (counters()) is
    // handled in a later turn, so the values are published by the time it answers.
    let c0 = soon("counters", nodes[0].counters()).await.unwrap();
    assert_eq!(c0.acquired, 1);
    assert_eq!(rec.value("dsync_acquired_total", 0, cluster), Some(1));
    for i in [1, 2] {
        assert_eq!(rec.value("dsync_acquired_total", i, cluster), Some(0), "node {i} acquired nothing");
    }
    for &i in &grantors {
        let counted = soon("counters", nodes[i].counters()).await.unwrap().grants;
        let published = rec.value("dsync_grants_total", i, cluster).expect("registered");
        assert!(counted >= 1, "node {i} granted");
        assert_eq!(published, counted, "node {i}: published grants match the core's counter");
    }
    // Publishing after each driver turn reuses the handles: nothing was registered since the start.
    assert_eq!(rec.registrations.load(Ordering::Relaxed), registered);
    // Another cluster name is another series: nothing leaked under the default name.
    assert_eq!(rec.value("dsync_acquired_total", 0, "dsync"), None);

    // Gauges and the transport's counters.
    assert_eq!(rec.gauge("dsync_serving", 0, cluster), Some(1.0));
    assert_eq!(rec.gauge("dsync_ready", 0, cluster), Some(1.0));
    assert_eq!(rec.gauge("dsync_peers_up", 0, cluster), Some(2.0));
    // The transport's counters are published by their own task, every second.
    soon("transport counters", async {
        while rec.value("dsync_transport_frames_total", 0, cluster) == Some(0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(rec.value("dsync_transport_writes_total", 0, cluster).unwrap() > 0);
    assert!(rec.value("dsync_messages_in_total", 0, cluster).unwrap() > 0);

    soon("release", guard.release()).await.unwrap();
    for n in &nodes {
        n.shutdown().await;
    }
    // A stopped node publishes that it no longer serves.
    soon("stopped gauges", async {
        while rec.gauge("dsync_serving", 0, cluster) != Some(0.0)
            || rec.gauge("dsync_peers_up", 0, cluster) != Some(0.0)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
