//! Consultant scope `assigned` across two nodes, with churn and resumes: while readers send, the
//! assignments table is rewritten once behind the nodes' backs (as the Alice Suite's trigger
//! would), and then an admin changes one consultant's readers through `PUT /admin/assignments`
//! on one node (`clients.rs`, `admin`), which the other follows through the bus. No consultant
//! socket is ever shown or listed a reader who was not assigned to it at that moment, allowing
//! the refresh interval after a change. Readers assigned throughout still reach their consultants
//! exactly once, and each consultant lists only its own online readers at the end.

use alice_core::AssignmentTable;
use alice_sim::clients::ADMIN_PUT_MS;
use alice_sim::scenario::{during, initial_assignments, Fault, Scenario};
use rand_chacha::ChaCha8Rng;

/// Consultants 0 and 1 swap readers, in the table, before the admin's PUT.
fn plan(rng: &mut ChaCha8Rng, scenario: &Scenario) -> Vec<(u64, Fault)> {
    let start = initial_assignments(scenario);
    let mut swapped: AssignmentTable = start.clone();
    swapped.insert("consultant-0".into(), start["consultant-1"].clone());
    swapped.insert("consultant-1".into(), start["consultant-0"].clone());
    vec![(during(rng, 7_000 - ADMIN_PUT_MS + 500), Fault::Reassign(swapped))]
}

#[test]
fn consultant_scope() {
    alice_sim::seeds::sweep(Scenario { scoped: true, ..Scenario::churning("consultant_scope", 2, plan) });
}
