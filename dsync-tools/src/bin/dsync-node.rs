//! Runs one dsync node from command-line flags, for multi-process tests and for trying dsync across machines.
//!
//! ```text
//! dsync-node --id 0 --peers 10.0.0.1:7070,db2.internal:7070,10.0.0.3:7070 --secret-file /etc/dsync/secret \
//!            [--cluster NAME] [--state-dir DIR | --bootstrap] [--lease-ms 30000] [--refresh-ms 10000]
//!            [--admin-addr 127.0.0.1:7071 [--admin-token-file F]]
//!            [--work REGISTER_ADDR --resource NAME --workers K --hold-ms H]
//! ```
//! With `--admin-addr` it serves the admin HTTP endpoint (health, readiness, metrics, lock holders,
//! force-unlock: see `dsync_tools::admin`) and prints `admin listening on ADDR` on stdout.
//! Without `--work` the node serves until SIGINT/SIGTERM, then releases what it holds and exits. With `--work`,
//! `K` workers repeatedly take a write lock on `NAME` and, while holding it, report `ENTER <node> <token>` and
//! `LEAVE <node> <token>` lines to a fenced register at `REGISTER_ADDR` (the multi-process test's checker),
//! waiting for its one-line answer to each before going on.

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use dsync_tokio::{LockError, NodeBuilder};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// dsync-node: one node of a dsync cluster (masterless distributed locks).
#[derive(Parser, Debug)]
#[command(name = "dsync-node", version, after_long_help = SAFE_DEFAULTS)]
struct Args {
    /// This node's index in --peers (0-based); every node needs its own.
    #[arg(long, value_name = "N")]
    id: usize,
    /// Every node's address (ip:port or host:port) in index order, the same list on every node.
    #[arg(
        long,
        value_name = "A,B,C",
        required = true,
        value_delimiter = ',',
        value_parser = peer_entry,
        long_help = "Every node's address in index order, the same list on every node: ip:port, or \
                     host:port ([v6]:port). Host names are resolved at start (an unresolvable one stops the \
                     start) and again each time the node reconnects to that peer, so a peer that moved to a \
                     new address is found again. This node's own entry is where it listens."
    )]
    peers: Vec<PeerEntry>,
    /// The cluster secret every connection proves (the same on every node).
    #[arg(long, value_name = "S", group = "the_secret")]
    secret: Option<String>,
    /// Read the cluster secret from F; one trailing newline is ignored.
    #[arg(long, value_name = "F", group = "the_secret")]
    secret_file: Option<PathBuf>,
    /// The cluster's name; nodes of other clusters are refused.
    #[arg(long, value_name = "NAME", default_value = "dsync")]
    cluster: String,
    /// Keep this node's identity and durable fencing floor in DIR (created if missing). Recommended.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "bootstrap",
        long_help = "Keep this node's identity and durable fencing floor in DIR (created if missing). \
                     Recommended. A node that finds its floor there restarts safely and keeps fencing tokens \
                     increasing even across a restart of the whole cluster; an empty DIR means a new node, which \
                     serves once every node is up and new (and restarts safely if any node has history, so a \
                     wiped DIR never causes a double grant)."
    )]
    state_dir: Option<PathBuf>,
    /// Without --state-dir: allow forming a brand-new cluster (gives up fencing history on a full restart).
    #[arg(
        long,
        long_help = "Without --state-dir: allow forming a brand-new cluster (serves once every node is up and \
                     new; if peers have history it restarts safely instead). Gives up fencing history when the \
                     whole cluster restarts without state: tokens start again from 1. (An empty state \
                     directory bootstraps by itself, so this is only for nodes without --state-dir.)"
    )]
    bootstrap: bool,
    /// Lock lease in milliseconds; a restarted node grants nothing for lease + 1 %.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    lease_ms: u64,
    /// How often holders refresh their locks, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    refresh_ms: u64,
    /// Serve the admin HTTP endpoint (/health, /ready, /metrics, /locks, /force-unlock) on ADDR (ip:port).
    #[arg(
        long,
        value_name = "ADDR",
        value_parser = peer,
        long_help = "Serve the admin HTTP endpoint on ADDR (ip:port; port 0 lets the OS choose, and the node \
                     prints `admin listening on ADDR`): GET /health (liveness), GET /ready (200 when serving \
                     with a quorum connected, else 503 with the reason), GET /metrics (Prometheus), GET \
                     /locks[?resource=NAME] (who holds what, cluster-wide), POST /force-unlock. Off unless \
                     given. Every request needs `Authorization: Bearer <token>`: the --admin-token-file token, \
                     else the cluster secret. An address that is not loopback is refused without \
                     --admin-token-file."
    )]
    admin_addr: Option<SocketAddr>,
    /// The admin endpoint's bearer token, read from F (one trailing newline ignored); required for an
    /// --admin-addr that is not loopback. Without it the token is the cluster secret.
    #[arg(long, value_name = "F", requires = "admin_addr")]
    admin_token_file: Option<PathBuf>,
    /// Test mode: run workers that lock --resource and report to the fenced register at REGISTER (ip:port).
    #[arg(long, value_name = "REGISTER")]
    work: Option<SocketAddr>,
    /// With --work: the resource the workers lock.
    #[arg(long, value_name = "NAME", default_value = "hot")]
    resource: String,
    /// With --work: how many workers take the lock.
    #[arg(long, value_name = "K", default_value_t = 2)]
    workers: usize,
    /// With --work: how long each worker holds the lock, in milliseconds.
    #[arg(long, value_name = "H", default_value_t = 2)]
    hold_ms: u64,
}

