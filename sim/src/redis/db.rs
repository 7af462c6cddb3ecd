//! The data and the commands: streams with consumer groups, as far as the shell uses them (with
//! `XGROUP SETID` and `XINFO STREAM`, and the few inspection commands an operator would reach for:
//! `XINFO GROUPS`, `XPENDING`, `XTRIM`), as Redis 7.0 answers them (the differential test holds this
//! to a real redis-server). Every key is a stream, but for string keys: those the keyed append script
//! records (`script.rs`) and the backfill's claims (`SET`, `SET NX`, with an expiry), read with `GET`
//! and `EXISTS`; and for hashes: the consultant assignments of a cluster whose nodes keep their own
//! files (`HSET`, `HGET`, `HGETALL`, `HDEL`).

use std::collections::BTreeMap;

use super::id::StreamId;
use super::resp::Reply;

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// All keys. Lives outside any connection, so it survives a restart of the server (as Redis does
/// with `appendfsync always`).
#[derive(Default)]
pub struct Db {
    streams: BTreeMap<Vec<u8>, Stream>,
    /// String values and when (unix ms) each expires, `u64::MAX` for never.
    strings: BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
    /// Hashes, never empty (a hash goes with its last field), their fields in the order they were
    /// added: Redis' order for a small hash, which it keeps as a listpack. Past
    /// `hash-max-listpack-entries` fields (512 in redis-server 7.0.15 without a config file; 128
    /// is a common setting) or with a field or value longer than `hash-max-listpack-value` (64
    /// bytes), Redis makes the hash a hashtable, and `HGETALL` answers in that table's order,
    /// which the fake does not reproduce.
    hashes: BTreeMap<Vec<u8>, Fields>,
    scripts: super::script::Scripts,
}

#[derive(Default)]
struct Stream {
    entries: BTreeMap<StreamId, Fields>,
    last_id: StreamId,
    groups: BTreeMap<Vec<u8>, Group>,
    /// Every entry ever added, deleted or not: Redis numbers entries by it to give a group's lag.
    entries_added: i64,
    /// The largest id `XDEL` removed (trimming does not count: it only cuts the front, which
    /// `entries_added` and the length still account for). A deletion at or after a group's
    /// position makes its lag unknowable, as in Redis.
    max_deleted: StreamId,
}

struct Group {
    last_delivered: StreamId,
    pending: BTreeMap<StreamId, Pending>,
    consumers: BTreeMap<Vec<u8>, ()>,
    /// How many of the stream's entries, counted as `entries_added` counts them, the group has
    /// read; `None` when Redis does not know (`entries-read` nil in `XINFO GROUPS`).
    entries_read: Option<i64>,
}

impl Group {
    /// `XGROUP SETID`'s change: the group reads on after `id` (`$` for the stream's `last_id`; `-`
    /// and `+` allowed, unlike `CREATE`), having read `entries_read` entries, unknown without
    /// `ENTRIESREAD` (Redis 7.0 does not place the group; `Stream::lag` does when asked). Its
    /// pending entries stay pending.
    fn set_id(&mut self, id: &[u8], last_id: StreamId, entries_read: Option<i64>) -> Reply {
        self.last_delivered = match id {
            b"$" => last_id,
            b"-" => StreamId::MIN,
            b"+" => StreamId::MAX,
            other => match StreamId::parse(other, 0) {
                Some(id) => id,
                None => return Reply::err(INVALID_ID),
            },
        };
        self.entries_read = entries_read;
        Reply::Simple("OK")
    }
}

struct Pending {
    consumer: Vec<u8>,
    delivered_at: u64,
    deliveries: u64,
}

/// How `XADD` and `XTRIM` trim: keep the newest `MaxLen` entries, or those at or after `MinId`.
#[derive(Clone, Copy, Debug)]
enum Trim {
    MaxLen(usize),
    MinId(StreamId),
}

/// The options `XADD` and `XTRIM` share, parsed.
#[derive(Default)]
struct TrimArgs {
    trim: Option<Trim>,
    /// Delete at most this many entries (0: no limit). Only `~` trims have one.
    limit: usize,
    nomkstream: bool,
    /// Where `XADD`'s id is (the arguments' length when options ran to the end), and the id: `None`
    /// for `*`.
    id_at: usize,
    id: Option<StreamId>,
}

/// The options `XGROUP CREATE` and `XGROUP SETID` share, parsed.
#[derive(Default)]
struct GroupOptions {
    /// `MKSTREAM` (`CREATE` only): make the stream if there is none.
    mkstream: bool,
    /// `ENTRIESREAD n`: how many entries the group has read; `None` (or -1) for unknown.
    entries_read: Option<i64>,
}

/// What one connection chose.
pub struct Session {
    /// 2 or 3, set by `HELLO`.
    pub proto: u8,
    pub id: u64,
}

/// A command's result: a reply now, or "nothing yet" for a blocking read.
#[derive(Debug)]
pub enum Outcome {
    Reply(Reply),
    /// Wait for a write (or `timeout_ms`; 0 is forever), then run `retry` instead.
    Block {
        timeout_ms: u64,
        retry: Vec<Vec<u8>>,
    },
}

const INVALID_ID: &str = "ERR Invalid stream ID specified as stream command argument";
const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";
const XINFO_FULL: &str = "ERR the fake Redis only answers XINFO STREAM key, without FULL";
const XGROUP_NO_KEY: &str = "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you \
                             may want to use the MKSTREAM option to create an empty stream automatically.";
/// The most entries a `~` trim deletes without `LIMIT`: Redis' default, 100 times its 100 entries
/// per node.
const APPROX_LIMIT: usize = 10_000;

fn arity(name: &str) -> Reply {
    Reply::err(format!("ERR wrong number of arguments for '{name}' command"))
}

fn upper(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_uppercase()
}

fn int(arg: &[u8]) -> Option<i64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// Sets one field of a hash; returns whether it is new. A new field goes last and an updated one
/// keeps its place, as in Redis' listpack, which is searched field by field too.
fn put_field(hash: &mut Fields, field: &[u8], value: &[u8]) -> bool {
    match hash.iter_mut().find(|(f, _)| f == field) {
        Some((_, old)) => {
            *old = value.to_vec();
            false
        }
        None => {
            hash.push((field.to_vec(), value.to_vec()));
            true
        }
    }
}

