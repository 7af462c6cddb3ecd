// A reference server for the benchmarks: what a competent Node developer would write for the same
// events with Socket.IO 4 (and @socket.io/redis-adapter for several nodes). It implements only
// what the load generator uses: HS256 auth, reader-event with its receipt, subscribe-consultant,
// and reader-activity to subscribed consultants and the reader's other tabs.
import { createServer } from "node:http";
import { randomUUID } from "node:crypto";
import { Server } from "socket.io";
import jwt from "jsonwebtoken";
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const port = Number(process.env.REALTIME_PORT ?? 3001);
const secret = process.env.JWT_SECRET ?? "bench-secret-0123456789abcdef";
const maxPayload = Number(process.env.MAX_PACKET_BYTES ?? 65536);

// Accepted events are stored, batched, as the Rust server stores them (SQLite, WAL).
const dataDir = process.env.DATA_DIR ?? "./data";
mkdirSync(dataDir, { recursive: true });
const db = new Database(join(dataDir, "reference-events.db"));
db.pragma("journal_mode = WAL");
db.pragma("synchronous = NORMAL");
db.exec(`CREATE TABLE IF NOT EXISTS real_time_events (
  id TEXT PRIMARY KEY, user_id TEXT NOT NULL, event_type TEXT NOT NULL, event_data TEXT NOT NULL,
  timestamp TEXT NOT NULL, session_id TEXT NOT NULL)`);
const insert = db.prepare("INSERT OR IGNORE INTO real_time_events VALUES (?, ?, ?, ?, ?, ?)");
const insertAll = db.transaction((events) => {
  for (const e of events) insert.run(e.id, e.userId, e.eventType, JSON.stringify(e.data), e.timestamp, e.sessionId);
});
let pending = [];
setInterval(() => {
  if (!pending.length) return;
  const batch = pending;
  pending = [];
  insertAll(batch);
}, 20);

const http = createServer();
const io = new Server(http, { maxHttpBufferSize: maxPayload, cors: { origin: false } });

if (process.env.REDIS_URL) {
  const { createClient } = await import("redis");
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
}

io.use((socket, next) => {
  const token = socket.handshake.auth?.token;
  if (!token) return next(new Error("Authentication token required"));
  try {
    const claims = jwt.verify(token, secret, { algorithms: ["HS256"] });
    const role = [claims.app_metadata?.role, claims.user_role, claims.role].find((r) => ["reader", "consultant", "admin"].includes(r));
    if (!role) return next(new Error("Insufficient permissions"));
    socket.data.user = { id: claims.sub, role };
    next();
  } catch {
    next(new Error("Invalid authentication token"));
  }
});

const TYPE = /^[A-Za-z0-9_.:-]{1,50}$/;

io.on("connection", (socket) => {
  const { id: userId, role } = socket.data.user;
  socket.join(`user:${userId}`);

  socket.on("reader-event", (payload, ack) => {
    const reply = typeof ack === "function" ? ack : () => {};
    if (role !== "reader") {
      const error = { code: "UNAUTHORIZED", message: "Only readers can send reader events" };
      socket.emit("event-error", error);
      return reply({ ok: false, error });
    }
    if (!payload || typeof payload.eventType !== "string" || !TYPE.test(payload.eventType)) {
      const error = { code: "INVALID_PAYLOAD", message: "eventType is required" };
      socket.emit("event-error", error);
      return reply({ ok: false, error });
    }
    const event = {
      id: randomUUID(),
      userId,
      eventType: payload.eventType,
      data: payload.data ?? null,
      timestamp: new Date().toISOString(),
      sessionId: payload.sessionId ?? socket.id,
    };
    // Subscribed consultants and the reader's other tabs, one copy each, never the sender.
    io.to("consultants").to(`user:${userId}`).except(socket.id).emit("reader-activity", event);
    pending.push(event);
    const receipt = { message: "Event received and queued", eventId: event.id };
    socket.emit("reader-event-received", receipt);
    reply({ ok: true, ...receipt });
  });

  socket.on("subscribe-consultant", (payload, ack) => {
    const reply = typeof ack === "function" ? ack : () => {};
    if (role === "reader") {
      const error = { code: "UNAUTHORIZED", message: "Only consultants can subscribe" };
      socket.emit("event-error", error);
      return reply({ ok: false, error });
    }
    socket.join("consultants");
    const body = { message: "Subscribed to consultant events", consultantId: payload?.consultantId, eventTypes: [] };
    socket.emit("subscribe-consultant-success", body);
    reply({ ok: true, ...body });
  });
});

http.listen(port, "127.0.0.1", () => console.log(`reference server listening on ${port}`));
