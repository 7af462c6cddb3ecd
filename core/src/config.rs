//! The limits and intervals the core enforces. A plain struct whose `Default` is PROTOCOL.md's
//! defaults; the shell fills it from the environment.

/// Every limit the core applies; see PROTOCOL.md for their meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `reader-event` tokens refilled per second.
    pub reader_event_rate: u32,
    /// `reader-event` bucket size.
    pub reader_event_burst: u32,
    /// Tokens per second for every other client event.
    pub other_event_rate: u32,
    /// Bucket size for every other client event.
    pub other_event_burst: u32,
    /// Handshakes per minute per user (also the bucket size).
    pub handshakes_per_minute: u32,
    /// Sockets one user may hold on this node at once.
    pub max_connections_per_user: u32,
    /// Sockets this node holds at once.
    pub max_connections: u32,
    /// Largest serialized `data` of a reader event, in bytes.
    pub max_event_bytes: usize,
    /// Deepest nesting of arrays and objects in `data`.
    pub max_event_depth: usize,
    /// Largest Socket.IO packet; enforced by the shell's transport, advertised as `maxPayload`.
    pub max_packet_bytes: usize,
    /// Most event types in one subscription filter or history query.
    pub max_event_types: usize,
    /// Most rooms one socket may be in.
    pub max_rooms_per_socket: usize,
    /// Accepted events waiting to be stored (including dead letters) before new ones are refused.
    pub event_queue_capacity: usize,
    /// How long a silent node's readers stay listed.
    pub presence_ttl_ms: u64,
    /// Least time between two `online-readers` pushes.
    pub presence_push_interval_ms: u64,
    /// Events kept in memory for `get-recent-events` and resumes.
    pub history_capacity: usize,
    /// Most events one resume replays (`subscribe-consultant` with `since`, or a recovery);
    /// above it, none.
    pub resume_max_events: usize,
    /// How long a saved session can be recovered after its last change or its socket's leaving.
    pub recovery_ttl_ms: u64,
    /// Most events in one append (at most [`crate::log::MAX_APPEND_ENTRIES`]) or store batch.
    pub store_batch_size: usize,
    /// How long the first waiting event holds a batch open for more, unless the batch fills.
    /// Fewer, larger batches cost the store much less per event; the price is this much more
    /// time in memory before the store has an event (and, where receipts wait for the store,
    /// before the receipt).
    pub store_batch_linger_ms: u64,
    /// Attempts to store an event before it is dead-lettered.
    pub store_max_attempts: u32,
    /// First retry delay; doubles with each attempt.
    pub store_retry_base_ms: u64,
    /// Longest retry delay.
    pub store_retry_max_ms: u64,
    /// Where an accepted event becomes durable, and so when it may be acknowledged and shown.
    pub deployment: Deployment,
    /// Whether the event store cannot hold the character U+0000 in text (PostgreSQL: neither
    /// `text` nor `jsonb` can). A reader event carrying it in `data` or `sessionId` is then
    /// refused as invalid, rather than acknowledged and never stored.
    pub store_refuses_nul: bool,
    /// Whether the event store keeps user ids in a `uuid` column (the original Supabase schema's
    /// `real_time_events.user_id`). A reader whose token's `sub` is not a UUID as the column gives
    /// it back (`principal::is_uuid_user_id`) is then refused as invalid on connect: its events
    /// would be dead-lettered, or stored under an id other than the one its sockets carry.
    pub store_user_ids_are_uuids: bool,
    /// In a cluster, the least time between two reads of the log that found entries: a few
    /// milliseconds let one read carry many entries instead of one, which is most of the
    /// cluster's Redis commands; the price is up to that much more delivery latency. An empty
    /// read waits for entries in Redis and answers at once when one comes.
    pub log_read_pace_ms: u64,
    /// In a cluster, the log's Redis commands per second (its appends and every node's
    /// delivery reads) below which every node reads the log's entries as they come, with no
    /// pace. Reading so costs up to one read per entry on each node besides the entry's append,
    /// so reads are paced (`log_read_pace_ms`) only once the log's entries per second times
    /// (nodes + 1) reach this (always with 0): latency goes to reading while Redis has commands
    /// to spare, and to batching once it has not.
    pub log_read_budget: u64,
    /// In a cluster, the least time between two reads of the log by this node's storing
    /// consumer that found entries (unless a read filled its count): each costs a read and an
    /// acknowledgement, so a pace lets both carry many entries; the price is only the store's
    /// lag behind the log, which nobody waits on (events are shown and kept in the recent
    /// history as soon as they are read for delivery).
    pub log_store_pace_ms: u64,
    /// In a cluster, how long entries another consumer of the store group read and left
    /// unacknowledged wait before this node claims them (that consumer is taken for dead).
    pub claim_idle_ms: u64,
    /// In a cluster, the newest stretch of the log kept even when stored, so that a node cut off
    /// from Redis for less than this reads on where it stopped.
    pub log_retain_ms: u64,
    /// Whether consultants see every reader or only those assigned to them.
    pub consultant_scope: crate::scope::ConsultantScope,
    /// Under `assigned`, how often the assignments table is read again.
    pub assignment_refresh_ms: u64,
}

