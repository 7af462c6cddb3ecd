//! Consultant scope `assigned` across two nodes, with churn and resumes: the assignments table
//! is rewritten twice while readers send (as the Alice Suite's trigger would, behind the nodes'
//! backs), and no consultant socket is ever shown a reader who was not assigned to it at that
//! moment, allowing the refresh interval after each change. Readers assigned throughout still
//! reach their consultants exactly once, and each consultant lists only its own online readers.

use alice_core::AssignmentTable;
use alice_sim::scenario::{during, initial_assignments, Fault, Scenario};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Consultants 0 and 1 swap readers; later consultant 2 loses one and gains one.
fn plan(rng: &mut ChaCha8Rng, scenario: &Scenario) -> Vec<(u64, Fault)> {
    let start = initial_assignments(scenario);
    let mut swapped: AssignmentTable = start.clone();
    swapped.insert("consultant-0".into(), start["consultant-1"].clone());
    swapped.insert("consultant-1".into(), start["consultant-0"].clone());
    let mut third = swapped.clone();
    let mine = third.get_mut("consultant-2").expect("four consultants");
    let k = rng.random_range(0..scenario.readers / 2) * 2;
    mine.remove(&format!("reader-{k}"));
    mine.insert(format!("reader-{}", k + 1));
    let first = during(rng, 2_000);
    let second = first + rng.random_range(300..1_500);
    vec![(first, Fault::Reassign(swapped)), (second, Fault::Reassign(third))]
}

#[test]
fn consultant_scope() {
    alice_sim::seeds::sweep(Scenario { scoped: true, ..Scenario::churning("consultant_scope", 2, plan) });
}
