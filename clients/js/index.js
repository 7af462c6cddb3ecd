// The Alice Realtime client: exactly once in both directions over the official socket.io-client.
//
// A reader app sends events through `ReaderClient`: every event gets a `clientEventId`, waits in a
// bounded queue (kept in a storage adapter if one is given) until the server acknowledges it, and
// is sent again, in order and with the same key, after a reconnect or a lost ack, so the server
// keeps it once. A dashboard watches through `DashboardClient`: it remembers the last event it
// received, subscribes with `since` after every reconnect so that the server replays what it
// missed, and drops any id it has already seen.
import { io } from "socket.io-client";

/** A refusal from the server (`code` as in PROTOCOL.md), or `QUEUE_FULL` / `CLOSED` from here. */
export class AliceError extends Error {
  constructor(code, message, retryAfterMs) {
    super(message ?? code);
    this.name = "AliceError";
    this.code = code;
    if (retryAfterMs !== undefined) this.retryAfterMs = retryAfterMs;
  }
}

/** Codes this library retries by itself: the event was not accepted, and may be later. */
const RETRIED = new Set(["RATE_LIMITED", "UNAVAILABLE"]);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Exponential backoff with jitter: half the capped delay, plus up to as much again. */
function backoff(attempt, baseMs, maxMs) {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20));
  return cap / 2 + Math.random() * (cap / 2);
}

function connectSocket(url, token, socketOptions) {
  return io(url, { auth: { token }, transports: ["websocket"], ...socketOptions });
}

/** Sends a reader's events exactly once, across reconnects and lost acknowledgements. */
export class ReaderClient {
  #socket;
  #queue;
  #waiters = new Map();
  #storage;
  #storageKey;
  #maxQueue;
  #ackTimeoutMs;
  #retryBaseMs;
  #retryMaxMs;
  #flushing = false;
  #closed = false;

  constructor(url, options = {}) {
    const {
      token,
      storage,
      storageKey = "alice-realtime:unacknowledged",
      maxQueue = 1000,
      ackTimeoutMs = 10_000,
      retryBaseMs = 250,
      retryMaxMs = 10_000,
      socketOptions = {},
    } = options;
    this.#storage = storage;
    this.#storageKey = storageKey;
    this.#maxQueue = maxQueue;
    this.#ackTimeoutMs = ackTimeoutMs;
    this.#retryBaseMs = retryBaseMs;
    this.#retryMaxMs = retryMaxMs;
    this.#queue = this.#load();
    this.#socket = connectSocket(url, token, socketOptions);
    this.#socket.on("connect", () => this.#flush());
  }

  /** The underlying socket.io-client socket. */
  get socket() {
    return this.#socket;
  }

  /** Events not acknowledged yet. */
  get pending() {
    return this.#queue.length;
  }

