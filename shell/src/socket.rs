//! Socket.IO in: socketioxide handlers that turn a handshake and each client event into a driver
//! command. They decide nothing (the core does) and never block the driver.

use std::sync::Arc;

use alice_core::{CommandError, ConnId, ConnectRefusal, ErrorCode};
use alice_handoff::Ids;
use axum::extract::ConnectInfo;
use serde_json::Value;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{AckSender, Extension, SocketRef, State, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts, MessageHandler, Value as SioValue};
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide::SocketIo;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::oneshot;

use crate::arguments::{incoming, Incoming};
use crate::auth::{token_from, Verifier};
use crate::driver::{Command, DriverHandle};
use crate::peer_budget::{Peer, PeerBudget};
use crate::sessions::{Sessions, LOOKUP_TIMEOUT};

/// What the handlers share.
#[derive(Clone)]
pub struct SocketState {
    pub driver: DriverHandle,
    pub verifier: Verifier,
    /// Where sessions wait to be recovered.
    pub sessions: Arc<dyn Sessions>,
    pub next_conn: Arc<Ids>,
    /// Handshakes per client address, when limited.
    pub peer_budget: Option<Arc<PeerBudget>>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Registers the handlers on the default namespace.
pub fn attach(io: &SocketIo) {
    io.ns("/", on_connect.with(authenticate));
}

/// The handshake, timed for `alice_handshake_seconds`.
async fn authenticate(
    socket: SocketRef,
    TryData(auth): TryData<Value>,
    State(state): State<SocketState>,
) -> Result<(), ConnectRefusal> {
    let started = std::time::Instant::now();
    let answer = admit(socket, auth.ok(), &state).await;
    crate::metrics::Metrics::observe(&state.metrics.handshake, started.elapsed());
    answer
}

/// Finds the token, checks its signature, looks up the session a recovering client names, and
/// lets the core admit or refuse (and name the `pid` for the CONNECT reply).
async fn admit(socket: SocketRef, auth: Option<Value>, state: &SocketState) -> Result<(), ConnectRefusal> {
    if let Some(budget) = &state.peer_budget {
        let parts = socket.req_parts();
        if let Some(ConnectInfo(Peer(peer))) = parts.extensions.get::<ConnectInfo<Peer>>() {
            if !budget.admit(budget.client(peer.ip(), &parts.headers)) {
                return Err(ConnectRefusal::RateLimited);
            }
        }
    }
    let header = socket.req_parts().headers.get("authorization").and_then(|h| h.to_str().ok());
    let token = token_from(auth.as_ref(), header);
    let token = state.verifier.verify(token.as_deref()).await;
    let recovery = match recovery_from(auth.as_ref()) {
        Some((pid, offset)) => {
            let found = tokio::time::timeout(LOOKUP_TIMEOUT, state.sessions.load(&pid)).await;
            let session = match found {
                Ok(Ok(session)) => session,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not look up a session to recover; connecting fresh");
                    None
                }
                Err(_) => None,
            };
            Some(Box::new(alice_core::Recovery { pid, offset, session }))
        }
        None => None,
    };
    let conn = ConnId(state.next_conn.next());
    let (reply, answer) = oneshot::channel();
    let sid = socket.id.to_string();
    let connect = Command::Connect { conn, sid, token, recovery, socket: socket.clone(), reply };
    if !state.driver.send(connect).await {
        return Err(ConnectRefusal::ServerBusy);
    }
    let pid = answer.await.unwrap_or(Err(ConnectRefusal::ServerBusy))?;
    socket.set_pid(pid);
    socket.extensions.insert(conn);
    // Registered before the CONNECT answer goes out, so no event can arrive unhandled.
    socket.on_fallback(EventForwarder { state: state.clone() });
    let driver = state.driver.clone();
    socket.on_disconnect(async move |_: SocketRef, _: DisconnectReason| {
        driver.send(Command::Disconnected { conn }).await;
    });
    Ok(())
}

/// Longest `pid` or `offset` taken from a handshake; a longer one recovers nothing.
const MAX_RECOVERY_FIELD: usize = 64;

/// The `{ pid, offset }` an official client sends with its auth data when it reconnects (with
/// no offset when it received no event).
fn recovery_from(auth: Option<&Value>) -> Option<(String, Option<String>)> {
    let field = |name: &str| {
        let value = auth?.get(name)?.as_str()?;
        (!value.is_empty() && value.len() <= MAX_RECOVERY_FIELD).then(|| value.to_owned())
    };
    Some((field("pid")?, field("offset")))
}

async fn on_connect(Extension(conn): Extension<ConnId>, State(state): State<SocketState>) {
    state.driver.send(Command::Ready { conn }).await;
}

/// Forwards every client event to the driver, synchronously and in the order it arrived.
/// (An async handler would be spawned as its own task, and tasks can overtake each other.)
#[derive(Clone)]
struct EventForwarder {
    state: SocketState,
}

/// Marks [`EventForwarder`]'s implementation of socketioxide's handler trait.
struct Forward;

impl MessageHandler<LocalAdapter, Forward> for EventForwarder {
    fn call(&self, socket: Arc<Socket<LocalAdapter>>, mut v: SioValue, ack_id: Option<i64>) {
        let Some(conn) = socket.extensions.get::<ConnId>() else { return };
        let Some(Incoming { name, args, has_binary }) = incoming(&v) else { return };
        let ack = match (ack_id, AckSender::from_message_parts(&socket, &mut v, &ack_id)) {
            (Some(_), Ok(sender)) => Some(sender),
            _ => None,
        };
        let cmd = Command::Event { conn, name, args, has_binary, ack };
        if let Err(e) = self.state.driver.try_send(cmd) {
            if let TrySendError::Full(Command::Event { ack, name, .. }) = *e {
                // The driver is saturated: this event was not accepted, and the client is told so.
                refuse_busy(&socket, &name, ack);
            }
        }
    }
}

fn refuse_busy(socket: &Arc<Socket<LocalAdapter>>, name: &str, ack: Option<AckSender>) {
    let err = CommandError::new(ErrorCode::Unavailable, "Server busy, event not accepted");
    if let Some(ack) = ack {
        let _ = ack.send(alice_core::replies::ack_error(&err).raw());
    }
    let payload = alice_core::replies::event_error(&err, Some(&alice_core::protocol::echoed_name(name)));
    let _ = socket.emit(alice_core::replies::names::EVENT_ERROR, payload.raw());
}
