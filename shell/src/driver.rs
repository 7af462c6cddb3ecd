//! The driver: one task that owns the core, feeds it every input, carries out its outputs and arms
//! its timer. It never waits on the network or the database itself: appends to the log, store
//! calls and token checks run in their own tasks and come back as inputs, and sends to sockets never block (a socket whose
//! bounded send queue is full is disconnected rather than buffered without limit).

use alice_handoff::Counter;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use alice_core::{AckId, ConnId, ConnectRefusal, Core, Input, Millis, Output, Stats, TokenCheck};
use serde_json::Value;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::SocketError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::auth::Verifier;
use crate::backlog::{Backlog, Drained, Frame};
use crate::bus::Bus;
use crate::clock::Clock;
use crate::log::consumer::ConsumerLink;
use crate::log::{EventLog, Outbox};
use crate::metrics::Metrics;
use crate::reader_sessions::SessionRecorder;
use crate::redis_stream::StreamReader;
use crate::sessions::Change;
use crate::store::{EventStore, Session};
use crate::Stopped;

/// Messages into the driver.
pub enum Command {
    /// A handshake passed signature checks (or not); the core decides.
    Connect {
        conn: ConnId,
        sid: String,
        token: TokenCheck,
        /// A reconnecting client's `{ pid, offset }` and the session found for the `pid`.
        recovery: Option<Box<alice_core::Recovery>>,
        socket: SocketRef,
        /// Answered with the `pid` for the CONNECT reply, or the refusal.
        reply: oneshot::Sender<Result<String, ConnectRefusal>>,
    },
    /// The socket's CONNECT answer went out: deliveries may flow.
    Ready {
        conn: ConnId,
    },
    Disconnected {
        conn: ConnId,
    },
    /// A client event, with its acknowledgement callback if it asked for one.
    Event {
        conn: ConnId,
        name: String,
        args: Vec<Value>,
        has_binary: bool,
        ack: Option<AckSender>,
    },
    /// An input produced by a task of the driver's (store results, token checks).
    Input(Input),
    /// An input that makes events visible (an append confirmed, entries read from the cluster's
    /// log), with the moment its task got it: `alice_delivery_seconds` counts from there, the
    /// wait in the driver's queue included.
    Visible {
        input: Input,
        at: Instant,
    },
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
    },
    ReplayDeadLetters {
        reply: oneshot::Sender<usize>,
    },
    /// The last hour of activity as `viewer` may see it, as of the wall clock `wall`, for the
    /// console's charts.
    Activity {
        viewer: alice_core::Principal,
        wall: Millis,
        reply: oneshot::Sender<alice_core::ActivitySeries>,
    },
    /// An admin replaced a consultant's active set, already written to the table: answered once
    /// the core applies it, so that it holds on this node before the admin hears back.
    Assign {
        consultant_id: String,
        readers: std::collections::BTreeSet<String>,
        reply: oneshot::Sender<()>,
    },
    /// Tell the cluster, flush the queue to the store (up to `grace`), then stop.
    Shutdown {
        grace: Duration,
        reply: oneshot::Sender<Stopped>,
    },
}

/// What `/stats`, `/metrics` and `/health` read of the core.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub stats: Stats,
    pub events_per_minute: u64,
    pub node_id: String,
    /// Every node of the cluster this one has heard from, itself included.
    pub nodes: Vec<String>,
    pub queue_full: bool,
    /// Monotonic time, for ages.
    pub now: Millis,
    /// The wall clock, for timestamps.
    pub wall: Millis,
    pub slow_consumers_disconnected: u64,
    /// Appends to the log (on a single node on SQLite, these are the store's writes).
    pub appends: WriteTimings,
    /// Store batches fed from a local outbox.
    pub store: WriteTimings,
}

/// How many writes of one kind succeeded and failed, for `/metrics` (their times are histograms).
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteTimings {
    pub ok: u64,
    pub failed: u64,
}

/// Counts writes from the tasks that run them.
#[derive(Default)]
struct WriteCounters {
    ok: Counter,
    failed: Counter,
}

impl WriteCounters {
    fn record(&self, ok: bool) {
        if ok { &self.ok } else { &self.failed }.add(1);
    }

