//! A small Redis for the simulation: RESP2 and RESP3, and the stream commands the shell uses
//! (`XADD` with `MAXLEN`/`MINID` trimming, `XTRIM`, `XREAD`, `XREADGROUP`, `XACK`, `XDEL`,
//! `XAUTOCLAIM`, `XGROUP CREATE` and `SETID`, `XRANGE`, `XREVRANGE`, `XLEN`, `XINFO STREAM` (not
//! `FULL`), and to look at groups `XINFO GROUPS` and the summary `XPENDING key group`), the string
//! keys it sets and checks (`SET` with `NX`/`XX` and `EX`/`PX`, `GET`, `EXISTS`, `DEL`), the hash of
//! consultant assignments (`HSET`, `HGET`, `HGETALL`, `HDEL`, and `FakeRedis::set_hash` for a tool
//! outside the cluster), with Redis 7.0's replies and errors; and, run natively, the one script the
//! shell sends (`script.rs`).
//! `tests/differential.rs` keeps the commands honest against a real redis-server.

pub mod db;
pub mod id;
pub mod resp;
pub mod script;
pub mod server;

pub use server::{FakeRedis, LinkFaults};
