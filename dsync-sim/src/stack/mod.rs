//! The real dsync-tokio stack in deterministic virtual time (`dsync-sim stack`).
//!
//! Where the rest of this crate simulates the *protocol* (`dsync-core` state machines), this module runs
//! *the library*: `n` real dsync-tokio nodes — driver task, handle book, connection engine, the TCP link with
//! its HMAC handshake, the state directory with its durable fencing floor — in one process under
//! [turmoil](https://docs.rs/turmoil), which gives each node a host with its own virtual clock, simulated
//! TCP and file system, and runs them all on one thread, step by step, from one seed. Application tasks on
//! every host take locks through the public API (`lock()`, `try_lock_for`, `timeout(lock())`, `try_lock`,
//! read locks) and write to a fenced register outside the hosts; the crate's checkers ([`crate::check`])
//! judge what they did in true time.
//!
//! # A run
//!
//! 1. **Plan** ([`plan`]): the seed picks the fault mix and the workload's shape, then the faults — two-way
//!    partitions (TCP segments held, delivered on repair), one-way partitions (segments dropped; the
//!    connections reset on repair, modelling the TCP user timeout), connection resets, latency changes,
//!    crashes with the state directory kept or wiped, crash waves of a majority or the whole cluster, and
//!    GC-like pauses of applications holding a lock (past the lease or not); and, in some seeds, an
//!    administrator's force-unlocks of held resources ([`force`]).
//! 2. **Fault phase** (`0..heal_at`): turmoil steps 1 ms at a time; between steps the harness applies the
//!    faults that are due ([`faults`]). Each host runs [`app::workload`] tasks.
//! 3. **Heal** (`heal_at`): every partition is repaired, crashed hosts restart (state kept), the workload
//!    stops taking new locks.
//! 4. **Probes** (`heal_at + 2 leases + 1 s`): every node `lock()`s every resource in turn; each must get
//!    it before a generous deadline ([`app::probes`]).
//! 5. **Quiescence**: once every probe resolved and every guard was released, two leases pass, then every
//!    node asks `holders(None)`: it must be empty ([`app::query`]).
//! 6. **Checks** ([`checks`]): exclusion over belief intervals, token order, the fenced register, liveness
//!    (probes, every `lock()` call resolved, every query answered), leaks, and the revocation of
//!    force-unlocked holds in quiet windows.
//!
//! The result is the crate's [`crate::Report`], so the verdict and the command line's output are
//! the same as `dsync-sim run`'s. `events` counts the records hashed into the trace (attempts, grants,
//! writes, losses, releases, faults, starts and crashes), not turmoil steps.
//!
//! # Your own scenario
//!
//! [`Scenario`] runs your application code on every node instead of the random workload (or beside it), with
//! the plan's faults or none, and gives back the same report:
//!
//! ```
//! use dsync_sim::stack::{Scenario, StackOptions};
//!
//! let report = Scenario::new(StackOptions { nodes: 3, ..StackOptions::default() }, 7)
//!     .calm() // no faults, no random workload: only the application below
//!     .app(|ctx| async move {
//!         // Runs on every node: take "x", write to the fenced register, release.
//!         for _ in 0..3 {
//!             let guard = ctx.node().mutex(["x"]).lock().await.expect("lock");
//!             let held = ctx.hold(guard, &["x"]); // the checkers now know this node believes it holds "x"
//!             assert!(held.write(), "a valid holder's fenced write is accepted");
//!             held.work(std::time::Duration::from_millis(50)).await; // cut short if the lease is lost
//!             held.release().await;
//!         }
//!     })
//!     .run();
//! assert!(report.violations.is_empty(), "{:?}", report.violations);
//! assert!(report.stats.writes_accepted >= 9);
//! ```

pub mod app;
mod catch;
pub mod checks;
pub mod disk;
pub mod faults;
pub mod force;
pub mod net;
pub mod plan;
pub mod race;
pub mod record;
pub mod register;
pub mod reorder;
mod scenario;
pub mod sockets;