    fn timings(&self) -> WriteTimings {
        WriteTimings { ok: self.ok.get(), failed: self.failed.get() }
    }
}

/// A socket the driver can write to.
struct Slot {
    socket: SocketRef,
    /// For a reader socket, its session as recorded in the store.
    session: Option<Session>,
    /// Until the CONNECT answer is out, deliveries wait here (bounded like the send queue).
    pending: Option<Vec<Frame>>,
    /// A replay and what arrived behind it, going out as the socket takes them.
    backlog: Backlog,
}

/// A socket the core is deciding on: its reply, and the `pid` the core named for it.
struct Connecting {
    socket: SocketRef,
    reply: oneshot::Sender<Result<String, ConnectRefusal>>,
    pid: String,
}

/// The most deliveries held for a socket whose CONNECT answer is not out yet.
const MAX_PENDING: usize = 1024;
/// How often backlogs behind replays are drained.
const DRAIN_EVERY: Duration = Duration::from_millis(5);
/// How often sockets accepted and not yet ready are looked at for a closed transport. One whose
/// client left while the handshake was being decided is never connected by socketioxide and never
/// reports a disconnect either; a live one, however long the driver took, is connected and ready.
const GHOSTS_EVERY: Duration = Duration::from_millis(100);
/// The most client events handed to the core as one burst.
const MAX_BURST: usize = 256;

/// A handle to send commands to the driver.
#[derive(Clone)]
pub struct DriverHandle {
    tx: mpsc::Sender<Command>,
}

impl DriverHandle {
    pub async fn send(&self, cmd: Command) -> bool {
        self.tx.send(cmd).await.is_ok()
    }

    /// Sends without waiting; fails when the driver's queue is full.
    pub fn try_send(&self, cmd: Command) -> Result<(), Box<mpsc::error::TrySendError<Command>>> {
        self.tx.try_send(cmd).map_err(Box::new)
    }

    /// Whether the driver is gone (the server stopped).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    pub async fn snapshot(&self) -> Option<Snapshot> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Snapshot { reply }).await;
        rx.await.ok()
    }
}

/// What the driver talks to.
pub struct Links {
    pub clock: Arc<dyn Clock>,
    pub store: Arc<dyn EventStore>,
    /// Where accepted events become durable (the store, a local outbox, or the Redis log).
    pub log: Arc<dyn EventLog>,
    /// The local outbox in front of a remote store, which forgets what the store has.
    pub outbox: Option<Arc<Outbox>>,
    /// A cluster node's readers of the log and the bus.
    pub readers: Option<(StreamReader, StreamReader)>,
    /// A cluster node's storing consumer of the log.
    pub consumer: Option<ConsumerLink>,
    pub bus: Bus,
    pub verifier: Verifier,
    /// Where the core's session changes go (`sessions.rs`).
    pub sessions: mpsc::Sender<Change>,
    /// Where consultant assignments are read.
    pub assignments: crate::assignments::AssignmentSource,
    /// The latency histograms.
    pub metrics: Arc<Metrics>,
}

pub struct Driver {
    core: Core,
    clock: Arc<dyn Clock>,
    store: Arc<dyn EventStore>,
    log: Arc<dyn EventLog>,
    outbox: Option<Arc<Outbox>>,
    readers: Option<(StreamReader, StreamReader)>,
    consumer: Option<ConsumerLink>,
    bus: Bus,
    verifier: Verifier,
    sessions: mpsc::Sender<Change>,
    assignments: crate::assignments::AssignmentSource,
    metrics: Arc<Metrics>,
    /// When the events the core is showing now became visible, while a [`Command::Visible`] is
    /// being handled.
    visible_at: Option<Instant>,
    reader_sessions: SessionRecorder,
    rx: mpsc::Receiver<Command>,
    tx: mpsc::Sender<Command>,
    sockets: HashMap<ConnId, Slot>,
    /// Sockets with a backlog to drain.
    draining: std::collections::BTreeSet<ConnId>,
    connecting: HashMap<ConnId, Connecting>,
    /// Accepted sockets not yet reported ready.
    unready: Vec<ConnId>,
    /// When `unready` was last looked through for closed transports.
    ghosts_seen: Millis,
    /// Acknowledgement callbacks waiting for the core's answer, by socket: a socket that leaves
    /// drops its own without a look at anyone else's.
    acks: BTreeMap<(ConnId, AckId), AckSender>,
    next_ack: u64,
    /// Bus messages this node published, coming back to it (the in-process bus).
    loopback: VecDeque<alice_core::BusMessage>,
    slow_consumers: u64,
    append_counters: Arc<WriteCounters>,
    store_counters: Arc<WriteCounters>,
    shutdown: Option<(Millis, oneshot::Sender<Stopped>)>,
}

