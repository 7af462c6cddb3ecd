//! Settings from the environment, with the original server's variable names and defaults, checked
//! at start so a typo is a clear message rather than a surprise later. Never logs a secret.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use alice_core::Config;

/// Everything the server reads from its environment.
#[derive(Clone, Debug)]
pub struct Settings {
    pub port: u16,
    /// Where to listen: loopback in development mode, every interface otherwise (`HOST` overrides).
    pub host: IpAddr,
    pub cors_origins: Vec<String>,
    pub auth: AuthSettings,
    pub node_id: String,
    pub data_dir: PathBuf,
    /// `DATABASE_URL`; `None` means the embedded SQLite file under `data_dir`.
    pub database_url: Option<String>,
    /// Connections in the PostgreSQL pool (`DATABASE_POOL_SIZE`).
    pub db_pool_size: u32,
    /// How long one database call may take (`DATABASE_TIMEOUT_MS`).
    pub db_timeout_ms: u64,
    /// Apply the embedded migrations at start (`DATABASE_MIGRATE`, default true).
    pub db_migrate: bool,
    /// `REDIS_URL`, or one built from `REDIS_HOST`/`REDIS_PORT`/`REDIS_PASSWORD`.
    pub redis_url: Option<String>,
    pub metrics_token: Option<String>,
    pub log_level: String,
    pub log_json: bool,
    /// Tokio worker threads (`WORKER_THREADS`); 1 runs everything on one thread.
    pub worker_threads: usize,
    /// How long a graceful shutdown waits for the queue to drain.
    pub shutdown_grace_ms: u64,
    /// How long an accepted `clientEventId` keeps a repeat from being accepted again.
    pub idempotency_window_ms: u64,
    /// How long a new connection may take to complete its Socket.IO handshake, CONNECT and its
    /// answer, and how long any request's head may take to arrive (`HANDSHAKE_TIMEOUT_MS`).
    pub handshake_timeout_ms: u64,
    /// Handshakes per minute from one client address; 0 is no limit (`HANDSHAKES_PER_IP_PER_MINUTE`).
    pub handshakes_per_ip_per_minute: u32,
    /// Proxies whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub core: Config,
}

/// How tokens are verified.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// The HS256 secret (`JWT_SECRET`), or the random one of a development run.
    pub secret: Vec<u8>,
    pub jwks_url: Option<String>,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    /// No secret and no JWKS were configured: a random secret was made for this run.
    pub dev_mode: bool,
}

/// A setting that cannot be used, said in words an operator can act on.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// How long a store batch waits to fill (`STORE_BATCH_LINGER_MS`). At 2,000 events/s, 10 ms
/// makes batches of about 20 and takes a third off the server's CPU per delivered message
/// (benches/README.md); the store has each event at most this much later.
const DEFAULT_STORE_BATCH_LINGER_MS: u64 = 10;
const DEFAULT_CORS: &str = "http://localhost:3000,http://localhost:5173,http://localhost:5174";

/// `redis://[:password@]host:port`, the password percent-encoded: it may hold `@`, `/`, `:` or
/// anything else a URL gives meaning to, and the redis client decodes it back.
fn redis_url(host: &str, port: &str, password: Option<&str>) -> Result<String, ConfigError> {
    let bad = || ConfigError("REDIS_HOST and REDIS_PORT must be a host name and a port number".into());
    port.parse::<u16>().map_err(|_| bad())?;
    let mut url = url::Url::parse(&format!("redis://{host}:{port}")).map_err(|_| bad())?;
    if url.host_str().is_none_or(|h| h.is_empty()) || url.path() != "" {
        return Err(bad());
    }
    if let Some(password) = password {
        url.set_password(Some(password)).map_err(|()| bad())?;
    }
    Ok(url.to_string())
}

