//! The database fails, once or twice, for 0.2 to 1.5 s each. Storage retries with backoff; every
//! accepted event is stored once it is back, and consultants get every event exactly once meanwhile.

use alice_sim::scenario::{during, Fault, Scenario};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn plan(rng: &mut ChaCha8Rng, _: &Scenario) -> Vec<(u64, Fault)> {
    let mut plan = Vec::new();
    let mut at = during(rng, 4_000);
    for _ in 0..rng.random_range(1..=2) {
        let up = at + rng.random_range(200..1_500);
        plan.push((at, Fault::StoreDown));
        plan.push((up, Fault::StoreUp));
        at = up + rng.random_range(100..500);
    }
    plan
}

#[test]
fn store_failures() {
    alice_sim::seeds::sweep(Scenario::churning("store_failures", 2, plan));
}
