//! The admin HTTP endpoint of `dsync-node` (`--admin-addr`): liveness, readiness, Prometheus metrics, the
//! cluster's lock holders and force-unlock, behind a bearer token.
//!
//! | request | answer |
//! |---|---|
//! | `GET /health` | 200 `{"status":"ok"}` while the process runs |
//! | `GET /ready` | 200 when [`Node::status`] is ready, else 503 with the reason (bootstrapping, quarantined with the seconds left, recovering or persisting the floor, no quorum) and the peers up |
//! | `GET /metrics` | Prometheus text format 0.0.4: every core counter as `dsync_<name>_total`, and gauges |
//! | `GET /locks[?resource=NAME]` | the merged cluster-wide holder list from [`Node::holders`] |
//! | `POST /force-unlock` | body `{"resource":"NAME"}` or `{"owner":N,"uid":U}`; answers `{"removed":n}` |
//!
//! Every request needs `Authorization: Bearer <token>`; a missing or wrong token is 401 (compared in constant
//! time, logged at WARN once per client address and then at most once a minute). Errors are JSON
//! `{"error": "..."}` with a 4xx/5xx status, and a refused request changes nothing.
//!
//! Built on hyper 1.x's HTTP/1 server connection rather than axum: five fixed routes need no router or tower
//! stack, and the connection builder exposes exactly the bounds an exposed endpoint needs (header read timeout,
//! header buffer size, no keep-alive). The server bounds concurrent connections ([`Limits::max_connections`];
//! more are closed at once), the header size and the time to send the headers (slowloris), the body size and
//! the time to send it, and each connection's lifetime.

use bytes::Bytes;
use dsync_tokio::core::Counters;
use dsync_tokio::{ForceTarget, Holders, LockError, Mode, Node, Serving, Status, TransportStats};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The bounds the admin server keeps.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once; further connections are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (slowloris).
    pub header_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; hyper answers 431 beyond it.
    pub max_head: usize,
    /// Largest request body in bytes; 413 beyond it.
    pub max_body: usize,
    /// Time a client has to send a request's body; 408 beyond it.
    pub body_timeout: Duration,
    /// Longest a connection may live, whatever it does (a request is answered well within it).
    pub connection_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 32,
            header_timeout: Duration::from_secs(5),
            max_head: 16 * 1024,
            max_body: 4 * 1024,
            body_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(60),
        }
    }
}

/// Refuses an admin address that is not loopback unless a separate admin token protects it: the error names
/// the address and the flag to add.
pub fn check_exposure(addr: SocketAddr, has_token_file: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || has_token_file {
        Ok(())
    } else {
        Err(format!(
            "--admin-addr {addr} is not a loopback address: serving the admin endpoint beyond this machine needs \
             its own token, given with --admin-token-file FILE (otherwise use 127.0.0.1 or [::1])"
        ))
    }
}

/// Serves the admin endpoint on `listener` for `node` until the task is dropped; `token` is what clients must
/// send as `Authorization: Bearer <token>`.
pub async fn serve(listener: TcpListener, node: Node, token: Vec<u8>, limits: Limits) {
    let state = Arc::new(State { node, token, limits, auth_log: Mutex::new(AuthLog::default()) });
    let permits = Arc::new(Semaphore::new(state.limits.max_connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "admin endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "admin endpoint: too many connections; closing this one");
            continue; // dropping the stream closes it
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(|req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(state.answer(peer, req).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(state.limits.header_timeout)
                .max_buf_size(state.limits.max_head.max(8192))
                .keep_alive(false);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(state.limits.connection_lifetime, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "admin endpoint: connection ended"),
                Err(_) => tracing::debug!(%peer, "admin endpoint: connection closed after its lifetime"),
            }
        });
    }
}

struct State {
    node: Node,
    token: Vec<u8>,
    limits: Limits,
    auth_log: Mutex<AuthLog>,
}

