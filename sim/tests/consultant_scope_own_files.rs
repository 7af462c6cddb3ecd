//! Consultant scope `assigned` in a cluster whose nodes keep their own files, where no table is
//! shared and the assignments live in one Redis hash (`alice:assignments`): the same clients and
//! changes as `consultant_scope` (the hash rewritten once behind the nodes' backs, then an admin's
//! `PUT /admin/assignments` on one node), with the same invariants, and every node's file holding
//! every event.

use alice_core::AssignmentTable;
use alice_sim::clients::ADMIN_PUT_MS;
use alice_sim::scenario::{during, initial_assignments, Fault, Scenario};
use rand_chacha::ChaCha8Rng;

/// Consultants 0 and 1 swap readers, in the hash, before the admin's PUT.
fn plan(rng: &mut ChaCha8Rng, scenario: &Scenario) -> Vec<(u64, Fault)> {
    let start = initial_assignments(scenario);
    let mut swapped: AssignmentTable = start.clone();
    swapped.insert("consultant-0".into(), start["consultant-1"].clone());
    swapped.insert("consultant-1".into(), start["consultant-0"].clone());
    vec![(during(rng, 7_000 - ADMIN_PUT_MS + 500), Fault::Reassign(swapped))]
}

#[test]
fn consultant_scope_own_files() {
    let scenario = Scenario { scoped: true, ..Scenario::own_files("consultant_scope_own_files", 2, plan) };
    alice_sim::seeds::sweep(scenario);
}
