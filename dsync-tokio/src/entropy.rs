//! Where a node's randomness comes from: handshake nonces, connection instance numbers, reconnection jitter
//! and the core's seed.
//!
//! In production that is the operating system ([`Entropy::os`], the default). A deterministic simulator
//! needs the same draws for the same seed, so it supplies [`Entropy::insecure_seeded`]: predictable nonces
//! would let an eavesdropper replay a handshake, which is why the name says so and nothing else uses it.

use dsync_core::rng::SplitMix64;
use std::sync::{Arc, Mutex};

/// A source of random bytes. Cheap to clone; clones share one stream.
#[derive(Clone, Default)]
pub struct Entropy(Option<Arc<Mutex<SplitMix64>>>);

impl Entropy {
    /// The operating system's random source (the default).
    pub fn os() -> Self {
        Entropy(None)
    }

    /// A deterministic stream from `seed`, for simulation and tests only: every draw is predictable, so
    /// handshake nonces are too.
    pub fn insecure_seeded(seed: u64) -> Self {
        Entropy(Some(Arc::new(Mutex::new(SplitMix64::new(seed)))))
    }

    /// Whether this is the deterministic test source.
    pub fn is_seeded(&self) -> bool {
        self.0.is_some()
    }

    /// Fills `buf` with random bytes.
    ///
    /// # Panics
    ///
    /// If the operating system's random source fails: a lock service cannot work around that.
    pub fn fill(&self, buf: &mut [u8]) {
        match &self.0 {
            None => getrandom::fill(buf).expect("the operating system's random source is unavailable"),
            Some(rng) => {
                let mut rng = rng.lock().unwrap_or_else(|e| e.into_inner());
                for chunk in buf.chunks_mut(8) {
                    let word = rng.next_u64().to_le_bytes();
                    chunk.copy_from_slice(&word[..chunk.len()]);
                }
            }
        }
    }

    /// A random `u64`.
    pub fn next_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }
}

impl std::fmt::Debug for Entropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Entropy::insecure_seeded(..)" } else { "Entropy::os()" })
    }
}

#[cfg(test)]
mod tests {
    use super::Entropy;

    #[test]
    fn a_seeded_source_repeats_and_the_os_source_does_not() {
        let (a, b) = (Entropy::insecure_seeded(7), Entropy::insecure_seeded(7));
        let (mut x, mut y) = ([0u8; 13], [0u8; 13]);
        a.fill(&mut x);
        b.fill(&mut y);
        assert_eq!(x, y);
        assert_ne!(Entropy::insecure_seeded(8).next_u64(), Entropy::insecure_seeded(7).next_u64());
        assert_ne!(Entropy::os().next_u64(), Entropy::os().next_u64());
    }

    #[test]
    fn clones_share_one_stream() {
        let a = Entropy::insecure_seeded(1);
        let b = a.clone();
        assert_ne!(a.next_u64(), b.next_u64());
    }
}
