//! The command-line client of `dsync-node`'s admin endpoint (`--admin-addr`).
//!
//! ```text
//! dsync-admin --addr 127.0.0.1:7071 [--token-file F] health | ready | metrics | locks [--resource R]
//!             | force-unlock (--resource R | --owner N --uid U)
//! ```
//! Speaks HTTP/1.1 with hyper's client connection (`hyper::client::conn::http1`) over one `TcpStream` per
//! command: the server side already depends on hyper, so this costs no new crate, and it handles framing
//! (content length, chunked bodies, early closes) that a hand-written GET/POST would have to get right by
//! itself. No pool, no connector, no TLS: the endpoint is plain HTTP on a trusted network or loopback.

use clap::{ArgGroup, Parser, Subcommand};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// dsync-admin: ask a dsync-node's admin endpoint about the node and the cluster's locks.
#[derive(Parser, Debug)]
#[command(name = "dsync-admin", version, after_long_help = EXIT_STATUS)]
struct Args {
    /// The node's admin address (its --admin-addr), as host:port.
    #[arg(long, value_name = "ADDR")]
    addr: String,
    /// Read the bearer token from F (the node's --admin-token-file, or its cluster secret file); one
    /// trailing newline is ignored. Without it no token is sent and the node answers 401.
    #[arg(long, value_name = "F")]
    token_file: Option<PathBuf>,
    /// Give up on a request after this many seconds.
    #[arg(long, value_name = "S", default_value_t = 30)]
    timeout: u64,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Whether the node's process answers (GET /health).
    Health,
    /// Whether the node serves with a quorum connected, or why not (GET /ready); exit 1 when not ready.
    Ready,
    /// The node's Prometheus metrics, as text (GET /metrics).
    Metrics,
    /// Who holds which lock across the cluster, oldest first (GET /locks).
    Locks {
        /// Only this resource.
        #[arg(long, value_name = "R")]
        resource: Option<String>,
    },
    /// Remove grants on every reachable node: all of one resource, or one attempt's (POST /force-unlock).
    #[command(group(ArgGroup::new("target").required(true).args(["resource", "owner"])))]
    ForceUnlock {
        /// Every grant of this resource.
        #[arg(long, value_name = "R")]
        resource: Option<String>,
        /// The node that holds the lock (with --uid; both from `locks`).
        #[arg(long, value_name = "N", requires = "uid")]
        owner: Option<usize>,
        /// The holding attempt's uid (with --owner).
        #[arg(long, value_name = "U", requires = "owner", conflicts_with = "resource")]
        uid: Option<u64>,
    },
}

const EXIT_STATUS: &str = "Exit status: 0 on success, 1 when the node answers an error (printed) or cannot be \
reached, or is not ready (`ready`), 2 for a bad command line.";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let token = match &args.token_file {
        None => None,
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => Some(dsync_tools::secret_from_file(&bytes)),
            Err(e) => {
                use clap::CommandFactory;
                Args::command()
                    .error(clap::error::ErrorKind::Io, format!("--token-file {}: {e}", path.display()))
                    .exit()
            }
        },
    };
    let (method, path, body) = match &args.command {
        Cmd::Health => (Method::GET, "/health".to_string(), None),
        Cmd::Ready => (Method::GET, "/ready".to_string(), None),
        Cmd::Metrics => (Method::GET, "/metrics".to_string(), None),
        Cmd::Locks { resource: None } => (Method::GET, "/locks".to_string(), None),
        Cmd::Locks { resource: Some(r) } => (Method::GET, format!("/locks?resource={}", encode(r)), None),
        Cmd::ForceUnlock { resource: Some(r), .. } => {
            (Method::POST, "/force-unlock".to_string(), Some(serde_json::json!({ "resource": r })))
        }
        Cmd::ForceUnlock { owner, uid, .. } => {
            (Method::POST, "/force-unlock".to_string(), Some(serde_json::json!({ "owner": owner, "uid": uid })))
        }
    };
    let request = call(&args.addr, token.as_deref(), method, &path, body);
    let (status, text) = match tokio::time::timeout(Duration::from_secs(args.timeout), request).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            eprintln!("dsync-admin: {}: {e}", args.addr);
            return ExitCode::from(1);
        }
        Err(_) => {
            eprintln!("dsync-admin: {}: no answer within {} s", args.addr, args.timeout);
            return ExitCode::from(1);
        }
    };
    let json: Option<Value> = serde_json::from_str(&text).ok();
    if matches!(args.command, Cmd::Ready) && status == StatusCode::SERVICE_UNAVAILABLE {
        let why = json.as_ref().and_then(|j| j["message"].as_str()).unwrap_or(&text);
        println!("not ready: {why}");
        return ExitCode::from(1);
    }
    if !status.is_success() {
        let why = json.as_ref().and_then(|j| j["error"].as_str()).unwrap_or(text.trim());
        eprintln!("dsync-admin: {} {}: {why}", status.as_u16(), status.canonical_reason().unwrap_or(""));
        return ExitCode::from(1);
    }
    let Some(json) = json.filter(|_| !matches!(args.command, Cmd::Metrics)) else {
        print!("{text}");
        return ExitCode::SUCCESS;
    };
    match args.command {
        Cmd::Health => println!("ok"),
        Cmd::Ready => println!("ready: serving, peers up {}", json["peers_up"]),
        Cmd::Locks { .. } => {
            print!("{}", table(&json));
            // A list from part of the cluster must not pass for the whole cluster's.
            let silent = silent_nodes(&json);
            if !silent.is_empty() {
                eprintln!("dsync-admin: nodes {silent:?} did not answer; grants only they hold are not listed");
            }
            if json["truncated"].as_bool() == Some(true) {
                eprintln!("dsync-admin: a node cut its list at its limit; not every grant is listed");
            }
        }
        Cmd::ForceUnlock { .. } => {
            println!("removed {} grant(s)", json["removed"]);
            let silent = silent_nodes(&json);
            if !silent.is_empty() {
                eprintln!("dsync-admin: nodes {silent:?} did not answer and may still hold grants; run it again later");
            }
        }
        Cmd::Metrics => {}
    }
    ExitCode::SUCCESS
}

