//! Where the core's accepted events go to be kept: straight into the store on a single node, or
//! into the cluster's Redis queue, from which every node's storage worker feeds the store.

pub mod redis;

use std::sync::Arc;

use alice_core::ReaderEvent;

use crate::store::{EventStore, StoreError};

/// The durable hand-off for accepted events.
#[async_trait::async_trait]
pub trait EventQueue: Send + Sync + 'static {
    /// Keeps `events` durably; only then may the core forget them.
    async fn enqueue(&self, events: &[Arc<ReaderEvent>]) -> Result<(), StoreError>;
    /// Puts dead-lettered events kept outside the core back in line; returns how many.
    async fn replay_dead(&self) -> Result<usize, StoreError> {
        Ok(0)
    }
}

/// A single node: the store itself is the durable place.
pub struct DirectQueue(pub Arc<dyn EventStore>);

#[async_trait::async_trait]
impl EventQueue for DirectQueue {
    async fn enqueue(&self, events: &[Arc<ReaderEvent>]) -> Result<(), StoreError> {
        self.0.insert(events).await
    }
}