const SAFE_DEFAULTS: &str = "Safe defaults: without --state-dir or --bootstrap the node starts as a restarted \
member of a running cluster: it grants nothing for a quarantine (lease + 1 %) and then learns its fencing floor \
from a read quorum of peers. A brand-new cluster started that way never serves: give nodes a state directory.

Without --work the node serves until SIGINT/SIGTERM, then releases what it holds and exits. Logs go to stderr \
(RUST_LOG=debug for more).

With --admin-addr the node also serves the admin endpoint (see --help for --admin-addr); `dsync-admin` is its \
command-line client.

Exit status: 0 after SIGINT/SIGTERM (and for --help, --version), 1 if the node cannot start (the message names \
the address, path or setting), 2 for a bad command line.";

/// One `--peers` entry: an address, or a host name and port resolved at start.
#[derive(Debug, Clone)]
enum PeerEntry {
    /// `ip:port`.
    Addr(SocketAddr),
    /// `host:port`, as given.
    Name(String),
}

/// Parses one `--peers` entry (syntax only; names are resolved by [`resolve_peers`]).
fn peer_entry(p: &str) -> Result<PeerEntry, String> {
    let p = p.trim();
    if let Ok(a) = p.parse() {
        return Ok(PeerEntry::Addr(a));
    }
    let bad = || format!("{p:?} is not an address like 127.0.0.1:7070 or db1.internal:7070");
    let (host, port) = p.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains(':') || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(PeerEntry::Name(p.to_owned()))
}

/// Resolves the `--peers` entries (the first address of each name) and returns them with the names, before
/// anything is bound; exits with status 2 naming the entry that does not resolve.
async fn resolve_peers(entries: &[PeerEntry]) -> (Vec<SocketAddr>, Vec<Option<String>>) {
    let fail = |msg: String| -> ! { Args::command().error(ErrorKind::ValueValidation, msg).exit() };
    let mut addrs = Vec::with_capacity(entries.len());
    let mut names = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        match e {
            PeerEntry::Addr(a) => {
                addrs.push(*a);
                names.push(None);
            }
            PeerEntry::Name(name) => {
                let found = tokio::time::timeout(Duration::from_secs(10), tokio::net::lookup_host(name.as_str())).await;
                let first = match found {
                    Ok(Ok(mut it)) => it.next().ok_or_else(|| "it has no addresses".to_string()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer within 10 s".to_string()),
                };
                match first {
                    Ok(a) => {
                        addrs.push(a);
                        names.push(Some(name.clone()));
                    }
                    Err(why) => fail(format!("--peers entry {i} ({name}) cannot be resolved: {why}")),
                }
            }
        }
    }
    (addrs, names)
}

/// An address flag's value (ip:port).
fn peer(p: &str) -> Result<SocketAddr, String> {
    p.trim().parse().map_err(|_| format!("{p:?} is not an address like 127.0.0.1:7070"))
}

/// The checks clap cannot express, and the secret file; exits with status 2 and the reason when one fails.
fn secret(args: &Args) -> Vec<u8> {
    let fail = |kind, msg: String| -> ! { Args::command().error(kind, msg).exit() };
    let secret = match (&args.secret, &args.secret_file) {
        (Some(s), _) => s.clone().into_bytes(),
        (None, Some(path)) => match std::fs::read(path) {
            Ok(bytes) => dsync_tools::secret_from_file(&bytes),
            Err(e) => fail(ErrorKind::Io, format!("--secret-file {}: {e}", path.display())),
        },
        (None, None) => Vec::new(),
    };
    if secret.is_empty() {
        fail(
            ErrorKind::MissingRequiredArgument,
            "a cluster secret is required (--secret or --secret-file), the same on every node".into(),
        );
    }
    secret
}