fn entry(id: StreamId, fields: &Fields) -> Reply {
    let flat = fields.iter().flat_map(|(f, v)| [Reply::bulk(f), Reply::bulk(v)]).collect();
    Reply::Array(vec![Reply::bulk(id.to_bytes()), Reply::Array(flat)])
}

impl Db {
    /// Runs one command at `now` (unix ms).
    pub fn execute(&mut self, now: u64, session: &mut Session, args: &[Vec<u8>]) -> Outcome {
        let Some(name) = args.first() else { return Outcome::Reply(Reply::err("ERR empty command")) };
        let reply = match upper(name).as_str() {
            "PING" => match args.len() {
                1 => Reply::Simple("PONG"),
                2 => Reply::bulk(&args[1]),
                _ => arity("ping"),
            },
            "HELLO" => self.hello(session, &args[1..]),
            "CLIENT" if args.len() >= 2 && upper(&args[1]) == "SETINFO" => Reply::Simple("OK"),
            "SELECT" if args.len() == 2 => match int(&args[1]) {
                Some(0) => Reply::Simple("OK"),
                Some(_) => Reply::err("ERR DB index is out of range"),
                None => Reply::err(NOT_INTEGER),
            },
            "FLUSHALL" => {
                self.streams.clear();
                self.strings.clear();
                self.hashes.clear();
                Reply::Simple("OK")
            }
            "SCRIPT" if args.len() == 3 && upper(&args[1]) == "LOAD" => self.scripts.load(&args[2]),
            "EVALSHA" | "EVAL" if args.len() < 3 => arity(&upper(name).to_lowercase()),
            "EVALSHA" => {
                let scripts = std::mem::take(&mut self.scripts);
                let reply = scripts.evalsha(self, now, &args[1..]);
                self.scripts = scripts;
                reply
            }
            "EVAL" => {
                let mut scripts = std::mem::take(&mut self.scripts);
                let reply = scripts.eval(self, now, &args[1..]);
                self.scripts = scripts;
                reply
            }
            "DEL" if args.len() >= 2 => {
                Reply::Int(args[1..].iter().filter(|k| self.delete(now, k)).count() as i64)
            }
            "EXISTS" if args.len() >= 2 => {
                Reply::Int(args[1..].iter().filter(|k| self.exists(now, k)).count() as i64)
            }
            "GET" if args.len() == 2 => self.get(now, &args[1]).map_or(Reply::Nil, Reply::bulk),
            "SET" if args.len() >= 3 => self.set(now, &args[1..]),
            // Pairs after the key, at least one.
            "HSET" if args.len() >= 4 && args.len().is_multiple_of(2) => self.hset(&args[1], &args[2..]),
            "HGET" if args.len() == 3 => self.hget(&args[1], &args[2]).map_or(Reply::Nil, Reply::bulk),
            "HGETALL" if args.len() == 2 => self.hgetall(&args[1]),
            "HDEL" if args.len() >= 3 => self.hdel(&args[1], &args[2..]),
            "XADD" => self.xadd(now, &args[1..]),
            "XTRIM" => self.xtrim(&args[1..]),
            "XINFO" => self.xinfo(&args[1..]),
            "XPENDING" => self.xpending(&args[1..]),
            "XLEN" if args.len() == 2 => {
                Reply::Int(self.streams.get(&args[1]).map_or(0, |s| s.entries.len()) as i64)
            }
            "XRANGE" => self.xrange(&args[1..], false),
            "XREVRANGE" => self.xrange(&args[1..], true),
            "XDEL" => self.xdel(&args[1..]),
            "XGROUP" => self.xgroup(&args[1..]),
            "XACK" => self.xack(&args[1..]),
            "XAUTOCLAIM" => self.xautoclaim(now, &args[1..]),
            "XREAD" if args.len() < 4 => arity("xread"),
            "XREAD" => return self.xread(now, session, args, None),
            "XREADGROUP" => return self.xreadgroup(now, session, args),
            "DEL" | "EXISTS" | "GET" | "SET" | "HSET" | "HGET" | "HGETALL" | "HDEL" | "XLEN" | "SELECT" => {
                arity(&String::from_utf8_lossy(name).to_lowercase())
            }
            _ => {
                let rest: String =
                    args[1..].iter().map(|a| format!("'{}' ", String::from_utf8_lossy(a))).collect();
                Reply::err(format!(
                    "ERR unknown command '{}', with args beginning with: {rest}",
                    String::from_utf8_lossy(name)
                ))
            }
        };
        Outcome::Reply(reply)
    }

    fn hello(&mut self, session: &mut Session, args: &[Vec<u8>]) -> Reply {
        if let Some(version) = args.first() {
            match int(version) {
                Some(v @ 2..=3) => session.proto = v as u8,
                Some(_) => return Reply::err("NOPROTO unsupported protocol version"),
                None => return Reply::err("ERR Protocol version is not an integer or out of range"),
            }
        }
        let field = |k: &str, v: Reply| (Reply::bulk(k), v);
        Reply::Map(vec![
            field("server", Reply::bulk("redis")),
            field("version", Reply::bulk("7.0.15")),
            field("proto", Reply::Int(session.proto.into())),
            field("id", Reply::Int(session.id as i64)),
            field("mode", Reply::bulk("standalone")),
            field("role", Reply::bulk("master")),
            field("modules", Reply::Array(Vec::new())),
        ])
    }

    /// Forgets `key`'s string if it expired by `now`, as Redis does when a command looks at a key.
    /// A string lives through its last millisecond: Redis' `keyIsExpired` is `now > when`.
    fn expire(&mut self, now: u64, key: &[u8]) {
        if self.strings.get(key).is_some_and(|(_, expires)| now > *expires) {
            self.strings.remove(key);
        }
    }

    /// Whether `key` holds anything at `now`: a stream, a hash, or a string that has not expired.
    fn exists(&mut self, now: u64, key: &[u8]) -> bool {
        self.expire(now, key);
        self.streams.contains_key(key) || self.strings.contains_key(key) || self.hashes.contains_key(key)
    }

    /// Removes `key`, whatever it holds; returns whether it held anything (an expired string is
    /// nothing, and `DEL` does not count it).
    fn delete(&mut self, now: u64, key: &[u8]) -> bool {
        let existed = self.exists(now, key);
        self.streams.remove(key);
        self.strings.remove(key);
        self.hashes.remove(key);
        existed
    }

