//! Rate-limited reporting of connection problems: a misconfigured peer retries forever, and its reason
//! must be visible once, not fill the log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, error, warn, Level};

/// The log target (these lines are about a transport's connections).
const TARGET: &str = "dsync_tokio::conn";

/// How often one (peer, reason) pair is logged at its full level.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Distinct (peer, reason) keys remembered; beyond it, stale ones are forgotten, and if none is stale new
/// keys are logged at DEBUG only (a flood of addresses cannot grow memory or the log).
const KEYS: usize = 1024;

#[derive(Debug)]
struct Seen {
    last: Instant,
    suppressed: u64,
}

/// Logs each (peer, reason) key at its level at most once per [`REPORT_EVERY`], repeats at DEBUG, and the
/// number of suppressed repeats with the next full-level line.
#[derive(Debug, Default)]
pub struct Reporter {
    seen: Mutex<HashMap<String, Seen>>,
}

impl Reporter {
    /// `Some(n)`: log at full level now, `n` repeats having been suppressed since the last time.
    fn admit(&self, key: String) -> Option<u64> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = seen.get_mut(&key) {
            if now.duration_since(s.last) < REPORT_EVERY {
                s.suppressed += 1;
                return None;
            }
            let n = s.suppressed;
            *s = Seen { last: now, suppressed: 0 };
            return Some(n);
        }
        if seen.len() >= KEYS {
            seen.retain(|_, s| now.duration_since(s.last) < REPORT_EVERY);
            if seen.len() >= KEYS {
                return None;
            }
        }
        seen.insert(key, Seen { last: now, suppressed: 0 });
        Some(0)
    }

    /// Logs `msg` at `level` (WARN or ERROR) under `key`, or at DEBUG if that key was logged recently.
    pub fn report(&self, level: Level, key: String, msg: &str) {
        match self.admit(key) {
            None => debug!(target: TARGET, "{msg} (repeat)"),
            Some(0) if level == Level::ERROR => error!(target: TARGET, "{msg}"),
            Some(0) => warn!(target: TARGET, "{msg}"),
            Some(n) if level == Level::ERROR => {
                error!(target: TARGET, "{msg} ({n} repeats in the last {REPORT_EVERY:?} logged at DEBUG)")
            }
            Some(n) => warn!(target: TARGET, "{msg} ({n} repeats in the last {REPORT_EVERY:?} logged at DEBUG)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_admitted_once_per_period_and_counts_its_repeats() {
        let r = Reporter::default();
        assert_eq!(r.admit("a".into()), Some(0));
        assert_eq!(r.admit("a".into()), None);
        assert_eq!(r.admit("a".into()), None);
        assert_eq!(r.admit("b".into()), Some(0));
        r.seen.lock().unwrap().get_mut("a").unwrap().last -= REPORT_EVERY;
        assert_eq!(r.admit("a".into()), Some(2));
    }
}
