//! Socket.IO in: socketioxide handlers that turn a handshake and each client event into a driver
//! command. They decide nothing (the core does) and never block the driver.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use alice_core::{ConnId, ConnectRefusal};
use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, Extension, SocketRef, State, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts, Value as SioValue};
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide::SocketIo;
use tokio::sync::oneshot;

use crate::auth::{token_from, Verifier};
use crate::driver::{Command, DriverHandle};

/// What the handlers share.
#[derive(Clone)]
pub struct SocketState {
    pub driver: DriverHandle,
    pub verifier: Verifier,
    pub next_conn: Arc<AtomicU64>,
}

/// Registers the handlers on the default namespace.
pub fn attach(io: &SocketIo) {
    io.ns("/", on_connect.with(authenticate));
}

/// The handshake: find the token, check its signature, and let the core admit or refuse.
async fn authenticate(
    socket: SocketRef,
    TryData(auth): TryData<Value>,
    State(state): State<SocketState>,
) -> Result<(), ConnectRefusal> {
    let header = socket.req_parts().headers.get("authorization").and_then(|h| h.to_str().ok());
    let token = token_from(auth.ok().as_ref(), header);
    let token = state.verifier.verify(token.as_deref()).await;
    let conn = ConnId(state.next_conn.fetch_add(1, Ordering::Relaxed));
    let (reply, answer) = oneshot::channel();
    let sid = socket.id.to_string();
    let sent = state.driver.send(Command::Connect { conn, sid, token, socket: socket.clone(), reply }).await;
    if !sent {
        return Err(ConnectRefusal::ServerBusy);
    }
    answer.await.unwrap_or(Err(ConnectRefusal::ServerBusy))?;
    socket.extensions.insert(conn);
    let driver = state.driver.clone();
    socket.on_disconnect(async move |_: SocketRef, _: DisconnectReason| {
        driver.send(Command::Disconnected { conn }).await;
    });
    Ok(())
}

async fn on_connect(socket: SocketRef, Extension(conn): Extension<ConnId>, State(state): State<SocketState>) {
    socket.on_fallback(on_event);
    state.driver.send(Command::Ready { conn }).await;
}

async fn on_event(
    Event(name): Event,
    args: RawArgs,
    ack: AckSender,
    Extension(conn): Extension<ConnId>,
    State(state): State<SocketState>,
) {
    let ack = args.wants_ack.then_some(ack);
    let cmd = Command::Event { conn, name, args: args.values, has_binary: args.has_binary, ack };
    state.driver.send(cmd).await;
}

/// A client event's arguments as JSON values, and whether binary attachments came with them.
struct RawArgs {
    values: Vec<Value>,
    has_binary: bool,
    wants_ack: bool,
}

impl<A: Adapter> FromMessageParts<A> for RawArgs {
    type Error = Infallible;

    fn from_message_parts(
        _: &Arc<Socket<A>>,
        v: &mut SioValue,
        ack: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let (values, has_binary) = match v {
            // The packet's JSON array: the event name, then the arguments.
            SioValue::Str(s, attachments) => {
                let values = match serde_json::from_str::<Vec<Value>>(s.as_str()) {
                    Ok(mut all) if !all.is_empty() => {
                        all.remove(0);
                        all
                    }
                    // Deeper than the parser allows, or otherwise unreadable: no usable payload.
                    _ => vec![Value::Null],
                };
                (values, attachments.as_ref().is_some_and(|a| !a.is_empty()))
            }
            SioValue::Bytes(_) => (vec![Value::Null], true),
        };
        Ok(RawArgs { values, has_binary, wants_ack: ack.is_some() })
    }
}