    /// A string key's value, unless it expired by `now`.
    pub fn get(&mut self, now: u64, key: &[u8]) -> Option<Vec<u8>> {
        self.expire(now, key);
        self.strings.get(key).map(|(value, _)| value.clone())
    }

    /// `SET key value PX ...`, expiring at `expires` (unix ms; `u64::MAX` for never). Like any
    /// `SET`, it replaces what the key held, a stream or a hash too.
    pub fn set_expiring(&mut self, key: &[u8], value: &[u8], expires: u64) {
        self.streams.remove(key);
        self.hashes.remove(key);
        self.strings.insert(key.to_vec(), (value.to_vec(), expires));
    }

    /// `SET key value [NX|XX] [EX s|PX ms]`: the shell's two forms (`PX ms`, the backfill's
    /// `NX PX ms` claim) and their kin, parsed as Redis parses them: options in any order, repeats
    /// allowed, the last `EX` or `PX` counting, `NX` with `XX` or `EX` with `PX` a syntax error, and
    /// the expiry's number read only once every option has been. With `NX` (`XX`) and a key that
    /// holds something (nothing) it sets nothing and answers nil. `GET`, `KEEPTTL`, `EXAT` and
    /// `PXAT` are not implemented.
    fn set(&mut self, now: u64, args: &[Vec<u8>]) -> Reply {
        let (mut nx, mut xx) = (false, false);
        // The expiry's unit in ms (1000 for `EX`) and its argument.
        let mut expiry: Option<(i64, &[u8])> = None;
        let mut at = 2;
        while at < args.len() {
            let next = args.get(at + 1).map(Vec::as_slice);
            match (upper(&args[at]).as_str(), next) {
                ("NX", _) if !xx => nx = true,
                ("XX", _) if !nx => xx = true,
                (option @ ("EX" | "PX"), Some(n)) => {
                    let unit = if option == "EX" { 1000 } else { 1 };
                    if expiry.is_some_and(|(earlier, _)| earlier != unit) {
                        return Reply::err(SYNTAX);
                    }
                    expiry = Some((unit, n));
                    at += 1;
                }
                ("GET" | "KEEPTTL" | "EXAT" | "PXAT", _) => {
                    return Reply::err("ERR the fake Redis only answers SET key value [NX|XX] [EX s|PX ms]");
                }
                _ => return Reply::err(SYNTAX),
            }
            at += 1;
        }
        let expires = match expiry {
            None => u64::MAX,
            Some((unit, n)) => match int(n) {
                None => return Reply::err(NOT_INTEGER),
                // Redis' own bounds: positive, and no overflow in ms or once added to the time.
                Some(n) => {
                    match n.checked_mul(unit).filter(|_| n > 0).and_then(|ms| ms.checked_add(now as i64)) {
                        Some(at) => at as u64,
                        None => return Reply::err("ERR invalid expire time in 'set' command"),
                    }
                }
            },
        };
        let (key, value) = (&args[0], &args[1]);
        if (nx && self.exists(now, key)) || (xx && !self.exists(now, key)) {
            return Reply::Nil;
        }
        self.set_expiring(key, value, expires);
        Reply::Simple("OK")
    }