/// The nodes an answer (`locks`, `force-unlock`) says did not answer (none when it does not say).
fn silent_nodes(json: &Value) -> Vec<u64> {
    let (Some(n), Some(answered)) = (json["nodes"].as_u64(), json["answered"].as_array()) else { return Vec::new() };
    let answered: Vec<u64> = answered.iter().filter_map(Value::as_u64).collect();
    (0..n).filter(|i| !answered.contains(i)).collect()
}

/// One request on a fresh connection; the status and the body as text.
async fn call(
    addr: &str,
    token: Option<&[u8]>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, String), Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path).header(HOST, addr);
    if let Some(t) = token {
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(t);
        req = req.header(AUTHORIZATION, value);
    }
    let bytes = match body {
        Some(b) => {
            req = req.header(CONTENT_TYPE, "application/json");
            b.to_string().into_bytes()
        }
        None => Vec::new(),
    };
    let resp = sender.send_request(req.body(Full::new(bytes::Bytes::from(bytes)))?).await?;
    let status = resp.status();
    // A holder list of thousands of locks fits easily; anything far larger is not a dsync-node.
    let body = Limited::new(resp.into_body(), 64 << 20).collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The holder list as a table like `mc admin top locks`, oldest first.
fn table(json: &Value) -> String {
    let mut rows: Vec<(u64, [String; 7])> = json["holders"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|h| {
            let age = h["age_ms"].as_u64().unwrap_or(0);
            let by: Vec<String> = h["granted_by"].as_array().into_iter().flatten().map(|n| n.to_string()).collect();
            let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            (
                age,
                [
                    text(&h["resource"]),
                    text(&h["mode"]),
                    text(&h["owner"]),
                    text(&h["uid"]),
                    text(&h["token"]),
                    human_age(age),
                    by.join(","),
                ],
            )
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let header = ["RESOURCE", "MODE", "OWNER", "UID", "TOKEN", "AGE", "GRANTED BY"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for (_, r) in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(rows.iter().map(|(_, r)| r)) {
        let cells: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `850ms`, `12.3s`, `4m05s`, `2h03m`.
fn human_age(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn the_table_lists_the_oldest_lock_first() {
        let json = serde_json::json!({ "holders": [
            { "resource": "a", "mode": "write", "owner": 0, "uid": 7, "token": 3, "age_ms": 20, "granted_by": [0, 1] },
            { "resource": "bb", "mode": "read", "owner": 2, "uid": 9, "token": 0, "age_ms": 61_500, "granted_by": [2] },
        ]});
        let t = table(&json);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "RESOURCE  MODE   OWNER  UID  TOKEN  AGE    GRANTED BY");
        assert_eq!(lines[1], "bb        read   2      9    0      1m01s  2");
        assert_eq!(lines[2], "a         write  0      7    3      20ms   0,1");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("a b/c&d=é"), "a%20b%2Fc%26d%3D%C3%A9");
        assert_eq!(encode("plain-name_1.x~"), "plain-name_1.x~");
    }
}