impl Settings {
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_vars(|k| std::env::var(k).ok())
    }

    /// Reads settings as clap found them (`variables.rs`): each variable's flag, else its
    /// environment variable.
    pub fn from_matches(matches: &clap::ArgMatches) -> Result<Settings, ConfigError> {
        Settings::from_vars(|k| crate::variables::value(matches, k))
    }

    /// Reads settings through `var`, so tests can supply their own environment.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let get = |k: &str| var(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let secret = get("JWT_SECRET");
        let supabase = get("SUPABASE_URL");
        let jwks_url = get("JWT_JWKS_URL").or_else(|| {
            supabase.as_ref().map(|s| format!("{}/auth/v1/.well-known/jwks.json", s.trim_end_matches('/')))
        });
        let dev_mode = secret.is_none() && jwks_url.is_none();
        let auth = AuthSettings {
            secret: match &secret {
                Some(s) => s.as_bytes().to_vec(),
                None => {
                    let random: [u8; 32] = rand::random();
                    random.to_vec()
                }
            },
            jwks_url,
            audience: get("JWT_AUDIENCE"),
            issuer: get("JWT_ISSUER"),
            dev_mode,
        };
        if secret.as_ref().is_some_and(|s| s.len() < 16) {
            // The original accepted any secret; a short one still works, but says so.
            eprintln!(
                "alice-realtime: warning: JWT_SECRET is shorter than 16 characters; use a long random secret"
            );
        }
        let host = match get("HOST") {
            Some(h) => {
                h.parse().map_err(|_| ConfigError(format!("HOST must be an IP address, got {h:?}")))?
            }
            None if dev_mode => IpAddr::V4(Ipv4Addr::LOCALHOST),
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let redis_url = match get("REDIS_URL") {
            Some(url) => Some(url),
            None => match get("REDIS_HOST") {
                Some(host) => {
                    let port = get("REDIS_PORT").unwrap_or_else(|| "6379".into());
                    Some(redis_url(&host, &port, get("REDIS_PASSWORD").as_deref())?)
                }
                None => None,
            },
        };
        if let Some(url) = &redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError("REDIS_URL must start with redis:// or rediss://".into()));
            }
        }
        let database_url = get("DATABASE_URL");
        if let Some(url) = &database_url {
            let known = ["sqlite:", "postgres://", "postgresql://"];
            if !known.iter().any(|p| url.starts_with(p)) {
                return Err(ConfigError("DATABASE_URL must start with postgres:// or sqlite://".into()));
            }
        }
        let d = Config::default();
        let core = Config {
            reader_event_rate: num(&get, "READER_EVENT_RATE", d.reader_event_rate, 1)?,
            reader_event_burst: num(&get, "READER_EVENT_BURST", d.reader_event_burst, 1)?,
            other_event_rate: num(&get, "OTHER_EVENT_RATE", d.other_event_rate, 1)?,
            other_event_burst: num(&get, "OTHER_EVENT_BURST", d.other_event_burst, 1)?,
            handshakes_per_minute: num(&get, "HANDSHAKES_PER_MINUTE", d.handshakes_per_minute, 1)?,
            max_connections_per_user: num(&get, "MAX_CONNECTIONS_PER_USER", d.max_connections_per_user, 1)?,
            max_connections: num(&get, "MAX_CONNECTIONS", d.max_connections, 1)?,
            max_event_bytes: num(&get, "MAX_EVENT_BYTES", d.max_event_bytes, 2)?,
            max_event_depth: num(&get, "MAX_EVENT_DEPTH", d.max_event_depth, 1)?,
            max_packet_bytes: num(&get, "MAX_PACKET_BYTES", d.max_packet_bytes, 1024)?,
            max_event_types: num(&get, "MAX_EVENT_TYPES", d.max_event_types, 1)?,
            max_rooms_per_socket: num(&get, "MAX_ROOMS_PER_SOCKET", d.max_rooms_per_socket, 1)?,
            event_queue_capacity: num(&get, "EVENT_QUEUE_CAPACITY", d.event_queue_capacity, 1)?,
            presence_ttl_ms: num(&get, "PRESENCE_TTL_MS", d.presence_ttl_ms, 100)?,
            presence_push_interval_ms: num(
                &get,
                "PRESENCE_PUSH_INTERVAL_MS",
                d.presence_push_interval_ms,
                1,
            )?,
            history_capacity: num(&get, "HISTORY_CAPACITY", d.history_capacity, 1)?,
            resume_max_events: num(&get, "RESUME_MAX_EVENTS", d.resume_max_events, 1)?,
            recovery_ttl_ms: num(&get, "RECOVERY_TTL_MS", d.recovery_ttl_ms, 1)?,
            store_batch_size: num(&get, "STORE_BATCH_SIZE", d.store_batch_size, 1)?,
            store_batch_linger_ms: num(&get, "STORE_BATCH_LINGER_MS", DEFAULT_STORE_BATCH_LINGER_MS, 0)?,
            store_max_attempts: num(&get, "STORE_MAX_ATTEMPTS", d.store_max_attempts, 1)?,
            store_retry_base_ms: num(&get, "STORE_RETRY_BASE_MS", d.store_retry_base_ms, 1)?,
            store_retry_max_ms: num(&get, "STORE_RETRY_MAX_MS", d.store_retry_max_ms, 1)?,
            // Decided at start from Redis and the store (`lib.rs`).
            deployment: alice_core::Deployment::SingleStore,
            store_refuses_nul: false,
            store_user_ids_are_uuids: false,
            log_read_pace_ms: num(&get, "LOG_READ_PACE_MS", d.log_read_pace_ms, 0)?,
            log_read_budget: num(&get, "LOG_READ_BUDGET", d.log_read_budget, 0)?,
            log_store_pace_ms: num(&get, "LOG_STORE_PACE_MS", d.log_store_pace_ms, 0)?,
            claim_idle_ms: num(&get, "REDIS_CLAIM_IDLE_MS", d.claim_idle_ms, 100)?,
            log_retain_ms: num(&get, "REDIS_LOG_RETAIN_MS", d.log_retain_ms, 0)?,
            consultant_scope: match get("CONSULTANT_SCOPE") {
                None => d.consultant_scope,
                Some(v) => v.parse().map_err(|()| {
                    ConfigError(format!("CONSULTANT_SCOPE must be all or assigned, got {v:?}"))
                })?,
            },
            assignment_refresh_ms: num(&get, "ASSIGNMENT_REFRESH_MS", d.assignment_refresh_ms, 100)?,
        };
        if core.max_event_depth >= crate::arguments::STAND_IN_DEPTH {
            return Err(ConfigError(format!(
                "MAX_EVENT_DEPTH must be below {}, got {}",
                crate::arguments::STAND_IN_DEPTH,
                core.max_event_depth
            )));
        }
        if core.store_batch_size > alice_core::log::MAX_APPEND_ENTRIES {
            return Err(ConfigError(format!(
                "STORE_BATCH_SIZE must be at most {}, got {}",
                alice_core::log::MAX_APPEND_ENTRIES,
                core.store_batch_size
            )));
        }
        if core.max_event_bytes >= core.max_packet_bytes {
            return Err(ConfigError("MAX_EVENT_BYTES must be smaller than MAX_PACKET_BYTES".into()));
        }
        let log_json = match get("LOG_FORMAT").as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(ConfigError(format!("LOG_FORMAT must be text or json, got {other:?}")))
            }
        };
        Ok(Settings {
            port: num(&get, "REALTIME_PORT", 3001u16, 0)?,
            host,
            cors_origins: get("CORS_ORIGINS")
                .unwrap_or_else(|| DEFAULT_CORS.into())
                .split(',')
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            auth,
            node_id: get("NODE_ID").unwrap_or_else(|| format!("node-{}", &uuid_like())),
            data_dir: PathBuf::from(get("DATA_DIR").unwrap_or_else(|| "./data".into())),
            database_url,
            db_pool_size: num(&get, "DATABASE_POOL_SIZE", 10u32, 1)?,
            db_timeout_ms: num(&get, "DATABASE_TIMEOUT_MS", 5_000u64, 1)?,
            db_migrate: match get("DATABASE_MIGRATE").as_deref() {
                None | Some("true") | Some("1") => true,
                Some("false") | Some("0") => false,
                Some(other) => {
                    return Err(ConfigError(format!("DATABASE_MIGRATE must be true or false, got {other:?}")))
                }
            },
            redis_url,
            metrics_token: get("METRICS_TOKEN"),
            log_level: get("LOG_LEVEL").unwrap_or_else(|| "info".into()),
            log_json,
            shutdown_grace_ms: num(&get, "SHUTDOWN_GRACE_MS", 10_000u64, 0)?,
            idempotency_window_ms: num(&get, "IDEMPOTENCY_WINDOW_MS", 86_400_000u64, 1)?,
            worker_threads: num(&get, "WORKER_THREADS", 1usize, 1)?,
            handshake_timeout_ms: num(&get, "HANDSHAKE_TIMEOUT_MS", 10_000u64, 1)?,
            handshakes_per_ip_per_minute: num(&get, "HANDSHAKES_PER_IP_PER_MINUTE", 0u32, 0)?,
            trusted_proxies: crate::peer_budget::parse_trusted(&get("TRUSTED_PROXIES").unwrap_or_default())
                .map_err(ConfigError)?,
            core,
        })
    }
}

