//! Consultant scope `assigned` in a cluster whose nodes keep their own files, where no table is
//! shared and the assignments live in one Redis hash (`alice:assignments`): the same clients and
//! changes as `consultant_scope` (the hash rewritten once behind the nodes' backs, then an admin's
//! `PUT /admin/assignments` on one node), with the same invariants, and every node's file holding
//! every event.

use alice_sim::scenario::{swap_two_consultants, Scenario};

#[test]
fn consultant_scope_own_files() {
    alice_sim::seeds::sweep(Scenario {
        scoped: true,
        ..Scenario::own_files("consultant_scope_own_files", 2, swap_two_consultants)
    });
}
