//! Readers and consultants come and go on three healthy nodes: every delivery rule and the online
//! list must hold through connects, leaves and reconnects to other nodes.

use alice_sim::scenario::{calm, Scenario};

#[test]
fn client_churn() {
    alice_sim::seeds::sweep(Scenario::churning("client_churn", 3, calm));
}
