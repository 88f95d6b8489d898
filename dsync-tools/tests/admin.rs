//! `dsync-node --admin-addr` and `dsync-admin` as an operator meets them: real processes, real HTTP on loopback,
//! ports chosen by the OS. Every wait polls with a generous deadline; nothing sleeps to synchronise.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SECRET: &str = "admin test secret";
/// A generous bound for anything that should happen "soon" on a busy 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// A `dsync-node` process and its admin address; killed when dropped.
struct NodeProc {
    child: Child,
    admin: SocketAddr,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `dsync-node` with `args` and reads its `admin listening on ADDR` line.
fn start_node(args: &[String]) -> NodeProc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dsync-node"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("dsync-node starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("admin listening on ") {
                let _ = tx.send(addr.parse::<SocketAddr>().expect("an address"));
            }
        }
    });
    let admin = rx.recv_timeout(PATIENCE).expect("dsync-node prints `admin listening on ADDR`");
    NodeProc { child, admin }
}

/// An answer: status, the head's header lines (lower-cased names), and the body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Sends `raw` as is and reads the answer until the server closes (the admin endpoint does not keep
/// connections alive). `None` when the connection closed without an answer.
fn raw_http(addr: SocketAddr, raw: &[u8]) -> Option<Reply> {
    let mut s = TcpStream::connect(addr).expect("connect to the admin endpoint");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(raw).expect("send");
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes); // a reset after the answer is fine
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Reply { status, headers: head.to_lowercase(), body: body.to_string() })
}

fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> Reply {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw_http(addr, raw.as_bytes()).unwrap_or_else(|| panic!("no answer to {method} {path}"))
}

fn get(addr: SocketAddr, path: &str, token: &str) -> Reply {
    request(addr, "GET", path, Some(token), "")
}

/// Polls `f` until it returns `Some`, for at most [`PATIENCE`].
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "{what} did not happen within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(50)); // a poll interval, not synchronisation
    }
}

/// Parses a Prometheus text exposition, checking that every sample has HELP and TYPE lines before it.
fn parse_metrics(text: &str) -> BTreeMap<String, (String, f64)> {
    let (mut help, mut kind) = (BTreeMap::new(), BTreeMap::new());
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, h) = rest.split_once(' ').expect("HELP name text");
            help.insert(name.to_string(), h.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, t) = rest.split_once(' ').expect("TYPE name type");
            assert!(matches!(t, "counter" | "gauge"), "{line}");
            kind.insert(name.to_string(), t.to_string());
        } else {
            let (name, value) = line.split_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
            assert!(help.contains_key(name) && kind.contains_key(name), "{name} has no HELP/TYPE");
            if kind[name] == "counter" {
                assert!(name.ends_with("_total"), "a counter's name ends in _total: {name}");
            }
            out.insert(name.to_string(), (kind[name].clone(), value.parse().expect("a number")));
        }
    }
    out
}

fn metric(addr: SocketAddr, name: &str) -> f64 {
    let r = get(addr, "/metrics", SECRET);
    assert_eq!(r.status, 200, "{r:?}");
    parse_metrics(&r.body).get(name).unwrap_or_else(|| panic!("no {name} in {}", r.body)).1
}

fn admin_cli(addr: SocketAddr, token_file: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsync-admin"));
    cmd.arg("--addr").arg(addr.to_string());
    if let Some(f) = token_file {
        cmd.arg("--token-file").arg(f);
    }
    cmd.args(args).output().expect("dsync-admin runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn free_ports(n: usize) -> Vec<SocketAddr> {
    let ls: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    ls.iter().map(|l| l.local_addr().unwrap()).collect()
}

fn temp_dir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dsync-admin-test-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The count in `dsync-admin force-unlock`'s "removed N grant(s)".
fn removed_count(out: &str) -> usize {
    out.split("removed ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {out}"))
}

