//! Redis crashes while readers send, and comes back 0.3 to 2.5 s later with its data (as with
//! `appendfsync always`). Events accepted meanwhile wait in each node's outbox; once Redis is back
//! they are delivered on every node and stored, each exactly once.

use alice_sim::scenario::{during, Fault, Scenario};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn plan(rng: &mut ChaCha8Rng, _: &Scenario) -> Vec<(u64, Fault)> {
    let down = during(rng, 2_500);
    let up = down + rng.random_range(300..2_500);
    vec![(down, Fault::RedisCrash), (up, Fault::RedisRestart)]
}

#[test]
fn redis_crash() {
    alice_sim::seeds::sweep(Scenario::churning("redis_crash", 3, plan));
}