/// A refused request: its status, message and, for 405, the methods allowed.
#[derive(Debug, PartialEq)]
struct ApiError {
    status: StatusCode,
    message: String,
    allow: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), allow: None }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut resp = json_response(self.status, &json!({ "error": self.message }));
        if let Some(allow) = self.allow {
            resp.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut text = body.to_string();
    text.push('\n');
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The routes and the methods each takes.
const ROUTES: &[(&str, Method, &str)] = &[
    ("/health", Method::GET, "GET"),
    ("/ready", Method::GET, "GET"),
    ("/metrics", Method::GET, "GET"),
    ("/locks", Method::GET, "GET"),
    ("/force-unlock", Method::POST, "POST"),
];

impl State {
    async fn answer(&self, peer: SocketAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match self.route(peer, req).await {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        }
    }

    async fn route(&self, peer: SocketAddr, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, ApiError> {
        self.authenticate(peer, &req)?;
        let path = req.uri().path();
        let Some((_, method, allow)) = ROUTES.iter().find(|(p, ..)| *p == path) else {
            return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")));
        };
        if req.method() != method {
            let mut e =
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{path} takes {allow}, not {}", req.method()));
            e.allow = Some(allow);
            return Err(e);
        }
        let query = parse_query(req.uri().query(), if path == "/locks" { &["resource"] } else { &[] })?;
        match path {
            "/health" => Ok(json_response(StatusCode::OK, &json!({ "status": "ok" }))),
            "/ready" => Ok(readiness(&self.node.status())),
            "/metrics" => self.metrics().await,
            "/locks" => self.locks(query.get("resource").map(String::as_str)).await,
            _ => self.force_unlock(peer, req).await,
        }
    }

    /// Checks the bearer token in constant time; logs refusals (rate-limited per client address).
    fn authenticate(&self, peer: SocketAddr, req: &Request<Incoming>) -> Result<(), ApiError> {
        let given = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
        let problem = match given.and_then(|v| v.strip_prefix(b"Bearer ")) {
            Some(token) if bool::from(token.ct_eq(&self.token)) => return Ok(()),
            Some(_) => "wrong bearer token",
            None if given.is_some() => "the Authorization header is not `Bearer <token>`",
            None => "missing Authorization header",
        };
        if let Some(suppressed) =
            self.auth_log.lock().map(|mut l| l.should_log(peer.ip(), Instant::now())).ok().flatten()
        {
            tracing::warn!(
                client = %peer.ip(),
                path = req.uri().path(),
                problem,
                suppressed_since_last_report = suppressed,
                "admin endpoint: refused an unauthenticated request"
            );
        }
        Err(ApiError::new(StatusCode::UNAUTHORIZED, format!("{problem}: send `Authorization: Bearer <token>`")))
    }

    async fn metrics(&self) -> Result<Response<Full<Bytes>>, ApiError> {
        let counters = self.node.counters().await.map_err(node_error)?;
        let text = render_metrics(&counters, &self.node.status(), self.node.transport_stats());
        let mut resp = Response::new(Full::new(Bytes::from(text)));
        resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
        Ok(resp)
    }

    async fn locks(&self, resource: Option<&str>) -> Result<Response<Full<Bytes>>, ApiError> {
        let report = self.node.holders_report(resource).await.map_err(node_error)?;
        Ok(json_response(StatusCode::OK, &holders_json(&report, self.node.nodes())))
    }

    async fn force_unlock(&self, peer: SocketAddr, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, ApiError> {
        let too_large =
            || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {} bytes", self.limits.max_body));
        let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.limits.max_body as u64) {
            return Err(too_large());
        }
        let body = Limited::new(req.into_body(), self.limits.max_body);
        let bytes = match tokio::time::timeout(self.limits.body_timeout, body.collect()).await {
            Err(_) => return Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time")),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
            Ok(Err(e)) => return Err(ApiError::bad_request(format!("cannot read the body: {e}"))),
            Ok(Ok(b)) => b.to_bytes(),
        };
        let target = parse_force_target(&bytes, self.node.nodes())?;
        let report = self.node.force_unlock_report(target.clone()).await.map_err(node_error)?;
        let answered: Vec<usize> = report.answered.iter().collect();
        let removed = report.removed;
        tracing::warn!(client = %peer.ip(), ?target, removed, ?answered, "admin endpoint: force-unlock");
        // A node that did not answer may still hold a matching grant: the operator must be able to tell.
        let body = json!({ "removed": removed, "answered": answered, "nodes": self.node.nodes() });
        Ok(json_response(StatusCode::OK, &body))
    }
}

/// A node's refusal as an HTTP error.
fn node_error(e: LockError) -> ApiError {
    match e {
        LockError::Invalid(_) => ApiError::bad_request(e.to_string()),
        LockError::Overloaded | LockError::ShutDown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Decodes a query string, allowing only `allowed` keys, each at most once.
fn parse_query(query: Option<&str>, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    let Some(q) = query.filter(|q| !q.is_empty()) else { return Ok(out) };
    for part in q.split('&') {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let (k, v) = (decode(k)?, decode(v)?);
        if !allowed.contains(&k.as_str()) {
            let takes =
                if allowed.is_empty() { "takes no parameters".to_string() } else { format!("takes {allowed:?}") };
            return Err(ApiError::bad_request(format!("unknown query parameter {k:?}: this endpoint {takes}")));
        }
        if v.is_empty() {
            return Err(ApiError::bad_request(format!("query parameter {k:?} is empty")));
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(ApiError::bad_request(format!("query parameter {k:?} is given twice")));
        }
    }
    Ok(out)
}

/// Percent-decodes one query component (`+` is a space); refuses broken escapes and invalid UTF-8.
fn decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| ApiError::bad_request(format!("malformed percent-escape in the query: {s:?}")))?;
                out.push(byte);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("the query is not UTF-8 after decoding"))
}

/// `{"resource": "NAME"}` or `{"owner": N, "uid": U}`, nothing else.
fn parse_force_target(body: &[u8], nodes: usize) -> Result<ForceTarget, ApiError> {
    const FORMS: &str = "expected {\"resource\": \"NAME\"} or {\"owner\": N, \"uid\": U}";
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON ({e}); {FORMS}")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::bad_request(format!("the body is not an object; {FORMS}")));
    };
    if let Some(k) = map.keys().find(|k| !matches!(k.as_str(), "resource" | "owner" | "uid")) {
        return Err(ApiError::bad_request(format!("unknown field {k:?}; {FORMS}")));
    }
    match (map.get("resource"), map.get("owner"), map.get("uid")) {
        (Some(r), None, None) => match r.as_str() {
            Some(name) if !name.is_empty() => Ok(ForceTarget::Resource(name.to_string())),
            _ => Err(ApiError::bad_request("\"resource\" must be a non-empty string")),
        },
        (None, Some(o), Some(u)) => {
            let owner = o
                .as_u64()
                .filter(|&o| (o as usize) < nodes && o < 64)
                .ok_or_else(|| ApiError::bad_request(format!("\"owner\" must be a node index, 0 to {}", nodes - 1)))?;
            let uid = u.as_u64().ok_or_else(|| ApiError::bad_request("\"uid\" must be an unsigned integer"))?;
            Ok(ForceTarget::Uid { owner: owner as usize, uid })
        }
        _ => Err(ApiError::bad_request(format!("give either a resource or an owner and a uid; {FORMS}"))),
    }
}

