//! Per-node local clocks: `local = offset + true · (1 + ppm/10⁶)`, converted both ways exactly.
//!
//! The core never sees true time; it sees only its node's local instants. The checkers work in true
//! time, so every local deadline the core reports (a holder's `valid_until`, a timer) is mapped back
//! with [`Clock::to_true`], which returns the first true nanosecond at which the local clock has reached
//! it — exactly when the node's belief ends.

/// A node's clock. It survives crashes (it is the machine's clock, not the process's state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Local reading at true time zero.
    pub offset: u64,
    /// Rate error in parts per million (positive: runs fast).
    pub ppm: i64,
}

const MILLION: i128 = 1_000_000;

impl Clock {
    /// A clock reading `offset` at true zero and running at `1 + ppm/10⁶`.
    pub fn new(offset: u64, ppm: i64) -> Self {
        assert!(ppm > -1_000_000, "a clock must run forwards");
        Clock { offset, ppm }
    }

    /// The local reading at true time `t` (nanoseconds).
    pub fn to_local(&self, t: u64) -> u64 {
        let scaled = (t as i128) * (MILLION + self.ppm as i128) / MILLION;
        (self.offset as i128 + scaled).min(u64::MAX as i128) as u64
    }

    /// The first true time at which the local clock reads at least `local`.
    pub fn to_true(&self, local: u64) -> u64 {
        if local <= self.offset {
            return 0;
        }
        if local == u64::MAX {
            return u64::MAX;
        }
        let d = (local - self.offset) as i128;
        let rate = MILLION + self.ppm as i128;
        let mut t = ((d * MILLION + rate - 1) / rate).min(u64::MAX as i128) as u64;
        // The division is within a nanosecond or two; settle it exactly.
        while self.to_local(t) < local {
            t += 1;
        }
        while t > 0 && self.to_local(t - 1) >= local {
            t -= 1;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_are_exact_inverses_at_the_boundary() {
        for ppm in [-100_000, -1, 0, 7, 99_999, 300_000] {
            let c = Clock::new(123_456_789, ppm);
            for local in [123_456_790u64, 5_000_000_000, 77_777_777_777] {
                let t = c.to_true(local);
                assert!(c.to_local(t) >= local);
                assert!(t == 0 || c.to_local(t - 1) < local);
            }
        }
    }
}
