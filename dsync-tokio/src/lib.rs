//! `dsync-tokio`: distributed `Mutex` / `RwLock` for tokio, backed by `dsync-core`, over TCP or any
//! [`Transport`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use dsync_tokio::NodeBuilder;
//! let peers = vec!["127.0.0.1:7001".parse()?, "127.0.0.1:7002".parse()?, "127.0.0.1:7003".parse()?];
//! let node = NodeBuilder::new(peers, 0)
//!     .secret("cluster secret")            // required: every connection proves it
//!     .state_dir("/var/lib/dsync")         // safe restarts, fencing kept across them
//!     .start_tcp()
//!     .await?;
//! node.ready().await?;                     // serving, with a quorum of peers connected
//!
//! let orders = node.mutex(["orders"]);
//! let guard = orders.lock().await?;               // held by a quorum of nodes
//! let token = guard.fencing_token();              // give this to the store you protect
//! tokio::select! {
//!     _ = guard.lost() => eprintln!("lease lost: stop touching orders"),
//!     _ = async { /* work, passing `token` along */ } => {}
//! }
//! let confirmed = guard.release().await?;         // or just drop the guard
//! # let _ = (token, confirmed);
//! # Ok(()) }
//! ```
//!
//! Restarts are safe by default: a node without a state directory starts as a restarted member (it grants
//! nothing for a quarantine of `lease·(1+ρ)` and learns its fencing floor from its peers); one with an empty
//! state directory, or started with [`NodeBuilder::bootstrap`], forms a new cluster only if every node is new.
//! See [`NodeBuilder`] for the table of start modes.
//!
//! One task per node (the driver) owns the sans-IO core, its timer and the transport; handles talk to it
//! over channels. Dropping a [`Guard`] queues its release without blocking and without a runtime; dropping a
//! pending `lock()` future cancels the acquisition and releases anything it had gathered.
//!
//! # Observability
//!
//! Lock lifecycle (acquiring, acquired, failed, lost, released) and connection changes (peer up/down,
//! refused handshakes) are [`tracing`] events inside a `dsync` span carrying the node's index: install any
//! `tracing` subscriber to see them. [`Node::counters`], [`Node::transport_stats`] and [`Node::status`] read
//! the numbers directly.
//!
//! With the **`metrics`** feature (off by default), the driver also publishes them through the
//! [`metrics`](https://docs.rs/metrics) facade (0.24), labelled `node` (the node's index) and `cluster` (its
//! [`NodeBuilder::cluster_name`]): every core counter as `dsync_<name>_total` (`dsync_grants_total`,
//! `dsync_acquired_total`, `dsync_lost_total`, ... — one per field of [`Counters`](dsync_core::Counters)), the
//! transport's `dsync_transport_{dropped,rejected,writes,frames}_total`, and the gauges `dsync_serving`, `dsync_ready`
//! and `dsync_peers_up`. Names and help texts are those of `dsync-node --admin-addr`'s `/metrics`. Counters are added
//! after each turn of the driver loop from values the driver already keeps: no allocation or system call per message
//! (the transport's, which change outside the driver, every second). This crate only emits; the application chooses the
//! exporter and **installs it before starting the node** (handles are registered at start, as with any `metrics` user).
//! For Prometheus, with `metrics-exporter-prometheus` in the application's own dependencies:
//!
//! ```text
//! # Cargo.toml
//! dsync-tokio = { version = "0.1", features = ["metrics"] }
//! metrics-exporter-prometheus = "..."  # a release built on metrics 0.24
//!
//! // main.rs: serve http://0.0.0.0:9100/metrics, then start the node
//! metrics_exporter_prometheus::PrometheusBuilder::new()
//!     .with_http_listener(([0, 0, 0, 0], 9100))
//!     .install()?;
//! let node = dsync_tokio::NodeBuilder::new(peers, 0).secret(secret).cluster_name("orders").start_tcp().await?;
//! ```
//!
//! The exporter must use the same `metrics` major version as this crate (0.24): `cargo tree -d -i metrics`
//! shows two copies otherwise, and the node's values then go to a recorder nobody reads. Any other `metrics`
//! exporter (StatsD, OpenTelemetry, ...) is wired the same way.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod disk;
mod driver;
pub mod engine;
mod entropy;
mod error;
mod handles;
mod handoff;
mod inbound;
mod lock;
#[cfg(all(test, dsync_loom))]
mod loom_models;
#[cfg(feature = "metrics")]
mod metrics;
mod node;
mod planted;
mod state;
mod status;
pub mod tcp;
mod transport;

pub use disk::{Disk, OsDisk};
pub use driver::{ForceReport, Holders, Released};
pub use dsync_core as core;
pub use dsync_core::{ForceTarget, HolderEntry, Mode, Start};
pub use entropy::Entropy;
pub use error::{LockError, StartError};
pub use inbound::Inbound;
pub use lock::{Guard, Mutex, RwLock};
pub use node::{Node, NodeBuilder, TransportStats};
pub use planted::PlantedBug;
pub use status::{Serving, Status};
pub use transport::{Transport, TransportEvent};
