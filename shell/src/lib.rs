//! Alice Realtime's production server: the deterministic core behind socketioxide, an event
//! store and HTTP. Every decision is the core's; this crate only moves bytes and time.

mod admin_assignments;
pub mod arguments;
pub mod assignments;
pub mod auth;
mod backlog;
pub mod bus;
pub mod clock;
pub mod config;
pub mod console;
pub mod console_activity;
pub mod delivery_minutes;
pub mod driver;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod handshake;
pub mod http;
pub mod log;
pub mod metrics;
pub mod peer_budget;
mod reader_sessions;
pub mod redis_link;
pub mod redis_stream;
mod serve;
pub mod sessions;
pub mod socket;
pub mod store;
pub mod variables;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alice_core::{Core, Deployment, Input};
use axum::http::{header, HeaderValue, Method};
use socketioxide::{SocketIo, TransportType};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::assignments::{AssignmentSource, RedisAssignments};
use crate::auth::Verifier;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::driver::{Command, Driver, DriverHandle};
use crate::log::{EventLog, Outbox, StoreLog};
use crate::redis_link::SHARED_STORE_GROUP;
use crate::store::postgres::{PgSettings, PgStore};
use crate::store::sqlite::SqliteStore;
use crate::store::EventStore;

/// Room for commands waiting for the driver; handlers wait when it is full.
const DRIVER_QUEUE: usize = 65_536;
/// Packets a socket may have waiting to be written before it counts as too slow.
const SOCKET_SEND_QUEUE: usize = 1_024;
/// Bytes each websocket reads at a time. Client messages are small (a `reader-event` is a few
/// hundred bytes), and the buffer is allocated for every connection, idle or not: engineioxide's
/// 4 KiB would be an eighth of an idle connection's memory. Larger messages take more reads.
const WS_READ_BUFFER: usize = 1_024;

/// A server that is running; dropping it does not stop it, [`Running::shutdown`] does.
pub struct Running<A = SocketAddr> {
    pub addr: A,
    driver: DriverHandle,
    stop_http: watch::Sender<bool>,
    http: JoinHandle<()>,
    driver_task: JoinHandle<()>,
    grace: Duration,
    /// A cluster node's Redis figures: its store group's dead letters live there.
    redis: Option<Arc<redis_link::RedisHealth>>,
}

/// What a graceful stop leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stopped {
    /// Accepted events this node still held for the log or the store when the grace period
    /// ended (a local outbox keeps them for the next start).
    pub unstored: usize,
    /// Events dead-lettered and not yet replayed: kept durably (the outbox's table, or the store
    /// group's Redis stream) for `POST /admin/dlq/replay`, after a restart too. In a cluster,
    /// the stream's length as last read (`/health`'s figure), which is the whole group's: every
    /// node sharing one PostgreSQL store reports the same.
    pub dead_letters: u64,
}

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("cannot open the event store: {0}")]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot read the listening address: {0}")]
    LocalAddr(std::io::Error),
}

/// Opens the event store the settings name, applying PostgreSQL migrations unless disabled.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn EventStore>, StartError> {
    match settings.database_url.as_deref() {
        None => Ok(Arc::new(SqliteStore::open(None, &settings.data_dir).await?)),
        Some(url) if url.starts_with("sqlite:") => {
            Ok(Arc::new(SqliteStore::open(Some(url), &settings.data_dir).await?))
        }
        Some(_) => {
            let store = postgres_store(settings)?;
            if settings.db_migrate {
                store.migrate().await?;
            }
            Ok(Arc::new(store.inspect().await?))
        }
    }
}

/// The PostgreSQL store of `DATABASE_URL`, not yet connected.
pub fn postgres_store(settings: &Settings) -> Result<PgStore, StartError> {
    let url =
        settings.database_url.clone().ok_or_else(|| StartError::Config("DATABASE_URL is not set".into()))?;
    Ok(PgStore::connect(&PgSettings {
        url,
        pool_size: settings.db_pool_size,
        timeout: Duration::from_millis(settings.db_timeout_ms),
    })?)
}

/// Starts the server: store, core, driver, Socket.IO and HTTP on `settings.host:settings.port`.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let store = open_store(&settings).await?;
    start_with_store(settings, store).await
}

