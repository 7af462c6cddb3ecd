//! The bus between nodes: in-process for a single node, Redis streams for a cluster. Either way
//! every message a node publishes comes back to it, which is how it knows the bus still works.

pub mod redis;

use alice_core::BusMessage;
use tokio::sync::mpsc;

/// Where the driver sends what the core publishes.
pub enum Bus {
    /// A single node: messages loop straight back into this node's core.
    Local,
    /// A cluster: the core's batches go to the Redis publisher task.
    Redis(mpsc::UnboundedSender<Vec<BusMessage>>),
}
