//! Redis answers slowly (10 to 60 ms a reply) and cuts connections at random, before a command
//! runs or after it ran with its reply lost, for a few seconds. Retries may then write a bus message
//! or a queue entry twice; receivers and the storage worker drop the repeats.

use std::time::Duration;

use alice_sim::redis::LinkFaults;
use alice_sim::scenario::{during, Fault, Scenario};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn plan(rng: &mut ChaCha8Rng, _: &Scenario) -> Vec<(u64, Fault)> {
    let from = during(rng, 3_000);
    let until = from + rng.random_range(1_000..3_000);
    let faults = LinkFaults {
        cut_before: rng.random_range(0.0..0.03),
        cut_after: rng.random_range(0.0..0.03),
        delay: Duration::from_millis(rng.random_range(10..60)),
        ..LinkFaults::default()
    };
    vec![(from, Fault::RedisLinkFaults(faults)), (until, Fault::RedisLinkFaults(LinkFaults::default()))]
}

#[test]
fn slow_lossy_redis() {
    alice_sim::seeds::sweep(Scenario::churning("slow_lossy_redis", 2, plan));
}
