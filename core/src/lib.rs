//! The deterministic, sans-IO heart of Alice Realtime: every decision of the server, and no I/O.
//!
//! [`Core`] is a state machine. It owns the sockets' principals, subscriptions and rooms, the
//! recipient computation, presence, rate limits, event ids, the recent-event history, the durable
//! queue's bookkeeping, token expiry and the bus protocol between nodes. It has no runtime, no
//! clock, no thread and no randomness of its own: time comes in with every input and randomness
//! from the seed given to [`Core::new`], so the same inputs always give the same outputs.
//!
//! Use it in this order, like quinn-proto and str0m:
//!
//! ```
//! use alice_core::{Config, Core, Input, Millis};
//! let mut core = Core::new(Config::default(), "node-a", 7);
//! core.handle(Millis(1_000), Input::Tick);          // 1. feed an input (or a tick when a timer is due)
//! while let Some(output) = core.poll_output() {       // 2. drain every output, after every input
//!     let _ = output;                                 //    deliver, publish, store, disconnect
//! }
//! let _wake_at = core.poll_timeout();                 // 3. call again with Input::Tick no later than this
//! ```
//!
//! The life of a reader event: [`Input::ClientEvent`] is parsed by [`protocol`], checked for role,
//! size, payload and rate, given a UUIDv7 and handed to the deployment's [`log`]
//! ([`Output::Append`]). Nothing more happens until the log holds it ([`Input::Appended`]): only
//! then is it acknowledged to its sender, and shown. On a single node it is then delivered to the
//! recipients that [`routing`] computes ([`Output::Emit`]), remembered in [`history`], recorded
//! in [`presence`] and counted; with a local outbox, [`queue`] then feeds it to the store
//! ([`Output::StoreBatch`], then [`Input::Stored`]). In a cluster every node does the same when it
//! reads the event back from the shared log ([`Input::Log`]), in the log's one order.
#![forbid(unsafe_code)]

pub mod activity;
mod backoff;
pub mod bus;
pub mod bus_outbox;
mod cluster;
mod commands;
pub mod config;
pub mod consumer;
mod durable;
pub mod error;
pub mod event;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod history;
pub mod ids;
pub mod log;
pub mod position;
pub mod presence;
pub mod principal;
pub mod protocol;
pub mod queue;
pub mod rate_limit;
pub mod readers;
pub mod recovery;
pub mod replies;
mod resume;
pub mod routing;
pub mod scope;
pub mod sequence;
mod session;
mod storage;
pub mod time;
pub mod timers;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

pub use activity::ActivitySeries;
pub use bus::{BusBody, BusEvent, BusMessage};
pub use config::{Config, Deployment};
pub use consumer::ConsumerCommand;
pub use error::{CommandError, ConnectRefusal, ErrorCode};
pub use event::{ReaderEvent, ReadingPosition, SentFrom};
pub use log::{AppendId, LogEntry};
pub use position::{LogPosition, PLACED_WITHIN_MS};
pub use principal::{Principal, Role};
pub use protocol::HistoryQuery;
pub use queue::{BatchId, StoreFailure};
pub use readers::{ReadFrom, Stream};
pub use recovery::{Recovery, SavedSession};
pub use replies::Payload;
pub use resume::{ReplayFilter, ReplayFrom, ReplayRule, LOG_END_WAIT_MS};
pub use scope::{AssignmentTable, ConsultantScope};
pub use time::{Millis, Now};

use activity::Activity;
use bus_outbox::BusOutbox;
use consumer::Consumer;
use history::History;
use ids::EventIds;
use log::Log;
use presence::Presence;
use queue::DurableQueue;
use rate_limit::TokenBucket;
use readers::Reader;
use routing::Routing;
use scope::Assignments;
use timers::{Timer, Timers};

/// A socket, numbered by the shell in the order sockets arrive (never by its random sid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Names one acknowledgement callback the shell holds for a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AckId(pub u64);

/// What the shell learned of a token: nothing, a bad one, or its verified claims.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenCheck {
    /// No token was offered.
    Missing,
    /// The token failed signature, audience, issuer or format checks.
    Invalid,
    /// The signature checked out; these are its claims. Expiry is decided by the core.
    Verified(Value),
}

