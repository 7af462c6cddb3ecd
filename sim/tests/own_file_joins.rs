//! A node joins a running cluster whose nodes keep their own files, 2 to 5 s into the run, its
//! file empty. The log keeps only a short stretch behind what every node stored, so Redis has
//! trimmed what came before: the new node's group is created where its file ends, it records the
//! stretch it lacks, asks the running nodes for it, and ends up holding every event, as they do.
//! Clients that find it not started yet go to another node.

use alice_sim::scenario::{Fault, Scenario};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn plan(rng: &mut ChaCha8Rng, scenario: &Scenario) -> Vec<(u64, Fault)> {
    let node = rng.random_range(0..scenario.nodes);
    vec![(rng.random_range(2_000..5_000), Fault::NodeJoins { node })]
}

#[test]
fn own_file_joins() {
    let scenario = Scenario { log_retain_ms: 500, ..Scenario::own_files("own_file_joins", 3, plan) };
    alice_sim::seeds::sweep(scenario);
}
