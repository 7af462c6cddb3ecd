//! Serves [`Db`] over any byte stream: the simulation's network, or TCP in the differential test.
//! Commands of one connection run in order; a blocking read holds the ones behind it, as in Redis.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use super::db::{Db, Outcome, Session};
use super::resp::{parse_command, Reply};

/// Faults the server injects on its own connections, drawn from a seeded generator.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkFaults {
    /// Chance that a connection is cut before a command runs.
    pub cut_before: f64,
    /// Chance that a connection is cut after a command ran, its reply lost.
    pub cut_after: f64,
    /// Each reply waits this long before it is written (a slow server or link).
    pub delay: Duration,
    /// Chance that a command which adds data is refused, as Redis at `maxmemory` with
    /// `noeviction` refuses it while memory is short: one command of a pipeline, not the
    /// connection, so a later command of the same pipeline may still run. (Independent draws
    /// refuse and run commands by turns far more often than a real Redis, whose memory only
    /// comes back as trims, acknowledgements and expiries free it.)
    pub refuse_writes: f64,
}

/// What Redis answers a command that would add data while it is out of memory.
const OUT_OF_MEMORY: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// Whether Redis refuses `args` when out of memory: the commands the shell sends that Redis marks
/// `denyoom` (`XADD`, `SET`, `HSET`, `XGROUP CREATE`), and the keyed append script, which Redis
/// refuses at its first write, before anything is written, and lets run to its end once it wrote.
fn adds_data(args: &[Vec<u8>]) -> bool {
    let is = |i: usize, word: &str| args.get(i).is_some_and(|a| a.eq_ignore_ascii_case(word.as_bytes()));
    ["XADD", "SET", "HSET", "EVALSHA", "EVAL"].iter().any(|w| is(0, w)) || is(0, "XGROUP") && is(1, "CREATE")
}

/// One fake Redis: its data (kept across restarts of the serving host) and its settings.
#[derive(Clone)]
pub struct FakeRedis {
    db: Arc<Mutex<Db>>,
    written: Arc<Notify>,
    faults: Arc<Mutex<(LinkFaults, ChaCha8Rng)>>,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    next_client: Arc<Mutex<u64>>,
}

impl FakeRedis {
    /// A server whose stream ids take their milliseconds from `clock`, faults drawn from `seed`.
    pub fn new(clock: Arc<dyn Fn() -> u64 + Send + Sync>, seed: u64) -> FakeRedis {
        FakeRedis {
            db: Arc::default(),
            written: Arc::default(),
            faults: Arc::new(Mutex::new((LinkFaults::default(), ChaCha8Rng::seed_from_u64(seed)))),
            clock,
            next_client: Arc::default(),
        }
    }

    pub fn set_faults(&self, faults: LinkFaults) {
        lock(&self.faults).0 = faults;
    }

    /// Rewrites the hash at `key` wholesale, as a tool outside the cluster would: `fields` in their
    /// order, whatever the key held before; an empty list deletes the key. No blocked read waits
    /// on a hash, so none is woken.
    pub fn set_hash(&self, key: &str, fields: &[(String, String)]) {
        lock(&self.db).set_hash(key.as_bytes(), fields.iter().map(|(f, v)| (f.as_bytes(), v.as_bytes())));
    }

    fn roll(&self, chance: impl Fn(&LinkFaults) -> f64) -> bool {
        let mut guard = lock(&self.faults);
        let (faults, rng) = &mut *guard;
        let p = chance(faults);
        p > 0.0 && rng.random_bool(p.min(1.0))
    }