/// Everything that can happen to the core.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Nothing new: time has passed (a timer may be due).
    Tick,
    /// Inputs that arrived together (the shell feeds the client events waiting in its queue),
    /// handled in order as one by one, except that the log is asked for no append until the
    /// last of them: the events among them go to the log as one append (one commit, or one round
    /// trip to Redis) rather than the first alone and the rest after it, and are shown together
    /// once it is confirmed. Group commit decides the rest: no input waits for another to arrive.
    /// The burst is one moment: the clock is read once, timers fall due before it, and presence
    /// pushes are scheduled after it.
    Burst(Vec<Input>),
    /// A socket asks to connect; `sid` is its Socket.IO id, the default `sessionId`. A client
    /// recovering its connection state presents `recovery`.
    Connect { conn: ConnId, sid: String, token: TokenCheck, recovery: Option<Box<Recovery>> },
    /// A socket closed.
    Disconnect { conn: ConnId },
    /// A socket sent an event. `args` exclude the acknowledgement callback.
    ClientEvent { conn: ConnId, name: String, args: Vec<Value>, has_binary: bool, ack: Option<AckId> },
    /// The answer to [`Output::VerifyToken`].
    TokenVerified { conn: ConnId, ack: Option<AckId>, token: TokenCheck },
    /// A message from the bus (possibly this node's own, coming back).
    Bus(BusMessage),
    /// The log holds an append: its events are durable, except those it refused as repeats of
    /// an earlier event's key: each as (its id, the first event's id).
    Appended { append: AppendId, repeats: Vec<(uuid::Uuid, uuid::Uuid)> },
    /// An append failed (some of it may have landed); the core retries it.
    AppendFailed { append: AppendId },
    /// The answer to [`Output::Read`]: the entries read (each its stream id and its `m` field,
    /// in order), and the id of the last one (or where reading starts, for [`ReadFrom::Opening`]).
    /// `at_end` when the read took every entry the stream held as it ran (fewer than it could
    /// take): this node has then read the stream as it stood when the read was asked for.
    Read { stream: Stream, position: Option<String>, entries: Vec<(String, Vec<u8>)>, at_end: bool },
    /// An [`Output::Read`] failed; the core tries again after a backoff.
    ReadFailed { stream: Stream },
    /// Redis holds the bus messages of the last [`Output::Broadcast`].
    Broadcasted,
    /// An [`Output::Broadcast`] failed; the core sends them again after a backoff.
    BroadcastFailed,
    /// The answer to [`Output::Consume`]: what it read or claimed, as (stream id, `m` field),
    /// none for the other commands.
    Consumed { entries: Vec<(String, Vec<u8>)> },
    /// An [`Output::Consume`] failed; the core tries again after a backoff.
    ConsumeFailed,
    /// An entry read from the cluster's log at a position (its stream id), in the log's order
    /// (possibly this node's own).
    Log(LogPosition, BusMessage),
    /// Events the local outbox holds that the store does not have yet, and those dead-lettered,
    /// found at start: they were acknowledged before a restart and go on to the store.
    Unstored { events: Vec<Arc<ReaderEvent>>, dead: Vec<Arc<ReaderEvent>> },
    /// The store kept a batch.
    Stored { batch: BatchId },
    /// The store failed a batch.
    StoreFailed { batch: BatchId, failure: StoreFailure },
    /// Recent events read from the store at start; `complete` when the store has no older ones.
    HistoryLoaded { events: Vec<Arc<ReaderEvent>>, complete: bool },
    /// A single node's log already holds events up to this position (read from its file at
    /// start): new events are placed after it, whatever the clock says.
    LogEnd(LogPosition),
    /// The answer to [`Output::QueryReplay`]: where the replay starts and the events after it in
    /// log order, `Some(None)` when the store has no event `from` names, `None` when it failed.
    ReplayAnswered { conn: ConnId, answer: Option<Option<(LogPosition, Vec<Arc<ReaderEvent>>)>> },
    /// The answer to [`Output::QueryStore`]: events in protocol order and whether more remain,
    /// or `None` when the store failed.
    StoreQueryAnswered { conn: ConnId, ack: Option<AckId>, answer: Option<(Vec<Arc<ReaderEvent>>, bool)> },
    /// The node is shutting down: tell the other nodes.
    Shutdown,
    /// The answer to [`Output::LoadAssignments`]: every active assignment in the table, or
    /// `None` when the read failed (the core keeps what it had and asks again later).
    AssignmentsLoaded { table: Option<AssignmentTable> },
    /// The assignments table changed (the database said so): read it again now.
    AssignmentsTouched,
    /// An admin replaced a consultant's active set through this node, which wrote it to the
    /// table: it takes effect now, and the other nodes are told.
    Assign { consultant_id: String, readers: std::collections::BTreeSet<String> },
}

