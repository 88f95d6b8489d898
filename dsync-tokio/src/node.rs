//! Starting a node ([`NodeBuilder`]) and the cloneable [`Node`] handle the application keeps.

use crate::disk::{Disk, OsDisk};
use crate::driver::{Command, Driver, ForceReport, Holders};
use crate::engine::Stats;
use crate::entropy::Entropy;
use crate::error::{LockError, StartError};
use crate::handles::Handles;
use crate::lock::{Mutex, RwLock};
use crate::planted::Bugs;
#[cfg(feature = "planted-bugs")]
use crate::planted::PlantedBug;
use crate::state::StateDir;
use crate::status::{Phase, Published, Status};
use crate::tcp::{cluster_id, TcpConfig, TcpTransport};
use crate::transport::Transport;
use dsync_core::{Config, Counters, ForceTarget, HolderEntry, Instant, Node as Core, NodeSet, Start};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// The part of a node every handle shares: the way to the driver.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) control: mpsc::UnboundedSender<Command>,
    pub(crate) next_req: AtomicU64,
    pub(crate) id: usize,
    pub(crate) nodes: usize,
    pub(crate) local_addr: Option<SocketAddr>,
    pub(crate) status: watch::Receiver<Published>,
    pub(crate) transport_stats: Option<Arc<Stats>>,
}

/// A snapshot of a transport's counters ([`Node::transport_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages dropped because a peer was down or its queue full.
    pub dropped: u64,
    /// Connections refused (failed authentication) or cut for a protocol violation.
    pub rejected: u64,
    /// Writes to connections.
    pub writes: u64,
    /// Frames sent or queued.
    pub frames: u64,
}

/// A running dsync node. Cheap to clone; every clone talks to the same driver task.
#[derive(Clone, Debug)]
pub struct Node {
    shared: Arc<Shared>,
}

/// Builds and starts a node from a fixed cluster configuration.
///
/// **How a node starts** decides whether it is safe after a crash, so the default is the safe choice:
///
/// | settings | a node that ran before | a brand-new cluster |
/// |---|---|---|
/// | [`state_dir`](Self::state_dir) (recommended) | restarts with its durable floor; serves after a quarantine of `lease·(1+ρ)` | an empty directory bootstraps: serves as soon as every node is up and new |
/// | nothing (the default) | restarts: quarantine, then learns its fencing floor from a read quorum of peers | never serves (no peer knows a floor): use a state directory or [`bootstrap`](Self::bootstrap) |
/// | [`bootstrap`](Self::bootstrap) | finds that peers have history and restarts safely, as above | serves as soon as every node is up and new |
/// | [`unsafe_skip_restart_safety`](Self::unsafe_skip_restart_safety) | **may grant a lock twice and reuse fencing tokens** | serves at once |
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use dsync_tokio::NodeBuilder;
/// let peers = vec!["10.0.0.1:7070".parse()?, "10.0.0.2:7070".parse()?, "10.0.0.3:7070".parse()?];
/// let node = NodeBuilder::new(peers, 0).secret("correct horse battery staple").state_dir("/var/lib/dsync").start_tcp().await?;
/// node.ready().await?; // serving, and a quorum of peers connected
/// let guard = node.mutex(["orders"]).lock().await?;
/// println!("holding with fencing token {}", guard.fencing_token());
/// # Ok(()) }
/// ```
pub struct NodeBuilder {
    peers: Vec<SocketAddr>,
    id: usize,
    core: Config,
    secret: Vec<u8>,
    cluster: String,
    start: StartChoice,
    state_dir: Option<PathBuf>,
    disk: Arc<dyn Disk>,
    entropy: Entropy,
    bugs: Bugs,
    listener: Option<std::net::TcpListener>,
    queue_bytes: Option<usize>,
    peer_names: Vec<Option<String>>,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("NodeBuilder")
            .field("peers", &self.peers)
            .field("id", &self.id)
            .field("core", &self.core)
            .field("cluster", &self.cluster)
            .field("start", &self.start)
            .field("state_dir", &self.state_dir)
            .field("entropy", &self.entropy)
            .field("bugs", &self.bugs)
            .finish_non_exhaustive()
    }
}

