//! Shrinking a failing schedule: drop chunks of faults and requests (delta debugging, halving the chunk
//! size) while the run still fails with the same kind of violation, and return the smallest schedule
//! found within the run budget.

use crate::{run_schedule, Kind, Report, RunOptions, Schedule, Swarm};

/// The outcome of shrinking.
#[derive(Debug)]
pub struct Shrunk {
    /// The smallest failing schedule found.
    pub schedule: Schedule,
    /// Its run.
    pub report: Report,
    /// Runs spent.
    pub runs: usize,
}

fn without(s: &Schedule, lo: usize, hi: usize) -> Schedule {
    let nf = s.faults.len();
    let keep = |i: usize| i < lo || i >= hi;
    Schedule {
        faults: s.faults.iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, f)| f.clone()).collect(),
        requests: s.requests.iter().enumerate().filter(|(i, _)| keep(i + nf)).map(|(_, r)| r.clone()).collect(),
    }
}

/// Shrinks `schedule` (which fails with `kind`) in `swarm`, spending at most `budget` runs.
pub fn shrink(seed: u64, swarm: &Swarm, schedule: &Schedule, opts: &RunOptions, kind: Kind, budget: usize) -> Shrunk {
    let quiet = RunOptions { log: false, ..opts.clone() };
    let mut runs = 0;
    let mut cur = schedule.clone();
    let len = |s: &Schedule| s.faults.len() + s.requests.len();
    let mut chunk = (len(&cur) / 2).max(1);
    'outer: loop {
        let mut progress = false;
        let mut i = 0;
        while i < len(&cur) {
            if runs >= budget {
                break 'outer;
            }
            let cand = without(&cur, i, (i + chunk).min(len(&cur)));
            runs += 1;
            let r = run_schedule(seed, swarm.clone(), &cand, &quiet);
            if r.violations.iter().any(|v| v.kind == kind) {
                cur = cand;
                progress = true;
            } else {
                i += chunk;
            }
        }
        if !progress {
            if chunk == 1 {
                break;
            }
            chunk = (chunk / 2).max(1);
        }
    }
    let report = run_schedule(seed, swarm.clone(), &cur, opts);
    Shrunk { schedule: cur, report, runs: runs + 1 }
}