/// Everything the core asks the shell to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// The private session id to send in a connecting socket's CONNECT reply (just before its
    /// [`Output::Accept`]); the same one it presented when its state was recovered.
    Pid { conn: ConnId, pid: String },
    /// Let a connecting socket in.
    Accept { conn: ConnId },
    /// Keep this session for connection state recovery under `pid`, replacing what was there,
    /// until `session.expires_ms`.
    SaveSession { pid: String, session: SavedSession },
    /// The session under `pid` recovers nothing any more.
    ForgetSession { pid: String },
    /// Refuse a connecting socket with this `connect_error`.
    Refuse { conn: ConnId, reason: ConnectRefusal },
    /// Send `event` with `payload` to each socket in `to` (sorted, no repeats).
    Emit { to: Vec<ConnId>, event: &'static str, payload: Payload },
    /// Send `reader-activity` with `payload` to each socket in `to` (sorted, no repeats), and the
    /// event's position in the log, as a string, as its last argument: the offset with which an
    /// official client recovers its connection state.
    Activity { to: Vec<ConnId>, payload: Payload, position: LogPosition },
    /// Answer a socket's acknowledgement callback.
    Ack { conn: ConnId, ack: AckId, payload: Payload },
    /// Close a socket; the core has already forgotten it.
    Disconnect { conn: ConnId },
    /// Send a message to every node, this one included (a single node's own bus).
    Publish(BusMessage),
    /// In a cluster: append these bus messages to the bus stream, then report
    /// [`Input::Broadcasted`] or [`Input::BroadcastFailed`]. One batch is out at a time.
    Broadcast { messages: Vec<BusMessage> },
    /// Read a stream of the cluster's (over a new connection when `fresh`), then report
    /// [`Input::Read`] or [`Input::ReadFailed`]. One read per stream is out at a time.
    Read { stream: Stream, from: ReadFrom, fresh: bool },
    /// A command of this node's storing consumer of the log; report [`Input::Consumed`] or
    /// [`Input::ConsumeFailed`]. One is out at a time.
    Consume(ConsumerCommand),
    /// Append these entries to the log, then report [`Input::Appended`] or
    /// [`Input::AppendFailed`]. One append is in flight at a time.
    Append { append: AppendId, entries: Vec<Arc<LogEntry>> },
    /// The store refused these events after their last attempt: keep them as dead letters.
    DeadLettered { events: Vec<Arc<ReaderEvent>> },
    /// Store these events, then report [`Input::Stored`] or [`Input::StoreFailed`].
    StoreBatch { batch: BatchId, events: Vec<Arc<ReaderEvent>> },
    /// Verify a token offered by `refresh-token`, then report [`Input::TokenVerified`].
    VerifyToken { conn: ConnId, ack: Option<AckId>, token: String },
    /// History in memory cannot answer: ask the store, then report [`Input::StoreQueryAnswered`].
    QueryStore { conn: ConnId, ack: Option<AckId>, query: HistoryQuery },
    /// A resume or a recovery reaches back past memory: ask the store for up to `limit` events
    /// after `from` in log order that `filter` lets through (and, from an event, that event's
    /// position), then report [`Input::ReplayAnswered`].
    QueryReplay { conn: ConnId, from: ReplayFrom, filter: ReplayFilter, limit: usize },
    /// Send each of these events to one socket as `reader-activity`, in this order, before
    /// anything sent to it afterwards; at the pace the socket takes them.
    Replay { conn: ConnId, events: Vec<Arc<ReaderEvent>> },
    /// Read every active assignment from the table, then report [`Input::AssignmentsLoaded`].
    /// One read is out at a time.
    LoadAssignments,
    /// Another live process sends on the bus under this node's `NODE_ID` (its run is
    /// `incarnation`): a misconfiguration to report loudly. Once per other run heard.
    NodeIdShared { incarnation: u64 },
}