pub use dsync_tokio::PlantedBug;
pub use scenario::{Held, Scenario, ScenarioCtx};

use crate::rng::mix64;
use crate::{Kind, Report, Stats};
use app::{now, AppCtx};
use catch::Caught;
use dsync_tokio::engine::Engine;
use dsync_tokio::tcp::{cluster_id, TcpConfig, TcpLink};
use dsync_tokio::{Entropy, Node, NodeBuilder};
use faults::{host, Faults};
use net::{Resets, SimNet};
use plan::{Plan, LEASE, S};
use record::Recorder;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to run a seed of the stack simulator.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Cluster size, 1 to [`plan::MAX_NODES`] = 16 (clamped: turmoil steps every host every millisecond).
    pub nodes: usize,
    /// A planted bug of dsync-tokio to switch on in every node.
    pub planted_bug: Option<PlantedBug>,
    /// A planted bug of the protocol (dsync-core's) to switch on in every node, so a protocol mistake can be
    /// shown to reach the application through the whole stack.
    pub core_bug: Option<dsync_core::PlantedBug>,
    /// Keep the event log.
    pub log: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions { nodes: 3, planted_bug: None, core_bug: None, log: false }
    }
}

/// The nodes' acquisition attempt timeout (bounded calls are judged against it).
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(300);

/// The port every node listens on.
pub const PORT: u16 = 7000;

/// Runs one seed: plan, simulation, checkers.
pub fn run_stack_seed(seed: u64, opts: &StackOptions) -> Report {
    Scenario::new(opts.clone(), seed).run()
}

/// The plan a seed chooses (what `stack-replay` prints).
pub fn plan_for(seed: u64, opts: &StackOptions) -> Plan {
    plan::generate(seed, opts.nodes)
}

/// Application code a [`Scenario`] runs on every node start.
pub(crate) type AppFn = Rc<dyn Fn(ScenarioCtx) -> Pin<Box<dyn Future<Output = ()>>>>;

/// What every host's software needs; cloned into each start.
#[derive(Clone)]
pub(crate) struct HostEnv {
    pub(crate) seed: u64,
    pub(crate) plan: Arc<Plan>,
    pub(crate) rec: Recorder,
    pub(crate) resets: Resets,
    pub(crate) stalls: reorder::Stalls,
    pub(crate) tables: Vec<sockets::SocketTable>,
    pub(crate) wipes: Arc<Mutex<Vec<u32>>>,
    pub(crate) bug: Option<PlantedBug>,
    pub(crate) core_bug: Option<dsync_core::PlantedBug>,
    pub(crate) workload: bool,
    pub(crate) apps: Vec<AppFn>,
    pub(crate) times: Times,
}

/// The end phases' true times.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Times {
    pub(crate) heal_at: u64,
    pub(crate) probe_at: u64,
    pub(crate) deadline: u64,
    /// Quiet time between quiescence and the holder query.
    pub(crate) settle: u64,
    /// The run stops here whatever happened.
    pub(crate) hard_end: u64,
}

impl Times {
    pub(crate) fn for_plan(p: &Plan) -> Times {
        let probe_at = p.heal_at + 2 * LEASE + S;
        let deadline = probe_at + 40 * S;
        let settle = 2 * LEASE * 101 / 100 + S;
        Times { heal_at: p.heal_at, probe_at, deadline, settle, hard_end: deadline + settle + 10 * S }
    }
}

/// The dsync configuration every node runs with: a 2 s lease so a run sees many expiries and refreshes,
/// and a fencing floor reserved 4 tokens ahead, so floors are written (and fsynced) often.
fn configure(c: &mut dsync_core::Config) {
    c.lease = Duration::from_nanos(LEASE);
    c.refresh_interval = Duration::from_millis(500);
    c.attempt_timeout = ATTEMPT_TIMEOUT;
    c.query_timeout = Duration::from_millis(500);
    c.backoff_min = Duration::from_millis(5);
    c.backoff_max = Duration::from_millis(200);
    c.floor_chunk = 4;
}