/// 200 with the peers up when ready, else 503 with the reason.
fn readiness(s: &Status) -> Response<Full<Bytes>> {
    let mut body = json!({ "ready": s.ready, "id": s.id, "nodes": s.nodes, "peers_up": s.peers_up });
    let extra = match &s.serving {
        Serving::Serving if s.ready => json!({ "serving": "serving" }),
        Serving::Serving => json!({
            "serving": "serving",
            "reason": "no_quorum",
            "message": format!("serving, but only {} of {} nodes are connected: too few for a write quorum",
                               s.peers_up.len() + 1, s.nodes),
        }),
        Serving::Bootstrapping { waiting_for } => json!({
            "serving": "bootstrapping",
            "reason": "bootstrapping",
            "waiting_for": waiting_for,
            "message": format!("bootstrapping: waiting for nodes {waiting_for:?} to say whether they are new"),
        }),
        Serving::Quarantined { left, floor_known } => json!({
            "serving": "quarantined",
            "reason": "quarantined",
            "seconds_left": left.as_secs_f64(),
            "floor_known": floor_known,
            "message": format!("quarantined after a restart: {:.1} s left (or less, once every peer answers \
                                its rejoin)", left.as_secs_f64()),
        }),
        Serving::RecoveringFloor { known, unknown, needed } => json!({
            "serving": "recovering_floor",
            "reason": "recovering_floor",
            "known": known,
            "unknown": unknown,
            "needed": needed,
            "message": format!("recovering the fencing floor: {} of {needed} peers told theirs", known.len()),
        }),
        Serving::PersistingFloor => json!({
            "serving": "persisting_floor",
            "reason": "persisting_floor",
            "message": "writing the first durable fencing floor to the state directory",
        }),
        Serving::Stopped => json!({ "serving": "stopped", "reason": "stopped", "message": "the node has stopped" }),
        other => json!({ "serving": "other", "reason": "other", "message": format!("{other:?}") }),
    };
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let status = if s.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json_response(status, &body)
}

