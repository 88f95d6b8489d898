//! Starting a node ([`NodeBuilder`]) and the cloneable [`Node`] handle the application keeps.

use crate::driver::{Command, Driver};
use crate::error::{LockError, StartError};
use crate::handles::Handles;
use crate::lock::{Mutex, RwLock};
use crate::tcp::{cluster_id, TcpConfig, TcpTransport};
use crate::transport::Transport;
use dsync_core::{Config, Counters, ForceTarget, HolderEntry, Instant, Node as Core, Start};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The part of a node every handle shares: the way to the driver.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) control: mpsc::UnboundedSender<Command>,
    pub(crate) next_req: AtomicU64,
    pub(crate) id: usize,
    pub(crate) nodes: usize,
    pub(crate) local_addr: Option<SocketAddr>,
}

/// A running dsync node. Cheap to clone; every clone talks to the same driver task.
#[derive(Clone, Debug)]
pub struct Node {
    shared: Arc<Shared>,
}

/// Builds and starts a node from a fixed cluster configuration.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use dsync_tokio::NodeBuilder;
/// let peers = vec!["10.0.0.1:7070".parse()?, "10.0.0.2:7070".parse()?, "10.0.0.3:7070".parse()?];
/// let node = NodeBuilder::new(peers, 0).secret("correct horse battery staple").state_dir("/var/lib/dsync").start_tcp().await?;
/// let guard = node.mutex(["orders"]).lock().await?;
/// println!("holding with fencing token {}", guard.fencing_token());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct NodeBuilder {
    peers: Vec<SocketAddr>,
    core: Config,
    secret: Vec<u8>,
    cluster: String,
    start: Start,
    state_dir: Option<PathBuf>,
    listener: Option<std::net::TcpListener>,
    queue_bytes: Option<usize>,
}

impl NodeBuilder {
    /// Node `id` of the cluster whose nodes listen at `peers` (in index order).
    pub fn new(peers: Vec<SocketAddr>, id: usize) -> Self {
        let core = Config::new(peers.len(), id);
        NodeBuilder {
            peers,
            core,
            secret: Vec::new(),
            cluster: "dsync".into(),
            start: Start::FirstBoot,
            state_dir: None,
            listener: None,
            queue_bytes: None,
        }
    }