    /// Serves one connection until the client leaves, the stream breaks or a fault cuts it.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, mut stream: S) {
        let id = {
            let mut next = lock(&self.next_client);
            *next += 1;
            *next
        };
        let mut session = Session { proto: 2, id };
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let args = match parse_command(&mut buf) {
                Ok(Some(args)) => args,
                Ok(None) => match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        continue;
                    }
                },
                Err(e) => {
                    let mut out = Vec::new();
                    Reply::err(format!("ERR Protocol error: {}", e.0)).encode(session.proto, &mut out);
                    let _ = stream.write_all(&out).await;
                    return;
                }
            };
            if self.roll(|f| f.cut_before) {
                return;
            }
            let reply = if adds_data(&args) && self.roll(|f| f.refuse_writes) {
                Reply::err(OUT_OF_MEMORY)
            } else {
                let Some(reply) = self.run(&mut session, args, &mut stream, &mut buf).await else {
                    return;
                };
                reply
            };
            if self.roll(|f| f.cut_after) {
                return;
            }
            let delay = lock(&self.faults).0.delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut out = Vec::new();
            reply.encode(session.proto, &mut out);
            if stream.write_all(&out).await.is_err() {
                return;
            }
        }
    }

    /// Runs a command, waiting out a blocking read. While it waits, bytes the client pipelines go
    /// to `buf`, and a client that leaves ends the wait: `None`, as Redis frees a blocked client
    /// whose connection closed instead of handing it entries.
    async fn run<S: AsyncRead + Unpin>(
        &self,
        session: &mut Session,
        mut args: Vec<Vec<u8>>,
        stream: &mut S,
        buf: &mut Vec<u8>,
    ) -> Option<Reply> {
        let mut deadline = None;
        let mut chunk = vec![0u8; 4 * 1024];
        loop {
            // Listen before looking, so a write between the look and the wait is not missed.
            let written = self.written.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            let outcome = lock(&self.db).execute((self.clock)(), session, &args);
            let (timeout_ms, retry) = match outcome {
                Outcome::Reply(reply) => {
                    if !matches!(reply, Reply::Error(_)) {
                        self.written.notify_waiters();
                    }
                    return Some(reply);
                }
                Outcome::Block { timeout_ms, retry } => (timeout_ms, retry),
            };
            args = retry;
            let until = *deadline.get_or_insert_with(|| {
                (timeout_ms > 0).then(|| tokio::time::Instant::now() + Duration::from_millis(timeout_ms))
            });
            let timeout = async {
                match until {
                    Some(until) => tokio::time::sleep_until(until).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(timeout);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut written => break,
                    read = stream.read(&mut chunk) => match read {
                        Ok(0) | Err(_) => return None,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    },
                    _ = &mut timeout => return Some(Reply::NilArray),
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(fake: &FakeRedis, line: &str) -> Reply {
        let args: Vec<Vec<u8>> = line.split(' ').map(|w| w.as_bytes().to_vec()).collect();
        match lock(&fake.db).execute(0, &mut Session { proto: 3, id: 1 }, &args) {
            Outcome::Reply(reply) => reply,
            Outcome::Block { .. } => panic!("{line} blocked"),
        }
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(f, v)| (f.to_string(), v.to_string())).collect()
    }

    fn map(pairs: &[(&str, &str)]) -> Reply {
        Reply::Map(pairs.iter().map(|(f, v)| (Reply::bulk(f), Reply::bulk(v))).collect())
    }

    #[test]
    fn a_hash_set_from_outside_is_what_hgetall_answers() {
        let fake = FakeRedis::new(Arc::new(|| 0), 0);
        run(&fake, "HSET h old 1 b 0");
        fake.set_hash("h", &owned(&[("b", r#"["r1"]"#), ("a", "[]"), ("b", r#"["r2"]"#)]));
        // The old fields are gone; a repeated field keeps its first place and its last value.
        assert_eq!(run(&fake, "HGETALL h"), map(&[("b", r#"["r2"]"#), ("a", "[]")]));
        assert_eq!(run(&fake, "HSET h c 1"), Reply::Int(1));
        assert_eq!(run(&fake, "HGETALL h"), map(&[("b", r#"["r2"]"#), ("a", "[]"), ("c", "1")]));
        // Over a stream too; and no fields deletes the key.
        run(&fake, "XADD s 1-1 f v");
        fake.set_hash("s", &owned(&[("f", "v")]));
        assert_eq!(run(&fake, "XLEN s"), Reply::Int(0));
        assert_eq!(run(&fake, "HGETALL s"), map(&[("f", "v")]));
        fake.set_hash("h", &[]);
        assert_eq!(run(&fake, "EXISTS h"), Reply::Int(0));
        assert_eq!(run(&fake, "HGETALL h"), map(&[]));
    }
}
