//! SplitMix64, the one seeded generator and 64-bit mix of the workspace.
//!
//! The core draws jitter and identifiers from it, seeded from [`crate::Config::seed`]. It is public so that
//! the simulator and the examples use this copy instead of their own: two copies of a generator that
//! must agree bit for bit (a replayed simulation draws the same numbers) drift apart unnoticed.

/// The golden-ratio increment of SplitMix64, also a good odd constant to spread small integers.
pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64: 64 bits of state, passes BigCrush; plenty for jitter, identifiers and simulation, not
/// for secrets.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose first output is `mix64(seed + GOLDEN_GAMMA)`.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        mix64(self.0)
    }

    /// Uniform in `0..=max` (the modulo bias is irrelevant for jitter).
    pub fn below_or_eq(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            self.next_u64()
        } else {
            self.next_u64() % (max + 1)
        }
    }
}

/// The SplitMix64 finaliser: a bijective mix, also used as a cluster-wide agreed tie-break, so its output
/// is part of the protocol and must never change.
#[must_use]
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_splitmix64() {
        // First outputs of the reference implementation (Vigna) seeded with 1234567.
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }
}