/// Starts node `i` (incarnation `inc`) on this host: the TCP link over [`SimNet`], the node over it.
async fn start_node(env: &HostEnv, i: usize, inc: u32, dir: &str) -> Result<Node, String> {
    let n = env.plan.nodes;
    let listener = turmoil::net::TcpListener::bind((IpAddr::from(Ipv4Addr::UNSPECIFIED), PORT))
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let peers: Vec<SocketAddr> = (0..n).map(|j| SocketAddr::new(turmoil::lookup(host(j)), PORT)).collect();
    let entropy = Entropy::insecure_seeded(mix64(env.seed ^ mix64(((i as u64) << 32) | inc as u64)));
    let secret: Arc<[u8]> = Arc::from(&b"dsync-sim stack secret"[..]);
    let mut cfg = TcpConfig::new(peers.clone(), i, cluster_id("sim"), secret.clone());
    cfg.entropy = entropy.clone();
    let local = peers[i];
    let transport = Engine::<TcpLink<SimNet>>::start_on(
        cfg,
        SimNet::new(env.resets.clone(), env.tables[i].clone()),
        listener,
        local,
    )
    .map_err(|e| format!("transport: {e}"))?;
    let transport = env.stalls.wrap(i, transport);
    NodeBuilder::new(peers, i)
        .secret(&secret[..])
        .cluster_name("sim")
        .disk(Arc::new(disk::SimDisk))
        .state_dir(dir)
        .entropy(entropy)
        .planted_bug(env.bug)
        .configure(|c| {
            configure(c);
            c.planted_bug = env.core_bug;
        })
        .start_with(transport, Some(local))
        .map_err(|e| e.to_string())
}

/// Host `i`'s software: turmoil calls it at the first start and after every bounce.
pub(crate) async fn host_main(env: HostEnv, i: usize) -> turmoil::Result {
    let inc = env.rec.started(i, now());
    let wiped = env.wipes.lock().unwrap_or_else(|e| e.into_inner())[i];
    let dir = if wiped == 0 { "/state".to_string() } else { format!("/state-wiped-{wiped}") };
    // The host keeps its node until it crashes: a node whose last handle drops shuts down gracefully, and
    // that is neither a crash nor something the run plans.
    let mut keep = None;
    match start_node(&env, i, inc, &dir).await {
        Ok(node) => {
            keep = Some(node.clone());
            let ctx = AppCtx { node, id: i, inc, rec: env.rec.clone(), plan: env.plan.clone(), seed: env.seed };
            // Every task runs under `Caught`: turmoil's hosts swallow a spawned task's panic.
            let spawn = |fut: Pin<Box<dyn Future<Output = ()>>>, what: String, kind| {
                tokio::task::spawn_local(Caught::new(fut, env.rec.clone(), what, kind));
            };
            if env.workload {
                for a in 0..env.plan.apps {
                    let what = format!("node {i}'s workload task {a}");
                    spawn(Box::pin(app::workload(ctx.clone(), a)), what, Kind::Liveness);
                }
                let t = now();
                for race in env.plan.races.iter().filter(|r| r.victim == i || r.contender == i) {
                    let at = if race.victim == i { race.ask_at } else { race.contend_at };
                    if at > t {
                        let what = format!("node {i}'s part in the rejoin race on {}", race.resource);
                        spawn(Box::pin(race::run(ctx.clone(), race.clone())), what, Kind::Liveness);
                    }
                }
                for &(at, _) in env.plan.forces.iter().filter(|&&(at, admin)| admin == i && at > t) {
                    let what = format!("node {i}'s administrator");
                    spawn(Box::pin(force::admin(ctx.clone(), at)), what, Kind::Liveness);
                }
            }
            for (k, f) in env.apps.iter().enumerate() {
                let sc = ScenarioCtx { app: ctx.clone(), index: k };
                spawn(f(sc), format!("application {k} on node {i} (incarnation {inc})"), Kind::Application);
            }
            let probing = env.workload || !env.apps.is_empty();
            if probing {
                let probes = app::probes(ctx.clone(), env.times.probe_at, env.times.deadline);
                spawn(Box::pin(probes), format!("node {i}'s liveness probes"), Kind::Liveness);
            }
            let expected = if probing { env.plan.nodes * env.plan.resources } else { 0 };
            tokio::task::spawn_local(quiesce_then_query(ctx, env.times, expected));
        }
        Err(e) => env.rec.violation(
            crate::Kind::Liveness,
            now(),
            format!("node {i} (incarnation {inc}) failed to start: {e}"),
        ),
    }
    std::future::pending::<()>().await;
    drop(keep);
    Ok(())
}

