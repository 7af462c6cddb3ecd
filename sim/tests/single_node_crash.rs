//! One node with no Redis, whose store is its log (the embedded SQLite file, which outlives the
//! process): it crashes while readers send and restarts 0.3 to 2.5 s later. Every event it
//! acknowledged or showed before the crash is in the store; its readers come back to it.

use alice_sim::scenario::{during, Fault, Scenario};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn plan(rng: &mut ChaCha8Rng, _: &Scenario) -> Vec<(u64, Fault)> {
    let crash = during(rng, 2_500);
    let restart = crash + rng.random_range(300..2_500);
    vec![(crash, Fault::NodeCrash { node: 0 }), (restart, Fault::NodeRestart { node: 0 })]
}

#[test]
fn single_node_crash() {
    alice_sim::seeds::sweep(Scenario::single("single_node_crash", plan));
}