    /// Replaces whatever `key` holds with a hash of `fields`, in their order (a repeated field
    /// keeps its first place and its last value, as in one `HSET`); no fields deletes the key. What
    /// a tool outside the cluster does with `DEL` and `HSET` in one `MULTI`.
    pub fn set_hash<'a>(&mut self, key: &[u8], fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) {
        self.streams.remove(key);
        self.strings.remove(key);
        let mut hash = Fields::new();
        for (field, value) in fields {
            put_field(&mut hash, field, value);
        }
        if hash.is_empty() {
            self.hashes.remove(key);
        } else {
            self.hashes.insert(key.to_vec(), hash);
        }
    }

    /// `HSET key field value [field value ...]`, the pairs in turn: answers how many fields it
    /// added, not those it updated (a field given twice and new counts once).
    fn hset(&mut self, key: &[u8], pairs: &[Vec<u8>]) -> Reply {
        let hash = self.hashes.entry(key.to_vec()).or_default();
        let added = pairs.chunks(2).filter(|p| put_field(hash, &p[0], &p[1])).count();
        Reply::Int(added as i64)
    }

    fn hget(&self, key: &[u8], field: &[u8]) -> Option<&[u8]> {
        let hash = self.hashes.get(key)?;
        hash.iter().find(|(f, _)| f == field).map(|(_, value)| value.as_slice())
    }

    /// `HGETALL key`: a map (a flat array in RESP2) in the hash's order; empty for no key.
    fn hgetall(&self, key: &[u8]) -> Reply {
        let pairs = self.hashes.get(key).into_iter().flatten();
        Reply::Map(pairs.map(|(f, v)| (Reply::bulk(f), Reply::bulk(v))).collect())
    }

    /// `HDEL key field [field ...]`: answers how many fields went (a field named twice counts
    /// once); the key goes with its last field.
    fn hdel(&mut self, key: &[u8], fields: &[Vec<u8>]) -> Reply {
        let Some(hash) = self.hashes.get_mut(key) else { return Reply::Int(0) };
        let before = hash.len();
        hash.retain(|(f, _)| !fields.contains(f));
        let removed = before - hash.len();
        if hash.is_empty() {
            self.hashes.remove(key);
        }
        Reply::Int(removed as i64)
    }

    /// `XADD key * m msg`.
    pub fn append(&mut self, now: u64, key: &[u8], msg: &[u8]) {
        let args = [key.to_vec(), b"*".to_vec(), b"m".to_vec(), msg.to_vec()];
        let _ = self.xadd(now, &args);
    }

    fn xadd(&mut self, now: u64, args: &[Vec<u8>]) -> Reply {
        if args.len() < 4 {
            return arity("xadd");
        }
        let key = &args[0];
        let parsed = match trim_args(args, true) {
            Ok(parsed) => parsed,
            Err(e) => return e,
        };
        let fields = args.get(parsed.id_at + 1..).unwrap_or_default();
        if fields.is_empty() || !fields.len().is_multiple_of(2) {
            return arity("xadd");
        }
        if parsed.id == Some(StreamId::MIN) {
            return Reply::err("ERR The ID specified in XADD must be greater than 0-0");
        }
        if parsed.nomkstream && !self.streams.contains_key(key) {
            return Reply::Nil;
        }
        let stream = self.streams.entry(key.clone()).or_default();
        if stream.last_id == StreamId::MAX {
            return Reply::err("ERR The stream has exhausted the last possible ID, unable to add more items");
        }
        let id = match parsed.id {
            Some(id) if id <= stream.last_id => {
                return Reply::err(
                    "ERR The ID specified in XADD is equal or smaller than the target stream top item",
                );
            }
            Some(id) => id,
            None if now > stream.last_id.ms => StreamId { ms: now, seq: 0 },
            // Not MAX (checked above), so there is a next id.
            None => stream.last_id.next().unwrap_or(StreamId::MAX),
        };
        let fields = fields.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
        stream.entries.insert(id, fields);
        stream.last_id = id;
        stream.entries_added += 1;
        if let Some(trim) = parsed.trim {
            stream.trim(trim, parsed.limit);
        }
        Reply::bulk(id.to_bytes())
    }

    fn xtrim(&mut self, args: &[Vec<u8>]) -> Reply {
        if args.len() < 3 {
            return arity("xtrim");
        }
        let parsed = match trim_args(args, false) {
            Ok(parsed) => parsed,
            Err(e) => return e,
        };
        let (Some(trim), Some(stream)) = (parsed.trim, self.streams.get_mut(&args[0])) else {
            return Reply::Int(0);
        };
        Reply::Int(stream.trim(trim, parsed.limit) as i64)
    }

    /// `XINFO GROUPS key` and `XINFO STREAM key`, the subcommands the fake knows. As in Redis the
    /// key is looked up before `STREAM`'s options are read.
    fn xinfo(&self, args: &[Vec<u8>]) -> Reply {
        let Some(sub) = args.first() else { return arity("xinfo") };
        let sub_name = upper(sub);
        match sub_name.as_str() {
            "GROUPS" if args.len() != 2 => return arity("xinfo|groups"),
            "STREAM" if args.len() < 2 => return arity("xinfo|stream"),
            "GROUPS" | "STREAM" => {}
            _ => {
                return Reply::err(format!(
                    "ERR unknown subcommand '{}'. Try XINFO HELP.",
                    String::from_utf8_lossy(sub)
                ))
            }
        }
        let Some(stream) = self.streams.get(&args[1]) else { return Reply::err("ERR no such key") };
        if sub_name == "GROUPS" {
            return stream.groups_info();
        }
        let full = |option: &[u8]| upper(option) == "FULL";
        match &args[2..] {
            [] => stream.info(),
            // `FULL [COUNT n]`, well formed, is not implemented.
            [option] if full(option) => Reply::err(XINFO_FULL),
            [option, count, n] if full(option) && upper(count) == "COUNT" => match int(n) {
                Some(_) => Reply::err(XINFO_FULL),
                None => Reply::err(NOT_INTEGER),
            },
            _ => subcommand_syntax("XINFO", sub),
        }
    }

    /// `XPENDING key group`, the summary; the forms with a range are not implemented.
    fn xpending(&self, args: &[Vec<u8>]) -> Reply {
        match args.len() {
            0 | 1 => return arity("xpending"),
            2 => {}
            5..=8 => return Reply::err("ERR the fake Redis only answers XPENDING key group"),
            _ => return Reply::err(SYNTAX),
        }
        let (key, group_name) = (&args[0], &args[1]);
        let Some(group) = self.streams.get(key).and_then(|s| s.groups.get(group_name)) else {
            return nogroup(key, group_name, "");
        };
        let (Some((first, _)), Some((last, _))) =
            (group.pending.first_key_value(), group.pending.last_key_value())
        else {
            return Reply::Array(vec![Reply::Int(0), Reply::Nil, Reply::Nil, Reply::NilArray]);
        };
        // Consumers in name order, as Redis walks them; one with nothing pending is left out.
        let mut per_consumer: BTreeMap<&[u8], u64> = BTreeMap::new();
        for nack in group.pending.values() {
            *per_consumer.entry(&nack.consumer).or_default() += 1;
        }
        let consumers = per_consumer
            .into_iter()
            .map(|(c, n)| Reply::Array(vec![Reply::bulk(c), Reply::bulk(n.to_string())]));
        Reply::Array(vec![
            Reply::Int(group.pending.len() as i64),
            Reply::bulk(first.to_bytes()),
            Reply::bulk(last.to_bytes()),
            Reply::Array(consumers.collect()),
        ])
    }

    fn xrange(&self, args: &[Vec<u8>], reverse: bool) -> Reply {
        let name = if reverse { "xrevrange" } else { "xrange" };
        if args.len() != 3 && args.len() != 5 {
            return if args.len() < 3 { arity(name) } else { Reply::err(SYNTAX) };
        }
        let (first, second) = if reverse { (&args[2], &args[1]) } else { (&args[1], &args[2]) };
        let (Some(start), Some(end)) = (bound(first, true), bound(second, false)) else {
            return Reply::err(INVALID_ID);
        };
        let mut count = usize::MAX;
        if args.len() == 5 {
            if upper(&args[3]) != "COUNT" {
                return Reply::err(SYNTAX);
            }
            match int(&args[4]) {
                Some(n) if n < 0 => count = 0,
                Some(n) => count = n as usize,
                None => return Reply::err(NOT_INTEGER),
            }
        }
        let (Some(start), Some(end), Some(stream)) = (start, end, self.streams.get(&args[0])) else {
            return Reply::Array(Vec::new());
        };
        if start > end {
            return Reply::Array(Vec::new());
        }
        let range = stream.entries.range(start..=end);
        let items: Vec<Reply> = if reverse {
            range.rev().take(count).map(|(id, f)| entry(*id, f)).collect()
        } else {
            range.take(count).map(|(id, f)| entry(*id, f)).collect()
        };
        Reply::Array(items)
    }

    fn xdel(&mut self, args: &[Vec<u8>]) -> Reply {
        if args.len() < 2 {
            return arity("xdel");
        }
        let Some(ids) = args[1..].iter().map(|a| StreamId::parse(a, 0)).collect::<Option<Vec<_>>>() else {
            return Reply::err(INVALID_ID);
        };
        let Some(stream) = self.streams.get_mut(&args[0]) else { return Reply::Int(0) };
        let mut deleted = 0;
        for id in ids {
            if stream.entries.remove(&id).is_some() {
                stream.max_deleted = stream.max_deleted.max(id);
                deleted += 1;
            }
        }
        Reply::Int(deleted)
    }

    /// `XGROUP CREATE` and `XGROUP SETID`, the subcommands the fake knows, checked in Redis'
    /// order so the same mistake gets the same error: the options, the key, the group (`SETID`),
    /// the number of arguments, then the id.
    fn xgroup(&mut self, args: &[Vec<u8>]) -> Reply {
        let Some(sub) = args.first() else { return arity("xgroup") };
        let create = match upper(sub).as_str() {
            "CREATE" => true,
            "SETID" => false,
            _ => {
                return Reply::err(format!(
                    "ERR unknown subcommand '{}'. Try XGROUP HELP.",
                    String::from_utf8_lossy(sub)
                ))
            }
        };
        if args.len() < 4 {
            return arity(if create { "xgroup|create" } else { "xgroup|setid" });
        }
        let options = match group_options(sub, create, &args[4..]) {
            Ok(options) => options,
            Err(e) => return e,
        };
        let (key, group_name, id) = (&args[1], &args[2], &args[3]);
        if create {
            if !self.streams.contains_key(key) && !options.mkstream {
                return Reply::err(XGROUP_NO_KEY);
            }
            // Up to three options, however repeated.
            if args.len() > 7 {
                return subcommand_syntax("XGROUP", sub);
            }
            return self.xgroup_create(key, group_name, id, options);
        }
        let Some(stream) = self.streams.get_mut(key) else { return Reply::err(XGROUP_NO_KEY) };
        let last_id = stream.last_id;
        let Some(group) = stream.groups.get_mut(group_name) else {
            return Reply::err(format!(
                "NOGROUP No such consumer group '{}' for key name '{}'",
                String::from_utf8_lossy(group_name),
                String::from_utf8_lossy(key)
            ));
        };
        // The id alone, or with one `ENTRIESREAD n`.
        if args.len() != 4 && args.len() != 6 {
            return subcommand_syntax("XGROUP", sub);
        }
        group.set_id(id, last_id, options.entries_read)
    }

    /// `XGROUP CREATE key group id|$ [MKSTREAM] [ENTRIESREAD n]`, its options already read and the
    /// key known to exist unless `MKSTREAM` makes it.
    fn xgroup_create(&mut self, key: &[u8], group: &[u8], id: &[u8], options: GroupOptions) -> Reply {
        let last = self.streams.get(key).map_or(StreamId::MIN, |s| s.last_id);
        // Unlike `SETID`, `CREATE` takes no `-` or `+`.
        let start = match id {
            b"$" => last,
            other => match StreamId::parse(other, 0) {
                Some(id) => id,
                None => return Reply::err(INVALID_ID),
            },
        };
        let stream = self.streams.entry(key.to_vec()).or_default();
        if stream.groups.contains_key(group) {
            return Reply::err("BUSYGROUP Consumer Group name already exists");
        }
        // Without ENTRIESREAD Redis 7.0 leaves the count unknown, even for `$`; `Stream::lag`
        // places the group when asked.
        let fresh = Group {
            last_delivered: start,
            pending: BTreeMap::new(),
            consumers: BTreeMap::new(),
            entries_read: options.entries_read,
        };
        stream.groups.insert(group.to_vec(), fresh);
        Reply::Simple("OK")
    }

    fn xack(&mut self, args: &[Vec<u8>]) -> Reply {
        if args.len() < 3 {
            return arity("xack");
        }
        let Some(ids) = args[2..].iter().map(|a| StreamId::parse(a, 0)).collect::<Option<Vec<_>>>() else {
            return Reply::err(INVALID_ID);
        };
        let Some(group) = self.streams.get_mut(&args[0]).and_then(|s| s.groups.get_mut(&args[1])) else {
            return Reply::Int(0);
        };
        Reply::Int(ids.iter().filter(|id| group.pending.remove(id).is_some()).count() as i64)
    }

    fn xautoclaim(&mut self, now: u64, args: &[Vec<u8>]) -> Reply {
        if args.len() < 5 {
            return arity("xautoclaim");
        }
        let (key, group_name, consumer) = (&args[0], &args[1], &args[2]);
        let Some(min_idle) = int(&args[3]).filter(|n| *n >= 0) else {
            return Reply::err("ERR Invalid min-idle-time argument for XAUTOCLAIM");
        };
        let start = match args[4].as_slice() {
            b"-" => Some(StreamId::MIN),
            b"+" => Some(StreamId::MAX),
            other => StreamId::parse(other, 0),
        };
        let Some(start) = start else { return Reply::err(INVALID_ID) };
        let (mut count, mut justid) = (100i64, false);
        let mut at = 5;
        while at < args.len() {
            match upper(&args[at]).as_str() {
                "COUNT" if at + 1 < args.len() => {
                    match int(&args[at + 1]) {
                        Some(n) if (1..=i64::MAX / 10).contains(&n) => count = n,
                        Some(_) => return Reply::err("ERR COUNT must be > 0"),
                        None => return Reply::err(NOT_INTEGER),
                    }
                    at += 2;
                }
                "JUSTID" => {
                    justid = true;
                    at += 1;
                }
                _ => return Reply::err(SYNTAX),
            }
        }
        let Some(stream) = self.streams.get_mut(key) else { return nogroup(key, group_name, "") };
        let Some(group) = stream.groups.get_mut(group_name) else { return nogroup(key, group_name, "") };
        let mut attempts = count * 10;
        let (mut claimed, mut deleted) = (Vec::new(), Vec::new());
        let ids: Vec<StreamId> = group.pending.range(start..).map(|(id, _)| *id).collect();
        let mut scanned = 0;
        while attempts > 0 && count > 0 && scanned < ids.len() {
            attempts -= 1;
            let id = ids[scanned];
            scanned += 1;
            let Some(fields) = stream.entries.get(&id) else {
                group.pending.remove(&id);
                deleted.push(Reply::bulk(id.to_bytes()));
                count -= 1;
                continue;
            };
            let Some(nack) = group.pending.get_mut(&id) else { continue };
            if min_idle > 0 && now.saturating_sub(nack.delivered_at) < min_idle as u64 {
                continue;
            }
            nack.delivered_at = now;
            if !justid {
                nack.deliveries += 1;
            }
            nack.consumer = consumer.clone();
            // Redis 7.0 creates the consumer with its first claim, not before.
            group.consumers.entry(consumer.clone()).or_default();
            claimed.push(if justid { Reply::bulk(id.to_bytes()) } else { entry(id, fields) });
            count -= 1;
        }
        let next = ids.get(scanned).copied().unwrap_or(StreamId::MIN);
        Reply::Array(vec![Reply::bulk(next.to_bytes()), Reply::Array(claimed), Reply::Array(deleted)])
    }

    /// `XREAD`, or the part of `XREADGROUP` after `GROUP g c` when `group` is given.
    fn xread(
        &mut self,
        now: u64,
        session: &Session,
        args: &[Vec<u8>],
        group: Option<(&[u8], &[u8])>,
    ) -> Outcome {
        let name = if group.is_some() { "xreadgroup" } else { "xread" };
        let skip = if group.is_some() { 4 } else { 1 };
        let mut count = usize::MAX;
        let mut block: Option<u64> = None;
        let mut noack = false;
        let mut at = skip;
        let streams_at = loop {
            let Some(arg) = args.get(at) else { return Outcome::Reply(Reply::err(SYNTAX)) };
            match upper(arg).as_str() {
                "COUNT" => {
                    match args.get(at + 1).and_then(|a| int(a)) {
                        Some(n) => count = if n <= 0 { usize::MAX } else { n as usize },
                        None => return Outcome::Reply(Reply::err(NOT_INTEGER)),
                    }
                    at += 2;
                }
                "BLOCK" => {
                    match args.get(at + 1).and_then(|a| int(a)) {
                        Some(n) if n >= 0 => block = Some(n as u64),
                        Some(_) => return Outcome::Reply(Reply::err("ERR timeout is negative")),
                        None => {
                            return Outcome::Reply(Reply::err(
                                "ERR timeout is not an integer or out of range",
                            ))
                        }
                    }
                    at += 2;
                }
                "NOACK" if group.is_some() => {
                    noack = true;
                    at += 1;
                }
                "STREAMS" => break at + 1,
                _ => return Outcome::Reply(Reply::err(SYNTAX)),
            }
        };
        let rest = &args[streams_at..];
        if rest.is_empty() || !rest.len().is_multiple_of(2) {
            return Outcome::Reply(Reply::err(format!(
                "ERR Unbalanced '{name}' list of streams: for each stream key an ID or '$' must be specified."
            )));
        }
        let (keys, ids) = rest.split_at(rest.len() / 2);
        // Resolve every id first: an error in any fails the command, and `$` is fixed now so a
        // retried blocking read waits for what comes after this moment.
        let mut resolved = Vec::with_capacity(ids.len());
        for (key, id) in keys.iter().zip(ids) {
            let stream = self.streams.get(key);
            let from =
                match (id.as_slice(), group) {
                    (b">", Some(_)) => Cursor::New,
                    (b">", None) => return Outcome::Reply(Reply::err(
                        "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> \
                         <consumer> option.",
                    )),
                    (b"$", None) => Cursor::After(stream.map_or(StreamId::MIN, |s| s.last_id)),
                    (b"$", Some(_)) => {
                        return Outcome::Reply(Reply::err(
                            "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the \
                         history of this consumer by specifying a proper ID, or use the > ID to get new \
                         messages. The $ ID would just return an empty result set.",
                        ))
                    }
                    (other, _) => match StreamId::parse(other, 0) {
                        Some(id) if group.is_some() => Cursor::History(id),
                        Some(id) => Cursor::After(id),
                        None => return Outcome::Reply(Reply::err(INVALID_ID)),
                    },
                };
            if let Some((g, _)) = group {
                if stream.is_none_or(|s| !s.groups.contains_key(g)) {
                    return Outcome::Reply(nogroup(key, g, " in XREADGROUP with GROUP option"));
                }
            }
            resolved.push(from);
        }
        let mut found = Vec::new();
        let mut history = false;
        for (key, from) in keys.iter().zip(&resolved) {
            let Some(stream) = self.streams.get_mut(key) else { continue };
            let items = match (*from, group) {
                (Cursor::After(id), _) => match id.next() {
                    Some(next) => {
                        stream.entries.range(next..).take(count).map(|(i, f)| entry(*i, f)).collect()
                    }
                    None => Vec::new(),
                },
                (Cursor::New, Some((g, consumer))) => stream.deliver_new(g, consumer, count, noack, now),
                (Cursor::History(id), Some((g, consumer))) => {
                    history = true;
                    stream.history(g, consumer, id, count, now)
                }
                _ => Vec::new(),
            };
            if !items.is_empty() || matches!(from, Cursor::History(_)) {
                // Redis 7.0 creates the consumer only for a key it serves now: a read that finds
                // nothing new, or blocks, leaves no consumer behind.
                if let Some((g, consumer)) = group {
                    if let Some(grp) = stream.groups.get_mut(g) {
                        grp.consumers.entry(consumer.to_vec()).or_default();
                    }
                }
                found.push((Reply::bulk(key), Reply::Array(items)));
            }
        }
        if !found.is_empty() {
            return Outcome::Reply(if session.proto >= 3 {
                Reply::Map(found)
            } else {
                Reply::Array(found.into_iter().map(|(k, v)| Reply::Array(vec![k, v])).collect())
            });
        }
        match block {
            Some(timeout_ms) if !history => {
                let mut retry: Vec<Vec<u8>> = args[..streams_at].to_vec();
                retry.extend(keys.iter().cloned());
                retry.extend(resolved.iter().map(|c| match c {
                    Cursor::New => b">".to_vec(),
                    Cursor::After(id) | Cursor::History(id) => id.to_bytes(),
                }));
                Outcome::Block { timeout_ms, retry }
            }
            _ => Outcome::Reply(Reply::NilArray),
        }
    }

    fn xreadgroup(&mut self, now: u64, session: &Session, args: &[Vec<u8>]) -> Outcome {
        if args.len() < 7 {
            return Outcome::Reply(arity("xreadgroup"));
        }
        if upper(&args[1]) != "GROUP" {
            return Outcome::Reply(Reply::err("ERR Missing GROUP option for XREADGROUP".to_owned()));
        }
        let (group, consumer) = (args[2].clone(), args[3].clone());
        self.xread(now, session, args, Some((&group, &consumer)))
    }
}