/// A short random id for nodes started without `NODE_ID`.
fn uuid_like() -> String {
    let n: u32 = rand::random();
    format!("{n:08x}")
}

/// Reads a number no smaller than `min`, or its default when unset.
fn num<T>(get: &impl Fn(&str) -> Option<String>, key: &str, default: T, min: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match get(key) {
        None => Ok(default),
        Some(v) => match v.parse::<T>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(ConfigError(format!("{key} must be a whole number of at least {min}, got {v:?}"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_protocols() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.port, 3001);
        assert!(s.auth.dev_mode);
        assert_eq!(s.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(s.cors_origins.len(), 3);
        // The core's defaults, but store batches linger (the core's own tests run without).
        assert_eq!(s.core, Config { store_batch_linger_ms: 10, ..Config::default() });
        assert_eq!(settings(&[("STORE_BATCH_LINGER_MS", "0")]).unwrap().core.store_batch_linger_ms, 0);
        assert!(s.redis_url.is_none() && s.database_url.is_none());
    }

    #[test]
    fn configured_secret_listens_everywhere_and_limits_parse() {
        let s = settings(&[
            ("JWT_SECRET", "0123456789abcdef0123"),
            ("READER_EVENT_RATE", "5"),
            ("REDIS_HOST", "10.0.0.1"),
            ("REDIS_PASSWORD", "pw"),
        ])
        .unwrap();
        assert!(!s.auth.dev_mode);
        assert_eq!(s.host, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(s.core.reader_event_rate, 5);
        assert_eq!(s.redis_url.as_deref(), Some("redis://:pw@10.0.0.1:6379"));
    }

    #[test]
    fn a_redis_password_with_url_characters_reaches_the_client_as_it_was() {
        use redis::IntoConnectionInfo;
        for password in ["p@ss/w:rd", "a b#c?d%e&f", "wörd:@@//"] {
            let s = settings(&[
                ("REDIS_HOST", "redis.internal"),
                ("REDIS_PORT", "6380"),
                ("REDIS_PASSWORD", password),
            ])
            .unwrap();
            let info = s.redis_url.as_deref().unwrap().into_connection_info().unwrap();
            assert_eq!(info.redis_settings().password(), Some(password));
            assert_eq!(info.addr().to_string(), "redis.internal:6380");
        }
        let e = settings(&[("REDIS_HOST", "a/b")]).unwrap_err();
        assert!(e.0.contains("REDIS_HOST"), "{e}");
        let e = settings(&[("REDIS_HOST", "redis"), ("REDIS_PORT", "x")]).unwrap_err();
        assert!(e.0.contains("REDIS_PORT"), "{e}");
    }

    #[test]
    fn consultant_scope_is_all_or_assigned_and_a_bad_value_names_the_variable() {
        use alice_core::ConsultantScope;
        assert_eq!(settings(&[]).unwrap().core.consultant_scope, ConsultantScope::All);
        let s = settings(&[("CONSULTANT_SCOPE", "assigned"), ("ASSIGNMENT_REFRESH_MS", "250")]).unwrap();
        assert_eq!((s.core.consultant_scope, s.core.assignment_refresh_ms), (ConsultantScope::Assigned, 250));
        let e = settings(&[("CONSULTANT_SCOPE", "mine")]).unwrap_err();
        assert!(e.0.contains("CONSULTANT_SCOPE must be all or assigned"), "{e}");
        let e = settings(&[("ASSIGNMENT_REFRESH_MS", "5")]).unwrap_err();
        assert!(e.0.contains("ASSIGNMENT_REFRESH_MS"), "{e}");
    }

    #[test]
    fn supabase_url_gives_the_jwks_url() {
        let s = settings(&[("SUPABASE_URL", "https://abc.supabase.co/")]).unwrap();
        assert_eq!(s.auth.jwks_url.as_deref(), Some("https://abc.supabase.co/auth/v1/.well-known/jwks.json"));
        assert!(!s.auth.dev_mode);
    }

    #[test]
    fn bad_values_are_named() {
        let e = settings(&[("REALTIME_PORT", "eighty")]).unwrap_err();
        assert!(e.0.contains("REALTIME_PORT"), "{e}");
        let e = settings(&[("MAX_EVENT_BYTES", "0")]).unwrap_err();
        assert!(e.0.contains("MAX_EVENT_BYTES"), "{e}");
        let e = settings(&[("MAX_EVENT_DEPTH", "101")]).unwrap_err();
        assert!(e.0.contains("MAX_EVENT_DEPTH must be below 101"), "{e}");
        assert!(settings(&[("MAX_EVENT_DEPTH", "100")]).is_ok());
        let e = settings(&[("STORE_BATCH_SIZE", "10001")]).unwrap_err();
        assert!(e.0.contains("STORE_BATCH_SIZE must be at most 10000"), "{e}");
        assert!(settings(&[("STORE_BATCH_SIZE", "10000")]).is_ok());
        let e = settings(&[("TRUSTED_PROXIES", "10.0.0.0/8,proxy.local")]).unwrap_err();
        assert!(e.0.contains("TRUSTED_PROXIES"), "{e}");
        let e = settings(&[("HANDSHAKE_TIMEOUT_MS", "0")]).unwrap_err();
        assert!(e.0.contains("HANDSHAKE_TIMEOUT_MS"), "{e}");
        let e = settings(&[("DATABASE_URL", "mysql://x")]).unwrap_err();
        assert!(e.0.contains("DATABASE_URL"), "{e}");
        assert!(settings(&[("JWT_SECRET", "short")]).is_ok(), "a short secret warns but works, as before");
    }
}