/// The admin endpoint's address and bearer token, if asked for; exits with status 2 and the reason when the
/// address is exposed without a token file or the token file is unreadable or empty.
fn admin_settings(args: &Args, secret: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
    let fail = |kind, msg: String| -> ! { Args::command().error(kind, msg).exit() };
    let addr = args.admin_addr?;
    if let Err(msg) = dsync_tools::admin::check_exposure(addr, args.admin_token_file.is_some()) {
        fail(ErrorKind::ValueValidation, msg);
    }
    let token = match &args.admin_token_file {
        None => secret.to_vec(),
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => dsync_tools::secret_from_file(&bytes),
            Err(e) => fail(ErrorKind::Io, format!("--admin-token-file {}: {e}", path.display())),
        },
    };
    if token.is_empty() {
        fail(ErrorKind::ValueValidation, "the admin token file is empty".into());
    }
    Some((addr, token))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let secret = secret(&args);
    let admin = admin_settings(&args, &secret);
    let (peers, peer_names) = resolve_peers(&args.peers).await;
    dsync_tools::init_logging("info");
    // Bound before the node starts, so a taken admin port fails the start instead of leaving a node running
    // without its probes.
    let admin = match admin {
        None => None,
        Some((addr, token)) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some((l, token)),
            Err(e) => {
                eprintln!("dsync-node: cannot start: admin address {addr}: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let (lease, refresh) = (Duration::from_millis(args.lease_ms), Duration::from_millis(args.refresh_ms));
    let mut b =
        NodeBuilder::new(peers, args.id).peer_names(peer_names).secret(&secret).cluster_name(&args.cluster).configure(
            |c| {
                c.lease = lease;
                c.refresh_interval = refresh;
                c.attempt_timeout = (lease / 10).min(Duration::from_secs(1));
                c.backoff_max = (lease / 20).min(Duration::from_millis(500));
            },
        );
    if let Some(dir) = &args.state_dir {
        b = b.state_dir(dir);
    }
    if args.bootstrap {
        b = b.bootstrap();
    }
    let node = match b.start_tcp().await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("dsync-node: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    println!("node {} listening on {}", node.id(), node.local_addr().map(|a| a.to_string()).unwrap_or_default());
    if let Some((listener, token)) = admin {
        match listener.local_addr() {
            Ok(a) => println!("admin listening on {a}"),
            Err(e) => eprintln!("dsync-node: admin endpoint: {e}"),
        }
        tokio::spawn(dsync_tools::admin::serve(listener, node.clone(), token, Default::default()));
    }
    let mut workers = Vec::new();
    if let Some(register) = args.work {
        for _ in 0..args.workers {
            let (node, resource, hold) = (node.clone(), args.resource.clone(), Duration::from_millis(args.hold_ms));
            workers.push(tokio::spawn(async move {
                if let Err(e) = work(node, register, resource, hold).await {
                    eprintln!("dsync-node: worker stopped: {e}");
                }
            }));
        }
    }
    stop_requested().await;
    for w in workers {
        w.abort();
    }
    node.shutdown().await;
    ExitCode::SUCCESS
}

/// Resolves when the operator asks the node to stop: Ctrl-C everywhere, and SIGTERM (what service managers and
/// container runtimes send) on Unix. A handler that cannot be installed is reported and the other one kept.
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => eprintln!("dsync-node: cannot handle SIGTERM ({e}); stop with Ctrl-C"),
        }
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("dsync-node: cannot handle Ctrl-C ({e}); stop the process to stop the node");
        std::future::pending::<()>().await;
    }
}

/// Takes the lock over and over, reporting each hold to the fenced register.
async fn work(node: dsync_tokio::Node, register: SocketAddr, resource: String, hold: Duration) -> std::io::Result<()> {
    let stream = tokio::net::TcpStream::connect(register).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let lock = node.mutex([resource]);
    loop {
        let guard = match lock.try_lock_for(Duration::from_secs(10)).await {
            Ok(g) => g,
            Err(LockError::ShutDown) => return Ok(()),
            Err(_) => continue,
        };
        let token = guard.fencing_token();
        write.write_all(format!("ENTER {} {token}\n", node.id()).as_bytes()).await?;
        let _verdict = lines.next_line().await?;
        tokio::select! {
            _ = guard.lost() => {}
            _ = tokio::time::sleep(hold) => {}
        }
        write.write_all(format!("LEAVE {} {token}\n", node.id()).as_bytes()).await?;
        // Release only once the register recorded the leave: the next holder's ENTER arrives on another
        // connection and must not overtake it.
        let _ack = lines.next_line().await?;
        drop(guard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn a_secret_file_written_by_echo_matches_the_same_secret_on_the_command_line() {
        use dsync_tools::secret_from_file;
        assert_eq!(secret_from_file(b"s3cret\n"), b"s3cret");
        assert_eq!(secret_from_file(b"s3cret\r\n"), b"s3cret");
        assert_eq!(secret_from_file(b"s3cret"), b"s3cret");
        // Only one line break goes: a secret that really ends in one keeps the rest.
        assert_eq!(secret_from_file(b"s3cret\n\n"), b"s3cret\n");
    }
}
