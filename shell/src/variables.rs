//! Every environment variable the server reads: its name, its default and what it means, in one
//! table. `alice-realtime --help` lists them through clap (each also a `--flag`), and
//! `Settings::from_vars` reads them by these names; tests check that this table, `.env.example`
//! and what the settings read name the same variables.

use clap::{Arg, ArgAction, ArgMatches, Command};

/// One variable.
pub struct Variable {
    pub name: &'static str,
    /// The default as text, when one value stands for it.
    pub default: Option<&'static str>,
    pub help: &'static str,
    /// The heading it is listed under.
    pub section: &'static str,
}

const fn var(
    name: &'static str,
    default: Option<&'static str>,
    help: &'static str,
    section: &'static str,
) -> Variable {
    Variable { name, default, help, section }
}

/// Every variable, in `.env.example`'s order.
pub const VARIABLES: &[Variable] = &[
    var("REALTIME_PORT", Some("3001"), "HTTP and Socket.IO port", "Network"),
    var("HOST", None, "listen address; default 0.0.0.0, or 127.0.0.1 in development mode", "Network"),
    var("CORS_ORIGINS", Some("http://localhost:3000,http://localhost:5173,http://localhost:5174"), "allowed origins, comma separated (* for any), credentials allowed", "Network"),
    var("JWT_SECRET", None, "HS256 secret, at least 16 characters; with no secret and no JWKS, development mode", "Authentication"),
    var("SUPABASE_URL", None, "verify ES256/RS256 tokens against $SUPABASE_URL/auth/v1/.well-known/jwks.json", "Authentication"),
    var("JWT_JWKS_URL", None, "verify ES256/RS256 tokens against this JWKS", "Authentication"),
    var("JWT_AUDIENCE", None, "required aud claim", "Authentication"),
    var("JWT_ISSUER", None, "required iss claim", "Authentication"),
    var("DATA_DIR", Some("./data"), "the embedded SQLite file lives here (events.db)", "Storage"),
    var("DATABASE_URL", None, "postgres://… (a Supabase connection string) or sqlite://path; none is the embedded SQLite file", "Storage"),
    var("DATABASE_POOL_SIZE", Some("10"), "PostgreSQL connections", "Storage"),
    var("DATABASE_TIMEOUT_MS", Some("5000"), "the longest one database call may take", "Storage"),
    var("DATABASE_MIGRATE", Some("true"), "apply the embedded migrations at start (or: alice-realtime migrate)", "Storage"),
    var("REDIS_URL", None, "join a cluster over Redis (redis:// or rediss://)", "Cluster (Redis)"),
    var("REDIS_HOST", None, "Redis host, instead of REDIS_URL (as the original server took it)", "Cluster (Redis)"),
    var("REDIS_PORT", Some("6379"), "Redis port, with REDIS_HOST", "Cluster (Redis)"),
    var("REDIS_PASSWORD", None, "Redis password, with REDIS_HOST", "Cluster (Redis)"),
    var("NODE_ID", None, "this node's name; must differ per node; default node-<random>", "Cluster (Redis)"),
    var("REDIS_CLAIM_IDLE_MS", Some("30000"), "a silent node's unstored events are claimed by another after this", "Cluster (Redis)"),
    var("LOG_READ_PACE_MS", Some("2"), "least time between two log reads that found entries, once the log's entries per second times (nodes + 1) reach LOG_READ_BUDGET", "Cluster (Redis)"),
    var("LOG_READ_BUDGET", Some("4000"), "log appends and reads per second (Redis commands) below which every node reads each entry as it comes", "Cluster (Redis)"),
    var("LOG_STORE_PACE_MS", Some("50"), "least time between two reads of the log by the storing consumer that found entries (and did not fill their count)", "Cluster (Redis)"),
    var("REDIS_LOG_RETAIN_MS", Some("60000"), "the newest stretch of the log kept even when stored (a cut-off node catches up)", "Cluster (Redis)"),
    var("LOG_LEVEL", Some("info"), "a level, or a tracing filter such as alice_shell=debug,info", "Operations"),
    var("LOG_FORMAT", Some("text"), "text, or json for JSON lines", "Operations"),
    var("METRICS_TOKEN", None, "when set, /metrics needs it as a bearer token", "Operations"),
    var("SHUTDOWN_GRACE_MS", Some("10000"), "how long SIGTERM waits for accepted events to reach the log (and the store behind an outbox)", "Operations"),
    var("WORKER_THREADS", Some("1"), "tokio threads; the core is single-threaded, and one thread wakes no other", "Operations"),
    var("READER_EVENT_RATE", Some("20"), "reader-event tokens per second per user", "Limits (PROTOCOL.md)"),
    var("READER_EVENT_BURST", Some("40"), "reader-event bucket size", "Limits (PROTOCOL.md)"),
    var("OTHER_EVENT_RATE", Some("20"), "tokens per second per user for every other client event", "Limits (PROTOCOL.md)"),
    var("OTHER_EVENT_BURST", Some("40"), "bucket size for every other client event", "Limits (PROTOCOL.md)"),
    var("HANDSHAKES_PER_MINUTE", Some("60"), "handshakes per user per minute (also the burst)", "Limits (PROTOCOL.md)"),
    var("MAX_CONNECTIONS_PER_USER", Some("20"), "sockets one user may hold on this node", "Limits (PROTOCOL.md)"),
    var("MAX_CONNECTIONS", Some("100000"), "sockets this node holds", "Limits (PROTOCOL.md)"),
    var("MAX_EVENT_BYTES", Some("16384"), "largest serialized data of a reader event", "Limits (PROTOCOL.md)"),
    var("MAX_EVENT_DEPTH", Some("32"), "deepest nesting of arrays and objects in data (below 100)", "Limits (PROTOCOL.md)"),
    var("MAX_PACKET_BYTES", Some("65536"), "largest Socket.IO packet; a larger one closes its connection", "Limits (PROTOCOL.md)"),
    var("MAX_EVENT_TYPES", Some("32"), "most event types in one filter", "Limits (PROTOCOL.md)"),
    var("MAX_ROOMS_PER_SOCKET", Some("32"), "most rooms one socket may be in", "Limits (PROTOCOL.md)"),
    var("EVENT_QUEUE_CAPACITY", Some("100000"), "accepted events held for the log or the store before new ones are refused (UNAVAILABLE)", "Limits (PROTOCOL.md)"),
    var("PRESENCE_TTL_MS", Some("15000"), "how long a silent node's readers stay listed", "Limits (PROTOCOL.md)"),
    var("PRESENCE_PUSH_INTERVAL_MS", Some("1000"), "least time between two online-readers pushes", "Limits (PROTOCOL.md)"),
    var("HANDSHAKE_TIMEOUT_MS", Some("10000"), "a connection whose request head, or Socket.IO handshake (CONNECT and its answer), is not done within this is closed; also the keep-alive idle timeout", "Limits (PROTOCOL.md)"),
    var("HANDSHAKES_PER_IP_PER_MINUTE", Some("0"), "handshakes per client address per minute (bursts as large); 0 is no limit", "Limits (PROTOCOL.md)"),
    var("TRUSTED_PROXIES", None, "addresses or networks (10.0.0.0/8) whose X-Forwarded-For names the client", "Limits (PROTOCOL.md)"),
    var("HISTORY_CAPACITY", Some("10000"), "recent events kept in memory for get-recent-events and resumes", "Tuning"),
    var("IDEMPOTENCY_WINDOW_MS", Some("86400000"), "how long an accepted clientEventId keeps a repeat from being accepted again", "Tuning"),
    var("RECOVERY_TTL_MS", Some("86400000"), "how long a session can be recovered by the official client (connection state recovery)", "Tuning"),
    var("RESUME_MAX_EVENTS", Some("10000"), "most events one resume (subscribe-consultant with since) replays; above it, none", "Tuning"),
    var("CONSULTANT_SCOPE", Some("all"), "all, or assigned: consultants see only readers assigned to them in consultant_assignments", "Tuning"),
    var("ASSIGNMENT_REFRESH_MS", Some("5000"), "under assigned, how often each node reads the assignments table again", "Tuning"),
    var("STORE_BATCH_SIZE", Some("500"), "most events in one append or store batch, at most 10000", "Tuning"),
    var("STORE_BATCH_LINGER_MS", Some("10"), "a store batch behind an outbox or the cluster's log waits this long to fill", "Tuning"),
    var("STORE_MAX_ATTEMPTS", Some("8"), "attempts to store an event, then it is dead-lettered (replay: POST /admin/dlq/replay)", "Tuning"),
    var("STORE_RETRY_BASE_MS", Some("200"), "first store retry delay (doubles each attempt)", "Tuning"),
    var("STORE_RETRY_MAX_MS", Some("30000"), "longest store retry delay", "Tuning"),
];

