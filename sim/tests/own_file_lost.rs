//! A node of a cluster of own files crashes, its file is emptied while it is down (a `DATA_DIR`
//! replaced), and it starts again. The log keeps only a short stretch behind what every node
//! stored, so Redis has trimmed much of what the new file lacks: the node records that stretch,
//! asks the running nodes for it, and ends up holding every event, as they do.

use alice_sim::scenario::{during, Fault, Scenario};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn plan(rng: &mut ChaCha8Rng, scenario: &Scenario) -> Vec<(u64, Fault)> {
    let node = rng.random_range(0..scenario.nodes);
    let crash = during(rng, 2_500);
    let restart = crash + rng.random_range(300..2_500);
    vec![
        (crash, Fault::NodeCrash { node }),
        (crash + 1, Fault::FileWiped { node }),
        (restart, Fault::NodeRestart { node }),
    ]
}

#[test]
fn own_file_lost() {
    let scenario = Scenario { log_retain_ms: 500, ..Scenario::own_files("own_file_lost", 3, plan) };
    alice_sim::seeds::sweep(scenario);
}