  /**
   * Sends an event; resolves with the server's acknowledgement (`{ ok, eventId, duplicate }`)
   * once it is durable, or rejects with an `AliceError` the server will not get past by retrying.
   */
  send(eventType, data, { sessionId } = {}) {
    if (this.#closed) return Promise.reject(new AliceError("CLOSED", "The client is closed"));
    if (this.#queue.length >= this.#maxQueue) {
      return Promise.reject(new AliceError("QUEUE_FULL", `${this.#maxQueue} events wait for the server already`));
    }
    const item = { eventType, data: data ?? null, clientEventId: crypto.randomUUID() };
    if (sessionId !== undefined) item.sessionId = sessionId;
    const answered = new Promise((resolve, reject) => this.#waiters.set(item.clientEventId, { resolve, reject }));
    this.#queue.push(item);
    this.#save();
    this.#flush();
    return answered;
  }

  /** Closes the connection; unacknowledged events stay in the storage adapter, if any. */
  close() {
    this.#closed = true;
    this.#socket.close();
    for (const { reject } of this.#waiters.values()) reject(new AliceError("CLOSED", "The client is closed"));
    this.#waiters.clear();
  }

  /** Sends the queue's events one at a time, in order, while connected. */
  async #flush() {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      let failures = 0;
      while (this.#queue.length > 0 && this.#socket.connected && !this.#closed) {
        const item = this.#queue[0];
        let reply;
        try {
          reply = await this.#socket.timeout(this.#ackTimeoutMs).emitWithAck("reader-event", item);
        } catch {
          // No answer: the connection went, or the server is slow. Either way the same event,
          // with the same key, goes again (after a reconnect, if that is what happened).
          if (this.#socket.connected) await sleep(backoff(failures++, this.#retryBaseMs, this.#retryMaxMs));
          continue;
        }
        if (reply?.ok) {
          failures = 0;
          this.#settle(item, (w) => w.resolve(reply));
          continue;
        }
        const { code = "INTERNAL", message, retryAfterMs } = reply?.error ?? {};
        if (RETRIED.has(code)) {
          const wait = code === "RATE_LIMITED" && retryAfterMs !== undefined ? retryAfterMs : undefined;
          await sleep(wait ?? backoff(failures++, this.#retryBaseMs, this.#retryMaxMs));
          continue;
        }
        this.#settle(item, (w) => w.reject(new AliceError(code, message, retryAfterMs)));
      }
    } finally {
      this.#flushing = false;
    }
    // A reconnect while the last attempt was out found the flush busy: go on now.
    if (this.#queue.length > 0 && this.#socket.connected && !this.#closed) this.#flush();
  }

  #settle(item, answer) {
    this.#queue.shift();
    this.#save();
    const waiter = this.#waiters.get(item.clientEventId);
    this.#waiters.delete(item.clientEventId);
    // An event queued by an earlier run (from storage) has no one waiting here.
    if (waiter) answer(waiter);
  }

  #load() {
    if (!this.#storage) return [];
    try {
      const saved = JSON.parse(this.#storage.getItem(this.#storageKey) ?? "[]");
      return Array.isArray(saved) ? saved.slice(0, this.#maxQueue) : [];
    } catch {
      return [];
    }
  }

  #save() {
    this.#storage?.setItem(this.#storageKey, JSON.stringify(this.#queue));
  }
}

/** Watches readers' activity with no gap and no repeat across reconnects. */
export class DashboardClient {
  #socket;
  #options;
  #lastId;
  #seen = new Set();
  #seenOrder = [];

  constructor(url, options) {
    const { token, consultantId, socketOptions = {} } = options;
    if (!consultantId) throw new TypeError("consultantId is required");
    this.#options = { eventTypes: [], maxSeen: 10_000, pageLimit: 200, ...options };
    this.#lastId = options.since ?? null;
    this.#socket = connectSocket(url, token, socketOptions);
    this.#socket.on("reader-activity", (event) => {
      if (this.#accept(event)) this.#lastId = event.id;
    });
    this.#socket.on("online-readers", (list) => this.#options.onOnlineReaders?.(list));
    // A connection the server recovered (socket.io-client's own recovery) kept its
    // subscription and was sent what it missed: nothing to do.
    this.#socket.on("connect", () => this.#socket.recovered || this.#subscribe());
  }

  /** The underlying socket.io-client socket. */
  get socket() {
    return this.#socket;
  }

  /** The id of the last event received live or replayed: where a resume starts. */
  get lastId() {
    return this.#lastId;
  }

  close() {
    this.#socket.close();
  }

  /** Subscribes, with `since` once anything was received; pages what a resume could not replay. */
  async #subscribe() {
    const { consultantId, eventTypes } = this.#options;
    const since = this.#lastId;
    try {
      let reply = await this.#socket.emitWithAck("subscribe-consultant", {
        consultantId,
        eventTypes,
        ...(since ? { since } : {}),
      });
      let page = since && reply.ok && reply.resumed === false;
      if (!reply.ok && since && reply.error?.code === "INVALID_PAYLOAD") {
        // This server does not know the id (yet): subscribe afresh and page from it.
        reply = await this.#socket.emitWithAck("subscribe-consultant", { consultantId, eventTypes });
        page = reply.ok;
      }
      if (!reply.ok) throw new AliceError(reply.error?.code ?? "INTERNAL", reply.error?.message);
      this.#options.onSubscribed?.(reply);
      if (page) await this.#page(since);
    } catch (error) {
      if (this.#options.onError) this.#options.onError(error);
    }
  }

  /** Pages `get-recent-events` forward from `since`, passing on what was not seen yet. */
  async #page(since) {
    const { eventTypes, pageLimit } = this.#options;
    let cursor = since;
    for (;;) {
      const reply = await this.#socket.emitWithAck("get-recent-events", {
        since: cursor,
        limit: pageLimit,
        ...(eventTypes.length ? { eventTypes } : {}),
      });
      if (!reply.ok) throw new AliceError(reply.error?.code ?? "INTERNAL", reply.error?.message);
      for (const e of reply.events) {
        this.#accept({ id: e.id, userId: e.userId, eventType: e.eventType, data: e.eventData, timestamp: e.timestamp, sessionId: e.sessionId });
      }
      if (!reply.hasMore || reply.events.length === 0) return;
      cursor = reply.events.at(-1).id;
    }
  }

  /** Passes an event on unless its id was seen; remembers the newest `maxSeen` ids. */
  #accept(event) {
    if (this.#seen.has(event.id)) return false;
    this.#seen.add(event.id);
    this.#seenOrder.push(event.id);
    if (this.#seenOrder.length > this.#options.maxSeen) this.#seen.delete(this.#seenOrder.shift());
    this.#options.onActivity?.(event);
    return true;
  }
}