/// The holder list as JSON, one object per grant, with the nodes that answered and whether a list was cut
/// (a minority's answer must not pass for the whole cluster's).
fn holders_json(report: &Holders, nodes: usize) -> Value {
    let holders: Vec<Value> = report
        .entries
        .iter()
        .map(|e| {
            json!({
                "resource": e.resource,
                "mode": match e.mode { Mode::Read => "read", Mode::Write => "write" },
                "owner": e.owner,
                "uid": e.uid,
                "token": e.token,
                "age_ms": u64::try_from(e.age.as_millis()).unwrap_or(u64::MAX),
                "granted_by": e.granted_by.iter().collect::<Vec<_>>(),
            })
        })
        .collect();
    let answered: Vec<usize> = report.answered.iter().collect();
    json!({
        "count": holders.len(),
        "holders": holders,
        "answered": answered,
        "nodes": nodes,
        "truncated": report.truncated,
    })
}

/// The Prometheus text exposition (format 0.0.4) of a node's counters and status.
pub fn render_metrics(c: &Counters, s: &Status, transport: Option<TransportStats>) -> String {
    // Destructured in full so that a counter added to the core fails to compile here until it is exported.
    let Counters {
        grants,
        denials,
        quarantined_denials,
        stale_token_denials,
        expirations,
        retries,
        acquired,
        failed,
        lost,
        late_grants_released,
        dead_grants_released,
        rejoins,
        messages_in,
        messages_out,
        invalid_messages,
        stale_replies,
    } = c;
    let counters: [(&str, &str, u64); 16] = [
        ("grants", "Grants this node's locker gave.", *grants),
        ("denials", "Requests this node's locker denied (any reason).", *denials),
        ("quarantined_denials", "Denials because the locker was in its restart quarantine.", *quarantined_denials),
        (
            "stale_token_denials",
            "Denials because a proposed fencing token was not above the mark.",
            *stale_token_denials,
        ),
        ("expirations", "Grants this node's locker expired because they were not refreshed.", *expirations),
        ("retries", "Acquisition attempts after the first, over all locks.", *retries),
        ("acquired", "Locks acquired by this node's applications.", *acquired),
        ("failed", "Acquisitions that failed.", *failed),
        ("lost", "Held locks lost (their holders were told to stop).", *lost),
        (
            "late_grants_released",
            "Grants that arrived for attempts already given up, and were released.",
            *late_grants_released,
        ),
        (
            "dead_grants_released",
            "Grants of this node's earlier incarnations found after a restart, and released.",
            *dead_grants_released,
        ),
        ("rejoins", "Restart quarantines ended early because every peer answered the rejoin.", *rejoins),
        ("messages_in", "Messages handed in by the transport.", *messages_in),
        ("messages_out", "Messages queued for the transport.", *messages_out),
        ("invalid_messages", "Messages ignored: from unknown nodes, or invalid for their context.", *invalid_messages),
        ("stale_replies", "Replies ignored because their round was over.", *stale_replies),
    ];
    let mut out = String::new();
    for (name, help, value) in counters {
        let _ = write!(
            out,
            "# HELP dsync_{name}_total {help}\n# TYPE dsync_{name}_total counter\ndsync_{name}_total {value}\n"
        );
    }
    if let Some(t) = transport {
        let series: [(&str, &str, u64); 4] = [
            ("dropped", "Messages the transport dropped: the peer was down or its queue full.", t.dropped),
            ("rejected", "Connections refused (failed authentication) or cut for a protocol violation.", t.rejected),
            ("writes", "Writes to connections.", t.writes),
            ("frames", "Frames sent or queued.", t.frames),
        ];
        for (name, help, value) in series {
            let _ = write!(
                out,
                "# HELP dsync_transport_{name}_total {help}\n# TYPE dsync_transport_{name}_total counter\n\
                 dsync_transport_{name}_total {value}\n"
            );
        }
    }
    let serving = matches!(s.serving, Serving::Serving);
    let gauges: [(&str, &str, u64); 5] = [
        ("serving", "1 while this node's locker grants locks, else 0.", serving as u64),
        ("ready", "1 while serving with a write quorum of nodes connected, else 0.", s.ready as u64),
        ("peers_up", "Peers with an authenticated connection.", s.peers_up.len() as u64),
        ("nodes", "The cluster size.", s.nodes as u64),
        ("node_id", "This node's index.", s.id as u64),
    ];
    for (name, help, value) in gauges {
        let _ = write!(out, "# HELP dsync_{name} {help}\n# TYPE dsync_{name} gauge\ndsync_{name} {value}\n");
    }
    out
}