/// Starts the server on a store of the caller's (tests wrap one to inject failures).
pub async fn start_with_store(settings: Settings, store: Arc<dyn EventStore>) -> Result<Running, StartError> {
    let addr = SocketAddr::new(settings.host, settings.port);
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?;
    // Small frames go out at once: without TCP_NODELAY, Nagle's algorithm holds a delivery back
    // until the previous one is acknowledged (axum does not set it).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let deps = Deps { store, clock: Arc::new(SystemClock::new()), seed: rand::random(), redis_dialer: None };
    start_on(settings, deps, listener).await
}

/// The task side of a cluster node's Redis executors (`start_on`).
struct Executors {
    bus_batches: bus::redis::Batches,
    log_requests: redis_stream::ReadRequests,
    bus_requests: redis_stream::ReadRequests,
    consumer_requests: log::consumer::ConsumerRequests,
}

/// What the server runs on besides its settings: the simulation supplies its own.
pub struct Deps {
    pub store: Arc<dyn EventStore>,
    pub clock: Arc<dyn Clock>,
    /// Seeds all randomness the server draws itself (event ids, retry and reconnect jitter).
    pub seed: u64,
    /// Carries Redis connections instead of TCP when set (`REDIS_URL` still names the password).
    pub redis_dialer: Option<Arc<dyn redis_link::Dialer>>,
}