/// Where an accepted event becomes durable (PROTOCOL.md, "Durability and order"). Until then it
/// is neither acknowledged, delivered, kept in history nor counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Deployment {
    /// A single node whose event store is its log: the embedded SQLite commit makes an event
    /// durable, and there is nothing to store afterwards.
    #[default]
    SingleStore,
    /// A single node with a durable outbox of its own (SQLite under `DATA_DIR`) in front of a
    /// remote store (PostgreSQL): the outbox commit makes an event durable; the core then feeds
    /// the store from it, with retries and dead letters, and the outbox forgets what is stored.
    SingleOutbox,
    /// A node of a cluster: an event is durable once the cluster's log (a Redis stream) holds
    /// it, and every node shows events by reading that log in order, its own included. The
    /// log's consumers store it; this node's core has no store batches of its own.
    Cluster,
}

impl Deployment {
    /// Whether events are shown by reading them back from a shared log (a cluster), rather than
    /// as soon as this node's own append is confirmed.
    pub fn reads_back(self) -> bool {
        self == Deployment::Cluster
    }

    /// Whether the core feeds the event store from its own queue after the log holds an event.
    pub fn stores_after_log(self) -> bool {
        self == Deployment::SingleOutbox
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            reader_event_rate: 20,
            reader_event_burst: 40,
            other_event_rate: 20,
            other_event_burst: 40,
            handshakes_per_minute: 60,
            max_connections_per_user: 20,
            max_connections: 100_000,
            max_event_bytes: 16 * 1024,
            max_event_depth: 32,
            max_packet_bytes: 64 * 1024,
            max_event_types: 32,
            max_rooms_per_socket: 32,
            event_queue_capacity: 100_000,
            presence_ttl_ms: 15_000,
            presence_push_interval_ms: 1_000,
            history_capacity: 10_000,
            resume_max_events: 10_000,
            recovery_ttl_ms: 86_400_000,
            store_batch_size: 500,
            store_batch_linger_ms: 0,
            store_max_attempts: 8,
            store_retry_base_ms: 200,
            store_retry_max_ms: 30_000,
            deployment: Deployment::SingleStore,
            store_refuses_nul: false,
            store_user_ids_are_uuids: false,
            log_read_pace_ms: 2,
            log_read_budget: 4_000,
            log_store_pace_ms: 50,
            claim_idle_ms: 30_000,
            log_retain_ms: 60_000,
            consultant_scope: crate::scope::ConsultantScope::All,
            assignment_refresh_ms: 5_000,
        }
    }
}

impl Config {
    /// How often this node announces itself on the bus: three heartbeats per presence TTL.
    pub fn heartbeat_interval_ms(&self) -> u64 {
        (self.presence_ttl_ms / 3).max(1)
    }

    /// Whether the event store can hold `user` as the user id of a reader's events.
    pub fn store_holds_user_id(&self, user: &str) -> bool {
        !(self.store_refuses_nul && user.contains('\0'))
            && (!self.store_user_ids_are_uuids || crate::principal::is_uuid_user_id(user))
    }
}
