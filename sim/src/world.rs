//! Builds one simulated cluster for a scenario and seed, runs it, and collects what happened.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, UNIX_EPOCH};

use alice_core::Millis;
use alice_shell::clock::Clock;
use alice_shell::config::Settings;
use alice_shell::Deps;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use turmoil::net::TcpListener;

use crate::check::{self, Observations};
use crate::clients;
use crate::net::{SimDialer, SimListener};
use crate::redis::FakeRedis;
use crate::scenario::{Fault, Scenario, END_MS, PRESENCE_TTL_MS};
use crate::store::SimStore;
use crate::trace::Trace;

/// Simulated time starts at 2026-01-01T00:00:00Z.
pub const EPOCH_MS: u64 = 1_767_225_600_000;
pub const SECRET: &str = "alice-sim-secret-alice-sim-secret";
pub const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
pub const REDIS: &str = "redis";

/// The simulated wall clock every host reads.
pub struct SimClock;

impl Clock for SimClock {
    fn now(&self) -> Millis {
        Millis(sim_now_ms())
    }

    fn wall(&self) -> Millis {
        Millis(sim_now_ms())
    }
}

pub fn sim_now_ms() -> u64 {
    EPOCH_MS + turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64
}

/// What a run left behind.
pub struct RunOutcome {
    pub trace: Trace,
    /// Broken invariants, in words; empty when the run passed.
    pub violations: Vec<String>,
    /// One line of figures for the log.
    pub summary: String,
}

thread_local! {
    /// Panics on this thread during the current run: a panicking task (a node's driver, a fake
    /// Redis connection) is otherwise swallowed by its runtime and looks like a lost connection.
    static PANICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Records every panic on a simulation thread, then lets the usual hook print it.
fn watch_panics() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let print = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = PANICS.try_with(|p| p.borrow_mut().push(info.to_string()));
            print(info);
        }));
    });
    PANICS.with(|p| p.borrow_mut().clear());
}

