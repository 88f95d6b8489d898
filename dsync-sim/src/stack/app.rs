//! The application tasks on each host: the random workload of the fault phase, the liveness probes after
//! healing, and the holder query at the end. They use only dsync-tokio's public API, and record what they
//! believed, in true time, for the checkers.
//!
//! A hold's *belief interval* is `[acquired, min(end, lost))`: from the moment `lock()` (or a variant)
//! returned the guard until the application let it go, or `guard.lost()` resolved, or the host crashed.
//! While holding, the critical section races `guard.lost()` — except during a GC-like pause, when the
//! application is frozen and cannot react: it then writes with its old token after the pause, and the fenced
//! register must reject it if the lease was lost meanwhile.

use super::plan::{Plan, MS, S};
use super::record::{Hold, Recorder};
use super::register;
use super::ATTEMPT_TIMEOUT;
use crate::check::liveness::Probe;
use crate::rng::Rng;
use crate::Kind;
use dsync_core::Mode;
use dsync_tokio::{Guard, LockError, Node};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

/// One acquisition attempt at most (the nodes' `attempt_timeout`).
const ATTEMPT: Duration = ATTEMPT_TIMEOUT;
/// What a bounded call may take beyond its bound: scheduling and message latency, generously.
const CALL_SLACK: Duration = Duration::from_secs(1);
/// An explicit `release()` waits for confirmations for at most one attempt's time.
const RELEASE_BOUND: Duration = Duration::from_millis(ATTEMPT.as_millis() as u64 + CALL_SLACK.as_millis() as u64);

/// True time inside a host, ns.
pub fn now() -> u64 {
    turmoil::sim_elapsed().map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Sleeps until true time `t` (at once if it has passed).
pub async fn sleep_until(t: u64) {
    let n = now();
    if t > n {
        tokio::time::sleep(Duration::from_nanos(t - n)).await;
    }
}

/// What an application task of one host incarnation knows.
#[derive(Clone)]
pub struct AppCtx {
    /// The node's handle.
    pub node: Node,
    /// The node's index.
    pub id: usize,
    /// Its incarnation.
    pub inc: u32,
    /// The run's record.
    pub rec: Recorder,
    /// The seed's plan.
    pub plan: Arc<Plan>,
    /// The run's seed.
    pub seed: u64,
}

/// How an attempt asks.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Style {
    Lock,
    TryFor(Duration),
    Timeout(Duration),
    Try,
}

/// One application task of the fault phase: attempts, holds, writes, until `heal_at`.
pub async fn workload(ctx: AppCtx, app: usize) {
    let p = ctx.plan.clone();
    let mut r = Rng::new(ctx.seed, 0x0A99_0000 ^ ((ctx.id as u64) << 32) ^ ((ctx.inc as u64) << 16) ^ app as u64);
    let names: Vec<String> = (0..p.resources).map(|i| format!("r{i}")).collect();
    loop {
        tokio::time::sleep(Duration::from_nanos(r.log_range(MS / 10, p.think_max))).await;
        if now() >= p.heal_at {
            return;
        }
        let first = r.below(p.resources as u64) as usize;
        let mut res = vec![names[first].clone()];
        if r.chance(p.multi_prob) && p.resources > 1 {
            res.push(names[(first + 1 + r.below(p.resources as u64 - 1) as usize) % p.resources].clone());
        }
        let mode = if r.chance(p.read_prob) { Mode::Read } else { Mode::Write };
        let total: u32 = p.styles.iter().sum();
        let mut pick = r.below(total.max(1) as u64) as u32;
        let mut which = 0;
        while which < 3 && pick >= p.styles[which] {
            pick -= p.styles[which];
            which += 1;
        }
        // Deadlines from zero (the caller gives up before the driver even reads the request) to seconds.
        let d = if r.chance(0.25) { Duration::ZERO } else { Duration::from_nanos(r.log_range(MS / 10, 3 * S)) };
        let style = match which {
            0 => Style::Lock,
            1 => Style::TryFor(d),
            2 => Style::Timeout(d),
            _ => Style::Try,
        };
        let hold_for = r.log_range(5 * MS, p.hold_max);
        let pause = if r.chance(p.pause_prob) { r.log_range(p.pause.0, p.pause.1) } else { 0 };
        let release = r.chance(0.5);
        let writes = 1 + r.below(3);
        if let Some(guard) = attempt(&ctx, app, &res, mode, style).await {
            hold(&ctx, app, guard, &res, mode, hold_for, pause, writes, release).await;
        }
    }
}

