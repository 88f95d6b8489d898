//! The results of all rounds and their markdown tables.

use crate::hist::Hist;
use std::collections::BTreeMap;
use std::fmt::Write;

/// A lock service under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum System {
    /// Redlock (`rslock`) on `n` redis-server processes.
    Redlock,
    /// dsync over TCP.
    DsyncTcp,
    /// dsync over QUIC.
    DsyncQuic,
}

impl System {
    /// The name in tables and plots.
    pub fn label(self) -> &'static str {
        match self {
            System::Redlock => "Redlock (rslock)",
            System::DsyncTcp => "dsync TCP",
            System::DsyncQuic => "dsync QUIC",
        }
    }
}

/// Everything measured for one system at one `n` and workload, over all rounds.
#[derive(Debug, Default)]
pub struct Cell {
    /// Locks/s of each round.
    pub rates: Vec<f64>,
    /// Acquire latencies of all rounds.
    pub acquire: Hist,
    /// Hand-offs of all rounds (contended runs).
    pub handoff: Hist,
    /// Longest wait of any round, ns.
    pub max_wait_ns: u64,
    /// Attempts without a quorum (Redlock only).
    pub failed_attempts: Option<u64>,
}

impl Cell {
    /// The median of the rounds' locks/s (robust to one disturbed round).
    pub fn rate(&self) -> f64 {
        let mut r = self.rates.clone();
        r.sort_by(f64::total_cmp);
        match r.len() {
            0 => 0.0,
            l if l % 2 == 1 => r[l / 2],
            l => (r[l / 2 - 1] + r[l / 2]) / 2.0,
        }
    }
}

/// All cells, by (n, system), for the uncontended and the contended workload.
#[derive(Debug, Default)]
pub struct Results {
    /// Every loop on its own resource.
    pub spread: BTreeMap<(usize, System), Cell>,
    /// Every loop on one resource.
    pub hot: BTreeMap<(usize, System), Cell>,
}

fn us(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v >= 10_000.0 => format!("{:.1} ms", v / 1000.0),
        Some(v) => group(v.round() as u64),
    }
}

fn group(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The markdown tables (uncontended with the dsync/Redlock ratio; contended with hand-off and longest wait).
pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| n | system | locks/s | p50 µs | p99 µs | vs Redlock |");
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for (&(n, sys), c) in &r.spread {
        let base = r.spread.get(&(n, System::Redlock)).map(Cell::rate).filter(|&b| b > 0.0);
        let ratio = match (sys, base) {
            (System::Redlock, _) | (_, None) => "–".to_string(),
            (_, Some(b)) => format!("{:.1}×", c.rate() / b),
        };
        let _ = writeln!(
            s,
            "| {n} | {} | {} | {} | {} | {ratio} |",
            sys.label(),
            group(c.rate().round() as u64),
            us(c.acquire.quantile_us(0.5)),
            us(c.acquire.quantile_us(0.99))
        );
    }
    if !r.hot.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "| n | system (one hot resource) | locks/s | acquire p50 µs | acquire p99 µs | hand-off p50 µs \
             | hand-off p99 µs | longest wait |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for (&(n, sys), c) in &r.hot {
            let _ = writeln!(
                s,
                "| {n} | {} | {} | {} | {} | {} | {} | {:.1} ms |",
                sys.label(),
                group(c.rate().round() as u64),
                us(c.acquire.quantile_us(0.5)),
                us(c.acquire.quantile_us(0.99)),
                us(c.handoff.quantile_us(0.5)),
                us(c.handoff.quantile_us(0.99)),
                c.max_wait_ns as f64 / 1e6
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_the_ratio_against_redlock() {
        let mut r = Results::default();
        let cell = |rate: f64| {
            let mut c = Cell { rates: vec![rate], ..Cell::default() };
            c.acquire.record(100_000);
            c
        };
        r.spread.insert((4, System::Redlock), cell(10_000.0));
        r.spread.insert((4, System::DsyncTcp), cell(35_000.0));
        let md = markdown(&r);
        assert!(md.contains("| 4 | dsync TCP | 35,000 | 100 | 100 | 3.5× |"), "{md}");
        assert!(md.contains("| 4 | Redlock (rslock) | 10,000 | 100 | 100 | – |"), "{md}");
    }

    #[test]
    fn median_of_rounds() {
        let c = Cell { rates: vec![3.0, 100.0, 5.0, 4.0], ..Cell::default() };
        assert_eq!(c.rate(), 4.5);
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