impl Driver {
    pub fn new(core: Core, links: Links, capacity: usize) -> (Driver, DriverHandle) {
        let (tx, rx) = mpsc::channel(capacity);
        let Links {
            clock,
            store,
            log,
            outbox,
            readers,
            consumer,
            bus,
            verifier,
            sessions,
            assignments,
            metrics,
        } = links;
        let reader_sessions = SessionRecorder::spawn(store.clone());
        let driver = Driver {
            core,
            clock,
            store,
            log,
            outbox,
            readers,
            consumer,
            bus,
            reader_sessions,
            verifier,
            sessions,
            assignments,
            metrics,
            visible_at: None,
            rx,
            tx: tx.clone(),
            sockets: HashMap::new(),
            draining: std::collections::BTreeSet::new(),
            connecting: HashMap::new(),
            unready: Vec::new(),
            ghosts_seen: Millis(0),
            acks: BTreeMap::new(),
            next_ack: 0,
            loopback: VecDeque::new(),
            slow_consumers: 0,
            append_counters: Arc::default(),
            store_counters: Arc::default(),
            shutdown: None,
        };
        (driver, DriverHandle { tx })
    }

    /// Runs until shut down.
    pub async fn run(mut self) {
        loop {
            self.forget_ghosts();
            let now = self.clock.now();
            let mut wake = self.core.poll_timeout().map(|at| Duration::from_millis(at.since(now)));
            if !self.draining.is_empty() {
                wake = Some(wake.map_or(DRAIN_EVERY, |w| w.min(DRAIN_EVERY)));
            }
            if !self.unready.is_empty() {
                wake = Some(wake.map_or(GHOSTS_EVERY, |w| w.min(GHOSTS_EVERY)));
            }
            let cmd = match wake {
                Some(after) => tokio::select! {
                    cmd = self.rx.recv() => cmd,
                    () = tokio::time::sleep(after) => {
                        self.drain_backlogs();
                        self.feed(Input::Tick);
                        continue;
                    }
                },
                None => self.rx.recv().await,
            };
            let Some(cmd) = cmd else { break };
            if matches!(cmd, Command::Event { .. }) {
                // Sockets woken together send their events one by one: let the others land (one
                // turn of the runtime, no fixed wait), to be taken with this one as a burst.
                tokio::task::yield_now().await;
            }
            self.on_command(cmd);
            if self.finish_shutdown() {
                break;
            }
        }
    }

    fn feed(&mut self, input: Input) {
        let now = self.clock.reading();
        self.core.handle(now, input);
        self.execute();
        while let Some(msg) = self.loopback.pop_front() {
            self.core.handle(now, Input::Bus(msg));
            self.execute();
        }
    }

    /// `first` and the client events that wait behind it, up to [`MAX_BURST`], as one input;
    /// and the command that ended the burst, if another kind of command did.
    fn burst(&mut self, first: Input) -> (Input, Option<Command>) {
        let mut inputs = vec![first];
        while inputs.len() < MAX_BURST {
            match self.rx.try_recv() {
                Ok(Command::Event { conn, name, args, has_binary, ack }) => {
                    inputs.push(self.event_input(conn, name, args, has_binary, ack));
                }
                Ok(other) => return (Input::Burst(inputs), Some(other)),
                Err(_) => break,
            }
        }
        (Input::Burst(inputs), None)
    }