/// A socket's subscription: whose events and which types (empty: every type).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Subscription {
    consultant_id: String,
    event_types: Vec<String>,
}

/// What the core knows of one connected socket.
#[derive(Debug)]
struct Connection {
    principal: Principal,
    sid: String,
    rooms: BTreeSet<String>,
    subscription: Option<Subscription>,
    /// Its private session id, for connection state recovery (and kept by a recovered socket),
    /// and the tag its events carry ([`event::socket_tag`]).
    pid: Arc<str>,
    tag: Arc<str>,
    /// Where the log stood when it connected (or the offset it recovered from): a reader's
    /// session is replayed from here when its client received nothing since.
    connected_at: LogPosition,
    /// For a staff socket, what it was sent on this connection (for resumes).
    sent: Option<Box<resume::Sent>>,
}

/// Per-user rate limit state on this node.
#[derive(Debug)]
struct UserLimits {
    reader_events: TokenBucket,
    other_events: TokenBucket,
    handshakes: TokenBucket,
    connections: u32,
}

/// Counters and gauges for `/stats`, `/metrics` and `/health`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub connections: usize,
    pub online_readers: usize,
    pub queue_size: usize,
    pub dlq_size: usize,
    pub is_processing: bool,
    pub queue_capacity: usize,
    pub history_size: usize,
    pub events_accepted: u64,
    pub deliveries: u64,
    pub refused: BTreeMap<ErrorCode, u64>,
    pub connects_refused: u64,
    pub events_dead_lettered: u64,
    pub bus_duplicates: u64,
    pub bus_gaps: u64,
    pub bus_malformed: u64,
    pub bus_last_self_heard: Option<Millis>,
    pub remote_events: u64,
    /// Log entries read twice (an append retried after part of it landed), dropped.
    pub log_duplicates: u64,
    /// Log entries of an origin skipped when a later one was read: trimmed before this node read
    /// them, refused as repeats of a key, or yet to come late.
    pub log_gaps: u64,
    /// Log entries read after a later entry of their origin: an append retried after Redis ran
    /// a later part of it and refused an earlier one. Shown where they landed.
    pub log_late: u64,
    /// Times the bus was found silent and read over a fresh connection.
    pub bus_repairs: u64,
    /// Bus messages waiting for Redis, and those dropped from a full outbox.
    pub bus_outbox: usize,
    pub bus_dropped: u64,
    /// Events sent by resumes (`subscribe-consultant` with `since`).
    pub replayed: u64,
    /// Reader events not accepted again: their `clientEventId` was accepted before.
    pub duplicates: u64,
    /// Bus messages from another live process with this node's `NODE_ID`.
    pub node_id_shared: u64,
}

/// Counts per second over the last minute: accepted events for `eventsPerMinute`, and entries
/// read from the log for its read budget.
#[derive(Debug)]
struct MinuteCounter {
    seconds: [(u64, u64); 60],
}

impl Default for MinuteCounter {
    fn default() -> Self {
        MinuteCounter { seconds: [(u64::MAX, 0); 60] }
    }
}

impl MinuteCounter {
    fn add(&mut self, now: Millis, n: u64) {
        let sec = now.0 / 1000;
        let slot = &mut self.seconds[(sec % 60) as usize];
        if slot.0 != sec {
            *slot = (sec, 0);
        }
        slot.1 = slot.1.saturating_add(n);
    }

    /// The count of the last whole second before `now`'s.
    fn last_second(&self, now: Millis) -> u64 {
        let Some(sec) = (now.0 / 1000).checked_sub(1) else { return 0 };
        match self.seconds[(sec % 60) as usize] {
            (s, n) if s == sec => n,
            _ => 0,
        }
    }