/// Which refusals to log: the first from each client address, then at most one a minute per address, with the
/// number left unlogged in between. Remembers a bounded number of addresses.
#[derive(Default)]
struct AuthLog {
    seen: HashMap<IpAddr, (Instant, u64)>,
}

impl AuthLog {
    const EVERY: Duration = Duration::from_secs(60);
    const MAX_ADDRESSES: usize = 1024;

    /// `Some(suppressed)` when this refusal should be logged.
    fn should_log(&mut self, ip: IpAddr, now: Instant) -> Option<u64> {
        if !self.seen.contains_key(&ip) && self.seen.len() >= Self::MAX_ADDRESSES {
            self.seen.retain(|_, (at, _)| now.duration_since(*at) < Self::EVERY);
            if self.seen.len() >= Self::MAX_ADDRESSES {
                return None; // a flood from many addresses: the ones already logged stand for it
            }
        }
        match self.seen.get_mut(&ip) {
            Some((at, suppressed)) if now.duration_since(*at) < Self::EVERY => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let n = std::mem::take(suppressed);
                *at = now;
                Some(n)
            }
            None => {
                self.seen.insert(ip, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded_and_checked() {
        let q = parse_query(Some("resource=a%2Fb+c"), &["resource"]).unwrap();
        assert_eq!(q["resource"], "a/b c");
        assert!(parse_query(None, &[]).unwrap().is_empty());
        for bad in ["owner=1", "resource=a&resource=b", "resource=%zz", "resource=%ff", "resource="] {
            let e = parse_query(Some(bad), &["resource"]).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        assert!(parse_query(Some("x=1"), &[]).unwrap_err().message.contains("takes no parameters"));
    }

    #[test]
    fn force_unlock_bodies_take_one_of_two_forms() {
        assert_eq!(parse_force_target(br#"{"resource":"r"}"#, 3).unwrap(), ForceTarget::Resource("r".into()));
        assert_eq!(parse_force_target(br#"{"owner":2,"uid":7}"#, 3).unwrap(), ForceTarget::Uid { owner: 2, uid: 7 });
        for bad in [
            &b"not json"[..],
            b"[]",
            br#"{}"#,
            br#"{"resource":""}"#,
            br#"{"resource":1}"#,
            br#"{"owner":3,"uid":1}"#,
            br#"{"owner":1}"#,
            br#"{"owner":1,"uid":-1}"#,
            br#"{"resource":"r","owner":1,"uid":1}"#,
            br#"{"resource":"r","force":true}"#,
        ] {
            let e = parse_force_target(bad, 3).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn refusals_are_logged_once_per_address_then_once_a_minute() {
        let mut log = AuthLog::default();
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let t = Instant::now();
        assert_eq!(log.should_log(a, t), Some(0));
        assert_eq!(log.should_log(a, t + Duration::from_secs(1)), None);
        assert_eq!(log.should_log(a, t + Duration::from_secs(2)), None);
        assert_eq!(log.should_log(b, t + Duration::from_secs(2)), Some(0));
        assert_eq!(log.should_log(a, t + Duration::from_secs(61)), Some(2));
        // Many addresses: memory stays bounded and nothing panics.
        for i in 0..5000u32 {
            log.should_log(IpAddr::from(i.to_be_bytes()), t + Duration::from_secs(62));
        }
        assert!(log.seen.len() <= AuthLog::MAX_ADDRESSES);
    }

    #[test]
    fn a_public_address_needs_a_token_file() {
        assert!(check_exposure("127.0.0.1:9000".parse().unwrap(), false).is_ok());
        assert!(check_exposure("[::1]:9000".parse().unwrap(), false).is_ok());
        let e = check_exposure("0.0.0.0:9000".parse().unwrap(), false).unwrap_err();
        assert!(e.contains("--admin-token-file"), "{e}");
        assert!(check_exposure("0.0.0.0:9000".parse().unwrap(), true).is_ok());
    }

    #[test]
    fn every_counter_is_exported_with_help_and_type() {
        let c = Counters { acquired: 5, lost: 1, ..Counters::default() };
        // A Status cannot be built outside dsync-tokio; the gauges are checked by tests/admin.rs.
        let text = render_counters_only(&c);
        assert!(text.contains("# TYPE dsync_acquired_total counter\ndsync_acquired_total 5\n"), "{text}");
        assert!(text.contains("dsync_lost_total 1\n"), "{text}");
        assert_eq!(text.matches("# HELP ").count(), 16);
    }

    fn render_counters_only(c: &Counters) -> String {
        let full = render_metrics(c, &fake_status(), None);
        full.split("# HELP dsync_serving ").next().unwrap().to_string()
    }

    #[test]
    fn transport_counters_are_exported_when_the_transport_keeps_them() {
        let t = TransportStats { dropped: 3, rejected: 2, writes: 9, frames: 11 };
        let text = render_metrics(&Counters::default(), &fake_status(), Some(t));
        assert!(
            text.contains("# TYPE dsync_transport_dropped_total counter\ndsync_transport_dropped_total 3\n"),
            "{text}"
        );
        assert!(text.contains("dsync_transport_rejected_total 2\n"), "{text}");
        assert!(!render_metrics(&Counters::default(), &fake_status(), None).contains("dsync_transport_"));
    }

    /// A real status snapshot from a node that has not started serving.
    fn fake_status() -> Status {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let peers = vec![l.local_addr().unwrap(), "127.0.0.1:1".parse().unwrap()];
            let node =
                dsync_tokio::NodeBuilder::new(peers, 0).secret("s").bootstrap().listener(l).start_tcp().await.unwrap();
            let s = node.status();
            node.shutdown().await;
            s
        })
    }
}
