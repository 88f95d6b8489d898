//! Hash maps keyed from the config seed: deterministic for a given seed, yet not predictable by peers
//! that would like to flood one bucket with chosen resource names.

use core::hash::BuildHasher;

/// A hash map whose hasher is keyed SipHash-2-4 (from `core`).
pub(crate) type Map<K, V> = hashbrown::HashMap<K, V, SeededSip>;

/// Builds keyed SipHash hashers.
#[derive(Clone, Debug)]
pub(crate) struct SeededSip(u64, u64);

impl BuildHasher for SeededSip {
    #[allow(deprecated)] // `core::hash::SipHasher` is deprecated only in favour of std's, which no_std lacks.
    type Hasher = core::hash::SipHasher;

    #[allow(deprecated)]
    fn build_hasher(&self) -> Self::Hasher {
        core::hash::SipHasher::new_with_keys(self.0, self.1)
    }
}

/// An empty map keyed from `seed`.
pub(crate) fn new_map<K, V>(seed: u64) -> Map<K, V> {
    let k0 = crate::rng::mix64(seed);
    let k1 = crate::rng::mix64(k0 ^ 0x5eed);
    hashbrown::HashMap::with_hasher(SeededSip(k0, k1))
}