/// The variables as clap arguments: each from its environment variable, or from its long flag
/// (`REALTIME_PORT` is also `--realtime-port`), global to every subcommand. Defaults are applied
/// by the settings, not by clap, so a variable left unset stays unset.
pub fn arguments() -> impl Iterator<Item = Arg> {
    VARIABLES.iter().map(|v| {
        let help = match v.default {
            Some(d) if !d.is_empty() => format!("{} [default: {d}]", v.help),
            _ => v.help.to_owned(),
        };
        Arg::new(v.name)
            .long(v.name.to_lowercase().replace('_', "-"))
            .env(v.name)
            // Secrets live in some of them (JWT_SECRET, a password in a URL): --help never shows
            // the environment's values.
            .hide_env_values(true)
            .value_name(v.name)
            .help(help)
            .help_heading(v.section)
            .action(ArgAction::Set)
            .global(true)
    })
}

/// The first variable whose value in the environment is not text (not valid UTF-8): clap would
/// refuse it without saying which one it was.
pub fn not_text() -> Option<&'static str> {
    VARIABLES.iter().map(|v| v.name).find(|name| std::env::var_os(name).is_some_and(|v| v.to_str().is_none()))
}

/// `command` with every variable added.
pub fn with_variables(command: Command) -> Command {
    command.args(arguments())
}

