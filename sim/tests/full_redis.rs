//! Redis runs out of memory for a few seconds, as one at `maxmemory` with `noeviction` does while
//! trimming and expiry free space between commands: it refuses some of the commands that add
//! data and runs the rest. An append of several entries can then land a later entry and not an
//! earlier one; the node retries the whole append, and every node must still show the earlier
//! entry once, where its retry lands, and the later one once. In half the runs Redis is short of
//! memory from the first event on, so each node's first appends meet it too: the entries an
//! origin numbered before the first one read from it must be expected as well.

use alice_sim::redis::LinkFaults;
use alice_sim::scenario::{during, Fault, Scenario, ACTIVE_FROM_MS};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn plan(rng: &mut ChaCha8Rng, _: &Scenario) -> Vec<(u64, Fault)> {
    let from = if rng.random_bool(0.5) { ACTIVE_FROM_MS } else { during(rng, 3_000) };
    let until = from + rng.random_range(1_000..3_000);
    let faults = LinkFaults { refuse_writes: rng.random_range(0.05..0.4), ..LinkFaults::default() };
    vec![(from, Fault::RedisLinkFaults(faults)), (until, Fault::RedisLinkFaults(LinkFaults::default()))]
}

#[test]
fn full_redis() {
    // Half the readers send no key, so their events go out as a pipeline of plain `XADD`s (Redis
    // refuses the keyed script before it starts, whole).
    let scenario = Scenario { keyless_readers: true, ..Scenario::churning("full_redis", 2, plan) };
    alice_sim::seeds::sweep(scenario);
}