/// One attempt in `style`; records waiting calls and failures.
pub(crate) async fn attempt(ctx: &AppCtx, app: usize, res: &[String], mode: Mode, style: Style) -> Option<Guard> {
    let (m, rw) = (ctx.node.mutex(res.iter().cloned()), ctx.node.rwlock(res.iter().cloned()));
    let t = now();
    ctx.rec.event(t, ctx.id, app, "ask", &[mode as u64, style_word(style)], || format!("{mode:?} {res:?} {style:?}"));
    // A bounded call may overrun its own deadline by one attempt (the one in flight) plus slack.
    let bound = |d: Duration| Some((d + ATTEMPT + CALL_SLACK).as_nanos() as u64);
    let (what, limit) = match style {
        Style::Lock => ("lock()", None),
        Style::TryFor(d) => ("try_lock_for()", bound(d)),
        Style::Timeout(d) => ("timeout(lock())", bound(d)),
        Style::Try => ("try_lock()", bound(Duration::ZERO)),
    };
    let c = ctx.rec.call(what, ctx.id, ctx.inc, t, limit);
    let out: Result<Result<Guard, LockError>, ()> = match (style, mode) {
        (Style::Lock, _) => {
            let g = if mode == Mode::Read { rw.read().await } else { m.lock().await };
            // lock() never gives up: it fails only when shut down, overloaded or invalid (see its docs).
            if let Err(e) = &g {
                if !matches!(e, LockError::Overloaded) {
                    let detail = format!("node {}'s lock() of {res:?} failed with {e:?}, which it never may", ctx.id);
                    ctx.rec.violation(Kind::Liveness, now(), detail);
                }
            }
            Ok(g)
        }
        (Style::TryFor(d), Mode::Read) => Ok(rw.try_read_for(d).await),
        (Style::TryFor(d), _) => Ok(m.try_lock_for(d).await),
        (Style::Timeout(d), Mode::Read) => tokio::time::timeout(d, rw.read()).await.map_err(|_| ()),
        (Style::Timeout(d), _) => tokio::time::timeout(d, m.lock()).await.map_err(|_| ()),
        (Style::Try, Mode::Read) => Ok(rw.try_read().await),
        (Style::Try, _) => Ok(m.try_lock().await),
    };
    let t = now();
    ctx.rec.returned(c, t);
    match out {
        Ok(Ok(g)) => Some(g),
        Ok(Err(e)) => {
            ctx.rec.event(t, ctx.id, app, "failed", &[err_word(&e)], || e.to_string());
            None
        }
        Err(()) => {
            ctx.rec.event(t, ctx.id, app, "gave-up", &[], || "timeout dropped the lock() future".into());
            None
        }
    }
}

/// Holds `guard` for `hold_for`, writing `writes` times (write locks), with an optional GC-like `pause`
/// before the last write; then releases it (`release`) or drops it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn hold(
    ctx: &AppCtx,
    app: usize,
    guard: Guard,
    res: &[String],
    mode: Mode,
    hold_for: u64,
    pause: u64,
    writes: u64,
    release: bool,
) {
    let h = begin(ctx, app, &guard, res, mode);
    let frozen = Cell::new(false);
    let body = async {
        for k in 0..writes {
            tokio::time::sleep(Duration::from_nanos(hold_for / writes)).await;
            if guard.is_lost() {
                return;
            }
            if k + 1 == writes && pause > 0 && now() < ctx.plan.heal_at {
                // Checked, then frozen: the write goes out after the pause whatever happened meanwhile.
                frozen.set(true);
                ctx.rec.event(now(), ctx.id, app, "pause", &[h as u64, pause], || format!("{}ms", pause / MS));
                tokio::time::sleep(Duration::from_nanos(pause)).await;
                frozen.set(false);
            }
            if mode == Mode::Write {
                register::write(&ctx.rec, h, now());
            }
        }
    };
    watch_lost(ctx, app, h, &guard, &frozen, body).await;
    end(ctx, app, h, guard, release).await;
}

/// Records the start of a hold; returns its index.
pub(crate) fn begin(ctx: &AppCtx, app: usize, guard: &Guard, res: &[String], mode: Mode) -> usize {
    let t = now();
    let ids: Vec<u32> = res.iter().map(|n| ctx.rec.resource(n)).collect();
    let token = guard.fencing_token();
    let h = {
        let mut r = ctx.rec.lock();
        r.holds.push(Hold {
            node: ctx.id,
            inc: ctx.inc,
            app,
            mode,
            res: ids,
            token,
            start: t,
            end: None,
            lost_at: None,
            voided: None,
        });
        let h = r.holds.len() - 1;
        super::force::void_on_begin(&mut r, h);
        h
    };
    ctx.rec.event(t, ctx.id, app, "acquired", &[h as u64, token, mode as u64], || {
        format!("hold {h} {mode:?} {res:?} token {token}")
    });
    h
}

