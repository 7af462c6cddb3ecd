//! Consultant scope `assigned` across two nodes, with churn and resumes: while readers send, the
//! assignments table is rewritten once behind the nodes' backs (as the Alice Suite's trigger
//! would), and then an admin changes one consultant's readers through `PUT /admin/assignments`
//! on one node (`clients.rs`, `admin`), which the other follows through the bus. No consultant
//! socket is ever shown or listed a reader who was not assigned to it at that moment, allowing
//! the refresh interval after a change. Readers assigned throughout still reach their consultants
//! exactly once, and each consultant lists only its own online readers at the end.

use alice_sim::scenario::{swap_two_consultants, Scenario};

#[test]
fn consultant_scope() {
    alice_sim::seeds::sweep(Scenario {
        scoped: true,
        ..Scenario::churning("consultant_scope", 2, swap_two_consultants)
    });
}