    fn total(&self, now: Millis) -> u64 {
        let sec = now.0 / 1000;
        self.seconds.iter().filter(|(s, _)| *s <= sec && sec - *s < 60).map(|(_, n)| n).sum()
    }
}

/// A reader's `clientEventId`: the user, then the key.
type UserKey = (Arc<str>, Arc<str>);

/// The state machine. See the crate documentation for the order of calls.
pub struct Core {
    config: Config,
    node: String,
    incarnation: u64,
    rng: ChaCha8Rng,
    /// The monotonic time of the last input.
    now: Millis,
    /// The wall clock at the last input.
    wall: Millis,
    conns: BTreeMap<ConnId, Connection>,
    /// Sockets whose `refresh-token` is being verified; `true` when their token expired meanwhile.
    refreshing: BTreeMap<ConnId, bool>,
    /// Sockets holding a consultant subscription, which receive `online-readers` pushes.
    subscribed: BTreeSet<ConnId>,
    /// Keyed events on their way into the log, by user and key, with the repeats that wait for
    /// their answer.
    keyed: HashMap<UserKey, Vec<(ConnId, Option<AckId>)>>,
    /// Resumed sockets and the position they resumed after: nothing at or before it is
    /// delivered to them again (a node may show older events late; see `resume.rs`).
    seen_up_to: BTreeMap<ConnId, LogPosition>,
    /// New staff sockets that have not sent a command yet, with the deliveries held for them
    /// until their first command (which may be a resume that must come first) or a timeout.
    first: BTreeMap<ConnId, Vec<Arc<ReaderEvent>>>,
    /// Sockets whose resume waits for the store, with the deliveries held for them.
    resuming: BTreeMap<ConnId, resume::PendingResume>,
    /// Admitted sockets whose recovery waits for the store's replay before they are accepted.
    recovering: BTreeMap<ConnId, recovery::PendingRecovery>,
    routing: Routing,
    /// Who is assigned to whom, under consultant scope `assigned`.
    assignments: Assignments,
    /// A read of the assignments table, when one is out, and what came in meanwhile.
    assignments_loading: Option<scope::Reading>,
    users: HashMap<Arc<str>, UserLimits>,
    presence: Presence,
    last_presence_push: Option<Millis>,
    /// The `online-readers` each scoped consultant's subscribed socket was last sent.
    shown_views: HashMap<ConnId, Payload>,
    history: History,
    /// Accepted events on their way into the log: not yet acknowledged or shown.
    log: Log,
    log_seq: u64,
    /// The last position this node placed an event at (single node) or saw placed (history).
    last_position: LogPosition,
    /// Inside an [`Input::Burst`]: the log's next append waits for its end.
    in_burst: bool,
    log_seen: sequence::SeqTracker,
    /// A cluster node's reading of the log and of the bus.
    log_reader: Reader,
    bus_reader: Reader,
    /// Entries read from the log, per second, for the budget that decides whether its reads
    /// are paced.
    log_rate: MinuteCounter,
    /// A cluster node's storing consumer of the log.
    consumer: Consumer,
    /// A cluster node's bus messages on their way to Redis.
    bus_outbox: BusOutbox,
    /// When the bus last gave anything (this node's own heartbeats included).
    bus_heard: Option<Millis>,
    /// The last other run heard on the bus under this node's `NODE_ID`.
    node_id_sharer: Option<u64>,
    /// Durable events on their way into the store (a local outbox only).
    queue: DurableQueue,
    ids: EventIds,
    bus_seq: u64,
    seen: sequence::SeqTracker,
    timers: Timers,
    outputs: VecDeque<Output>,
    stats: Stats,
    minute: MinuteCounter,
    /// The last hour, minute by minute, for the console's charts.
    activity: Activity,
    started: bool,
}

