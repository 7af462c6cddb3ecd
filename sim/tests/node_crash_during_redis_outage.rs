//! Redis goes down while readers send; during the outage a node crashes, and it restarts once
//! Redis is back. What the crashed node held for Redis was never acknowledged or shown to anyone,
//! so only that may be lost: every event acknowledged or delivered anywhere is stored, and every
//! consultant subscribed throughout gets each exactly once.

use alice_sim::scenario::{during, Fault, Scenario};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn plan(rng: &mut ChaCha8Rng, scenario: &Scenario) -> Vec<(u64, Fault)> {
    let node = rng.random_range(0..scenario.nodes);
    let down = during(rng, 3_000);
    let crash = down + rng.random_range(100..1_000);
    let up = crash + rng.random_range(200..1_200);
    let restart = up + rng.random_range(100..800);
    vec![
        (down, Fault::RedisCrash),
        (crash, Fault::NodeCrash { node }),
        (up, Fault::RedisRestart),
        (restart, Fault::NodeRestart { node }),
    ]
}

#[test]
fn node_crash_during_redis_outage() {
    alice_sim::seeds::sweep(Scenario::churning("node_crash_during_redis_outage", 3, plan));
}
