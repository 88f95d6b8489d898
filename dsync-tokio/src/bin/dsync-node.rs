//! Runs one dsync node from command-line flags, for multi-process tests and for trying dsync across machines.
//!
//! ```text
//! dsync-node --id 0 --peers 10.0.0.1:7070,10.0.0.2:7070,10.0.0.3:7070 --secret-file /etc/dsync/secret \
//!            [--cluster NAME] [--state-dir DIR | --bootstrap] [--lease-ms 30000] [--refresh-ms 10000]
//!            [--work REGISTER_ADDR --resource NAME --workers K --hold-ms H]
//! ```
//! Without `--work` the node serves until SIGINT/SIGTERM, then releases what it holds and exits. With `--work`,
//! `K` workers repeatedly take a write lock on `NAME` and, while holding it, report `ENTER <node> <token>` and
//! `LEAVE <node> <token>` lines to a fenced register at `REGISTER_ADDR` (the multi-process test's checker),
//! waiting for its one-line answer to each before going on.

use dsync_tokio::{LockError, NodeBuilder};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The parsed command line.
struct Args {
    id: usize,
    peers: Vec<SocketAddr>,
    secret: Vec<u8>,
    cluster: String,
    state_dir: Option<PathBuf>,
    bootstrap: bool,
    lease: Duration,
    refresh: Duration,
    work: Option<SocketAddr>,
    resource: String,
    workers: usize,
    hold: Duration,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        id: usize::MAX,
        peers: Vec::new(),
        secret: Vec::new(),
        cluster: "dsync".into(),
        state_dir: None,
        bootstrap: false,
        lease: Duration::from_secs(30),
        refresh: Duration::from_secs(10),
        work: None,
        resource: "hot".into(),
        workers: 2,
        hold: Duration::from_millis(2),
    };
    let ms = |v: String, flag: &str| {
        v.parse::<u64>().map(Duration::from_millis).map_err(|_| format!("{flag} takes milliseconds, got {v:?}"))
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--id" => a.id = value()?.parse().map_err(|_| "--id takes a node index".to_string())?,
            "--peers" => {
                a.peers = value()?
                    .split(',')
                    .map(|p| {
                        p.trim().parse().map_err(|_| format!("--peers: {p:?} is not an address like 127.0.0.1:7070"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--secret" => a.secret = value()?.into_bytes(),
            "--secret-file" => {
                let path = value()?;
                a.secret = secret_from_file(&std::fs::read(&path).map_err(|e| format!("--secret-file {path}: {e}"))?);
            }
            "--cluster" => a.cluster = value()?,
            "--state-dir" => a.state_dir = Some(value()?.into()),
            "--bootstrap" => a.bootstrap = true,
            "--lease-ms" => a.lease = ms(value()?, "--lease-ms")?,
            "--refresh-ms" => a.refresh = ms(value()?, "--refresh-ms")?,
            "--work" => a.work = Some(value()?.parse().map_err(|_| "--work takes the register's address".to_string())?),
            "--resource" => a.resource = value()?,
            "--workers" => a.workers = value()?.parse().map_err(|_| "--workers takes a count".to_string())?,
            "--hold-ms" => a.hold = ms(value()?, "--hold-ms")?,
            "-h" | "--help" => return Err(HELP.into()),
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    if a.id == usize::MAX || a.peers.is_empty() {
        return Err("--id and --peers are required".into());
    }
    if a.secret.is_empty() {
        return Err("a cluster secret is required (--secret or --secret-file), the same on every node".into());
    }
    if a.bootstrap && a.state_dir.is_some() {
        return Err(
            "--bootstrap is for nodes without --state-dir (an empty state directory bootstraps by itself)".into()
        );
    }
    Ok(a)
}

/// A secret file's content with one trailing line break removed, so `echo secret > F` matches `--secret secret`.
fn secret_from_file(bytes: &[u8]) -> Vec<u8> {
    let s = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    s.strip_suffix(b"\r").unwrap_or(s).to_vec()
}

const USAGE: &str = "usage: dsync-node --id N --peers A,B,C (--secret S | --secret-file F) [--cluster NAME] \
[--state-dir DIR | --bootstrap] [--lease-ms MS] [--refresh-ms MS] [--work REGISTER --resource NAME --workers K \
--hold-ms H]   (--help for details)";

const HELP: &str = "dsync-node: one node of a dsync cluster (masterless distributed locks)

usage: dsync-node --id N --peers A,B,C (--secret S | --secret-file F) [options]

  --id N               this node's index in --peers (0-based); every node needs its own
  --peers A,B,C        every node's address (ip:port) in index order, the same list on every node
  --secret S           the cluster secret every connection proves (the same on every node)
  --secret-file F      read the secret from F; one trailing newline is ignored
  --cluster NAME       the cluster's name; nodes of other clusters are refused [default: dsync]
  --state-dir DIR      keep this node's identity and durable fencing floor in DIR (created if missing).
                       Recommended. A node that finds its floor there restarts safely and keeps fencing
                       tokens increasing even across a restart of the whole cluster; an empty DIR means a
                       new node, which serves once every node is up and new (and restarts safely if any
                       node has history, so a wiped DIR never causes a double grant).
  --bootstrap          without --state-dir: allow forming a brand-new cluster (serves once every node is up
                       and new; if peers have history it restarts safely instead). Gives up fencing history
                       when the whole cluster restarts without state: tokens start again from 1.
  --lease-ms MS        lock lease [default: 30000]; a restarted node grants nothing for lease + 1 %
  --refresh-ms MS      how often holders refresh [default: 10000]
  --work REGISTER      test mode: run workers that lock --resource and report to a fenced register
  --resource NAME      [default: hot]   --workers K [default: 2]   --hold-ms H [default: 2]
  -h, --help           this text

Safe defaults: without --state-dir or --bootstrap the node starts as a restarted member of a running
cluster: it grants nothing for a quarantine (lease + 1 %) and then learns its fencing floor from a read
quorum of peers. A brand-new cluster started that way never serves: give nodes a state directory.
Logs go to stderr (RUST_LOG=debug for more). Exit status: 0 after SIGINT/SIGTERM, 1 if the node cannot
start (the message names the address, path or setting), 2 for a bad command line.";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) if e == HELP => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("dsync-node: {e}");
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut b =
        NodeBuilder::new(args.peers.clone(), args.id).secret(&args.secret).cluster_name(&args.cluster).configure(|c| {
            c.lease = args.lease;
            c.refresh_interval = args.refresh;
            c.attempt_timeout = (args.lease / 10).min(Duration::from_secs(1));
            c.backoff_max = (args.lease / 20).min(Duration::from_millis(500));
        });
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
    let mut workers = Vec::new();
    if let Some(register) = args.work {
        for _ in 0..args.workers {
            let (node, resource, hold) = (node.clone(), args.resource.clone(), args.hold);
            workers.push(tokio::spawn(async move {
                if let Err(e) = work(node, register, resource, hold).await {
                    eprintln!("dsync-node: worker stopped: {e}");
                }
            }));
        }
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    for w in workers {
        w.abort();
    }
    node.shutdown().await;
    ExitCode::SUCCESS
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
    fn a_secret_file_written_by_echo_matches_the_same_secret_on_the_command_line() {
        assert_eq!(secret_from_file(b"s3cret\n"), b"s3cret");
        assert_eq!(secret_from_file(b"s3cret\r\n"), b"s3cret");
        assert_eq!(secret_from_file(b"s3cret"), b"s3cret");
        // Only one line break goes: a secret that really ends in one keeps the rest.
        assert_eq!(secret_from_file(b"s3cret\n\n"), b"s3cret\n");
    }
}