#[derive(Clone, Copy, Debug)]
enum Cursor {
    /// Entries after this id (XREAD).
    After(StreamId),
    /// Entries never delivered to the group (XREADGROUP `>`).
    New,
    /// This consumer's pending entries after this id (XREADGROUP with an id).
    History(StreamId),
}

impl Stream {
    /// `XINFO STREAM`: Redis 7.0's ten fields, in its order. `recorded-first-entry-id` is the
    /// first entry's id, 0-0 when there is none: Redis records it on every add, `XDEL` and trim,
    /// so it never lags. The radix tree's two sizes follow Redis' node sizes and tree layout, which
    /// a fake cannot reproduce: this gives one key per 100 entries (Redis' default node) and one
    /// tree node more, Redis' figures for a stream empty (0 and 1) or within one node (1 and 2),
    /// and only a rough size beyond.
    fn info(&self) -> Reply {
        let field = |k: &str, v: Reply| (Reply::bulk(k), v);
        let tree_keys = self.entries.len().div_ceil(100) as i64;
        let first = self.entries.first_key_value().map_or(Reply::Nil, |(id, f)| entry(*id, f));
        let last = self.entries.last_key_value().map_or(Reply::Nil, |(id, f)| entry(*id, f));
        Reply::Map(vec![
            field("length", Reply::Int(self.entries.len() as i64)),
            field("radix-tree-keys", Reply::Int(tree_keys)),
            field("radix-tree-nodes", Reply::Int(tree_keys + 1)),
            field("last-generated-id", Reply::bulk(self.last_id.to_bytes())),
            field("max-deleted-entry-id", Reply::bulk(self.max_deleted.to_bytes())),
            field("entries-added", Reply::Int(self.entries_added)),
            field("recorded-first-entry-id", Reply::bulk(self.first_id().to_bytes())),
            field("groups", Reply::Int(self.groups.len() as i64)),
            field("first-entry", first),
            field("last-entry", last),
        ])
    }

