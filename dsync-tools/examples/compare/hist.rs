//! Latency histograms in the bench's `--latency-out` format: values cut to three significant digits, so runs
//! merge exactly and millions of samples stay a few hundred lines.

use std::collections::BTreeMap;

/// Counts of latency values (ns), each cut to three significant digits (≤ 1 % error).
#[derive(Clone, Debug, Default)]
pub struct Hist {
    counts: BTreeMap<u64, u64>,
}

/// Cuts `ns` to three significant digits, as the bench does.
pub fn cut(mut ns: u64) -> u64 {
    let mut scale = 1;
    while ns >= 1000 {
        ns /= 10;
        scale *= 10;
    }
    ns * scale
}

impl Hist {
    /// Counts one sample.
    pub fn record(&mut self, ns: u64) {
        *self.counts.entry(cut(ns)).or_default() += 1;
    }

    /// Counts `count` samples of the (already cut) value `ns`.
    pub fn add(&mut self, ns: u64, count: u64) {
        *self.counts.entry(cut(ns)).or_default() += count;
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Hist) {
        for (&v, &c) in &other.counts {
            *self.counts.entry(v).or_default() += c;
        }
    }

    /// How many samples there are.
    pub fn len(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The `p` quantile (0..=1) in microseconds, or `None` without samples.
    pub fn quantile_us(&self, p: f64) -> Option<f64> {
        let total = self.len();
        if total == 0 {
            return None;
        }
        // Same rank rule as the bench: the sample at index ⌊len·p⌋ of the sorted list.
        let rank = ((total as f64 * p) as u64).min(total - 1);
        let mut seen = 0;
        for (&v, &c) in &self.counts {
            seen += c;
            if seen > rank {
                return Some(v as f64 / 1000.0);
            }
        }
        None
    }

    /// The cumulative distribution as (latency µs, fraction ≤ it) points, one per distinct value.
    pub fn cdf_us(&self) -> Vec<(f64, f64)> {
        let total = self.len() as f64;
        let mut seen = 0;
        self.counts
            .iter()
            .map(|(&v, &c)| {
                seen += c;
                (v as f64 / 1000.0, seen as f64 / total)
            })
            .collect()
    }
}

/// What a bench `--latency-out` file holds.
#[derive(Clone, Debug, Default)]
pub struct LatencyFile {
    /// Acquire latencies.
    pub acquire: Hist,
    /// Hand-offs (release → next holder acquired), with `--hot`.
    pub handoff: Hist,
    /// The longest single wait, ns.
    pub max_wait_ns: u64,
}

/// Parses a `--latency-out` file; a malformed line is an error naming it.
pub fn parse(text: &str) -> Result<LatencyFile, String> {
    let mut out = LatencyFile::default();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |s: &str| s.parse::<u64>().map_err(|_| format!("line {}: bad number {s:?}", i + 1));
        match f.as_slice() {
            [] => {}
            ["lat", v, c] => out.acquire.add(num(v)?, num(c)?),
            ["hand", v, c] => out.handoff.add(num(v)?, num(c)?),
            ["maxwait", v] => out.max_wait_ns = num(v)?,
            _ => return Err(format!("line {}: unexpected {line:?}", i + 1)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_three_digits() {
        assert_eq!(cut(999), 999);
        assert_eq!(cut(123_456), 123_000);
        assert_eq!(cut(cut(98_765_432)), 98_700_000);
    }

    #[test]
    fn quantiles_follow_the_bench_rank_rule() {
        let mut h = Hist::default();
        for v in 1..=100u64 {
            h.record(v * 1000);
        }
        assert_eq!(h.quantile_us(0.5), Some(51.0));
        assert_eq!(h.quantile_us(0.99), Some(100.0));
        assert_eq!(h.cdf_us().last(), Some(&(100.0, 1.0)));
    }

    #[test]
    fn parses_the_bench_format_and_rejects_garbage() {
        let f = parse("lat 1000 3\nlat 2000 1\nhand 500 2\nmaxwait 7000\n").unwrap();
        assert_eq!(f.acquire.len(), 4);
        assert_eq!(f.acquire.quantile_us(0.5), Some(1.0));
        assert_eq!(f.handoff.len(), 2);
        assert_eq!(f.max_wait_ns, 7000);
        assert!(parse("lat x 1").is_err());
        assert!(parse("what 1 2").is_err());
    }
}
