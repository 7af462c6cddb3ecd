//! The `active_sessions` table (the original dashboard's view of who is reading): reader sockets
//! opening and closing, written by one task in the order they happened. A connect storm then
//! costs the store one write at a time, not a task and a pooled connection per socket; changes
//! beyond a bound are dropped and counted, since the table is informational (presence is the
//! core's, and nothing else reads it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::store::{EventStore, Session};

/// Changes that may wait for the writer; past this, a storm's changes are dropped.
const MAX_WAITING: usize = 4096;

pub struct SessionRecorder {
    tx: mpsc::Sender<(Session, bool)>,
    dropped: Arc<AtomicU64>,
}

impl SessionRecorder {
    /// Starts the writer task.
    pub fn spawn(store: Arc<dyn EventStore>) -> SessionRecorder {
        let (tx, mut rx) = mpsc::channel::<(Session, bool)>(MAX_WAITING);
        tokio::spawn(async move {
            while let Some((session, open)) = rx.recv().await {
                let result = if open {
                    store.session_opened(&session).await
                } else {
                    store.session_closed(&session).await
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "could not record a session");
                }
            }
        });
        SessionRecorder { tx, dropped: Arc::default() }
    }

    /// Queues a reader session opening (`open`) or closing, without waiting.
    pub fn record(&self, session: Session, open: bool) {
        if self.tx.try_send((session, open)).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "too many reader sessions to record; some are left out of active_sessions"
                );
            }
        }
    }
}
