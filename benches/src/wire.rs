//! Just enough Engine.IO 4 / Socket.IO 4 over a websocket for the load tools: tokens, the two
//! handshakes, and the frames they send.

use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Claims for `sub` in `role`, valid for an hour.
pub fn claims(sub: &str, role: &str) -> Value {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() + 3600;
    json!({"sub": sub, "role": role, "exp": exp})
}

/// An HS256 token for `sub` in `role`.
pub fn token(secret: &str, sub: &str, role: &str) -> String {
    sign(&Header::new(Algorithm::HS256), &claims(sub, role), &EncodingKey::from_secret(secret.as_bytes()))
}

pub fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).expect("claims serialize and the key signs")
}

/// `host:port` of a server's base URL (http://host:port), for plain TCP connections.
pub fn authority(url: &str) -> &str {
    url.trim_start_matches("http://").trim_end_matches('/')
}

/// The websocket address of a server's Engine.IO endpoint.
pub fn ws_url(url: &str) -> String {
    format!("{}/socket.io/?EIO=4&transport=websocket", url.replacen("http", "ws", 1))
}

/// Opens a websocket and waits for Engine.IO's open packet.
pub async fn open(url: &str) -> Result<Ws, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(url)).await.map_err(|e| e.to_string())?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with('0') => return Ok(ws),
            Some(Ok(_)) => continue,
            _ => return Err("closed before open".into()),
        }
    }
}

/// Sends Socket.IO's CONNECT with `token`.
pub async fn send_connect(ws: &mut Ws, token: &str) -> Result<(), String> {
    ws.send(Message::text(format!("40{}", json!({"token": token})))).await.map_err(|e| e.to_string())
}

/// Waits for the answer to CONNECT: `Ok` when accepted, the refusal otherwise.
pub async fn connected(ws: &mut Ws) -> Result<(), String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with("40") => return Ok(()),
            Some(Ok(Message::Text(t))) if t.starts_with("44") => return Err(format!("refused: {t}")),
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                ws.send(Message::text("3")).await.map_err(|e| e.to_string())?
            }
            Some(Ok(_)) => continue,
            _ => return Err("closed before connect".into()),
        }
    }
}

/// Opens a websocket and completes the Engine.IO and Socket.IO handshakes.
pub async fn connect(url: &str, token: &str) -> Result<Ws, String> {
    let mut ws = open(url).await?;
    send_connect(&mut ws, token).await?;
    connected(&mut ws).await?;
    Ok(ws)
}