/// How the operator asked the node to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StartChoice {
    /// Decided by the state directory, or a safe restart without one.
    Default,
    /// `bootstrap()`: new if every node is new, otherwise a safe restart.
    Bootstrap,
    /// `start_mode(..)` or `unsafe_skip_restart_safety()`.
    Explicit(Start),
}

impl NodeBuilder {
    /// Node `id` of the cluster whose nodes listen at `peers` (in index order).
    pub fn new(peers: Vec<SocketAddr>, id: usize) -> Self {
        let core = Config::new(peers.len(), id);
        NodeBuilder {
            peers,
            id,
            core,
            secret: Vec::new(),
            cluster: "dsync".into(),
            start: StartChoice::Default,
            state_dir: None,
            disk: Arc::new(OsDisk),
            entropy: Entropy::os(),
            bugs: Bugs::default(),
            listener: None,
            queue_bytes: None,
            peer_names: Vec::new(),
        }
    }

    /// The shared cluster secret every node must know (the TCP handshake proves it). Required over TCP: a
    /// missing or empty secret is refused with [`StartError::MissingSecret`].
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = secret.as_ref().to_vec();
        self
    }

    /// The cluster's name; nodes of differently named clusters refuse each other.
    pub fn cluster_name(mut self, name: impl Into<String>) -> Self {
        self.cluster = name.into();
        self
    }

    /// Adjusts the core's configuration (lease, refresh, drift bound, timeouts, limits). The cluster size
    /// and this node's index come from [`NodeBuilder::new`]; changing them here is refused at start.
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.core);
        self
    }

    /// Keeps this node's identity and durable fencing floor in `dir` (created if missing; several nodes may
    /// share one directory). The start is then automatic and safe: a node that finds its floor restarts
    /// with it (quarantine, fencing intact even if the whole cluster restarts); one whose directory is
    /// empty bootstraps (see [`NodeBuilder::bootstrap`]), so a wiped directory costs a quarantine, never a
    /// double grant. A directory that belongs to another node or cluster is refused.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Where the state directory's files live: the operating system's file system by default. A simulator
    /// supplies its own [`Disk`] (one whose unsynced writes a simulated crash drops).
    pub fn disk(mut self, disk: Arc<dyn Disk>) -> Self {
        self.disk = disk;
        self
    }

    /// Where the node's random draws come from (the core's seed; for TCP, see
    /// [`TcpConfig::entropy`](crate::tcp::TcpConfig::entropy)): the operating system by default. A
    /// deterministic simulator passes [`Entropy::insecure_seeded`].
    pub fn entropy(mut self, entropy: Entropy) -> Self {
        self.entropy = entropy;
        self
    }

    /// Switches on a planted bug of this crate's layer (for `dsync-sim stack`; see [`PlantedBug`]).
    #[cfg(feature = "planted-bugs")]
    pub fn planted_bug(mut self, bug: Option<PlantedBug>) -> Self {
        self.bugs = Bugs(bug);
        self
    }

    /// For a node **without** a state directory: declares that the cluster may be brand new. The node then
    /// serves as soon as every other node has answered that it is new too (so a new cluster forms once all
    /// its nodes are up); if any node has history — this one is really a restarted member of a running
    /// cluster — it restarts safely instead (quarantine and floor recovery), so leaving this setting on
    /// across restarts is safe for mutual exclusion.
    ///
    /// What it gives up: if **every** node of the cluster restarts at once without state, they form a new
    /// cluster and fencing tokens start again from 1 (stores that remember higher tokens refuse the new
    /// holders until they are reset). Use [`NodeBuilder::state_dir`] to keep fencing across that too.
    pub fn bootstrap(mut self) -> Self {
        self.start = StartChoice::Bootstrap;
        self
    }

    /// Starts serving at once, as the first boot of a cluster that has never run. **Unsafe after a
    /// restart**: if this node granted locks before, it may grant them again while their holders still
    /// believe them (two writers), and it may issue fencing tokens that were already used. For tests and
    /// demos that create a cluster from scratch; prefer [`NodeBuilder::bootstrap`], which is as fast for a
    /// new cluster and safe for a restarted one.
    pub fn unsafe_skip_restart_safety(mut self) -> Self {
        self.start = StartChoice::Explicit(Start::FirstBoot);
        self
    }

    /// Sets the core's start mode explicitly (for example a restart with a floor kept elsewhere, see
    /// PROTOCOL.md §6.4 and §7). Refused together with a state directory, which decides it.
    pub fn start_mode(mut self, start: Start) -> Self {
        self.start = StartChoice::Explicit(start);
        self
    }

    /// Uses a listener the caller bound (for example on port 0, letting the OS choose).
    pub fn listener(mut self, listener: std::net::TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Outgoing bytes queued per peer before messages to it are dropped (default 4 MiB).
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.queue_bytes = Some(bytes);
        self
    }

    /// The peers' `host:port` names, by index (`None`: an address given as such), from which `peers` were
    /// resolved: a peer with a name is resolved again each time it is dialed, so one that moved to a new
    /// address is found again (see [`TcpConfig::peer_names`]). Empty (the default) or one per peer.
    pub fn peer_names(mut self, names: Vec<Option<String>>) -> Self {
        self.peer_names = names;
        self
    }

    /// Starts the node over TCP.
    pub async fn start_tcp(self) -> Result<Node, StartError> {
        self.check()?;
        if self.secret.is_empty() {
            return Err(StartError::MissingSecret);
        }
        // The state directory is checked before binding, so its errors are not hidden by a port in use.
        let decided = self.decide_start()?;
        let mut tcp = TcpConfig::new(
            self.peers.clone(),
            self.core.id,
            cluster_id(&self.cluster),
            Arc::<[u8]>::from(self.secret.clone()),
        );
        tcp.max_frame = self.core.limits.max_message_size;
        if !self.peer_names.is_empty() {
            tcp.peer_names = self.peer_names.clone();
        }
        tcp.entropy = self.entropy.clone();
        if let Some(b) = self.queue_bytes {
            tcp.max_queued_bytes = b;
        }
        let mut builder = self;
        let own = builder.peers[builder.id];
        let transport = match builder.listener.take() {
            Some(l) => {
                let addr = l.local_addr().unwrap_or(own);
                let bind = |source| StartError::Bind { addr, source };
                l.set_nonblocking(true).map_err(bind)?;
                let l = tokio::net::TcpListener::from_std(l).map_err(bind)?;
                TcpTransport::with_listener(tcp, l).map_err(bind)?
            }
            None => TcpTransport::bind(tcp).await.map_err(|source| StartError::Bind { addr: own, source })?,
        };
        let addr = transport.local_addr();
        builder.launch(transport, Some(addr), decided)
    }

    /// Starts the node over any [`Transport`] (QUIC, or your own).
    pub fn start_with<T: Transport>(self, transport: T, local_addr: Option<SocketAddr>) -> Result<Node, StartError> {
        self.check()?;
        let decided = self.decide_start()?;
        self.launch(transport, local_addr, decided)
    }

    /// Spawns the driver for a checked builder.
    fn launch<T: Transport>(
        mut self,
        transport: T,
        local_addr: Option<SocketAddr>,
        (start, state): (Start, Option<StateDir>),
    ) -> Result<Node, StartError> {
        self.core.persist_floor = state.is_some();
        self.core.seed = self.entropy.next_u64();
        let core = Core::new(self.core.clone(), Instant::ZERO, start)?;
        let (commands_tx, commands) = mpsc::channel(1024);
        let (control_tx, control) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(Published { serving: Phase::Stopped, peers_up: NodeSet::EMPTY });
        tracing::info!(node = self.id, nodes = self.core.nodes, ?start, "dsync node starting");
        // Every lock-lifecycle and connection event of this node is logged inside this span.
        let span = tracing::info_span!("dsync", node = self.id, nodes = self.core.nodes);
        let handles = Handles::new(control_tx.clone());
        let transport_stats = transport.stats();
        let driver =
            span.in_scope(|| Driver::new(core, transport, (commands, control), state, handles, status_tx, self.bugs));
        #[cfg(feature = "metrics")]
        let driver = driver.with_metrics(&self.cluster);
        tokio::spawn(tracing::Instrument::instrument(driver.run(), span));
        Ok(Node {
            shared: Arc::new(Shared {
                commands: commands_tx,
                control: control_tx,
                next_req: AtomicU64::new(0),
                id: self.id,
                nodes: self.core.nodes,
                local_addr,
                status,
                transport_stats,
            }),
        })
    }

    /// How the core starts, and the state directory if there is one.
    fn decide_start(&self) -> Result<(Start, Option<StateDir>), StartError> {
        match (&self.state_dir, self.start) {
            // check() refused a state directory together with an explicit choice.
            (Some(dir), _) => {
                let who = (self.cluster.as_str(), self.id, self.core.nodes);
                let (state, start) = StateDir::open(self.disk.clone(), dir, who, self.bugs)?;
                Ok((start, Some(state)))
            }
            (None, StartChoice::Default) => Ok((Start::Restart { durable_floor: None }, None)),
            (None, StartChoice::Bootstrap) => Ok((Start::Bootstrap, None)),
            (None, StartChoice::Explicit(s)) => Ok((s, None)),
        }
    }

    /// The peers' addresses in index order (for transports built outside this crate, such as QUIC).
    pub fn peer_addrs(&self) -> &[SocketAddr] {
        &self.peers
    }

    /// The core configuration as adjusted so far (its `limits.max_message_size` bounds a transport's frames).
    pub fn core_config(&self) -> &Config {
        &self.core
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.cluster
    }

    /// The per-peer queue bound set with [`NodeBuilder::max_queued_bytes`], if any.
    pub fn queued_bytes(&self) -> Option<usize> {
        self.queue_bytes
    }

    /// Refuses a peer list or settings that cannot describe one node of one cluster.
    fn check(&self) -> Result<(), StartError> {
        let n = self.peers.len();
        if n == 0 || n > dsync_core::quorum::MAX_NODES {
            return Err(StartError::Peers(format!("{n} peers; 1 to 64 are supported")));
        }
        if self.id >= n {
            return Err(StartError::Peers(format!(
                "node index {} but only {n} peers (indices 0 to {})",
                self.id,
                n - 1
            )));
        }
        let mut seen = std::collections::BTreeMap::new();
        for (i, a) in self.peers.iter().enumerate() {
            if let Some(j) = seen.insert(*a, i) {
                return Err(StartError::Peers(format!(
                    "{a} is listed twice (nodes {j} and {i}); every node needs its own address"
                )));
            }
        }
        if self.core.id != self.id {
            return Err(StartError::Conflict(format!(
                "configure() set the node index to {} but NodeBuilder::new was given {}; set it only in new()",
                self.core.id, self.id
            )));
        }
        if self.core.nodes != n {
            return Err(StartError::Conflict(format!(
                "configure() set the cluster size to {} but the peer list has {n} addresses; the size is the \
                 peer list's",
                self.core.nodes
            )));
        }
        match (&self.state_dir, self.start) {
            (Some(dir), StartChoice::Bootstrap | StartChoice::Explicit(_)) => {
                return Err(StartError::Conflict(format!(
                    "a state directory ({}) decides how the node starts; drop bootstrap(), start_mode() or \
                     unsafe_skip_restart_safety()",
                    dir.display()
                )))
            }
            (None, StartChoice::Default) if n == 1 => return Err(StartError::NeedsStateDir),
            _ => {}
        }
        if self.cluster.is_empty() || self.cluster.len() > 64 || self.cluster.chars().any(char::is_control) {
            return Err(StartError::Conflict(format!(
                "the cluster name {:?} must be 1 to 64 bytes without control characters",
                self.cluster
            )));
        }
        self.core.validate()?;
        Ok(())
    }
}

