//! The shell's network seams, filled with turmoil: a listener axum serves on, and a dialer the
//! shell's Redis client connects through.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use alice_shell::redis_link::{Dialer, RedisStream};
use turmoil::net::{TcpListener, TcpStream};

/// A simulated TCP listener for axum.
pub struct SimListener(pub TcpListener);

impl axum::serve::Listener for SimListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok(pair) => return pair,
                // As axum's own TCP listener does: wait a little and go on accepting.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Connects to the simulated Redis host.
pub struct SimDialer(pub &'static str);

#[async_trait::async_trait]
impl Dialer for SimDialer {
    async fn dial(&self) -> io::Result<Box<dyn RedisStream>> {
        Ok(Box::new(TcpStream::connect(self.0).await?))
    }
}