/// Runs `scenario` with `seed` to the end and checks it.
pub fn run(scenario: &Scenario, seed: u64) -> RunOutcome {
    watch_panics();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut plan = (scenario.plan)(&mut rng, scenario);
    plan.sort_by_key(|(at, _)| *at);
    let crash = plan.iter().find_map(|(at, f)| match f {
        Fault::NodeCrash { node } => Some((NODES[*node], *at)),
        _ => None,
    });
    let trace = Trace::default();
    for (at, fault) in &plan {
        trace.line(format!("plan {at} {fault:?}"));
    }
    // One store the cluster shares, or a file per node; each outlives its node.
    let stores: Vec<SimStore> = if scenario.own_files {
        NODES.iter().take(scenario.nodes).map(|node| SimStore::own_file(node, trace.clone())).collect()
    } else {
        vec![SimStore::new(trace.clone()).embedded(!scenario.redis)]
    };
    let observations = Arc::new(Mutex::new(Observations::default()));
    let redis = FakeRedis::new(Arc::new(sim_now_ms), seed ^ 0x5eed_f00d);
    if scenario.scoped {
        let table = crate::scenario::initial_assignments(scenario);
        assign(&redis, &stores, &trace, table.clone());
        observations.lock().unwrap().assignments.push((0, table));
    }

    // One latency for every message of a run. With latencies drawn per message, a crash would
    // make the run depend on the order its sockets close, which follows tokio's task ids (a
    // process-wide counter): the same seed could then give two traces.
    let latency = Duration::from_millis(rng.random_range(1..=4));
    trace.line(format!("latency {latency:?}"));
    // Half the seeds pace every log read that found entries (a budget of 0), as a busy cluster
    // does; the others read at once, as a quiet one does (the scenarios' rates are low).
    let paced_reads = seed.is_multiple_of(2);
    trace.line(format!("paced log reads {paced_reads}"));
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_millis(EPOCH_MS))
        .simulation_duration(Duration::from_millis(END_MS + 10_000))
        .min_message_latency(latency)
        .max_message_latency(latency)
        .build();

    let server = redis.clone();
    sim.host(REDIS, move || {
        let server = server.clone();
        async move {
            let listener = TcpListener::bind("0.0.0.0:6379").await?;
            loop {
                let (stream, _) = listener.accept().await?;
                let server = server.clone();
                tokio::spawn(async move { server.serve(stream).await });
            }
        }
    });

    for (index, name) in NODES.iter().take(scenario.nodes).enumerate() {
        let boots = Arc::new(AtomicU64::new(0));
        // A node that joins later waits, unstarted, for its time.
        let joins_at = plan.iter().find_map(|(at, f)| match f {
            Fault::NodeJoins { node } if *node == index => Some(Duration::from_millis(*at)),
            _ => None,
        });
        let store = stores[index % stores.len()].clone();
        let redis_url = scenario.redis.then(|| "redis://redis:6379".to_owned());
        let (scoped, retain_ms) = (scenario.scoped, scenario.log_retain_ms);
        sim.host(*name, move || {
            // A restarted process draws new randomness; here it comes from the seed and the boot.
            let boot = boots.fetch_add(1, Ordering::SeqCst);
            let node_seed = seed ^ ((index as u64 + 1) << 48) ^ (boot << 32);
            let store = store.clone();
            let redis_url = redis_url.clone();
            async move {
                if let (Some(at), 0) = (joins_at, boot) {
                    tokio::time::sleep(at).await;
                }
                let settings = node_settings(name, redis_url, scoped, paced_reads, retain_ms)?;
                let deps = Deps {
                    store: Arc::new(store),
                    clock: Arc::new(SimClock),
                    seed: node_seed,
                    redis_dialer: Some(Arc::new(SimDialer("redis:6379"))),
                };
                let listener = SimListener(TcpListener::bind("0.0.0.0:3000").await?);
                let _running = alice_shell::start_on(settings, deps, listener).await?;
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }

    let (scen, obs, tr) = (scenario.clone(), observations.clone(), trace.clone());
    sim.client("clients", async move {
        clients::run_all(scen, seed, obs, tr).await;
        Ok(())
    });

    let mut faults = plan.into_iter().peekable();
    let mut violations = Vec::new();
    loop {
        let now = sim.elapsed().as_millis() as u64;
        trace.set_now(now);
        while let Some((_, fault)) = faults.next_if(|(at, _)| *at <= now) {
            trace.line(format!("fault {fault:?}"));
            if let Fault::Reassign(table) = &fault {
                observations.lock().unwrap().assignments.push((now, table.clone()));
            }
            apply(&mut sim, &redis, &stores, &trace, fault);
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                violations.push(format!("the simulation stopped: {e}"));
                break;
            }
        }
    }
    trace.set_now(sim.elapsed().as_millis() as u64);
    let observations = std::mem::take(&mut *observations.lock().unwrap());
    let lone_node_crashes = crash.is_some() && scenario.nodes == 1;
    let (mut broken, summary) = check::invariants(&observations, &stores, crash.is_some(), lone_node_crashes);
    violations.append(&mut broken);
    PANICS.with(|p| violations.extend(p.borrow_mut().drain(..).map(|m| format!("a task panicked: {m}"))));
    for v in &violations {
        trace.line(format!("VIOLATION {v}"));
    }
    RunOutcome { trace, violations, summary }
}

fn apply(sim: &mut turmoil::Sim<'_>, redis: &FakeRedis, stores: &[SimStore], trace: &Trace, fault: Fault) {
    match fault {
        Fault::RedisCrash => sim.crash(REDIS),
        Fault::RedisRestart => sim.bounce(REDIS),
        Fault::Partition { node } => sim.hold(REDIS, NODES[node]),
        Fault::Heal { node } => sim.release(REDIS, NODES[node]),
        Fault::RedisLinkFaults(faults) => redis.set_faults(faults),
        Fault::NodeCrash { node } => sim.crash(NODES[node]),
        Fault::NodeRestart { node } => sim.bounce(NODES[node]),
        Fault::StoreDown => stores.iter().for_each(|s| s.set_down(true)),
        Fault::StoreUp => stores.iter().for_each(|s| s.set_down(false)),
        // The node's host started it at this time (see `run`).
        Fault::NodeJoins { node } => {
            assert!(!stores[0].owner().is_empty(), "{} joins a shared store", NODES[node])
        }
        Fault::FileWiped { node } => {
            assert!(
                stores.get(node).is_some_and(|s| !s.owner().is_empty()),
                "only a node's own file is wiped"
            );
            stores[node].wipe()
        }
        Fault::Reassign(table) => assign(redis, stores, trace, table),
    }
}

/// Writes the assignments where the nodes read them, as the Alice Suite would: the table of the
/// store the cluster shares, or, where each node keeps its own file, the Redis hash.
fn assign(redis: &FakeRedis, stores: &[SimStore], trace: &Trace, table: alice_core::AssignmentTable) {
    if stores[0].owner().is_empty() {
        return stores[0].set_assignments(table);
    }
    trace.line(format!("assignments hash set to {table:?}"));
    let lists = table.iter().map(|(consultant, readers)| {
        (consultant.clone(), serde_json::to_string(readers).expect("a set of strings is JSON"))
    });
    redis.set_hash(alice_shell::assignments::ASSIGNMENTS_KEY, &lists.collect::<Vec<_>>());
}

fn node_settings(
    name: &str,
    redis_url: Option<String>,
    scoped: bool,
    paced_reads: bool,
    log_retain_ms: u64,
) -> Result<Settings, alice_shell::config::ConfigError> {
    let mut vars: BTreeMap<&str, String> = [
        ("JWT_SECRET", SECRET.to_owned()),
        ("NODE_ID", name.to_owned()),
        ("REALTIME_PORT", "3000".to_owned()),
        ("HOST", "0.0.0.0".to_owned()),
        ("PRESENCE_TTL_MS", PRESENCE_TTL_MS.to_string()),
        ("PRESENCE_PUSH_INTERVAL_MS", "500".to_owned()),
        ("REDIS_CLAIM_IDLE_MS", "3000".to_owned()),
        ("REDIS_LOG_RETAIN_MS", log_retain_ms.to_string()),
        ("STORE_RETRY_BASE_MS", "100".to_owned()),
        ("STORE_RETRY_MAX_MS", "1000".to_owned()),
        ("STORE_MAX_ATTEMPTS", "1000".to_owned()),
        ("DATABASE_MIGRATE", "false".to_owned()),
    ]
    .into_iter()
    .collect();
    if let Some(url) = redis_url {
        vars.insert("REDIS_URL", url);
    }
    if paced_reads {
        vars.insert("LOG_READ_BUDGET", "0".to_owned());
    }
    if scoped {
        vars.insert("CONSULTANT_SCOPE", "assigned".to_owned());
        vars.insert("ASSIGNMENT_REFRESH_MS", crate::scenario::ASSIGNMENT_REFRESH_MS.to_string());
    }
    Settings::from_vars(|key| vars.get(key).cloned())
}