/// A variable's value as clap found it (its flag, else its environment variable).
pub fn value(matches: &ArgMatches, name: &str) -> Option<String> {
    matches.get_one::<String>(name).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    const ENV_EXAMPLE: &str = include_str!("../../.env.example");

    /// The variables `.env.example` sets or shows commented out.
    fn in_env_example() -> BTreeSet<&'static str> {
        ENV_EXAMPLE
            .lines()
            .map(|l| l.trim_start_matches('#').trim_start())
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .collect()
    }

    fn listed() -> BTreeSet<&'static str> {
        VARIABLES.iter().map(|v| v.name).collect()
    }

    #[test]
    fn the_table_env_example_and_the_settings_name_the_same_variables() {
        assert_eq!(listed(), in_env_example(), "variables.rs against .env.example");
        let read = RefCell::new(BTreeSet::new());
        // With REDIS_HOST set, the settings also read its port and password.
        let _ = Settings::from_vars(|k| {
            read.borrow_mut().insert(k.to_owned());
            (k == "REDIS_HOST").then(|| "127.0.0.1".to_owned())
        });
        let read: BTreeSet<String> = read.into_inner();
        assert_eq!(read, listed().into_iter().map(str::to_owned).collect(), "what Settings::from_vars reads");
    }

    /// Settings, with what differs between two starts (a random node id and dev secret) made equal.
    fn normalized(vars: &[(&str, &str)]) -> String {
        let mut s = Settings::from_vars(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
            .unwrap_or_else(|e| panic!("{vars:?}: {e}"));
        s.node_id = String::new();
        s.auth.secret = Vec::new();
        format!("{s:?}")
    }

    #[test]
    fn each_default_shown_is_the_default_applied() {
        for v in VARIABLES {
            if let Some(default) = v.default {
                // The Redis port matters only with a Redis host.
                let extra: &[(&str, &str)] =
                    if v.name == "REDIS_PORT" { &[("REDIS_HOST", "h")] } else { &[] };
                let with: Vec<(&str, &str)> = extra.iter().copied().chain([(v.name, default)]).collect();
                assert_eq!(normalized(&with), normalized(extra), "{}={default} is not its default", v.name);
            }
        }
    }

    #[test]
    fn help_lists_every_variable() {
        let help = with_variables(Command::new("t")).render_long_help().to_string();
        for v in VARIABLES {
            assert!(help.contains(&format!("[env: {}]", v.name)), "{} missing from --help", v.name);
        }
    }
}