    /// `XINFO GROUPS`: each group, in name order, with Redis 7's `entries-read` and `lag`.
    fn groups_info(&self) -> Reply {
        let field = |k: &str, v: Reply| (Reply::bulk(k), v);
        let int_or_nil = |n: Option<i64>| n.map_or(Reply::Nil, Reply::Int);
        let groups = self.groups.iter().map(|(name, group)| {
            Reply::Map(vec![
                field("name", Reply::bulk(name)),
                field("consumers", Reply::Int(group.consumers.len() as i64)),
                field("pending", Reply::Int(group.pending.len() as i64)),
                field("last-delivered-id", Reply::bulk(group.last_delivered.to_bytes())),
                field("entries-read", int_or_nil(group.entries_read)),
                field("lag", int_or_nil(self.lag(group))),
            ])
        });
        Reply::Array(groups.collect())
    }

    fn deliver_new(
        &mut self,
        group: &[u8],
        consumer: &[u8],
        count: usize,
        noack: bool,
        now: u64,
    ) -> Vec<Reply> {
        let Some(g) = self.groups.get(group) else { return Vec::new() };
        let Some(next) = g.last_delivered.next() else { return Vec::new() };
        let ids: Vec<StreamId> = self.entries.range(next..).take(count).map(|(id, _)| *id).collect();
        let mut read = g.entries_read;
        for id in &ids {
            read = self.read_through(read, *id);
        }
        let Some(g) = self.groups.get_mut(group) else { return Vec::new() };
        g.entries_read = read;
        let mut items = Vec::new();
        for id in ids {
            g.last_delivered = id;
            if !noack {
                let nack = Pending { consumer: consumer.to_vec(), delivered_at: now, deliveries: 1 };
                g.pending.insert(id, nack);
            }
            if let Some(fields) = self.entries.get(&id) {
                items.push(entry(id, fields));
            }
        }
        items
    }

