//! Event ids: UUIDv7 built from the input time and the seeded generator, strictly increasing on
//! one node even when the clock stalls or steps back.

use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;
use uuid::Uuid;

use crate::time::Millis;

const RAND_BITS: u32 = 74;
const RAND_MASK: u128 = (1 << RAND_BITS) - 1;

/// Hands out UUIDv7 ids in strictly increasing order.
#[derive(Debug, Default)]
pub struct EventIds {
    last_ms: u64,
    last_rand: u128,
}

impl EventIds {
    pub fn next(&mut self, now: Millis, rng: &mut ChaCha8Rng) -> Uuid {
        let ms = now.0 & ((1 << 48) - 1);
        if ms > self.last_ms {
            self.last_ms = ms;
            // Leave the top random bit clear so ids in the same millisecond can count upward.
            let r = (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())) & (RAND_MASK >> 1);
            self.last_rand = r;
        } else if self.last_rand == RAND_MASK {
            self.last_ms += 1;
            self.last_rand = 0;
        } else {
            self.last_rand += 1;
        }
        compose(self.last_ms, self.last_rand)
    }
}

fn compose(ms: u64, rand: u128) -> Uuid {
    let rand_a = (rand >> 62) & 0xFFF;
    let rand_b = rand & ((1 << 62) - 1);
    Uuid::from_u128(u128::from(ms) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn ids_are_v7_and_strictly_increasing_when_time_stalls_or_steps_back() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut ids = EventIds::default();
        let mut prev = ids.next(Millis(1_000), &mut rng);
        assert_eq!(prev.get_version_num(), 7);
        assert_eq!(prev.get_variant(), uuid::Variant::RFC4122);
        for now in [1_000, 1_000, 999, 5, 1_001, 1_001, 2_000] {
            let id = ids.next(Millis(now), &mut rng);
            assert!(id > prev, "{id} after {prev}");
            assert_eq!(id.get_version_num(), 7);
            prev = id;
        }
        let (secs, nanos) = prev.get_timestamp().unwrap().to_unix();
        assert_eq!(secs * 1000 + u64::from(nanos) / 1_000_000, 2_000);
    }

    #[test]
    fn same_seed_same_ids() {
        let run = || {
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            let mut ids = EventIds::default();
            (0..5).map(|i| ids.next(Millis(i), &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
