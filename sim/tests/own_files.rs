//! A cluster whose nodes each keep every event in a file of their own (no shared database), under
//! one fault drawn per seed: a node crashes and restarts, Redis crashes and comes back with its
//! data, or a node is cut off from Redis for a while. Every node's file ends up holding every
//! accepted event once, at the same position as every other node's file.

use alice_sim::scenario::{during, Fault, Scenario};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn plan(rng: &mut ChaCha8Rng, scenario: &Scenario) -> Vec<(u64, Fault)> {
    let node = rng.random_range(0..scenario.nodes);
    let at = during(rng, 2_500);
    let until = at + rng.random_range(300..2_500);
    match rng.random_range(0..3) {
        0 => vec![(at, Fault::NodeCrash { node }), (until, Fault::NodeRestart { node })],
        1 => vec![(at, Fault::RedisCrash), (until, Fault::RedisRestart)],
        _ => vec![(at, Fault::Partition { node }), (until, Fault::Heal { node })],
    }
}

#[test]
fn own_files() {
    alice_sim::seeds::sweep(Scenario::own_files("own_files", 3, plan));
}
