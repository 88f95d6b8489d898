//! The simulator's only randomness: SplitMix64 streams derived from the seed (no global RNG, so the same
//! seed always draws the same numbers in the same order). The generator and the mix are dsync-core's, so
//! the workspace has one copy of each.

pub use dsync_core::rng::mix64;
use dsync_core::rng::SplitMix64;

/// A seeded SplitMix64 generator with the draws the simulator needs.
#[derive(Clone, Debug)]
pub struct Rng(SplitMix64);

impl Rng {
    /// A generator for `stream` of `seed`: different streams are independent, so the swarm parameters,
    /// the schedule and the run's own draws do not shift each other when one of them changes.
    pub fn new(seed: u64, stream: u64) -> Self {
        Rng(SplitMix64::new(mix64(seed ^ mix64(stream.wrapping_add(0x5851_F42D_4C95_7F2D)))))
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// Log-uniform in `lo..=hi` (both positive): as many draws near `lo` as near `hi` per decade, which
    /// is what a latency or pause length should look like.
    pub fn log_range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let (a, b) = ((lo.max(1)) as f64, hi as f64);
        let x = (a.ln() + self.unit() * (b.ln() - a.ln())).exp();
        (x as u64).clamp(lo, hi)
    }
}