/// Waits until every probe resolved, every guard was let go and every `lock()` call returned (or the
/// probes' deadline passed), then two leases, then runs the holder query.
async fn quiesce_then_query(ctx: AppCtx, t: Times, expected_probes: usize) {
    app::sleep_until(t.probe_at).await;
    loop {
        let quiet = {
            let r = ctx.rec.lock();
            r.probes.iter().all(|p| p.resolved.is_some())
                && r.probes.len() >= expected_probes
                && r.holds.iter().all(|h| h.end.is_some())
                && r.calls.iter().all(|c| c.resolved.is_some() || c.crashed)
        };
        if quiet || now() >= t.deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_nanos(t.settle)).await;
    app::query(ctx, now()).await;
}

/// Builds the turmoil simulation for `plan`.
pub(crate) fn build_sim<'a>(seed: u64, plan: &Plan, t: &Times) -> turmoil::Sim<'a> {
    let mut b = turmoil::Builder::new();
    b.rng_seed(seed)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_nanos(plan.latency.0))
        .max_message_latency(Duration::from_nanos(plan.latency.1))
        // Turmoil panics when a socket's receive buffer (counted in segments) overflows; a node queues up to
        // 4 MiB per peer and writes it in one go, so the buffer must hold far more segments than a held link
        // accumulates in a partition (the default, 64, does not).
        .tcp_capacity(1 << 16)
        .simulation_duration(Duration::from_nanos(t.hard_end + 10 * S));
    // Some unsynced writes become durable by themselves, as with an OS writeback: a correct fsync path is
    // unaffected, one that skips fsyncs leaves an *older* floor behind after a crash.
    b.fs().sync_probability(plan.sync_probability);
    b.build()
}

/// Steps `sim` to the end of the run, applying faults; returns the true time it stopped.
pub(crate) fn drive(sim: &mut turmoil::Sim<'_>, faults: &mut Faults, rec: &Recorder, t: &Times) -> u64 {
    let mut healed = false;
    loop {
        let now = sim.elapsed().as_nanos() as u64;
        if !healed && now >= t.heal_at {
            faults.heal(sim, now, rec);
            healed = true;
        } else if !healed {
            faults.apply_due(sim, now, rec);
        }
        if now >= t.hard_end || (now >= t.probe_at && rec.lock().queries.iter().all(Option::is_some)) {
            return now;
        }
        if let Err(e) = sim.step() {
            rec.violation(crate::Kind::Liveness, now, format!("the simulation stopped: {e}"));
            return now;
        }
    }
}

/// The report of a finished run.
pub(crate) fn report(seed: u64, plan: &Plan, rec: &Recorder, end: u64) -> Report {
    let nodes = plan.nodes;
    let violations = checks::run(&rec.lock(), plan, end);
    let r = rec.lock();
    let (writes_accepted, writes_rejected) = r.store.totals();
    let stats = Stats {
        acquired: r.holds.len() as u64,
        lost: r.holds.iter().filter(|h| h.lost_at.is_some()).count() as u64,
        writes_accepted,
        writes_rejected,
        crashes: r.incarnation.iter().map(|(inc, _)| *inc as u64).sum(),
        ..Stats::default()
    };
    let events = r.events;
    drop(r);
    Report { seed, nodes, events, hash: rec.hash(), violations, stats, log: rec.log(), clocks_beyond_bound: false }
}
