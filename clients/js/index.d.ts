import type { ManagerOptions, Socket, SocketOptions } from "socket.io-client";

/** Error codes of PROTOCOL.md, and this library's own `QUEUE_FULL` and `CLOSED`. */
export type AliceErrorCode =
  | "UNAUTHORIZED"
  | "FORBIDDEN"
  | "INVALID_PAYLOAD"
  | "PAYLOAD_TOO_LARGE"
  | "UNKNOWN_EVENT"
  | "RATE_LIMITED"
  | "UNAVAILABLE"
  | "TOKEN_EXPIRED"
  | "INTERNAL"
  | "QUEUE_FULL"
  | "CLOSED";

export class AliceError extends Error {
  readonly name: "AliceError";
  readonly code: AliceErrorCode;
  /** With `RATE_LIMITED`: when the server takes the next event. */
  readonly retryAfterMs?: number;
}

/** Where unacknowledged events wait across page loads; `localStorage` fits. */
export interface StorageAdapter {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

type SocketIoOptions = Partial<ManagerOptions & SocketOptions>;

export interface ReaderOptions {
  /** The reader's JWT. */
  token: string;
  storage?: StorageAdapter;
  /** Default `alice-realtime:unacknowledged`. */
  storageKey?: string;
  /** Most events waiting for their ack; `send` rejects with `QUEUE_FULL` beyond. Default 1000. */
  maxQueue?: number;
  /** How long an ack may take before the event is sent again (same key). Default 10000. */
  ackTimeoutMs?: number;
  /** Backoff for `UNAVAILABLE` and lost acks: first delay and cap. Defaults 250 and 10000. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Passed to socket.io-client's `io()` (websocket transport by default). */
  socketOptions?: SocketIoOptions;
}

/** The server's acknowledgement of a durable event. */
export interface Receipt {
  ok: true;
  message: string;
  eventId: string;
  /** True when this was a resend of an event the server had already accepted. */
  duplicate: boolean;
}

export class ReaderClient {
  constructor(url: string, options: ReaderOptions);
  readonly socket: Socket;
  /** Events not acknowledged yet. */
  readonly pending: number;
  /** Resolves once the event is durable; rejects with an `AliceError` retrying cannot fix. */
  send(eventType: string, data?: unknown, options?: { sessionId?: string }): Promise<Receipt>;
  /** Closes the socket; waiting sends reject with `CLOSED` (the storage adapter keeps them). */
  close(): void;
}

export interface ReaderActivity {
  id: string;
  userId: string;
  eventType: string;
  data: unknown;
  timestamp: string;
  sessionId: string;
}

export interface OnlineReaders {
  count: number;
  readers: Array<{
    userId: string;
    firstName?: string;
    lastName?: string;
    lastActivity: string;
    currentBook?: unknown;
    currentPage?: unknown;
    connections: number;
  }>;
}

export interface SubscribeReply {
  ok: true;
  message: string;
  consultantId: string;
  eventTypes: string[];
  resumed?: boolean;
  replayed?: number;
}

export interface DashboardOptions {
  /** The consultant's (or an admin's) JWT. */
  token: string;
  consultantId: string;
  /** Empty or absent: every type. */
  eventTypes?: string[];
  /** Start after this event id (one received before, kept by the app). */
  since?: string;
  /** Each event once, in the log's order (paged fallbacks may come after newer live ones). */
  onActivity?: (event: ReaderActivity) => void;
  onOnlineReaders?: (list: OnlineReaders) => void;
  /** After every (re)subscription, with the server's reply. */
  onSubscribed?: (reply: SubscribeReply) => void;
  onError?: (error: AliceError) => void;
  /** Ids remembered to drop repeats. Default 10000. */
  maxSeen?: number;
  /** `get-recent-events` page size for a fallback. Default 200. */
  pageLimit?: number;
  socketOptions?: SocketIoOptions;
}

export class DashboardClient {
  constructor(url: string, options: DashboardOptions);
  readonly socket: Socket;
  /** The last event received live or replayed: where the next resume starts. */
  readonly lastId: string | null;
  close(): void;
}
