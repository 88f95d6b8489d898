//! [`Scenario`]: your own application code on the real stack, under the seed's faults or none, judged by
//! the same checkers.

use super::app::{self, AppCtx};
use super::faults::{host, links, Faults};
use super::net::Resets;
use super::plan::{Fault, Plan, S};
use super::record::Recorder;
use super::reorder::Stalls;
use super::sockets::SocketTable;
use super::{build_sim, drive, host_main, report, AppFn, HostEnv, StackOptions, Times};
use crate::FaultError;
use crate::Report;
use dsync_tokio::{Guard, Node};
use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A stack run to configure: the seed's plan (faults and random workload), optionally replaced or joined by
/// your own application code.
pub struct Scenario {
    opts: StackOptions,
    seed: u64,
    plan: Plan,
    workload: bool,
    apps: Vec<AppFn>,
}

impl Scenario {
    /// The seed's plan for `opts.nodes` nodes (1 to 16), with the random workload.
    pub fn new(opts: StackOptions, seed: u64) -> Self {
        let plan = super::plan_for(seed, &opts);
        Scenario { opts, seed, plan, workload: true, apps: Vec::new() }
    }

    /// No faults and no random workload: only the applications added with [`Scenario::app`]; the end
    /// phases (probes, quiescence, holder query) start 3 s in.
    pub fn calm(mut self) -> Self {
        self.plan.faults.clear();
        self.plan.forces.clear();
        self.plan.races.clear();
        self.plan.heal_at = 3 * S;
        self.workload = false;
        self
    }

    /// Keeps the seed's faults but not its random workload.
    pub fn without_workload(mut self) -> Self {
        self.workload = false;
        self
    }

    /// Moves the heal time to `at` (at least 1 s): faults at or after it are dropped, and the end phases
    /// follow it.
    pub fn heal_at(mut self, at: Duration) -> Self {
        let at = (at.as_nanos() as u64).max(S);
        self.plan.heal_at = at;
        self.plan.faults.retain(|(t, _)| *t < at);
        self.plan.forces.retain(|(t, _)| *t < at);
        self.plan.races.retain(|r| r.contend_at < at);
        self
    }

    /// Adds a fault at true time `at`. Refused if it lands at or after the heal time, or names a node
    /// outside the cluster; its own end (`until`, `restart`) may be later — healing ends it then. Refused too
    /// if it is a partition ([`Fault::Hold`], [`Fault::HoldLinks`], [`Fault::OneWay`]) that cuts a link
    /// another partition cuts at the same time (turmoil does not combine them on one link).
    pub fn fault(mut self, at: Duration, fault: Fault) -> Result<Self, FaultError> {
        let at = at.as_nanos() as u64;
        let heal_at = self.plan.heal_at;
        if at >= heal_at {
            return Err(FaultError::AfterHeal { at, heal_at });
        }
        let nodes = self.plan.nodes;
        let bad_mask =
            |m: u64| (m >> nodes != 0).then(|| FaultError::NoSuchNode { node: 63 - m.leading_zeros() as usize, nodes });
        let err = match &fault {
            Fault::Hold { side: m, .. } | Fault::OneWay { from: m, .. } | Fault::Crash { nodes: m, .. } => bad_mask(*m),
            Fault::Reset { a, b } => {
                [*a, *b].into_iter().find(|&x| x >= nodes).map(|node| FaultError::NoSuchNode { node, nodes })
            }
            Fault::Latency { .. } => None,
            Fault::HoldLinks { node, peers, .. } => {
                (*node >= nodes).then_some(FaultError::NoSuchNode { node: *node, nodes }).or(bad_mask(*peers))
            }
            Fault::Stall { node, from, .. } => {
                [*node, *from].into_iter().find(|&x| x >= nodes).map(|node| FaultError::NoSuchNode { node, nodes })
            }
        };
        if let Some(e) = err {
            return Err(e);
        }
        if let Some((cut, until)) = cut_links(&fault, nodes) {
            for (other, f) in &self.plan.faults {
                let Some((links, other_until)) = cut_links(f, nodes) else { continue };
                if at < other_until && *other < until {
                    if let Some(&link) = cut.iter().find(|l| links.contains(l)) {
                        return Err(FaultError::Overlap { at, other: *other, link });
                    }
                }
            }
        }
        let pos = self.plan.faults.iter().position(|(t, _)| *t > at).unwrap_or(self.plan.faults.len());
        self.plan.faults.insert(pos, (at, fault));
        Ok(self)
    }

