//! Scripts, as far as the shell uses them: `SCRIPT LOAD`, `EVALSHA` and `EVAL` of the one script
//! it sends, the keyed append (`shell/src/log/redis.rs`), run here natively with the same
//! semantics (atomic, like every command of this single-threaded fake), so that the simulation
//! exercises `clientEventId` across nodes and faults. Any other script is refused.

use std::collections::BTreeMap;

use super::db::Db;
use super::resp::Reply;

/// The scripts loaded, by SHA-1.
#[derive(Default)]
pub struct Scripts {
    loaded: BTreeMap<String, Vec<u8>>,
}

fn sha1(src: &[u8]) -> String {
    sha1_smol::Sha1::from(src).digest().to_string()
}

fn int(arg: &[u8]) -> Option<i64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

impl Scripts {
    /// `SCRIPT LOAD src`.
    pub fn load(&mut self, src: &[u8]) -> Reply {
        let sha = sha1(src);
        self.loaded.insert(sha.clone(), src.to_vec());
        Reply::bulk(sha)
    }

    /// `EVALSHA sha numkeys key... arg...`
    pub fn evalsha(&self, db: &mut Db, now: u64, args: &[Vec<u8>]) -> Reply {
        let sha = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        match self.loaded.get(&sha) {
            Some(src) => run(db, now, src, &args[1..]),
            None => Reply::err("NOSCRIPT No matching script. Please use EVAL."),
        }
    }

    /// `EVAL src numkeys key... arg...` (which also caches the script, as Redis does).
    pub fn eval(&mut self, db: &mut Db, now: u64, args: &[Vec<u8>]) -> Reply {
        self.loaded.insert(sha1(&args[0]), args[0].clone());
        run(db, now, &args[0], &args[1..])
    }
}

fn run(db: &mut Db, now: u64, src: &[u8], args: &[Vec<u8>]) -> Reply {
    if src != alice_shell::log::redis::APPEND_KEYED.as_bytes() {
        return Reply::err("ERR the simulated Redis runs only Alice's keyed append script");
    }
    let Some(numkeys) = args.first().and_then(|a| int(a)).and_then(|n| usize::try_from(n).ok()) else {
        return Reply::err("ERR value is not an integer or out of range");
    };
    if args.len() < 1 + numkeys {
        return Reply::err("ERR Number of keys can't be greater than number of args");
    }
    let (keys, argv) = args[1..].split_at(numkeys);
    append_keyed(db, now, keys, argv).unwrap_or_else(|| Reply::err("ERR Error running script: bad arguments"))
}

/// The script's loop: ARGV is the window, the count, then per entry its message, event id and
/// key index (1-based into KEYS, 0 for none); KEYS[1] is the log.
fn append_keyed(db: &mut Db, now: u64, keys: &[Vec<u8>], argv: &[Vec<u8>]) -> Option<Reply> {
    let window = u64::try_from(int(argv.first()?)?).ok()?;
    let n = usize::try_from(int(argv.get(1)?)?).ok()?;
    let log = keys.first()?;
    let mut out = Vec::with_capacity(n);
    for i in 1..=n {
        let (msg, id, k) =
            (argv.get(3 * i - 1)?, argv.get(3 * i)?, usize::try_from(int(argv.get(3 * i + 1)?)?).ok()?);
        let key = if k > 0 { Some(keys.get(k - 1)?) } else { None };
        let first = key.and_then(|key| db.get(now, key));
        match first {
            Some(first) if first != *id => out.push(Reply::bulk(first)),
            Some(_) => out.push(Reply::bulk("")),
            None => {
                db.append(now, log, msg);
                if let Some(key) = key {
                    db.set_expiring(key, id, now + window);
                }
                out.push(Reply::bulk(""));
            }
        }
    }
    Some(Reply::Array(out))
}
