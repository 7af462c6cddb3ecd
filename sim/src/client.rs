//! A Socket.IO 4 client over Engine.IO 4 websockets on the simulated network, as small as the
//! simulation needs: connect with a token, emit with acknowledgements, answer pings, read events.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use turmoil::net::TcpStream;

/// What the server sent.
#[derive(Debug)]
pub enum Incoming {
    Event(String, Value),
    Ack(u64, Value),
}

/// Why a connection ended or never began; no detail, as the simulation only counts them.
#[derive(Debug)]
pub struct Closed(pub String);

pub struct SioClient {
    ws: WebSocketStream<TcpStream>,
    next_ack: u64,
}

impl SioClient {
    /// Opens a websocket to `node` and joins the default namespace with `token`.
    pub async fn connect(node: &str, token: &str, timeout: Duration) -> Result<SioClient, Closed> {
        match tokio::time::timeout(timeout, Self::handshake(node, token)).await {
            Ok(result) => result,
            Err(_) => Err(Closed("connect timed out".into())),
        }
    }

    async fn handshake(node: &str, token: &str) -> Result<SioClient, Closed> {
        let tcp = TcpStream::connect(format!("{node}:3000")).await.map_err(|e| Closed(e.to_string()))?;
        let url = format!("ws://{node}:3000/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.map_err(|e| Closed(e.to_string()))?;
        let mut client = SioClient { ws, next_ack: 0 };
        match client.frame().await? {
            text if text.starts_with('0') => {}
            other => return Err(Closed(format!("expected an open packet, got {other}"))),
        }
        let auth = serde_json::json!({ "token": token });
        client.write(format!("40{auth}")).await?;
        loop {
            let text = client.frame().await?;
            if text.starts_with("40") {
                return Ok(client);
            }
            if let Some(error) = text.strip_prefix("44") {
                return Err(Closed(format!("refused: {error}")));
            }
            if text == "2" {
                client.write("3".into()).await?;
            }
        }
    }

    /// Emits `event` with `payload`, asking for an acknowledgement; returns its id.
    pub async fn emit(&mut self, event: &str, payload: Value) -> Result<u64, Closed> {
        let id = self.next_ack;
        self.next_ack += 1;
        let packet = serde_json::json!([event, payload]);
        self.write(format!("42{id}{packet}")).await?;
        Ok(id)
    }

    /// The next event or acknowledgement; pings are answered on the way.
    pub async fn next(&mut self) -> Result<Incoming, Closed> {
        loop {
            let text = self.frame().await?;
            if text == "2" {
                self.write("3".into()).await?;
                continue;
            }
            if text.starts_with('1') || text.starts_with("41") {
                return Err(Closed("closed by the server".into()));
            }
            if let Some(rest) = text.strip_prefix("42") {
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                let Ok(Value::Array(mut items)) = serde_json::from_str::<Value>(&rest[digits..]) else {
                    continue;
                };
                if items.is_empty() {
                    continue;
                }
                let name = items.remove(0).as_str().unwrap_or_default().to_owned();
                let payload = items.into_iter().next().unwrap_or(Value::Null);
                return Ok(Incoming::Event(name, payload));
            }
            if let Some(rest) = text.strip_prefix("43") {
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                let Ok(id) = rest[..digits].parse() else { continue };
                let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&rest[digits..]) else {
                    continue;
                };
                return Ok(Incoming::Ack(id, items.into_iter().next().unwrap_or(Value::Null)));
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    async fn frame(&mut self) -> Result<String, Closed> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
                Some(Ok(Message::Close(_))) | None => return Err(Closed("websocket closed".into())),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(Closed(e.to_string())),
            }
        }
    }

    async fn write(&mut self, text: String) -> Result<(), Closed> {
        self.ws.send(Message::text(text)).await.map_err(|e| Closed(e.to_string()))
    }
}
