//! The bench's workload on Redlock (the `rslock` crate): `n` clients, each with its own lock manager talking to
//! all `n` Redis servers, each running `loops` closed loops that lock and unlock their own resource (or, hot,
//! all one resource). Like the dsync bench, every client is a thread with a single-threaded tokio runtime.

use crate::hist::Hist;
use rslock::{LockError, LockManager};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How to run the Redlock workload.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Loops per client.
    pub loops: usize,
    /// Measured seconds (after the warm-up).
    pub seconds: f64,
    /// Unmeasured seconds first.
    pub warmup: f64,
    /// All loops on one resource.
    pub hot: bool,
    /// The lock's TTL (Redis key expiry).
    pub ttl: Duration,
    /// After a failed attempt, wait a uniformly random time below this before the next one.
    pub retry_delay: Duration,
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Locks acquired in the measured window.
    pub locks: u64,
    /// The measured window, seconds.
    pub elapsed: f64,
    /// Acquire latency (first attempt → quorum held, retries included).
    pub acquire: Hist,
    /// Release (any client's) → next holder acquired.
    pub handoff: Hist,
    /// Longest single wait, ns.
    pub max_wait_ns: u64,
    /// Attempts that did not reach a quorum (each followed by a retry).
    pub failed_attempts: u64,
}

#[derive(Default)]
struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    ready: AtomicU64,
    /// Last release by any client, ns since `epoch` (0: none yet).
    last_release: AtomicU64,
    out: Mutex<Outcome>,
}

/// Runs the workload against `servers` with one client per server; blocks for warm-up + `seconds`.
pub fn run(servers: &[SocketAddr], s: &Settings) -> Result<Outcome, String> {
    let uris: Vec<String> = servers.iter().map(|a| format!("redis://{a}/")).collect();
    let shared = Arc::new(Shared::default());
    let epoch = Instant::now();
    let mut threads = Vec::new();
    for client in 0..servers.len() {
        let (uris, s, shared) = (uris.clone(), s.clone(), shared.clone());
        threads.push(std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            rt.block_on(client_main(client, uris, s, shared, epoch))
        }));
    }
    let n = servers.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while shared.ready.load(Ordering::SeqCst) < n {
        if Instant::now() > deadline || threads.iter().any(|t| t.is_finished()) {
            shared.stop.store(true, Ordering::SeqCst);
            let errors = join(threads);
            return Err(format!("Redlock clients did not connect within 30 s: {errors}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_secs_f64(s.warmup));
    shared.measuring.store(true, Ordering::SeqCst);
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(s.seconds));
    shared.measuring.store(false, Ordering::SeqCst);
    let elapsed = began.elapsed().as_secs_f64();
    shared.stop.store(true, Ordering::SeqCst);
    let errors = join(threads);
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut out = std::mem::take(&mut *shared.out.lock().unwrap());
    out.elapsed = elapsed;
    Ok(out)
}

fn join(threads: Vec<std::thread::JoinHandle<Result<(), String>>>) -> String {
    let errors: Vec<String> = threads
        .into_iter()
        .filter_map(|t| match t.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("a client thread panicked".into()),
        })
        .collect();
    errors.join("; ")
}

async fn client_main(
    client: usize,
    uris: Vec<String>,
    s: Settings,
    shared: Arc<Shared>,
    epoch: Instant,
) -> Result<(), String> {
    let mut manager = LockManager::new(uris);
    // One attempt per `lock()` call: the loop below retries itself, so failed attempts can be counted.
    manager.set_retry(1, Duration::from_millis(1));
    // Opens the connections to every server before the clock starts.
    let warm = format!("ready-{client}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match manager.lock(warm.as_str(), s.ttl).await {
            Ok(lock) => {
                manager.unlock(&lock).await;
                break;
            }
            Err(e) if Instant::now() > deadline => return Err(format!("client {client}: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    shared.ready.fetch_add(1, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for l in 0..s.loops {
        let name = if s.hot { "hot".to_string() } else { format!("client{client}-loop{l}") };
        let (manager, s, shared) = (manager.clone(), s.clone(), shared.clone());
        tasks.push(tokio::spawn(async move { lock_loop(&manager, &name, &s, &shared, epoch).await }));
    }
    let mut result = Ok(());
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(format!("client {client}: {e}")),
            Err(e) => result = Err(format!("client {client}: {e}")),
        }
    }
    result
}

async fn lock_loop(
    m: &LockManager,
    name: &str,
    s: &Settings,
    shared: &Shared,
    epoch: Instant,
) -> Result<(), LockError> {
    let mut rng = Rng::new();
    let (mut acquire, mut handoff) = (Hist::default(), Hist::default());
    let (mut locks, mut failed, mut max_wait) = (0u64, 0u64, 0u64);
    'outer: while !shared.stop.load(Ordering::Relaxed) {
        let asked = Instant::now();
        let lock = loop {
            match m.lock(name, s.ttl).await {
                Ok(lock) => break lock,
                Err(e @ (LockError::TtlTooLarge | LockError::Io(_))) => return Err(e),
                Err(_) => {
                    if shared.measuring.load(Ordering::Relaxed) {
                        failed += 1;
                    }
                    if shared.stop.load(Ordering::Relaxed) {
                        break 'outer;
                    }
                    tokio::time::sleep(rng.below(s.retry_delay)).await;
                }
            }
        };
        let got = Instant::now();
        if shared.measuring.load(Ordering::Relaxed) {
            let wait = (got - asked).as_nanos() as u64;
            acquire.record(wait);
            locks += 1;
            max_wait = max_wait.max(wait);
            let rel = shared.last_release.load(Ordering::Relaxed);
            let now_ns = (got - epoch).as_nanos() as u64;
            if s.hot && rel != 0 && rel <= now_ns {
                handoff.record(now_ns - rel);
            }
        }
        // The hand-off clock starts when the holder lets go, as the bench's does at its guard's drop; rslock
        // then releases by a round trip to every server, awaited as its docs ask (a dropped lock would stay
        // until its TTL expires).
        shared.last_release.store((Instant::now() - epoch).as_nanos() as u64, Ordering::Relaxed);
        m.unlock(&lock).await;
    }
    let mut out = shared.out.lock().unwrap();
    out.locks += locks;
    out.failed_attempts += failed;
    out.max_wait_ns = out.max_wait_ns.max(max_wait);
    out.acquire.merge(&acquire);
    out.handoff.merge(&handoff);
    Ok(())
}

/// Retry jitter only, so any seed will do.
struct Rng(dsync_tokio::core::rng::SplitMix64);

impl Rng {
    fn new() -> Self {
        Rng(dsync_tokio::core::rng::SplitMix64::new(getrandom::u64().unwrap_or(0)))
    }

    /// Uniform in `[0, limit)` (zero for a zero limit).
    fn below(&mut self, limit: Duration) -> Duration {
        let r = self.0.next_u64();
        let nanos = limit.as_nanos() as u64;
        Duration::from_nanos(if nanos == 0 { 0 } else { r % nanos })
    }
}