impl Node {
    /// This node's index.
    pub fn id(&self) -> usize {
        self.shared.id
    }

    /// The cluster size.
    pub fn nodes(&self) -> usize {
        self.shared.nodes
    }

    /// The address the transport listens on, if it has one.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.local_addr
    }

    /// What this node is doing now: serving or why not (bootstrap, quarantine with the time left, floor
    /// recovery), which peers are connected, and whether it is ready.
    pub fn status(&self) -> Status {
        self.shared.status.borrow().snapshot(self.shared.id, self.shared.nodes)
    }

    /// Waits until this node serves and a write quorum of nodes (it included) is connected — after a
    /// restart that includes the quarantine. A lock asked for before this still works: it is retried as
    /// soon as a quorum is up. Fails only with [`LockError::ShutDown`].
    pub async fn ready(&self) -> Result<(), LockError> {
        let (id, nodes) = (self.shared.id, self.shared.nodes);
        let mut rx = self.shared.status.clone();
        rx.wait_for(|p| p.snapshot(id, nodes).ready).await.map(|_| ()).map_err(|_| LockError::ShutDown)
    }

    /// A mutex over `resources` (one name or many; sorted and deduplicated).
    pub fn mutex<I: IntoIterator<Item = S>, S: Into<String>>(&self, resources: I) -> Mutex {
        Mutex::new(self.shared.clone(), normalise(resources))
    }

    /// A reader-writer lock over `resources`.
    pub fn rwlock<I: IntoIterator<Item = S>, S: Into<String>>(&self, resources: I) -> RwLock {
        RwLock::new(self.shared.clone(), normalise(resources))
    }

    /// Who holds `resource` (or anything), merged from every reachable node. Fails with
    /// [`LockError::Overloaded`] when too many queries are in flight, [`LockError::Invalid`] for a name over
    /// the limit, [`LockError::ShutDown`] when the node stopped.
    pub async fn holders(&self, resource: Option<&str>) -> Result<Vec<HolderEntry>, LockError> {
        Ok(self.holders_report(resource).await?.entries)
    }

    /// As [`Node::holders`], with which nodes answered and whether a list was cut: an operator's view must
    /// not pass a minority's answer off as the whole cluster's.
    pub async fn holders_report(&self, resource: Option<&str>) -> Result<Holders, LockError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Holders { resource: resource.map(str::to_owned), reply }).await?;
        answer.await.map_err(|_| LockError::ShutDown)?
    }

    /// The transport's counters (messages dropped, connections rejected, writes, frames), read without a
    /// round trip; `None` for a transport that does not keep them.
    pub fn transport_stats(&self) -> Option<TransportStats> {
        self.shared.transport_stats.as_ref().map(|s| TransportStats {
            dropped: s.dropped.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            writes: s.writes.load(Ordering::Relaxed),
            frames: s.frames.load(Ordering::Relaxed),
        })
    }

    /// Administrative: removes matching grants on every reachable node; returns how many were removed.
    /// Errors as for [`Node::holders`].
    pub async fn force_unlock(&self, target: ForceTarget) -> Result<usize, LockError> {
        Ok(self.force_unlock_report(target).await?.removed)
    }

    /// As [`Node::force_unlock`], with which nodes answered: a node that did not may still hold a matching
    /// grant, and remove it only when the command reaches it.
    pub async fn force_unlock_report(&self, target: ForceTarget) -> Result<ForceReport, LockError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::ForceUnlock { target, reply }).await?;
        answer.await.map_err(|_| LockError::ShutDown)?
    }

    /// The core's counters.
    pub async fn counters(&self) -> Result<Counters, LockError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Counters { reply }).await?;
        answer.await.map_err(|_| LockError::ShutDown)
    }

    /// Releases every held lock (waiting a bounded time for confirmations), then stops the node.
    /// Guards still alive report `lost`.
    pub async fn shutdown(&self) {
        let (reply, answer) = oneshot::channel();
        if self.shared.control.send(Command::Shutdown { reply }).is_ok() {
            let _ = answer.await;
        }
    }

    /// Stops the node at once, as if its process died: nothing is released, connections just close, and
    /// guards report `lost`. For demos and tests of crash recovery.
    #[doc(hidden)]
    pub async fn crash(&self) {
        let (reply, answer) = oneshot::channel();
        if self.shared.control.send(Command::Crash { reply }).is_ok() {
            let _ = answer.await;
        }
    }

    async fn command(&self, cmd: Command) -> Result<(), LockError> {
        self.shared.commands.send(cmd).await.map_err(|_| LockError::ShutDown)
    }
}

fn normalise<I: IntoIterator<Item = S>, S: Into<String>>(resources: I) -> Vec<String> {
    let mut v: Vec<String> = resources.into_iter().map(Into::into).collect();
    v.sort_unstable();
    v.dedup();
    v
}