    /// Adds application code: `f` runs on every node at every start (again after a restart), as a task of
    /// that host, so it dies with the host.
    pub fn app<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(ScenarioCtx) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.apps.push(Rc::new(move |ctx| Box::pin(f(ctx))));
        self
    }

    /// The plan this scenario runs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Runs to the end and checks.
    pub fn run(self) -> Report {
        let Scenario { opts, seed, plan, workload, apps } = self;
        let n = plan.nodes;
        let times = Times::for_plan(&plan);
        let rec = Recorder::new(n, opts.log);
        for i in 0..plan.resources {
            rec.resource(&format!("r{i}"));
        }
        let resets = Resets::default();
        let stalls = Stalls::new(n);
        let tables: Vec<SocketTable> = (0..n).map(|_| SocketTable::default()).collect();
        let wipes = Arc::new(Mutex::new(vec![0u32; n]));
        let plan = Arc::new(plan);
        let mut sim = build_sim(seed, &plan, &times);
        let env = HostEnv {
            seed,
            plan: plan.clone(),
            rec: rec.clone(),
            resets: resets.clone(),
            stalls: stalls.clone(),
            tables: tables.clone(),
            wipes: wipes.clone(),
            bug: opts.planted_bug,
            core_bug: opts.core_bug,
            workload,
            apps,
            times,
        };
        for i in 0..n {
            let env = env.clone();
            sim.host(host(i), move || host_main(env.clone(), i));
        }
        let mut faults = Faults::new(&plan, &sim, resets, stalls, tables, wipes);
        let end = drive(&mut sim, &mut faults, &rec, &times);
        // Dropping the simulation drops every host's tasks inside turmoil's world.
        drop(sim);
        report(seed, &plan, &rec, end)
    }
}

/// The links a partition cuts (each as `(low, high)`) and when it ends; `None` for other faults.
fn cut_links(f: &Fault, nodes: usize) -> Option<(Vec<(usize, usize)>, u64)> {
    let all = (1u64 << nodes) - 1;
    let ((from, to), until) = match *f {
        Fault::Hold { side, until } => ((side, all & !side), until),
        Fault::OneWay { from, until } => ((from, all & !from), until),
        Fault::HoldLinks { node, peers, until } => ((1 << node, peers), until),
        _ => return None,
    };
    Some((links(from, to, nodes).map(|(a, b)| (a.min(b), a.max(b))).collect(), until))
}

/// What your application code gets on each node start.
#[derive(Clone)]
pub struct ScenarioCtx {
    pub(crate) app: AppCtx,
    pub(crate) index: usize,
}

impl ScenarioCtx {
    /// This node's handle (the public dsync-tokio API).
    pub fn node(&self) -> &Node {
        &self.app.node
    }

    /// This node's index.
    pub fn id(&self) -> usize {
        self.app.id
    }

    /// This node's incarnation (0 at the first start, +1 per restart).
    pub fn incarnation(&self) -> u32 {
        self.app.inc
    }

    /// True time, ns.
    pub fn now(&self) -> u64 {
        app::now()
    }

    /// Force-unlocks `resource` from this node (`Node::force_unlock_report`), telling the checkers: the
    /// holds it voids leave the exclusion and register checks from then on, and a voided holder must learn
    /// `lost()` promptly when the network is quiet (see [`super::force`]). Calling the node's own
    /// `force_unlock` instead would look like two holders to the checkers.
    pub async fn force_unlock(&self, resource: &str) -> Result<dsync_tokio::ForceReport, dsync_tokio::LockError> {
        let res = self.app.rec.resource(resource);
        super::force::issue(&self.app, res).await
    }

    /// Starts recording a hold of `guard` over `resources` (the names it was taken for): the belief interval
    /// begins now and ends at [`Held::release`], at `lost()`, or when the host crashes.
    pub fn hold(&self, guard: Guard, resources: &[&str]) -> Held {
        let res: Vec<String> = resources.iter().map(|s| s.to_string()).collect();
        let h = app::begin(&self.app, 1000 + self.index, &guard, &res, guard.mode());
        Held { ctx: self.app.clone(), app: 1000 + self.index, h, guard: Some(guard) }
    }
}

/// A guard whose hold the checkers know about; see [`ScenarioCtx::hold`]. Dropping it ends the belief and
/// drops the guard (dsync releases it in the background), as dropping a `Guard` does; [`Held::release`]
/// releases it explicitly and waits for the confirmations.
pub struct Held {
    ctx: AppCtx,
    app: usize,
    h: usize,
    /// `None` once released.
    guard: Option<Guard>,
}

impl Held {
    /// The guard.
    pub fn guard(&self) -> &Guard {
        self.guard.as_ref().expect("a Held always has its guard until it is consumed")
    }

    /// Writes the guard's fencing token to the fenced register of every resource held; whether every write
    /// was accepted. A rejection while `lost()` has not resolved is a violation.
    pub fn write(&self) -> bool {
        register_write(&self.ctx, self.h)
    }

    /// Works for `d` unless the lease is lost first; returns whether it was lost (the belief ends then).
    pub async fn work(&self, d: Duration) -> bool {
        let frozen = Cell::new(false);
        app::watch_lost(&self.ctx, self.app, self.h, self.guard(), &frozen, tokio::time::sleep(d)).await;
        self.guard().is_lost()
    }

    /// A GC-like pause of `d`: the application cannot react to `lost()` meanwhile.
    pub async fn freeze(&self, d: Duration) {
        let frozen = Cell::new(true);
        app::watch_lost(&self.ctx, self.app, self.h, self.guard(), &frozen, tokio::time::sleep(d)).await;
    }

    /// Ends the hold and releases the lock (waiting for the confirmations; a failed release is a violation).
    pub async fn release(mut self) {
        if let Some(guard) = self.guard.take() {
            app::end(&self.ctx, self.app, self.h, guard, true).await;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            app::end_by_drop(&self.ctx, self.app, self.h, guard);
        }
    }
}

fn register_write(ctx: &AppCtx, h: usize) -> bool {
    super::register::write(&ctx.rec, h, app::now())
}