/// Starts the server on any listener axum can serve (a TCP socket, or a simulated one).
pub async fn start_on<L>(settings: Settings, deps: Deps, listener: L) -> Result<Running, StartError>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let Deps { store, clock, seed, redis_dialer } = deps;
    let verifier = Verifier::new(&settings.auth);
    let deployment = match (&settings.redis_url, store.is_embedded()) {
        (Some(_), _) => Deployment::Cluster,
        (None, true) => Deployment::SingleStore,
        (None, false) => Deployment::SingleOutbox,
    };
    let redis = match &settings.redis_url {
        Some(url) => Some(
            redis_link::RedisLink::new(url, redis_dialer, seed.rotate_left(32))
                .map_err(StartError::Config)?,
        ),
        None => None,
    };
    let metrics = Arc::new(metrics::Metrics::new());
    let core_config = alice_core::Config {
        deployment,
        store_refuses_nul: store.refuses_nul(),
        store_user_ids_are_uuids: store.user_ids_are_uuids(),
        ..settings.core.clone()
    };
    let scoped = core_config.consultant_scope == alice_core::ConsultantScope::Assigned;
    let mut core = Core::new(core_config, &settings.node_id, seed);
    // A cluster whose nodes each keep their own file shares no table: its assignments live in Redis.
    let assignments = match (&redis, store.is_embedded()) {
        (Some(link), true) => AssignmentSource::Redis(Arc::new(RedisAssignments::new(link.clone()))),
        _ => AssignmentSource::Table(store.clone()),
    };

    let outbox = match deployment {
        Deployment::SingleOutbox => {
            Some(Arc::new(Outbox::open(&settings.data_dir, settings.idempotency_window_ms).await?))
        }
        _ => None,
    };
    let unstored = match &outbox {
        Some(outbox) => Some(outbox.unstored().await?),
        None => None,
    };
    // A cluster node's storing group: one the nodes share, or one of its own for its own file,
    // which is placed, and filled where Redis trimmed what it lacks, before the history loads.
    let placement = match &redis {
        Some(link) => {
            let group = if store.is_embedded() {
                format!("{SHARED_STORE_GROUP}:{}", settings.node_id)
            } else {
                SHARED_STORE_GROUP.to_owned()
            };
            let placement = Arc::new(log::membership::Placement::new(
                store.clone(),
                &group,
                settings.core.log_retain_ms,
                link.health.clone(),
            ));
            if store.is_embedded() {
                for (after, until) in placement.recount().await {
                    tracing::warn!(%after, %until, "this node's file lacks a stretch of the cluster's log; asking running nodes for it");
                }
                log::backfill::join(link, &placement, &store).await;
            }
            Some(placement)
        }
        None => None,
    };
    let (mut history, complete) = match store.newest(settings.core.history_capacity).await {
        Ok((events, has_more)) => {
            tracing::info!(
                events = events.len(),
                store = store.kind(),
                "recent history loaded from the store"
            );
            (events, !has_more)
        }
        Err(e) => {
            // Serve anyway; older events are asked of the store once it is back.
            tracing::error!(error = %e, "could not load recent history; starting without it");
            (Vec::new(), false)
        }
    };
    if let Some(u) = &unstored {
        // Acknowledged before the restart and not in the store yet: part of the history too.
        history.extend(u.events.iter().chain(&u.dead).cloned());
    }
    core.handle(clock.reading(), Input::HistoryLoaded { events: history, complete });
    if scoped {
        // Before the first socket: a consultant is never shown what its assignments would hide.
        match assignments.load(None).await {
            Ok(table) => {
                tracing::info!(consultants = table.len(), "consultant assignments loaded");
                core.handle(clock.reading(), Input::AssignmentsLoaded { table: Some(table) });
            }
            Err(e) => tracing::error!(error = %e, "could not read the consultant assignments; retrying"),
        }
    }
    if let Some(u) = unstored {
        if !u.events.is_empty() || !u.dead.is_empty() {
            tracing::info!(
                events = u.events.len(),
                dead = u.dead.len(),
                "the outbox holds events the store does not have yet; storing them"
            );
        }
        core.handle(clock.reading(), Input::Unstored { events: u.events, dead: u.dead });
    }

    let log: Arc<dyn EventLog> = match (&redis, &outbox) {
        (Some(link), _) => Arc::new(log::redis::RedisLog::new(link.clone(), settings.idempotency_window_ms)),
        (None, Some(outbox)) => outbox.clone(),
        (None, None) => {
            Arc::new(StoreLog { store: store.clone(), window_ms: settings.idempotency_window_ms })
        }
    };
    if redis.is_none() {
        // A single node places events itself: after everything its own file's log ever held,
        // even if the history above could not be loaded.
        core.handle(clock.reading(), Input::LogEnd(log.end().await?));
    }
    // A cluster node's Redis executors: the driver sends the core's commands into these channels,
    // and a task per channel runs them once the driver's handle exists.
    let (bus, readers, consumer, executors) = match &redis {
        Some(_) => {
            let (bus_tx, bus_batches) = tokio::sync::mpsc::unbounded_channel();
            let (log_reader, log_requests) = redis_stream::StreamReader::channel();
            let (bus_reader, bus_requests) = redis_stream::StreamReader::channel();
            let (consumer, consumer_requests) = log::consumer::ConsumerLink::channel();
            let executors = Executors { bus_batches, log_requests, bus_requests, consumer_requests };
            (bus::Bus::Redis(bus_tx), Some((log_reader, bus_reader)), Some(consumer), Some(executors))
        }
        None => (bus::Bus::Local, None, None, None),
    };
    // Sessions for connection state recovery: in Redis for a cluster, else in the node's file.
    let sessions: Arc<dyn sessions::Sessions> = match (&redis, &outbox) {
        (Some(link), _) => Arc::new(sessions::RedisSessions::new(link.clone())),
        (None, Some(outbox)) => Arc::new(outbox.sessions().clone()),
        (None, None) => store.clone().sessions().unwrap_or_else(|| Arc::new(sessions::NoSessions)),
    };
    let links = driver::Links {
        clock: clock.clone(),
        store: store.clone(),
        log,
        outbox,
        readers,
        consumer,
        bus,
        verifier: verifier.clone(),
        sessions: sessions::spawn_writer(sessions.clone()),
        assignments: assignments.clone(),
        metrics: metrics.clone(),
    };
    let (driver, handle) = Driver::new(core, links, DRIVER_QUEUE);
    let driver_task = tokio::spawn(driver.run());
    if scoped && matches!(assignments, AssignmentSource::Table(_)) {
        let wake = handle.clone();
        store.watch_assignments(Box::new(move || {
            // A full queue is busy enough (the refresh timer reads the table anyway); a closed
            // one means the server stopped, and so does the watch.
            match wake.try_send(driver::Command::Input(Input::AssignmentsTouched)) {
                Ok(()) => true,
                Err(e) => matches!(*e, tokio::sync::mpsc::error::TrySendError::Full(_)),
            }
        }));
    }
    let dead_letters = match (&redis, executors, placement) {
        (Some(link), Some(executors), Some(placement)) => {
            let group = placement.group().to_owned();
            if store.is_embedded() {
                log::backfill::spawn_answering(link.clone(), store.clone(), group.clone(), handle.clone());
            }
            let Executors { bus_batches, log_requests, bus_requests, consumer_requests } = executors;
            let (h, c) = (handle.clone(), clock.clone());
            let log_group = Some(placement.clone());
            redis_stream::spawn(link.clone(), alice_core::Stream::Log, log_group, h, c, log_requests);
            let (h, c) = (handle.clone(), clock.clone());
            redis_stream::spawn(link.clone(), alice_core::Stream::Bus, None, h, c, bus_requests);
            let keep = Duration::from_millis(10 * settings.core.presence_ttl_ms);
            let m = metrics.clone();
            bus::redis::spawn_publisher(link.clone(), clock.clone(), keep, handle.clone(), bus_batches, m);
            let names =
                log::consumer::ConsumerNames { group: group.clone(), consumer: settings.node_id.clone() };
            log::consumer::spawn(
                link.clone(),
                names,
                placement,
                handle.clone(),
                consumer_requests,
                metrics.clone(),
            );
            Some(Arc::new(log::consumer::DeadLetters::new(link.clone(), store.clone(), &group)))
        }
        _ => None,
    };

    let max_packet = settings.core.max_packet_bytes;
    let (layer, io) = SocketIo::builder()
        .max_payload(max_packet as u64)
        .ws_max_message_size(max_packet)
        .ws_max_frame_size(max_packet)
        .max_buffer_size(SOCKET_SEND_QUEUE)
        .connect_timeout(Duration::from_millis(settings.handshake_timeout_ms))
        .ws_read_buffer_size(WS_READ_BUFFER)
        .transports([TransportType::Polling, TransportType::Websocket])
        .with_state(socket::SocketState {
            driver: handle.clone(),
            verifier: verifier.clone(),
            sessions,
            next_conn: Arc::new(alice_handoff::Ids::starting_at(1)),
            peer_budget: peer_budget::PeerBudget::new(
                settings.handshakes_per_ip_per_minute,
                settings.trusted_proxies.clone(),
                clock.clone(),
            )
            .map(Arc::new),
            metrics: metrics.clone(),
        })
        .build_layer();
    socket::attach(&io);

    let redis_health = redis.map(|l| l.health.clone());
    let delivery_minutes = Arc::new(delivery_minutes::DeliveryMinutes::new(metrics.delivered.clone()));
    delivery_minutes::spawn_sampler(&delivery_minutes, clock.clone());
    let app = http::router(http::HttpState {
        driver: handle.clone(),
        verifier,
        store,
        assignments,
        metrics,
        delivery_minutes,
        activity_answers: Arc::default(),
        dead_letters,
        redis: redis_health.clone(),
        clock,
        started: Instant::now(),
        metrics_token: settings.metrics_token.clone(),
        presence_ttl_ms: settings.core.presence_ttl_ms,
    })
    .merge(console::router())
    .layer(layer)
    .layer(axum::middleware::map_request(handshake::own_head))
    .layer(cors(&settings.cors_origins));

    let addr = listener.local_addr().map_err(StartError::LocalAddr)?;
    let (stop_http, mut stopped) = watch::channel(false);
    let head_timeout = Duration::from_millis(settings.handshake_timeout_ms);
    let http = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        serve::serve(listener, app, head_timeout, shutdown).await;
    });
    tracing::info!(addr = %format!("{addr:?}"), node = %settings.node_id, "Alice Realtime listening");
    Ok(Running {
        addr,
        driver: handle,
        stop_http,
        http,
        driver_task,
        grace: Duration::from_millis(settings.shutdown_grace_ms),
        redis: redis_health,
    })
}

impl<A> Running<A> {
    /// Stops accepting, tells the cluster, flushes the queue to the store (within the grace
    /// period) and stops. Returns what it leaves behind.
    pub async fn shutdown(self) -> Stopped {
        let _ = self.stop_http.send(true);
        let (reply, rx) = oneshot::channel();
        let mut stopped = if self.driver.send(Command::Shutdown { grace: self.grace, reply }).await {
            rx.await.unwrap_or_default()
        } else {
            Stopped::default()
        };
        if let Some(redis) = &self.redis {
            stopped.dead_letters += redis.dlq_len.get();
        }
        let _ = self.driver_task.await;
        // Requests in progress (long polls of up to a ping interval) keep the HTTP server's
        // graceful stop waiting; the driver has stopped, so do not wait on them.
        self.http.abort();
        stopped
    }
}

fn cors(origins: &[String]) -> CorsLayer {
    // "*" cannot go with credentials; it means "any origin", so echo the caller's origin instead.
    let allow = if origins.iter().any(|o| o == "*") {
        tracing::warn!("CORS_ORIGINS contains *: every origin is allowed, with credentials");
        AllowOrigin::mirror_request()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .allow_credentials(true)
}