    /// A client event as the core's input, its acknowledgement callback kept until answered.
    fn event_input(
        &mut self,
        conn: ConnId,
        name: String,
        args: Vec<Value>,
        has_binary: bool,
        ack: Option<AckSender>,
    ) -> Input {
        let ack = ack.map(|sender| {
            self.next_ack += 1;
            let id = AckId(self.next_ack);
            self.acks.insert((conn, id), sender);
            id
        });
        Input::ClientEvent { conn, name, args, has_binary, ack }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Connect { conn, sid, token, recovery, socket, reply } => {
                self.connecting.insert(conn, Connecting { socket, reply, pid: String::new() });
                self.feed(Input::Connect { conn, sid, token, recovery });
                // The core answers every Connect at once, or once the store has answered a
                // recovery's replay; a missing answer is a refusal.
                if !self.core.is_recovering(conn) {
                    if let Some(c) = self.connecting.remove(&conn) {
                        let _ = c.reply.send(Err(ConnectRefusal::ServerBusy));
                    }
                }
            }
            Command::Ready { conn } => self.flush_pending(conn),
            Command::Disconnected { conn } => {
                self.forget_socket(conn);
                self.feed(Input::Disconnect { conn });
            }
            Command::Event { conn, name, args, has_binary, ack } => {
                // With the events waiting behind it: one append to the log, and shown together.
                let first = self.event_input(conn, name, args, has_binary, ack);
                let (burst, after) = self.burst(first);
                self.feed(burst);
                if let Some(cmd) = after {
                    self.on_command(cmd);
                }
            }
            Command::Input(input) => self.feed(input),
            Command::Visible { input, at } => {
                self.visible_at = Some(at);
                self.feed(input);
                self.visible_at = None;
            }
            Command::Snapshot { reply } => {
                let now = self.clock.now();
                let _ = reply.send(Snapshot {
                    stats: self.core.stats(),
                    events_per_minute: self.core.events_per_minute(now),
                    node_id: self.core.node_id().to_owned(),
                    nodes: self.core.cluster_nodes(),
                    queue_full: self.core.queue_is_full(),
                    now,
                    wall: self.clock.wall(),
                    slow_consumers_disconnected: self.slow_consumers,
                    appends: self.append_counters.timings(),
                    store: self.store_counters.timings(),
                });
            }
            Command::ReplayDeadLetters { reply } => {
                let n = self.core.replay_dead_letters(self.clock.now());
                self.execute();
                if let Some(outbox) = self.outbox.clone() {
                    // The replayed events are live again; a restart before they are stored must
                    // not find them dead.
                    tokio::spawn(async move {
                        if let Err(e) = outbox.revive_dead().await {
                            tracing::warn!(error = %e, "could not unmark dead letters in the outbox");
                        }
                    });
                }
                let _ = reply.send(n);
            }
            Command::Activity { viewer, wall, reply } => {
                let _ = reply.send(self.core.activity(&viewer, wall));
            }
            Command::Assign { consultant_id, readers, reply } => {
                self.feed(Input::Assign { consultant_id, readers });
                let _ = reply.send(());
            }
            Command::Shutdown { grace, reply } => {
                let deadline = self.clock.now().plus(grace.as_millis() as u64);
                self.feed(Input::Shutdown);
                self.shutdown = Some((deadline, reply));
                self.arm_shutdown_check();
            }
        }
    }

    /// During shutdown: stop once the queue is empty or the grace period is over.
    fn finish_shutdown(&mut self) -> bool {
        let Some((deadline, _)) = &self.shutdown else { return false };
        let stats = self.core.stats();
        if stats.queue_size > 0 && self.clock.now() < *deadline {
            return false;
        }
        if let Some((_, reply)) = self.shutdown.take() {
            let _ = reply.send(Stopped { unstored: stats.queue_size, dead_letters: stats.dlq_size as u64 });
        }
        true
    }

    fn arm_shutdown_check(&self) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if tx.send(Command::Input(Input::Tick)).await.is_err() {
                    break;
                }
            }
        });
    }

    /// Carries out everything the core asked for.
    fn execute(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Pid { conn, pid } => {
                    if let Some(c) = self.connecting.get_mut(&conn) {
                        c.pid = pid;
                    }
                }
                Output::SaveSession { pid, session } => self.keep_session(Change::Save(pid, session)),
                Output::ForgetSession { pid } => self.keep_session(Change::Forget(pid)),
                Output::Accept { conn } => {
                    if let Some(Connecting { socket, reply, pid }) = self.connecting.remove(&conn) {
                        let session =
                            self.core.principal(conn).filter(|p| p.role == alice_core::Role::Reader).map(
                                |p| Session {
                                    user_id: p.user_id.to_string(),
                                    session_id: socket.id.to_string(),
                                    at: self.clock.wall(),
                                },
                            );
                        if let Some(s) = &session {
                            self.record_session(s.clone(), true);
                        }
                        let slot =
                            Slot { socket, session, pending: Some(Vec::new()), backlog: Backlog::default() };
                        self.sockets.insert(conn, slot);
                        self.unready.push(conn);
                        let _ = reply.send(Ok(pid));
                    }
                }
                Output::Refuse { conn, reason } => {
                    if let Some(c) = self.connecting.remove(&conn) {
                        let _ = c.reply.send(Err(reason));
                    }
                }
                Output::Emit { to, event, payload } => {
                    if let Some(frame) = self.any_socket(&to).and_then(|s| Frame::new(s, event, &payload)) {
                        self.deliver_to(&to, &frame);
                    }
                }
                Output::Activity { to, payload, position } => {
                    if let Some(frame) =
                        self.any_socket(&to).and_then(|s| Frame::activity(s, &payload, position))
                    {
                        if let Some(at) = self.visible_at {
                            // One observation per delivery: each recipient waited as long.
                            let took = at.elapsed().as_secs_f64();
                            to.iter().for_each(|_| self.metrics.delivered.observe(took));
                        }
                        self.deliver_to(&to, &frame);
                    }
                }
                Output::Ack { conn, ack, payload } => {
                    if let Some(sender) = self.acks.remove(&(conn, ack)) {
                        let _ = sender.send(payload.raw());
                    }
                }
                Output::Disconnect { conn } => {
                    if let Some(slot) = self.forget_socket(conn) {
                        let _ = slot.socket.disconnect();
                    }
                }
                Output::Publish(msg) => self.loopback.push_back(msg),
                Output::Broadcast { messages } => {
                    if let Bus::Redis(publisher) = &self.bus {
                        let _ = publisher.send(messages);
                    }
                }
                Output::Read { stream, from, fresh } => {
                    if let Some((log, bus)) = &self.readers {
                        let reader = if stream == alice_core::Stream::Log { log } else { bus };
                        reader.read(from, fresh);
                    }
                }
                Output::Consume(command) => {
                    if let Some(consumer) = &self.consumer {
                        consumer.send(command);
                    }
                }
                Output::Append { append, entries } => {
                    let (log, tx) = (self.log.clone(), self.tx.clone());
                    let counters = self.append_counters.clone();
                    let (metrics, clock) = (self.metrics.clone(), self.clock.clone());
                    let cluster = self.core.config().deployment.reads_back();
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let result = log.append(&entries).await;
                        counters.record(result.is_ok());
                        Metrics::observe(&metrics.append, started.elapsed());
                        if cluster {
                            metrics.redis_command("log_append", started.elapsed());
                        }
                        let input = match result {
                            Ok(repeats) => {
                                // Accepted at its timestamp (the wall clock, to the millisecond);
                                // a repeat of an earlier key was not accepted.
                                let now = clock.wall();
                                for e in entries
                                    .iter()
                                    .filter(|e| !repeats.iter().any(|(id, _)| *id == e.event.id))
                                {
                                    let waited = now.since(e.event.timestamp);
                                    metrics.durable.observe(waited as f64 / 1000.0);
                                }
                                Input::Appended { append, repeats }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, events = entries.len(), "append to the log failed");
                                Input::AppendFailed { append }
                            }
                        };
                        let _ = tx.send(Command::Visible { input, at: Instant::now() }).await;
                    });
                }
                Output::StoreBatch { batch, events } => {
                    let (store, outbox, tx) = (self.store.clone(), self.outbox.clone(), self.tx.clone());
                    let counters = self.store_counters.clone();
                    let metrics = self.metrics.clone();
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let result = store.insert(&events).await;
                        counters.record(result.is_ok());
                        Metrics::observe(&metrics.store_batch, started.elapsed());
                        let input = match result {
                            Ok(()) => {
                                if let Some(outbox) = outbox {
                                    // Left behind, they are stored again after a restart: harmless.
                                    let ids: Vec<_> = events.iter().map(|e| e.id).collect();
                                    if let Err(e) = outbox.forget(&ids).await {
                                        tracing::warn!(error = %e, "could not clear stored events from the outbox");
                                    }
                                }
                                Input::Stored { batch }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, events = events.len(), "store batch failed");
                                Input::StoreFailed { batch, failure: e.failure() }
                            }
                        };
                        let _ = tx.send(Command::Input(input)).await;
                    });
                }
                Output::DeadLettered { events } => {
                    tracing::warn!(events = events.len(), "events dead-lettered after their last attempt");
                    if let Some(outbox) = self.outbox.clone() {
                        tokio::spawn(async move {
                            let ids: Vec<_> = events.iter().map(|e| e.id).collect();
                            if let Err(e) = outbox.mark_dead(&ids).await {
                                tracing::warn!(error = %e, "could not mark dead letters in the outbox");
                            }
                        });
                    }
                }
                Output::VerifyToken { conn, ack, token } => {
                    let (verifier, tx) = (self.verifier.clone(), self.tx.clone());
                    tokio::spawn(async move {
                        let token = verifier.verify(Some(&token)).await;
                        let _ = tx.send(Command::Input(Input::TokenVerified { conn, ack, token })).await;
                    });
                }
                Output::Replay { conn, events } => {
                    if let Some(slot) = self.sockets.get_mut(&conn) {
                        slot.backlog.replay(events);
                        self.draining.insert(conn);
                        if slot.pending.is_none() {
                            self.drain(conn);
                        }
                    }
                }
                Output::QueryReplay { conn, from, filter, limit } => {
                    let (store, tx) = (self.store.clone(), self.tx.clone());
                    tokio::spawn(async move {
                        let answer = match store.replay(from, &filter, limit).await {
                            Ok(found) => Some(found),
                            Err(e) => {
                                tracing::warn!(error = %e, "resume query failed");
                                None
                            }
                        };
                        let _ = tx.send(Command::Input(Input::ReplayAnswered { conn, answer })).await;
                    });
                }
                Output::NodeIdShared { incarnation } => tracing::error!(
                    node = %self.core.node_id(),
                    other_run = incarnation,
                    "another process sends on the bus with this NODE_ID: every node of a cluster needs its own"
                ),
                Output::LoadAssignments => {
                    let (source, tx) = (self.assignments.clone(), self.tx.clone());
                    tokio::spawn(async move {
                        let table = match source.load(None).await {
                            Ok(table) => Some(table),
                            Err(e) => {
                                tracing::warn!(error = %e, "could not read the consultant assignments");
                                None
                            }
                        };
                        let _ = tx.send(Command::Input(Input::AssignmentsLoaded { table })).await;
                    });
                }
                Output::QueryStore { conn, ack, query } => {
                    let (store, tx) = (self.store.clone(), self.tx.clone());
                    tokio::spawn(async move {
                        let answer = match store.recent(&query).await {
                            Ok(page) => Some(page),
                            Err(e) => {
                                tracing::warn!(error = %e, "recent-events query failed");
                                None
                            }
                        };
                        let _ =
                            tx.send(Command::Input(Input::StoreQueryAnswered { conn, ack, answer })).await;
                    });
                }
            }
        }
    }

    /// Writes one payload to one socket without waiting; a socket that cannot keep up is closed.
    /// A socket the driver still holds of those in `to`, to encode their packet on.
    fn any_socket(&self, to: &[ConnId]) -> Option<&SocketRef> {
        to.iter().find_map(|conn| self.sockets.get(conn)).map(|slot| &slot.socket)
    }

    fn deliver_to(&mut self, to: &[ConnId], frame: &Frame) {
        for conn in to {
            self.deliver(*conn, frame);
        }
    }

    fn deliver(&mut self, conn: ConnId, frame: &Frame) {
        let Some(slot) = self.sockets.get_mut(&conn) else { return };
        if !slot.backlog.is_empty() {
            if slot.backlog.live(frame) {
                return;
            }
        } else if let Some(pending) = &mut slot.pending {
            if pending.len() < MAX_PENDING {
                pending.push(frame.clone());
                return;
            }
        } else {
            match frame.send(&slot.socket) {
                Ok(()) | Err(SocketError::Closed) => return,
                // A burst (a node catching up on the log after an outage) waits in the backlog
                // and goes out at the socket's pace; only a socket that falls further behind
                // than the backlog holds is too slow.
                Err(SocketError::InternalChannelFull) => {
                    if slot.backlog.live(frame) {
                        self.draining.insert(conn);
                        return;
                    }
                }
            }
        }
        self.slow_consumer(conn);
    }

    /// Sends what a socket's backlog holds as far as the socket takes it now.
    fn drain(&mut self, conn: ConnId) {
        let Some(slot) = self.sockets.get_mut(&conn) else {
            self.draining.remove(&conn);
            return;
        };
        match slot.backlog.drain(&slot.socket) {
            Drained::Empty => {
                self.draining.remove(&conn);
            }
            Drained::Waiting => {}
        }
    }

    fn drain_backlogs(&mut self) {
        let conns: Vec<ConnId> = self.draining.iter().copied().collect();
        for conn in conns {
            self.drain(conn);
        }
    }

    /// Passes a session change to its writer; one that finds the writer's queue full is lost
    /// (that session will not be recovered), never waited for.
    fn keep_session(&self, change: Change) {
        if let Err(e) = self.sessions.try_send(change) {
            tracing::warn!(error = %e, "too many session changes wait; one is dropped");
        }
    }

    fn slow_consumer(&mut self, conn: ConnId) {
        self.slow_consumers += 1;
        tracing::warn!(conn = conn.0, "socket cannot keep up with its deliveries; disconnecting it");
        if let Some(slot) = self.forget_socket(conn) {
            let _ = slot.socket.disconnect();
        }
        self.core.handle(self.clock.reading(), Input::Disconnect { conn });
    }

    fn flush_pending(&mut self, conn: ConnId) {
        let Some(slot) = self.sockets.get_mut(&conn) else { return };
        let Some(pending) = slot.pending.take() else { return };
        // Before any backlog: what waited for the CONNECT answer came first.
        let kept_up =
            pending.iter().all(|frame| matches!(frame.send(&slot.socket), Ok(()) | Err(SocketError::Closed)));
        if !kept_up {
            self.slow_consumer(conn);
        } else if self.draining.contains(&conn) {
            self.drain(conn);
        }
        self.execute();
    }

    /// Lets go of accepted sockets whose client left before socketioxide connected them (their
    /// transport is closed): they never become ready and no disconnect is ever reported, else the
    /// reader would stay online and hold a connection slot until its token expired. Looks through
    /// them at most every `GHOSTS_EVERY`; sockets that became ready leave the list then.
    fn forget_ghosts(&mut self) {
        if self.unready.is_empty() {
            return;
        }
        let now = self.clock.now();
        if now.since(self.ghosts_seen) < GHOSTS_EVERY.as_millis() as u64 {
            return;
        }
        self.ghosts_seen = now;
        let mut ghosts = Vec::new();
        let sockets = &self.sockets;
        self.unready.retain(|&conn| {
            let Some(slot) = sockets.get(&conn) else { return false };
            if slot.pending.is_none() || slot.socket.connected() {
                return false;
            }
            if slot.socket.transport_closed() {
                ghosts.push(conn);
                return false;
            }
            true
        });
        for conn in ghosts {
            tracing::debug!(conn = conn.0, "client left during its handshake");
            self.forget_socket(conn);
            self.feed(Input::Disconnect { conn });
        }
    }

    /// Drops what the driver holds for a socket, and closes its session in the store.
    fn forget_socket(&mut self, conn: ConnId) -> Option<Slot> {
        let mine: Vec<_> =
            self.acks.range((conn, AckId(0))..=(conn, AckId(u64::MAX))).map(|(k, _)| *k).collect();
        for key in mine {
            self.acks.remove(&key);
        }
        self.draining.remove(&conn);
        let mut slot = self.sockets.remove(&conn)?;
        if let Some(mut s) = slot.session.take() {
            s.at = self.clock.wall();
            self.record_session(s, false);
        }
        Some(slot)
    }

    /// Records a reader session opening or closing (one writer, in order; never retried: the
    /// table is informational, for the original dashboard's views).
    fn record_session(&self, session: Session, open: bool) {
        self.reader_sessions.record(session, open);
    }
}