/// A register for `--work` nodes that says OK to every line.
fn ok_register() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in l.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut w = stream.try_clone().unwrap();
                for _ in BufReader::new(stream).lines().map_while(Result::ok) {
                    if w.write_all(b"OK\n").is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn node_args(id: usize, peers: &str, state: &Path, extra: &[&str]) -> Vec<String> {
    let id_s = id.to_string();
    let dir = state.join(&id_s);
    let base = ["--id", &id_s, "--peers", peers, "--secret", SECRET, "--state-dir", dir.to_str().unwrap()];
    let timing = ["--lease-ms", "1500", "--refresh-ms", "400", "--admin-addr", "127.0.0.1:0"];
    base.iter().chain(&timing).chain(extra).map(|s| s.to_string()).collect()
}

#[test]
fn an_operator_watches_a_cluster_form_lists_its_locks_and_force_unlocks_one() {
    let state = temp_dir("cluster");
    let token_file = state.join("token");
    std::fs::write(&token_file, format!("{SECRET}\n")).unwrap();
    let peers = free_ports(3).iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",");
    let register = ok_register().to_string();

    // Node 0 alone: alive, but not ready — it waits for the others to say whether they are new.
    let n0 = start_node(&node_args(0, &peers, &state, &[]));
    let r = get(n0.admin, "/health", SECRET);
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("ok")), "{r:?}");
    let r = eventually("node 0 reports that it is bootstrapping", || {
        let r = get(n0.admin, "/ready", SECRET);
        assert_eq!(r.status, 503, "a lone node of three is not ready: {r:?}");
        (r.json()["reason"] == "bootstrapping").then_some(r)
    });
    let j = r.json();
    assert_eq!((j["ready"].as_bool(), j["waiting_for"].as_array().map(Vec::len)), (Some(false), Some(2)), "{r:?}");
    assert!(j["message"].as_str().unwrap().contains("bootstrapping"), "{r:?}");
    assert_eq!(j["peers_up"], serde_json::json!([]), "{r:?}");
    let o = admin_cli(n0.admin, Some(&token_file), &["ready"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not ready: bootstrapping"), "{}", text(&o));

    // The others, node 2 with a worker that takes `hot` and holds it.
    let n1 = start_node(&node_args(1, &peers, &state, &[]));
    let holder = ["--work", &register, "--resource", "hot", "--workers", "1", "--hold-ms", "600000"];
    let n2 = start_node(&node_args(2, &peers, &state, &holder));
    for n in [&n0, &n1, &n2] {
        let r = eventually("every node is ready", || Some(get(n.admin, "/ready", SECRET)).filter(|r| r.status == 200));
        assert_eq!(r.json()["ready"], true, "{r:?}");
    }
    let o = admin_cli(n1.admin, Some(&token_file), &["ready"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).starts_with("ready"), "{}", text(&o));

    // Metrics: well-formed, every core counter, the gauges; node 2 acquired its lock.
    eventually("node 2 acquires the lock", || (metric(n2.admin, "dsync_acquired_total") >= 1.0).then_some(()));
    let r = get(n2.admin, "/metrics", SECRET);
    assert!(r.headers.contains("content-type: text/plain; version=0.0.4"), "{r:?}");
    let m = parse_metrics(&r.body);
    for c in ["grants", "denials", "acquired", "failed", "lost", "retries", "expirations", "rejoins", "messages_in"] {
        assert_eq!(m[&format!("dsync_{c}_total")].0, "counter", "{}", r.body);
    }
    let gauges = ["dsync_serving", "dsync_ready", "dsync_peers_up", "dsync_nodes", "dsync_node_id"];
    let values: Vec<f64> = gauges.iter().map(|g| m[*g].1).collect();
    assert_eq!(values, [1.0, 1.0, 2.0, 3.0, 2.0], "{}", r.body);
    assert!(m["dsync_transport_frames_total"].1 > 0.0, "the transport's counters are exported: {}", r.body);
    assert_eq!(m["dsync_transport_rejected_total"].1, 0.0, "{}", r.body);
    let (acquired, lost) = (m["dsync_acquired_total"].1, m["dsync_lost_total"].1);

    // The holder, seen from node 0: JSON and dsync-admin's table.
    let r = get(n0.admin, "/locks?resource=hot", SECRET);
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    assert_eq!(j["answered"], serde_json::json!([0, 1, 2]), "every node answered: {r:?}");
    assert_eq!(j["truncated"], serde_json::json!(false), "{r:?}");
    let h = &j["holders"][0];
    assert_eq!(
        (h["resource"].as_str(), h["mode"].as_str(), h["owner"].as_u64()),
        (Some("hot"), Some("write"), Some(2))
    );
    // Granted by a write quorum at least (the third node may have connected after the grant).
    let granted_by: Vec<String> = h["granted_by"].as_array().unwrap().iter().map(|n| n.to_string()).collect();
    assert!(granted_by.len() >= 2, "{r:?}");
    let token = h["token"].as_u64().unwrap();
    assert!(h["uid"].is_u64() && h["age_ms"].is_u64(), "{r:?}");
    let o = admin_cli(n0.admin, Some(&token_file), &["locks"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut lines = out.lines();
    assert_eq!(
        lines.next().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")),
        Some("RESOURCE MODE OWNER UID TOKEN AGE GRANTED BY".into()),
        "{out}"
    );
    let row: Vec<&str> = lines.find(|l| l.starts_with("hot ")).expect("a row for hot").split_whitespace().collect();
    assert_eq!((row[1], row[2], row[4], row[6]), ("write", "2", &*token.to_string(), &*granted_by.join(",")), "{out}");

    // Force-unlock it through node 1: removed everywhere; the holder is told and takes it again.
    let o = admin_cli(n1.admin, Some(&token_file), &["force-unlock", "--resource", "hot"]);
    assert!(o.status.success(), "{}", text(&o));
    // Revocation (PROTOCOL.md §6.8) tells the holder as the first locker removes its grant, and the holder's
    // own release may overtake the command at the other lockers: at least one grant, at most one per node.
    assert!((1..=3).contains(&removed_count(&text(&o))), "{}", text(&o));
    assert!(!text(&o).contains("did not answer"), "every node answered: {}", text(&o));
    eventually("node 2 is told its lock is lost and takes it again", || {
        (metric(n2.admin, "dsync_lost_total") > lost && metric(n2.admin, "dsync_acquired_total") > acquired)
            .then_some(())
    });
    eventually("the lock is held again with a higher token", || {
        let j = get(n0.admin, "/locks?resource=hot", SECRET).json();
        j["holders"][0]["token"].as_u64().filter(|t| *t > token)
    });
    // By owner and uid, as `locks` shows them.
    let h = get(n0.admin, "/locks", SECRET).json()["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["resource"] == "hot")
        .cloned()
        .expect("hot is held");
    let (owner, uid) = (h["owner"].to_string(), h["uid"].to_string());
    let o = admin_cli(n0.admin, Some(&token_file), &["force-unlock", "--owner", &owner, "--uid", &uid]);
    assert!(o.status.success(), "{}", text(&o));
    assert!((1..=3).contains(&removed_count(&text(&o))), "{}", text(&o));
    // A node that cannot be reached is named: it may still hold a grant.
    drop(n2);
    let o = admin_cli(n0.admin, Some(&token_file), &["force-unlock", "--resource", "hot"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("nodes [2] did not answer"), "{}", text(&o));
    // So is it for the lock list: a list from part of the cluster must not pass for the whole cluster's.
    let o = admin_cli(n0.admin, Some(&token_file), &["locks"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nodes [2] did not answer"), "{}", text(&o));
    drop((n0, n1));
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn bad_requests_are_refused_with_a_clear_status_and_change_nothing() {
    let state = temp_dir("errors");
    let token_file = state.join("admin-token");
    std::fs::write(&token_file, "admin-only token\n").unwrap();
    let port = free_ports(1)[0].to_string();
    let tf = token_file.to_str().unwrap();
    let n = start_node(&node_args(0, &port, &state, &["--admin-token-file", tf]));
    let addr = n.admin;
    let tok = "admin-only token";

    // Tokens: missing, wrong (the cluster secret is not the token once a token file is given), malformed.
    for auth in [None, Some(SECRET), Some("")] {
        let r = request(addr, "GET", "/health", auth, "");
        assert_eq!(r.status, 401, "{auth:?}: {r:?}");
        assert!(r.headers.contains("www-authenticate: bearer"), "{r:?}");
        assert!(r.json()["error"].as_str().unwrap().contains("Bearer"), "{r:?}");
    }
    let r = raw_http(addr, format!("GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {tok}\r\n\r\n").as_bytes());
    assert_eq!(r.map(|r| r.status), Some(401));
    // dsync-admin prints the refusal and exits 1.
    let o = admin_cli(addr, None, &["health"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("401"), "{}", text(&o));
    let o = admin_cli(addr, Some(&token_file), &["health"]);
    assert!(o.status.success(), "{}", text(&o));
    eventually("the lone node serves", || (get(addr, "/ready", tok).status == 200).then_some(()));

    let before = get(addr, "/metrics", tok).body;
    let err = |r: &Reply| r.json()["error"].as_str().unwrap_or_default().to_string();
    let r = get(addr, "/nope", tok);
    assert_eq!(r.status, 404, "{r:?}");
    assert!(err(&r).contains("/nope"), "{r:?}");
    let r = request(addr, "POST", "/locks", Some(tok), "");
    assert_eq!(r.status, 405, "{r:?}");
    assert!(r.headers.contains("allow: get"), "{r:?}");
    let r = request(addr, "GET", "/force-unlock", Some(tok), "");
    assert_eq!(r.status, 405, "{r:?}");
    assert!(r.headers.contains("allow: post"), "{r:?}");
    for (path, needle) in [
        ("/locks?owner=1", "owner"),
        ("/locks?resource=%zz", "percent"),
        ("/locks?resource=a&resource=b", "twice"),
        ("/metrics?x", "no parameters"),
    ] {
        let r = get(addr, path, tok);
        assert_eq!(r.status, 400, "{path}: {r:?}");
        assert!(err(&r).contains(needle), "{path}: {r:?}");
    }
    for (body, needle) in [
        ("not json", "not JSON"),
        ("[1]", "not an object"),
        ("{}", "either"),
        (r#"{"owner":1,"uid":1}"#, "node index"),
        (r#"{"owner":0}"#, "either"),
        (r#"{"resource":"r","owner":0,"uid":1}"#, "either"),
        (r#"{"resources":"r"}"#, "unknown field"),
    ] {
        let r = request(addr, "POST", "/force-unlock", Some(tok), body);
        assert_eq!(r.status, 400, "{body}: {r:?}");
        assert!(err(&r).contains(needle), "{body}: {r:?}");
    }
    let big = format!(r#"{{"resource":"{}"}}"#, "x".repeat(10_000));
    let r = request(addr, "POST", "/force-unlock", Some(tok), &big);
    assert_eq!(r.status, 413, "{}", r.body);
    // A chunked body that grows past the limit without announcing its length.
    let chunk = "y".repeat(3000);
    let raw = format!(
        "POST /force-unlock HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\nTransfer-Encoding: chunked\r\n\r\n\
         {len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    assert_eq!(raw_http(addr, raw.as_bytes()).map(|r| r.status), Some(413));
    // An oversized head is refused (431) or cut, and the server goes on.
    let raw = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "z".repeat(64 * 1024));
    if let Some(r) = raw_http(addr, raw.as_bytes()) {
        assert_eq!(r.status, 431, "{r:?}");
    }
    // Garbage is not HTTP: answered 400 or cut.
    if let Some(r) = raw_http(addr, b"\x00\x01\x02 nonsense\r\n\r\n") {
        assert_eq!(r.status, 400, "{r:?}");
    }
    // Nothing changed: the counters are as before (force-unlock and the holder list do not count).
    let after = get(addr, "/metrics", tok).body;
    let stable =
        |t: &str| parse_metrics(t).into_iter().filter(|(k, _)| !k.starts_with("dsync_messages")).collect::<Vec<_>>();
    assert_eq!(stable(&before), stable(&after));

    // A client that never finishes its headers (slowloris) is cut off.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(PATIENCE)).unwrap();
    let start = Instant::now();
    let mut sink = Vec::new();
    let _ = slow.read_to_end(&mut sink);
    assert!(start.elapsed() < Duration::from_secs(30), "a half-sent request held its connection {:?}", start.elapsed());
    // And the server still answers.
    assert_eq!(get(addr, "/health", tok).status, 200);
    drop(n);
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn an_exposed_admin_address_needs_its_own_token_file() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dsync-node")).args(args).env("RUST_LOG", "warn").output().expect("runs")
    };
    let base = ["--id", "0", "--peers", "127.0.0.1:1", "--secret", "s", "--bootstrap"];
    let o = run(&[&base[..], &["--admin-addr", "0.0.0.0:0"]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("0.0.0.0:0") && text(&o).contains("--admin-token-file"), "{}", text(&o));
    let o = run(&[&base[..], &["--admin-token-file", "/nonexistent"]].concat());
    assert_eq!(o.status.code(), Some(2), "a token file without an admin address: {}", text(&o));
    let o = run(&[&base[..], &["--admin-addr", "127.0.0.1:0", "--admin-token-file", "/nonexistent/token"]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("/nonexistent/token"), "{}", text(&o));
    // A taken admin port: the start fails naming it.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = run(&[&base[..], &["--admin-addr", &addr]].concat());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&addr), "{}", text(&o));
}

#[test]
fn dsync_admin_refuses_a_bad_command_line_with_status_two() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_dsync-admin")).args(args).output().expect("runs");
    for args in [
        &["health"][..],
        &["--addr", "127.0.0.1:1"],
        &["--addr", "127.0.0.1:1", "force-unlock"],
        &["--addr", "127.0.0.1:1", "force-unlock", "--owner", "1"],
        &["--addr", "127.0.0.1:1", "force-unlock", "--resource", "r", "--owner", "1", "--uid", "2"],
        &["--addr", "127.0.0.1:1", "frobnicate"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    let o = run(&["--help"]);
    assert!(o.status.success());
    for needle in ["health", "ready", "metrics", "locks", "force-unlock", "--token-file", "Exit status"] {
        assert!(text(&o).contains(needle), "--help lacks {needle}: {}", text(&o));
    }
    // Nobody listening: exit 1 with the address.
    let free = free_ports(1)[0].to_string();
    let o = run(&["--addr", &free, "health"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&free), "{}", text(&o));
}
