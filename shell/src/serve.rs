//! The HTTP accept loop: what `axum::serve` does, plus a deadline on every request's head.
//!
//! axum's own loop gives hyper no timer, so hyper's `header_read_timeout` never applies: a client
//! that opens TCP connections and sends nothing, or half a request, holds each of them for good.
//! Here each connection speaks HTTP/1.1 (the Engine.IO transports need nothing else), and a
//! request's head must arrive within the handshake timeout (`HANDSHAKE_TIMEOUT_MS`), counted from
//! the accept for the first request and from the end of the previous response for the next: an
//! idle keep-alive connection is closed after as long.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::peer_budget::Peer;

/// Serves `app` on `listener` until `shutdown` completes, then lets the requests in progress
/// finish (upgraded websockets are the socket layer's to close).
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    head_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener<Addr = SocketAddr>,
{
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(head_timeout);
    // Connections are told to stop through `stop`; each holds `open` until it has.
    let (stop, stopping) = watch::channel(());
    let (open, connections) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (io, remote) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(Peer(remote)));
            app.clone().oneshot(request)
        });
        let connection = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
        let (mut stopping, connections) = (stopping.clone(), connections.clone());
        tokio::spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop(connections);
        });
    }
    drop(listener);
    let _ = stop.send(());
    drop(connections);
    open.closed().await;
}