    /// Deletes entries from the front as `trim` asks, at most `limit` of them (0: no limit);
    /// returns how many went. `~` trims come here too and trim exactly (up to their limit): Redis
    /// promises only to keep at least what was asked, and may trim less (whole nodes only).
    fn trim(&mut self, trim: Trim, limit: usize) -> usize {
        let mut deleted = 0;
        while let Some((&first, _)) = self.entries.first_key_value() {
            let over = match trim {
                Trim::MaxLen(max) => self.entries.len() > max,
                Trim::MinId(min) => first < min,
            };
            if !over || (limit > 0 && deleted >= limit) {
                break;
            }
            self.entries.pop_first();
            deleted += 1;
        }
        deleted
    }

    /// The first entry's id, or 0-0 when there is none (Redis' `first_id`).
    fn first_id(&self) -> StreamId {
        self.entries.first_key_value().map_or(StreamId::MIN, |(id, _)| *id)
    }

    /// Whether an entry at or after `from` may have been deleted by `XDEL` (Redis'
    /// `streamRangeHasTombstones` with no end): then counting reads from `from` on would be wrong.
    fn deleted_from(&self, from: StreamId) -> bool {
        !self.entries.is_empty()
            && self.max_deleted != StreamId::MIN
            && self.first_id() <= self.max_deleted
            && from <= self.max_deleted
    }

    /// How many entries (as `entries_added` counts them) come up to and including `id`, when that
    /// can be known: Redis' `streamEstimateDistanceFromFirstEverEntry`, rule for rule.
    fn entries_through(&self, id: StreamId) -> Option<i64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if self.entries.is_empty() && id <= self.last_id {
            return Some(self.entries_added);
        }
        match id.cmp(&self.last_id) {
            std::cmp::Ordering::Equal => return Some(self.entries_added),
            std::cmp::Ordering::Greater => return None,
            std::cmp::Ordering::Less => {}
        }
        let first = self.first_id();
        let len = self.entries.len() as i64;
        // Only with no deletion past the first entry is the distance known, and then only before
        // or at that first entry.
        if self.max_deleted == StreamId::MIN || self.max_deleted < first {
            if id < first {
                return Some(self.entries_added - len);
            }
            if id == first {
                return Some(self.entries_added - len + 1);
            }
        }
        None
    }

    /// A group's read counter after it is handed `id` (Redis' update in `streamReplyWithRange`):
    /// one more when the counter is known and nothing from `id` on was deleted, else placed anew.
    fn read_through(&self, read: Option<i64>, id: StreamId) -> Option<i64> {
        match read {
            Some(n) if !self.deleted_from(id) => Some(n + 1),
            _ if self.entries_added > 0 => self.entries_through(id),
            _ => read,
        }
    }

    /// Entries the group has yet to read, `None` when deletions make that unknowable (Redis'
    /// `streamReplyWithCGLag`).
    fn lag(&self, group: &Group) -> Option<i64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        let read = match group.entries_read {
            Some(n) if !self.deleted_from(group.last_delivered) => Some(n),
            _ => self.entries_through(group.last_delivered),
        };
        read.map(|n| self.entries_added - n)
    }

    fn history(
        &mut self,
        group: &[u8],
        consumer: &[u8],
        after: StreamId,
        count: usize,
        now: u64,
    ) -> Vec<Reply> {
        let Some(g) = self.groups.get_mut(group) else { return Vec::new() };
        let Some(next) = after.next() else { return Vec::new() };
        let mut items = Vec::new();
        for (id, nack) in g.pending.range_mut(next..).filter(|(_, n)| n.consumer == consumer).take(count) {
            match self.entries.get(id) {
                Some(fields) => {
                    nack.delivered_at = now;
                    nack.deliveries += 1;
                    items.push(entry(*id, fields));
                }
                // An entry deleted while pending: its id, and no fields.
                None => items.push(Reply::Array(vec![Reply::bulk(id.to_bytes()), Reply::NilArray])),
            }
        }
        items
    }
}

