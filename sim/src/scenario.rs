//! What a scenario is: the cluster's shape, the clients, and the faults injected when.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::redis::LinkFaults;

/// One fault or repair, applied between two simulation steps.
#[derive(Clone, Debug)]
pub enum Fault {
    /// The Redis host stops (its data is kept, as with `appendfsync always`).
    RedisCrash,
    RedisRestart,
    /// Segments between Redis and a node are held (TCP retransmits them once repaired).
    Partition {
        node: usize,
    },
    Heal {
        node: usize,
    },
    /// The fake Redis answers late and cuts connections around commands at random.
    RedisLinkFaults(LinkFaults),
    NodeCrash {
        node: usize,
    },
    NodeRestart {
        node: usize,
    },
    StoreDown,
    StoreUp,
    /// A node starts only now, its own file empty, in a cluster that has run without it (a node
    /// added to a running cluster; [`Scenario::own_files`] only). At most one per plan.
    NodeJoins {
        node: usize,
    },
    /// A stopped node's own file is emptied (its `DATA_DIR`), as an operator replacing a disk
    /// does: it starts again with none of the log ([`Scenario::own_files`] only).
    FileWiped {
        node: usize,
    },
    /// The consultant assignments table is rewritten behind the nodes' backs, as the Alice
    /// Suite's trigger or an admin tool would (consultant scope `assigned`).
    Reassign(alice_core::AssignmentTable),
}

/// A cluster, its clients and a fault plan drawn from the seed.
#[derive(Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub nodes: usize,
    /// Whether the nodes form a cluster over Redis. Without it there is one node whose store is
    /// its own embedded file (it outlives the node, as a SQLite file outlives the process).
    pub redis: bool,
    /// A cluster whose nodes each keep every event in a file of their own (embedded SQLite, no
    /// PostgreSQL), filled by a storing group per node, rather than sharing one store.
    pub own_files: bool,
    /// `REDIS_LOG_RETAIN_MS`: how long the log keeps entries every group has stored.
    pub log_retain_ms: u64,
    pub readers: usize,
    pub consultants: usize,
    /// Events each reader sends during the active phase.
    pub events_per_reader: usize,
    /// Readers and consultants that come and go during the active phase.
    pub churn: bool,
    /// Nodes run with `CONSULTANT_SCOPE=assigned`, starting from [`initial_assignments`].
    pub scoped: bool,
    /// Odd readers send their events without a `clientEventId`, so their appends are plain
    /// `XADD`s rather than the keyed script. Only for plans that cut no reader's connection: a
    /// keyless event sent again is a new event.
    pub keyless_readers: bool,
    /// Faults at simulated milliseconds, drawn from the seed; all repaired by [`HEALED_BY_MS`].
    pub plan: fn(&mut ChaCha8Rng, &Scenario) -> Vec<(u64, Fault)>,
}

impl Scenario {
    /// The cluster every scenario uses: six readers sending twelve events each, four consultants,
    /// and churn throughout.
    pub fn churning(
        name: &'static str,
        nodes: usize,
        plan: fn(&mut ChaCha8Rng, &Scenario) -> Vec<(u64, Fault)>,
    ) -> Scenario {
        Scenario {
            name,
            nodes,
            redis: true,
            own_files: false,
            // Longer than any partition a scenario draws, so a cut-off node reads on where it
            // stopped; short enough that the log is trimmed during a run.
            log_retain_ms: 8_000,
            readers: 6,
            consultants: 4,
            events_per_reader: 12,
            churn: true,
            scoped: false,
            keyless_readers: false,
            plan,
        }
    }

    /// The same clients on one node with no Redis, whose store is its log.
    pub fn single(name: &'static str, plan: fn(&mut ChaCha8Rng, &Scenario) -> Vec<(u64, Fault)>) -> Scenario {
        Scenario { nodes: 1, redis: false, ..Scenario::churning(name, 1, plan) }
    }

    /// The churning cluster, each node with a file of its own.
    pub fn own_files(
        name: &'static str,
        nodes: usize,
        plan: fn(&mut ChaCha8Rng, &Scenario) -> Vec<(u64, Fault)>,
    ) -> Scenario {
        Scenario { own_files: true, ..Scenario::churning(name, nodes, plan) }
    }
}

/// Clients connect and subscribe before this.
pub const ACTIVE_FROM_MS: u64 = 1_000;
/// Readers stop sending here.
pub const ACTIVE_UNTIL_MS: u64 = 6_000;
/// Every fault is repaired by now.
pub const HEALED_BY_MS: u64 = 7_000;
/// Readers confirm their connections until here; from here on nothing connects or leaves.
pub const QUIET_FROM_MS: u64 = 9_000;
/// Consultants ask for the online list here, a presence TTL and more after the quiet point,
/// when retries and claims of unstored events are done too.
pub const CHECK_AT_MS: u64 = QUIET_FROM_MS + PRESENCE_TTL_MS + 1_000;
/// The simulation ends here.
pub const END_MS: u64 = CHECK_AT_MS + 1_000;
/// The presence TTL the nodes run with.
pub const PRESENCE_TTL_MS: u64 = 3_000;

/// How often scoped nodes read the assignments table.
pub const ASSIGNMENT_REFRESH_MS: u64 = 500;

/// Who is assigned to whom when a scoped run starts: each consultant half the readers, every
/// reader two consultants.
pub fn initial_assignments(scenario: &Scenario) -> alice_core::AssignmentTable {
    (0..scenario.consultants)
        .map(|j| {
            let readers = (0..scenario.readers).filter(|k| (k + j) % 2 == 0).map(|k| format!("reader-{k}"));
            (format!("consultant-{j}"), readers.collect())
        })
        .collect()
}

/// The consultant scope scenarios' plan: consultants 0 and 1 swap readers behind the nodes' backs,
/// once, early enough that the admin's `PUT` (`clients.rs`) comes after it.
pub fn swap_two_consultants(rng: &mut ChaCha8Rng, scenario: &Scenario) -> Vec<(u64, Fault)> {
    let start = initial_assignments(scenario);
    let mut swapped = start.clone();
    swapped.insert("consultant-0".into(), start["consultant-1"].clone());
    swapped.insert("consultant-1".into(), start["consultant-0"].clone());
    vec![(during(rng, HEALED_BY_MS - crate::clients::ADMIN_PUT_MS + 500), Fault::Reassign(swapped))]
}

/// A random time in the active phase, leaving `room` before the healing deadline.
pub fn during(rng: &mut ChaCha8Rng, room: u64) -> u64 {
    rng.random_range(ACTIVE_FROM_MS + 500..HEALED_BY_MS - room)
}

/// A scenario's plan with no faults.
pub fn calm(_: &mut ChaCha8Rng, _: &Scenario) -> Vec<(u64, Fault)> {
    Vec::new()
}
