//! Runs a scenario over many seeds, as the tests do: `SIM_SEEDS=N` runs seeds 1 to N (200 by
//! default), `SIM_SEED=S` runs one. A failing seed panics with the command that replays it and the
//! path of its full trace; some seeds (every seed with `SIM_TWICE=1`) run twice to show the trace
//! is the same byte for byte.

use std::path::PathBuf;

use crate::scenario::Scenario;
use crate::world::{run, RunOutcome};

const DEFAULT_SEEDS: u64 = 200;
/// Every this many seeds, one runs twice and the two trace hashes must match.
const TWICE_EVERY: u64 = 50;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}")))
}

/// Runs `scenario` (named as its test file is) over the seeds the environment asks for, on every
/// core, and panics with a replayable report on the first broken invariant.
pub fn sweep(scenario: Scenario) {
    let seeds: Vec<u64> = match env_u64("SIM_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env_u64("SIM_SEEDS").unwrap_or(DEFAULT_SEEDS)).collect(),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(seeds.len()).max(1);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (scenario, seeds) = (&scenario, &seeds);
                scope.spawn(move || {
                    seeds
                        .iter()
                        .skip(t)
                        .step_by(threads)
                        .filter_map(|&seed| one(scenario, seed))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|_| vec!["a worker panicked".into()]))
            .collect()
    });
    if !failures.is_empty() {
        panic!("{} of {} seeds failed:\n\n{}", failures.len(), seeds.len(), failures.join("\n\n"));
    }
    println!("{}: {} seeds passed", scenario.name, seeds.len());
}

/// Runs one seed; returns the report of its failure, if it failed.
fn one(scenario: &Scenario, seed: u64) -> Option<String> {
    let outcome = match std::panic::catch_unwind(|| run(scenario, seed)) {
        Ok(outcome) => outcome,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            return Some(format!(
                "{} seed {seed} panicked: {what}\nreplay: {}",
                scenario.name,
                replay(scenario, seed)
            ));
        }
    };
    if std::env::var_os("SIM_VERBOSE").is_some() || seed == 1 {
        println!("{} seed {seed}: {}", scenario.name, outcome.summary);
    }
    if !outcome.violations.is_empty() {
        return Some(report(scenario, seed, &outcome, "broke an invariant"));
    }
    if std::env::var_os("SIM_SEED").is_some() {
        match save(scenario.name, seed, &outcome) {
            Ok(path) => println!("trace: {}", path.display()),
            Err(e) => println!("the trace could not be written: {e}"),
        }
    }
    let twice = std::env::var_os("SIM_SEED").is_some() || std::env::var_os("SIM_TWICE").is_some();
    if seed % TWICE_EVERY == 1 || twice {
        let again = run(scenario, seed);
        if again.trace.hash() != outcome.trace.hash() {
            let (a, b) = (outcome.trace.lines(), again.trace.lines());
            let at = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
            let mut text = report(scenario, seed, &outcome, "gave two different traces");
            text.push_str(&format!(
                "\nfirst difference at line {at}:\n  first run:  {}\n  second run: {}",
                a.get(at).map_or("(end)", String::as_str),
                b.get(at).map_or("(end)", String::as_str)
            ));
            return Some(text);
        }
    }
    None
}

fn report(scenario: &Scenario, seed: u64, outcome: &RunOutcome, what: &str) -> String {
    let lines = outcome.trace.lines();
    let saved = match save(scenario.name, seed, outcome) {
        Ok(path) => format!("full trace: {}", path.display()),
        Err(e) => format!("(the trace could not be written: {e})"),
    };
    let tail: Vec<&str> = lines.iter().rev().take(30).rev().map(String::as_str).collect();
    format!(
        "{name} seed {seed} {what}: {violations:?}\n{summary}\nreplay: {replay}\n{saved}\nlast lines:\n{tail}",
        name = scenario.name,
        violations = outcome.violations,
        summary = outcome.summary,
        replay = replay(scenario, seed),
        tail = tail.join("\n"),
    )
}

/// Writes the run's trace to `$TMPDIR/alice-sim/<scenario>-<seed>.trace`.
fn save(name: &str, seed: u64, outcome: &RunOutcome) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join("alice-sim");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}-{seed}.trace"));
    std::fs::write(&path, outcome.trace.lines().join("\n") + "\n")?;
    Ok(path)
}

/// The command that runs `seed` of `scenario` again, alone and twice.
fn replay(scenario: &Scenario, seed: u64) -> String {
    format!("SIM_SEED={seed} cargo test -p alice-sim --test {} -- --nocapture", scenario.name)
}