/// Runs `body` while watching `guard.lost()`: when it resolves, the belief ends — and the body is cut short
/// unless the application is `frozen` (paused), in which case it runs on.
pub(crate) async fn watch_lost(
    ctx: &AppCtx,
    app: usize,
    h: usize,
    guard: &Guard,
    frozen: &Cell<bool>,
    body: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(body);
    let mut lost = false;
    loop {
        tokio::select! {
            biased;
            _ = guard.lost(), if !lost => {
                lost = true;
                let t = now();
                ctx.rec.lock().holds[h].lost_at.get_or_insert(t);
                ctx.rec.event(t, ctx.id, app, "lost", &[h as u64], || format!("hold {h}"));
                if !frozen.get() {
                    return;
                }
            }
            _ = &mut body => return,
        }
    }
}

/// Ends hold `h` by dropping its guard (no waiting: a `Drop` may call it).
pub(crate) fn end_by_drop(ctx: &AppCtx, app: usize, h: usize, guard: Guard) {
    let t = now();
    ctx.rec.lock().holds[h].end.get_or_insert(t);
    ctx.rec.event(t, ctx.id, app, "drop", &[h as u64], || format!("hold {h}"));
    drop(guard);
}

/// Ends hold `h`: the belief stops now; the guard is released (waiting for confirmation) or dropped.
pub(crate) async fn end(ctx: &AppCtx, app: usize, h: usize, guard: Guard, release: bool) {
    let t = now();
    ctx.rec.lock().holds[h].end.get_or_insert(t);
    ctx.rec.event(t, ctx.id, app, if release { "release" } else { "drop" }, &[h as u64], || format!("hold {h}"));
    if release {
        let c = ctx.rec.call("release()", ctx.id, ctx.inc, t, Some(RELEASE_BOUND.as_nanos() as u64));
        let got = guard.release().await;
        ctx.rec.returned(c, now());
        if let Err(e) = got {
            let detail = format!("node {}'s release() of hold {h} failed: {e}", ctx.id);
            ctx.rec.violation(Kind::Liveness, now(), detail);
        }
    } else {
        drop(guard);
    }
}

/// The liveness probes of one host: after healing, `lock()` on every resource in turn, each within the
/// deadline; held briefly and released.
pub async fn probes(ctx: AppCtx, probe_at: u64, deadline: u64) {
    sleep_until(probe_at).await;
    // Every resource the run used: the workload's and a scenario's own.
    let mut names: Vec<String> = (0..ctx.plan.resources).map(|i| format!("r{i}")).collect();
    for n in ctx.rec.lock().names.iter() {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    // All registered at once, so the quiescence wait cannot see this host's probes "all resolved" between two.
    let first = {
        let mut r = ctx.rec.lock();
        let at = now();
        for _ in &names {
            r.probes.push(Probe { node: ctx.id, uncontended: false, deadline, resolved: None, at });
        }
        r.probes.len() - names.len()
    };
    for (i, name) in names.into_iter().enumerate() {
        let (at, p) = (now(), first + i);
        ctx.rec.lock().probes[p].at = at;
        ctx.rec.event(at, ctx.id, usize::MAX, "probe", &[i as u64], || name.clone());
        let got = ctx.node.mutex([name.clone()]).lock().await;
        let t = now();
        ctx.rec.lock().probes[p].resolved = Some((t, got.is_ok()));
        match got {
            Ok(guard) => {
                let h = begin(&ctx, usize::MAX, &guard, std::slice::from_ref(&name), Mode::Write);
                let frozen = Cell::new(false);
                let body = async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    register::write(&ctx.rec, h, now());
                };
                watch_lost(&ctx, usize::MAX, h, &guard, &frozen, body).await;
                end(&ctx, usize::MAX, h, guard, true).await;
            }
            // lock() fails only when the node is shut down, overloaded or the request invalid: none of
            // which a healed cluster with a handful of callers may answer.
            Err(e) => ctx.rec.violation(
                crate::Kind::Liveness,
                t,
                format!("node {}'s lock() of {name} after healing failed: {e}", ctx.id),
            ),
        }
    }
}

/// The holder query of one host once everything was released and leases had time to run out.
pub async fn query(ctx: AppCtx, at: u64) {
    sleep_until(at).await;
    let t = now();
    let got = tokio::time::timeout(Duration::from_secs(5), ctx.node.holders(None)).await;
    let out = match got {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("holders(None) did not answer in 5 s".into()),
    };
    let n = out.as_ref().map(|v| v.len() as u64).unwrap_or(u64::MAX);
    ctx.rec.event(now(), ctx.id, usize::MAX, "holders", &[n], || format!("{out:?}"));
    ctx.rec.lock().queries[ctx.id] = Some((t, out));
}

fn style_word(s: Style) -> u64 {
    match s {
        Style::Lock => 0,
        Style::TryFor(d) => 1 << 60 | d.as_nanos() as u64,
        Style::Timeout(d) => 2 << 60 | d.as_nanos() as u64,
        Style::Try => 3 << 60,
    }
}

fn err_word(e: &LockError) -> u64 {
    // The error's text is stable for a given binary: hash its length and first bytes.
    let s = e.to_string();
    s.bytes().take(8).fold(s.len() as u64, |a, b| a << 8 | b as u64)
}
