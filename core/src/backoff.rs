//! Exponential backoff with "equal jitter": half of each delay fixed, half drawn from the core's
//! seeded generator, so that nodes retrying together spread out and a run replays exactly.

use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

/// The delay before attempt `failures + 1`: `base_ms` after the first failure, doubling with each
/// one after, never above `max_ms`.
pub fn delay(base_ms: u64, max_ms: u64, failures: u32, rng: &mut ChaCha8Rng) -> u64 {
    let exp = base_ms.max(1).saturating_mul(1u64 << failures.saturating_sub(1).min(32)).min(max_ms.max(1));
    let half = exp / 2;
    half + rng.next_u64() % (exp - half + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn doubles_within_half_and_whole_and_stops_at_the_cap() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (failures, lo, hi) in [(1, 50, 100), (2, 100, 200), (3, 200, 400), (30, 2_500, 5_000)] {
            for _ in 0..100 {
                let d = delay(100, 5_000, failures, &mut rng);
                assert!((lo..=hi).contains(&d), "{failures} failures: {d}");
            }
        }
    }
}