    /// The shared cluster secret every node must know (the TCP handshake proves it).
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = secret.as_ref().to_vec();
        self
    }

    /// The cluster's name; nodes of differently named clusters refuse each other.
    pub fn cluster_name(mut self, name: impl Into<String>) -> Self {
        self.cluster = name.into();
        self
    }

    /// Adjusts the core's configuration (lease, refresh, drift bound, timeouts, limits).
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.core);
        self
    }

    /// How this node starts when no state directory decides it: `Start::FirstBoot` (default) only for a
    /// brand-new cluster; after a restart, `Start::Restart` (see PROTOCOL.md §6.4).
    pub fn start_mode(mut self, start: Start) -> Self {
        self.start = start;
        self
    }

    /// Keeps the durable fencing floor in this directory. Then the start mode is automatic: a node that
    /// finds a floor there restarts safely (quarantine, floor kept), one that finds none boots fresh.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
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

    /// Starts the node over TCP.
    pub async fn start_tcp(self) -> Result<Node, StartError> {
        self.check_peers()?;
        let mut tcp = TcpConfig::new(
            self.peers.clone(),
            self.core.id,
            cluster_id(&self.cluster),
            Arc::<[u8]>::from(self.secret.clone()),
        );
        tcp.max_frame = self.core.limits.max_message_size;
        if let Some(b) = self.queue_bytes {
            tcp.max_queued_bytes = b;
        }
        let mut builder = self;
        let transport = match builder.listener.take() {
            Some(l) => {
                l.set_nonblocking(true)?;
                TcpTransport::with_listener(tcp, tokio::net::TcpListener::from_std(l)?)?
            }
            None => TcpTransport::bind(tcp).await?,
        };
        let addr = transport.local_addr();
        builder.start_with(transport, Some(addr))
    }

    /// Starts the node over any [`Transport`] (QUIC, or your own).
    pub fn start_with<T: Transport>(
        mut self,
        transport: T,
        local_addr: Option<SocketAddr>,
    ) -> Result<Node, StartError> {
        self.check_peers()?;
        let mut start = self.start;
        let mut floor_file = None;
        if let Some(dir) = &self.state_dir {
            std::fs::create_dir_all(dir)?;
            let path = dir.join(format!("fencing-floor-{}", self.core.id));
            start = match read_floor(&path)? {
                Some(f) => Start::Restart { durable_floor: Some(f) },
                None => Start::FirstBoot,
            };
            self.core.persist_floor = true;
            floor_file = Some(path);
        }
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(|e| StartError::Io(std::io::Error::other(e.to_string())))?;
        self.core.seed = u64::from_le_bytes(seed);
        let core = Core::new(self.core.clone(), Instant::ZERO, start)?;
        let (commands_tx, commands) = mpsc::channel(1024);
        let (control_tx, control) = mpsc::unbounded_channel();
        let driver = Driver {
            core,
            transport,
            origin: tokio::time::Instant::now(),
            commands,
            control,
            floor_file,
            handles: Handles::new(control_tx.clone()),
            holder_queries: HashMap::new(),
            force_queries: HashMap::new(),
        };
        tracing::info!(node = self.core.id, nodes = self.core.nodes, ?start, "dsync node starting");
        // Every lock-lifecycle and connection event of this node is logged inside this span.
        let span = tracing::info_span!("dsync", node = self.core.id, nodes = self.core.nodes);
        tokio::spawn(tracing::Instrument::instrument(driver.run(), span));
        Ok(Node {
            shared: Arc::new(Shared {
                commands: commands_tx,
                control: control_tx,
                next_req: AtomicU64::new(0),
                id: self.core.id,
                nodes: self.core.nodes,
                local_addr,
            }),
        })
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

    fn check_peers(&self) -> Result<(), StartError> {
        if self.peers.is_empty() || self.peers.len() > dsync_core::quorum::MAX_NODES {
            return Err(StartError::Peers(format!("{} peers; 1 to 64 are supported", self.peers.len())));
        }
        if self.core.id >= self.peers.len() {
            return Err(StartError::Peers(format!("node index {} but only {} peers", self.core.id, self.peers.len())));
        }
        if self.core.nodes != self.peers.len() {
            return Err(StartError::Peers("the core's node count differs from the peer list".into()));
        }
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

    /// A mutex over `resources` (one name or many; sorted and deduplicated).
    pub fn mutex<I: IntoIterator<Item = S>, S: Into<String>>(&self, resources: I) -> Mutex {
        Mutex::new(self.shared.clone(), normalise(resources))
    }

    /// A reader-writer lock over `resources`.
    pub fn rwlock<I: IntoIterator<Item = S>, S: Into<String>>(&self, resources: I) -> RwLock {
        RwLock::new(self.shared.clone(), normalise(resources))
    }

    /// Who holds `resource` (or anything), merged from every reachable node.
    pub async fn holders(&self, resource: Option<&str>) -> Result<Vec<HolderEntry>, LockError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Holders { resource: resource.map(str::to_owned), reply }).await?;
        answer.await.map_err(|_| LockError::Overloaded)
    }

    /// Administrative: removes matching grants on every reachable node; returns how many were removed.
    pub async fn force_unlock(&self, target: ForceTarget) -> Result<usize, LockError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::ForceUnlock { target, reply }).await?;
        answer.await.map_err(|_| LockError::Overloaded)
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

/// Reads the floor file; `None` when it does not exist. A file that exists but does not parse is an error:
/// guessing would risk reissuing fencing tokens.
fn read_floor(path: &Path) -> Result<Option<u64>, StartError> {
    match std::fs::read_to_string(path) {
        Ok(s) => s.trim().parse().map(Some).map_err(|_| {
            StartError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} does not hold a fencing floor", path.display()),
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes the floor durably: temporary file, fsync, rename, fsync of the directory.
pub(crate) fn write_floor(path: &Path, floor: u64) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{floor}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