impl Core {
    /// A node named `node_id`, drawing every random choice from `seed`.
    pub fn new(config: Config, node_id: &str, seed: u64) -> Core {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let incarnation = rng.next_u64();
        Core {
            history: History::new(config.history_capacity),
            queue: DurableQueue::new(&config),
            log: Log::new(config.store_batch_size, !config.deployment.reads_back(), rng.next_u64()),
            log_seq: 0,
            last_position: LogPosition::START,
            in_burst: false,
            log_seen: sequence::SeqTracker::for_appends(),
            log_reader: Reader::new(rng.next_u64()),
            log_rate: MinuteCounter::default(),
            bus_reader: Reader::new(rng.next_u64()),
            consumer: Consumer::new(rng.next_u64(), config.log_store_pace_ms),
            bus_outbox: BusOutbox::new(rng.next_u64()),
            bus_heard: None,
            node_id_sharer: None,
            config,
            node: node_id.to_owned(),
            incarnation,
            rng,
            now: Millis(0),
            wall: Millis(0),
            conns: BTreeMap::new(),
            refreshing: BTreeMap::new(),
            subscribed: BTreeSet::new(),
            resuming: BTreeMap::new(),
            recovering: BTreeMap::new(),
            first: BTreeMap::new(),
            seen_up_to: BTreeMap::new(),
            keyed: HashMap::new(),
            routing: Routing::default(),
            assignments: Assignments::default(),
            assignments_loading: None,
            users: HashMap::new(),
            presence: Presence::default(),
            last_presence_push: None,
            shown_views: HashMap::new(),
            ids: EventIds::default(),
            bus_seq: 0,
            seen: sequence::SeqTracker::in_order(),
            timers: Timers::default(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            minute: MinuteCounter::default(),
            activity: Activity::default(),
            started: false,
        }
    }

    // ---- getters ----

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Counters and gauges as of the last input.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.connections = self.conns.len();
        s.online_readers = self.presence.count();
        // In a cluster what the store has yet to take is in Redis (the shell adds it).
        let stored_here = if self.config.deployment.reads_back() { 0 } else { self.queue.waiting() };
        s.queue_size = self.log.len() + stored_here;
        s.dlq_size = self.queue.dead_letters();
        s.is_processing = self.queue.is_processing() || self.log.is_appending();
        s.queue_capacity = self.config.event_queue_capacity;
        s.history_size = self.history.len();
        s.bus_outbox = self.bus_outbox.len();
        s.bus_dropped = self.bus_outbox.dropped();
        s
    }

    /// Events accepted by this node in the minute before `now`.
    pub fn events_per_minute(&self, now: Millis) -> u64 {
        self.minute.total(now)
    }