/// The options of `XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] threshold [LIMIT n]] id ...` and
/// `XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT n]` (`args` starts at the key), checked in Redis'
/// order so the same mistake gets the same error. For `XADD` the first argument that is not an
/// option is the id.
fn trim_args(args: &[Vec<u8>], xadd: bool) -> Result<TrimArgs, Reply> {
    let mut parsed = TrimArgs { id_at: args.len(), ..TrimArgs::default() };
    let (mut approx, mut limit) = (false, None);
    let mut at = 1;
    while at < args.len() {
        // An option only counts with something after it; a last `MAXLEN` is an id (or an error).
        let more = args.len() - 1 - at;
        match upper(&args[at]).as_str() {
            "MAXLEN" | "MINID" if more > 0 => {
                if parsed.trim.is_some() {
                    return Err(Reply::err(
                        "ERR syntax error, MAXLEN and MINID options at the same time are not compatible",
                    ));
                }
                let maxlen = upper(&args[at]) == "MAXLEN";
                approx = false;
                match args[at + 1].as_slice() {
                    b"~" if more >= 2 => {
                        approx = true;
                        at += 1;
                    }
                    b"=" if more >= 2 => at += 1,
                    _ => {}
                }
                at += 1;
                parsed.trim = Some(if maxlen {
                    match int(&args[at]) {
                        Some(n) if n < 0 => return Err(Reply::err("ERR The MAXLEN argument must be >= 0.")),
                        Some(n) => Trim::MaxLen(n as usize),
                        None => return Err(Reply::err(NOT_INTEGER)),
                    }
                } else {
                    Trim::MinId(StreamId::parse(&args[at], 0).ok_or_else(|| Reply::err(INVALID_ID))?)
                });
            }
            "LIMIT" if more > 0 => {
                at += 1;
                match int(&args[at]) {
                    Some(n) if n < 0 => return Err(Reply::err("ERR The LIMIT argument must be >= 0.")),
                    Some(n) => limit = Some(n as usize),
                    None => return Err(Reply::err(NOT_INTEGER)),
                }
            }
            "NOMKSTREAM" if xadd => parsed.nomkstream = true,
            _ if xadd => {
                parsed.id_at = at;
                parsed.id = match args[at].as_slice() {
                    b"*" => None,
                    id => Some(StreamId::parse(id, 0).ok_or_else(|| Reply::err(INVALID_ID))?),
                };
                break;
            }
            _ => return Err(Reply::err(SYNTAX)),
        }
        at += 1;
    }
    if limit.is_some() && parsed.trim.is_none() {
        return Err(Reply::err(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && parsed.trim.is_none() {
        return Err(Reply::err("ERR syntax error, XTRIM must be called with a trimming strategy"));
    }
    if limit.is_some() && !approx {
        return Err(Reply::err("ERR syntax error, LIMIT cannot be used without the special ~ option"));
    }
    parsed.limit = match limit {
        Some(n) => n,
        None if approx => APPROX_LIMIT,
        None => 0,
    };
    Ok(parsed)
}

/// The options after `XGROUP CREATE|SETID key group id`, read as Redis reads them, before it looks
/// at the key: `MKSTREAM` (`CREATE` only) and `ENTRIESREAD n`, any number of times, the last
/// `ENTRIESREAD` counting; -1 is "unknown", as none is.
fn group_options(sub: &[u8], create: bool, args: &[Vec<u8>]) -> Result<GroupOptions, Reply> {
    let mut parsed = GroupOptions::default();
    let mut at = 0;
    while at < args.len() {
        match upper(&args[at]).as_str() {
            "MKSTREAM" if create => parsed.mkstream = true,
            "ENTRIESREAD" if at + 1 < args.len() => {
                at += 1;
                parsed.entries_read = match int(&args[at]) {
                    Some(-1) => None,
                    Some(n) if n < 0 => {
                        return Err(Reply::err("ERR value for ENTRIESREAD must be positive or -1"))
                    }
                    Some(n) => Some(n),
                    None => return Err(Reply::err(NOT_INTEGER)),
                };
            }
            _ => return Err(subcommand_syntax("XGROUP", sub)),
        }
        at += 1;
    }
    Ok(parsed)
}

/// Redis' reply to a subcommand given arguments it does not take (`sub` as the client spelled it).
fn subcommand_syntax(command: &str, sub: &[u8]) -> Reply {
    Reply::err(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {command} HELP.",
        String::from_utf8_lossy(sub)
    ))
}

fn nogroup(key: &[u8], group: &[u8], suffix: &str) -> Reply {
    Reply::err(format!(
        "NOGROUP No such key '{}' or consumer group '{}'{suffix}",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    ))
}

/// A range bound: `-`, `+`, an id, a bare millisecond, or `(` for exclusive. `Ok(None)` is an
/// exclusive bound with nothing beyond it.
fn bound(arg: &[u8], start: bool) -> Option<Option<StreamId>> {
    match arg {
        b"-" => Some(Some(StreamId::MIN)),
        b"+" => Some(Some(StreamId::MAX)),
        [b'(', rest @ ..] => {
            let id = StreamId::parse(rest, if start { 0 } else { u64::MAX })?;
            Some(if start { id.next() } else { id.prev() })
        }
        _ => StreamId::parse(arg, if start { 0 } else { u64::MAX }).map(Some),
    }
}
