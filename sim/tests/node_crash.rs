//! A node crashes (no graceful stop) while readers send, and restarts 0.3 to 2.5 s later. Its
//! sockets reconnect elsewhere; its readers leave the online list within the presence TTL; the
//! events it had accepted are stored and delivered by the rest of the cluster.

use alice_sim::scenario::{during, Fault, Scenario};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn plan(rng: &mut ChaCha8Rng, scenario: &Scenario) -> Vec<(u64, Fault)> {
    let node = rng.random_range(0..scenario.nodes);
    let crash = during(rng, 2_500);
    let restart = crash + rng.random_range(300..2_500);
    vec![(crash, Fault::NodeCrash { node }), (restart, Fault::NodeRestart { node })]
}

#[test]
fn node_crash() {
    alice_sim::seeds::sweep(Scenario::churning("node_crash", 3, plan));
}
