//! One node loses Redis for 0.3 to 5 s while its sockets stay up: its link holds every segment
//! (TCP retransmits them once the partition heals, so commands its client gave up on may still
//! land late). Its readers' events wait in its outbox, the other nodes' events wait in the stream,
//! and afterwards every consultant has every event exactly once.

use alice_sim::scenario::{during, Fault, Scenario};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn plan(rng: &mut ChaCha8Rng, scenario: &Scenario) -> Vec<(u64, Fault)> {
    let node = rng.random_range(0..scenario.nodes);
    // Long enough, often, for the node's Redis client to give up on its replies and reconnect.
    let cut = during(rng, 5_000);
    let heal = cut + rng.random_range(300..5_000);
    vec![(cut, Fault::Partition { node }), (heal, Fault::Heal { node })]
}

#[test]
fn redis_partition() {
    alice_sim::seeds::sweep(Scenario::churning("redis_partition", 3, plan));
}