    /// This node and every other node heard from within the presence TTL, sorted.
    pub fn cluster_nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self.presence.nodes().map(str::to_owned).collect();
        nodes.push(self.node.clone());
        nodes.sort();
        nodes
    }

    /// The principal of a connected socket.
    pub fn principal(&self, conn: ConnId) -> Option<&Principal> {
        self.conns.get(&conn).map(|c| &c.principal)
    }

    /// Whether an admitted socket waits for the store's replay before it is accepted (its
    /// recovery reaches back past memory); it is then accepted or refused later.
    pub fn is_recovering(&self, conn: ConnId) -> bool {
        self.recovering.contains_key(&conn)
    }

    /// Whether the queue refuses new events now.
    pub fn queue_is_full(&self) -> bool {
        let behind_log = if self.config.deployment.stores_after_log() { self.queue.len() } else { 0 };
        self.log.len() + behind_log >= self.config.event_queue_capacity
    }

    /// The last hour of activity as `viewer` may see it (a scoped consultant: its readers only),
    /// as of the wall clock `wall`, with sparklines for the readers online that it may see, the
    /// most recently active first.
    pub fn activity(&self, viewer: &Principal, wall: Millis) -> ActivitySeries {
        let only = self.readers_visible_to(viewer);
        let online = self.presence.online();
        let online: Vec<&str> = online.iter().map(|(user, _)| *user).collect();
        self.activity.series(wall, only.as_deref(), &online, &online)
    }

    /// Samples who is online for the activity charts, and arms the next sample.
    fn sample_activity(&mut self, now: Millis) {
        self.activity.sample(self.wall, self.presence.users());
        self.timers.set(Timer::ActivitySample, now.plus(activity::SAMPLE_MS));
    }

    /// The readers assigned to `consultant`, sorted (what the core holds, as of the last input).
    pub fn assigned_readers(&self, consultant: &str) -> Vec<String> {
        self.assignments.readers_of(consultant)
    }

    // ---- input ----

    /// Feeds one input at time `now` (a [`Now`], or one [`Millis`] for both clocks). Drain
    /// [`Core::poll_output`] afterwards.
    pub fn handle(&mut self, now: impl Into<Now>, input: Input) {
        let Now { mono, wall } = now.into();
        self.now = self.now.max(mono);
        self.wall = wall;
        let now = self.now;
        let starting = !self.started;
        if starting {
            self.started = true;
            self.timers.set(Timer::Heartbeat, now);
            self.timers.set(Timer::ForgetIdleUsers, now.plus(60_000));
            self.timers.set(Timer::ActivitySample, now);
            if self.config.consultant_scope == ConsultantScope::Assigned {
                self.timers.set(Timer::AssignmentRefresh, now);
            }
        }
        while let Some(timer) = self.timers.pop_due(now) {
            self.on_timer(now, timer);
        }
        self.on_input(now, input);
        if starting {
            // After the first input, which may be the history that tells where reading opens.
            self.pump_reads(now);
            self.pump_consumer(now);
        }
        self.schedule_presence_push(now);
    }

    fn on_input(&mut self, now: Millis, input: Input) {
        match input {
            Input::Tick => {}
            Input::Burst(inputs) => {
                let outer = std::mem::replace(&mut self.in_burst, true);
                for input in inputs {
                    self.on_input(now, input);
                }
                self.in_burst = outer;
                self.pump_log(now);
            }
            Input::Connect { conn, sid, token, recovery } => {
                self.on_connect(now, conn, sid, token, recovery.map(|r| *r))
            }
            Input::Disconnect { conn } => self.on_disconnect(conn),
            Input::ClientEvent { conn, name, args, has_binary, ack } => {
                self.on_client_event(now, conn, &name, &args, has_binary, ack)
            }
            Input::TokenVerified { conn, ack, token } => self.on_token_verified(conn, ack, token),
            Input::Bus(msg) => self.on_bus(now, msg),
            Input::Appended { append, repeats } => self.on_appended(now, append, &repeats),
            Input::AppendFailed { append } => self.on_append_failed(now, append),
            Input::Read { stream, position, entries, at_end } => {
                self.on_read(now, stream, position, entries, at_end)
            }
            Input::ReadFailed { stream } => self.on_read_failed(now, stream),
            Input::Consumed { entries } => self.on_consumed(now, entries),
            Input::Broadcasted => {
                self.bus_outbox.sent();
                self.pump_bus(now);
            }
            Input::BroadcastFailed => {
                self.bus_outbox.failed(now);
                self.pump_bus(now);
            }
            Input::ConsumeFailed => {
                self.consumer.failed(now);
                self.pump_consumer(now);
            }
            Input::Log(position, msg) => self.on_log(now, position, msg),
            Input::Unstored { events, dead } => {
                self.placed_before(events.iter().chain(&dead));
                self.on_unstored(now, events, dead)
            }
            Input::Stored { batch } => self.on_stored(now, batch),
            Input::StoreFailed { batch, failure } => self.on_store_failed(now, batch, failure),
            Input::HistoryLoaded { events, complete } => self.on_history_loaded(events, complete),
            Input::LogEnd(end) => self.last_position = self.last_position.max(end),
            Input::StoreQueryAnswered { conn, ack, answer } => self.on_store_answer(conn, ack, answer),
            Input::ReplayAnswered { conn, answer } => self.on_replay_answered(conn, answer),
            Input::Shutdown => self.publish(BusBody::Leaving),
            Input::AssignmentsLoaded { table } => self.on_assignments_loaded(table),
            Input::AssignmentsTouched => self.reload_assignments(),
            Input::Assign { consultant_id, readers } => self.assign(consultant_id, readers),
        }
    }

    fn on_timer(&mut self, now: Millis, timer: Timer) {
        match timer {
            Timer::TokenExpiry(conn) => self.expire_token(conn),
            Timer::FirstCommand(conn) => self.release_first(conn),
            Timer::LogEnd(conn) => self.stop_waiting_for_log_end(conn),
            Timer::StoreDue => self.pump_store(now),
            Timer::AppendRetry => self.pump_log(now),
            Timer::ReadRetry(_) => self.pump_reads(now),
            Timer::Consumer => self.pump_consumer(now),
            Timer::BroadcastRetry => self.pump_bus(now),
            Timer::PresencePush => self.push_presence(now),
            Timer::Heartbeat => self.heartbeat(now),
            Timer::NodeExpiry => self.expire_nodes(now),
            Timer::ForgetIdleUsers => self.forget_idle_users(now),
            Timer::AssignmentRefresh => self.refresh_assignments(now),
            Timer::ActivitySample => self.sample_activity(now),
        }
    }

    // ---- output ----

    /// The next thing for the shell to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`Core::handle`] with [`Input::Tick`] if nothing else happens first.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timers.next()
    }

    // ---- mutators ----

    /// Puts every dead-lettered event back in the queue (an admin's replay); returns how many.
    pub fn replay_dead_letters(&mut self, now: Millis) -> usize {
        let n = self.queue.replay_dead();
        self.pump_store(now);
        n
    }

    // ---- shared helpers ----

    /// The monotonic time at which the wall clock will read `deadline`, as far as can be told now.
    fn mono_at(&self, deadline: Millis) -> Millis {
        self.now.plus(deadline.since(self.wall))
    }

    fn emit(&mut self, to: Vec<ConnId>, event: &'static str, payload: Payload) {
        if !to.is_empty() {
            self.outputs.push_back(Output::Emit { to, event, payload });
        }
    }

    /// Sends a successful reply: the named event and, when asked, the acknowledgement.
    fn reply(&mut self, conn: ConnId, ack: Option<AckId>, event: &'static str, fields: Map<String, Value>) {
        if let Some(ack) = ack {
            self.outputs.push_back(Output::Ack { conn, ack, payload: replies::ack_ok(&fields) });
        }
        self.emit(vec![conn], event, replies::payload(&Value::Object(fields)));
    }

    /// Sends a refusal: `event-error` and, when asked, the failed acknowledgement.
    fn refuse(&mut self, conn: ConnId, ack: Option<AckId>, event: Option<&str>, err: CommandError) {
        *self.stats.refused.entry(err.code).or_default() += 1;
        if let Some(ack) = ack {
            self.outputs.push_back(Output::Ack { conn, ack, payload: replies::ack_error(&err) });
        }
        self.emit(vec![conn], replies::names::EVENT_ERROR, replies::event_error(&err, event));
    }

    fn publish(&mut self, body: BusBody) {
        self.bus_seq += 1;
        let msg =
            BusMessage { origin: self.node.clone(), incarnation: self.incarnation, seq: self.bus_seq, body };
        if self.config.deployment.reads_back() {
            self.bus_outbox.push(msg);
            self.pump_bus(self.now);
        } else {
            self.outputs.push_back(Output::Publish(msg));
        }
    }

    /// Sends the bus outbox's next batch, if none is out, and arms its retry timer.
    fn pump_bus(&mut self, now: Millis) {
        if let Some(messages) = self.bus_outbox.next(now) {
            self.outputs.push_back(Output::Broadcast { messages });
        }
        match self.bus_outbox.retry_at() {
            Some(at) => self.timers.set(Timer::BroadcastRetry, at),
            None => self.timers.cancel(Timer::BroadcastRetry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counters_last_second_is_the_whole_second_before_now() {
        let mut counter = MinuteCounter::default();
        counter.add(Millis(10_000), 300);
        counter.add(Millis(10_500), 300);
        assert_eq!(counter.last_second(Millis(10_900)), 0, "no second has closed yet");
        counter.add(Millis(11_000), 7);
        assert_eq!(counter.last_second(Millis(11_000)), 600);
        assert_eq!(counter.last_second(Millis(13_000)), 0, "a silent second counts nothing");
        assert_eq!(counter.total(Millis(13_000)), 607);
    }
}
