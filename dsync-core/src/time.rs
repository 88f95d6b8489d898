//! Time as the caller passes it in: a monotonic local instant, never read from a clock here.

use core::ops::{Add, Sub};
pub use core::time::Duration;

/// A point on the local node's monotonic clock, in nanoseconds from an origin the caller chooses.
///
/// The core never reads a clock: every input carries the caller's `now`. Instants of different
/// nodes are not comparable; the protocol only ever compares instants of one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The origin of the caller's clock.
    pub const ZERO: Instant = Instant(0);
    /// The largest representable instant, used as "never".
    pub const MAX: Instant = Instant(u64::MAX);

    /// An instant `nanos` nanoseconds after the origin.
    #[must_use]
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// An instant `millis` milliseconds after the origin.
    #[must_use]
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the origin.
    #[must_use]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        Instant(self.0.saturating_add(duration_nanos(d)))
    }

    /// The time from `earlier` to `self`, zero when `earlier` is later.
    #[must_use]
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `d · (1 ± ppm/10⁶)`: rounded up when growing and down when shrinking, so both errors are conservative.
pub(crate) fn scale_ppm(d: Duration, ppm: u32, grow: bool) -> Duration {
    let n = d.as_nanos();
    let ppm = u128::from(ppm);
    let scaled = if grow {
        (n * (1_000_000 + ppm)).div_ceil(1_000_000)
    } else {
        n * (1_000_000 - ppm.min(1_000_000)) / 1_000_000
    };
    Duration::from_nanos(u64::try_from(scaled).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_saturates_instead_of_wrapping() {
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
    }

    #[test]
    fn scaling_rounds_in_the_conservative_direction() {
        let d = Duration::from_nanos(3);
        assert_eq!(scale_ppm(d, 500_000, true), Duration::from_nanos(5)); // 4.5 up
        assert_eq!(scale_ppm(d, 500_000, false), Duration::from_nanos(1)); // 1.5 down
    }
}
