// Every client event of PROTOCOL.md with its reply event and acknowledgement, and every
// event-error code and message.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, as, got, next, until, barrier, sleep } from "./helpers.mjs";

let server;
before(async () => {
  server = await startServer({ OTHER_EVENT_BURST: "200", READER_EVENT_BURST: "100" });
});
after(() => server.stop());

test("reader-event: receipt event and ack with the event id", async () => {
  const r = await as(server, "ev-r1", "reader");
  const receipt = next(r, "reader-event-received");
  const ack = await r.emitWithAck("reader-event", { eventType: "PAGE_TURN", data: { page: 1 } });
  const ev = await receipt;
  assert.equal(ack.ok, true);
  assert.equal(ack.message, "Event received and queued");
  assert.equal(ev.message, "Event received and queued");
  assert.equal(ack.eventId, ev.eventId);
  assert.match(ack.eventId, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  // Without an ack callback the reply event still comes.
  r.emit("reader-event", { eventType: "PAGE_TURN" });
  const plain = await next(r, "reader-event-received");
  assert.ok(plain.eventId > ack.eventId, "ids are time-ordered");
});

test("subscribe-consultant: success, filter echo, then an online-readers snapshot", async () => {
  const c = await as(server, "ev-c1", "consultant");
  const snapshot = next(c, "online-readers");
  const ack = await c.emitWithAck("subscribe-consultant", { consultantId: "ev-c1", eventTypes: ["B", "A", "B"] });
  assert.deepEqual(ack, { ok: true, message: ack.message, consultantId: "ev-c1", eventTypes: ["B", "A"] });
  assert.equal(typeof ack.message, "string");
  const snap = await snapshot;
  assert.equal(typeof snap.count, "number");
  assert.ok(Array.isArray(snap.readers));
  assert.deepEqual(got(c, "subscribe-consultant-success")[0].eventTypes, ["B", "A"]);
  const all = await c.emitWithAck("subscribe-consultant", { consultantId: "ev-c1" });
  assert.deepEqual(all.eventTypes, []);
});

test("unsubscribe-consultant: success; another consultant's id is FORBIDDEN", async () => {
  const c = await as(server, "ev-c2", "consultant");
  await c.emitWithAck("subscribe-consultant", { consultantId: "ev-c2" });
  const ack = await c.emitWithAck("unsubscribe-consultant", { consultantId: "ev-c2" });
  assert.equal(ack.ok, true);
  assert.equal(ack.consultantId, "ev-c2");
  assert.equal(got(c, "unsubscribe-consultant-success").length, 1);
  const err = next(c, "event-error");
  const bad = await c.emitWithAck("unsubscribe-consultant", { consultantId: "someone-else" });
  assert.deepEqual(bad.error.code, "FORBIDDEN");
  assert.deepEqual((await err).code, "FORBIDDEN");
  const bad2 = await c.emitWithAck("subscribe-consultant", { consultantId: "someone-else" });
  assert.equal(bad2.error.code, "FORBIDDEN");
  // Admins may use any id.
  const a = await as(server, "ev-a1", "admin");
  assert.equal((await a.emitWithAck("subscribe-consultant", { consultantId: "anyone" })).ok, true);
  assert.equal((await a.emitWithAck("unsubscribe-consultant", { consultantId: "anyone" })).ok, true);
});

test("join-room and leave-room, for any role; leaving a room never joined succeeds", async () => {
  const r = await as(server, "ev-r2", "reader");
  assert.deepEqual(await r.emitWithAck("join-room", "class-7"), { ok: true, room: "class-7" });
  assert.deepEqual(got(r, "room-joined"), [{ room: "class-7" }]);
  assert.deepEqual(await r.emitWithAck("leave-room", "class-7"), { ok: true, room: "class-7" });
  assert.deepEqual(await r.emitWithAck("leave-room", "never"), { ok: true, room: "never" });
  await until(() => got(r, "room-left").length === 2);
});

test("too many rooms is INVALID_PAYLOAD with the message Too many rooms", async () => {
  const r = await as(server, "ev-r3", "reader");
  for (let i = 0; i < 32; i++) assert.equal((await r.emitWithAck("join-room", `room-${i}`)).ok, true);
  const ack = await r.emitWithAck("join-room", "one-more");
  assert.deepEqual(ack.error, { code: "INVALID_PAYLOAD", message: "Too many rooms" });
});

test("get-online-readers for staff; readers are UNAUTHORIZED with the original message", async () => {
  const c = await as(server, "ev-c3", "consultant");
  const r = await as(server, "ev-r4", "reader");
  const ack = await c.emitWithAck("get-online-readers");
  assert.equal(ack.ok, true);
  assert.ok(ack.readers.some((x) => x.userId === "ev-r4"));
  assert.equal(ack.count, ack.readers.length);
  // A payload is ignored, whatever it is.
  assert.equal((await c.emitWithAck("get-online-readers", "whatever")).ok, true);
  const err = next(r, "event-error");
  const bad = await r.emitWithAck("get-online-readers");
  assert.deepEqual(bad, { ok: false, error: { code: "UNAUTHORIZED", message: "Only consultants can view online readers" } });
  assert.deepEqual(await err, { code: "UNAUTHORIZED", message: "Only consultants can view online readers", event: "get-online-readers" });
});

test("role errors keep the original messages", async () => {
  const c = await as(server, "ev-c4", "consultant");
  const r = await as(server, "ev-r5", "reader");
  const cases = [
    [c, "reader-event", { eventType: "X" }, "Only readers can send reader events"],
    [c, "reader-event", "not even an object", "Only readers can send reader events"],
    [r, "subscribe-consultant", { consultantId: "ev-r5" }, "Only consultants can subscribe"],
    [r, "unsubscribe-consultant", { consultantId: "ev-r5" }, "Only consultants can unsubscribe"],
  ];
  for (const [s, ev, payload, message] of cases) {
    const ack = await s.emitWithAck(ev, payload);
    assert.deepEqual(ack.error, { code: "UNAUTHORIZED", message }, ev);
  }
});

test("get-recent-events: readers see their own, others are FORBIDDEN", async () => {
  const r = await as(server, "ev-r6", "reader");
  const c = await as(server, "ev-c5", "consultant");
  const sent = await r.emitWithAck("reader-event", { eventType: "LOOKUP", data: { word: "gale" } });
  const mine = await r.emitWithAck("get-recent-events", {});
  assert.equal(mine.ok, true);
  assert.ok(mine.events.every((e) => e.userId === "ev-r6"));
  assert.equal(mine.events[0].id, sent.eventId);
  assert.deepEqual(mine.events[0].eventData, { word: "gale" });
  assert.equal(typeof mine.hasMore, "boolean");
  assert.deepEqual(Object.keys(mine.events[0]).sort(), ["eventData", "eventType", "id", "sessionId", "timestamp", "userId"]);
  const forbidden = await r.emitWithAck("get-recent-events", { userId: "ev-r1" });
  assert.deepEqual(forbidden.error, { code: "FORBIDDEN", message: "Unauthorized access to events" });
  const theirs = await c.emitWithAck("get-recent-events", { userId: "ev-r6", limit: 1 });
  assert.equal(theirs.events.length, 1);
  assert.equal(got(c, "recent-events").length, 1);
});

test("get-recent-events pages forward with since", async () => {
  const r = await as(server, "ev-r7", "reader");
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push((await r.emitWithAck("reader-event", { eventType: "PAGE_TURN", data: { i } })).eventId);
  const newest = await r.emitWithAck("get-recent-events", { limit: 2 });
  assert.deepEqual(newest.events.map((e) => e.id), [ids[4], ids[3]]);
  assert.equal(newest.hasMore, true);
  const page1 = await r.emitWithAck("get-recent-events", { since: ids[0], limit: 2 });
  assert.deepEqual(page1.events.map((e) => e.id), [ids[1], ids[2]]);
  assert.equal(page1.hasMore, true);
  const page2 = await r.emitWithAck("get-recent-events", { since: ids[2], limit: 2 });
  assert.deepEqual(page2.events.map((e) => e.id), [ids[3], ids[4]]);
  assert.equal(page2.hasMore, false);
});

test("INVALID_PAYLOAD for each validation rule", async () => {
  const r = await as(server, "ev-r8", "reader");
  const c = await as(server, "ev-c6", "consultant");
  const bad = [
    [r, "reader-event", {}],
    [r, "reader-event", { eventType: "has space" }],
    [r, "reader-event", { eventType: "x".repeat(51) }],
    [r, "reader-event", { eventType: "OK", sessionId: 5 }],
    [r, "reader-event", { eventType: "OK", sessionId: "" }],
    [r, "reader-event", { eventType: "OK", data: deep(33) }],
    [r, "reader-event", "PAGE_TURN"],
    [r, "join-room", ""],
    [r, "join-room", "bad room"],
    [r, "join-room", { room: "x" }],
    [r, "join-room", "r".repeat(65)],
    [r, "get-recent-events", { limit: 0 }],
    [r, "get-recent-events", { limit: 201 }],
    [r, "get-recent-events", { limit: 1.5 }],
    [r, "get-recent-events", { since: "not-an-id" }],
    [r, "refresh-token", {}],
    [c, "subscribe-consultant", { consultantId: "" }],
    [c, "subscribe-consultant", { consultantId: "ev-c6", eventTypes: "A" }],
    [c, "subscribe-consultant", { consultantId: "ev-c6", eventTypes: Array.from({ length: 33 }, (_, i) => `T${i}`) }],
    [c, "subscribe-consultant", { consultantId: "x".repeat(129) }],
  ];
  for (const [s, ev, payload] of bad) {
    const ack = await s.emitWithAck(ev, payload);
    assert.equal(ack.ok, false, `${ev} ${JSON.stringify(payload).slice(0, 80)}`);
    assert.equal(ack.error.code, "INVALID_PAYLOAD", `${ev} ${JSON.stringify(payload).slice(0, 80)}`);
    assert.equal(typeof ack.error.message, "string");
  }
  // Deep but within the limit is fine; 16 KiB of data is fine.
  assert.equal((await r.emitWithAck("reader-event", { eventType: "OK", data: deep(32) })).ok, true);
  assert.equal((await r.emitWithAck("reader-event", { eventType: "OK", data: "x".repeat(16 * 1024 - 2) })).ok, true);
});

test("binary attachments are INVALID_PAYLOAD", async () => {
  const r = await as(server, "ev-r9", "reader");
  const ack = await r.emitWithAck("reader-event", { eventType: "OK", data: Buffer.from([1, 2, 3]) });
  assert.equal(ack.error.code, "INVALID_PAYLOAD");
});

test("PAYLOAD_TOO_LARGE before other payload checks", async () => {
  const r = await as(server, "ev-r10", "reader");
  const big = "x".repeat(16 * 1024);
  const err = next(r, "event-error");
  const ack = await r.emitWithAck("reader-event", { eventType: "OK", data: big });
  assert.equal(ack.error.code, "PAYLOAD_TOO_LARGE");
  assert.equal((await err).event, "reader-event");
  const both = await r.emitWithAck("reader-event", { eventType: "bad type", data: [deep(40), big] });
  assert.equal(both.error.code, "PAYLOAD_TOO_LARGE");
  const utf8 = await r.emitWithAck("reader-event", { eventType: "OK", data: "é".repeat(8 * 1024) });
  assert.equal(utf8.error.code, "PAYLOAD_TOO_LARGE");
  // Deeper than a JSON parser reads into a tree (128 levels): still measured first.
  const deepAndBig = await r.emitWithAck("reader-event", { eventType: "OK", data: [deep(200), big] });
  assert.equal(deepAndBig.error.code, "PAYLOAD_TOO_LARGE");
  const deepAndSmall = await r.emitWithAck("reader-event", { eventType: "OK", data: deep(200) });
  assert.equal(deepAndSmall.error.code, "INVALID_PAYLOAD");
  assert.match(deepAndSmall.error.message, /nested deeper than 32 levels/);
  const badTypeToo = await r.emitWithAck("reader-event", { eventType: "bad type", data: deep(200) });
  assert.match(badTypeToo.error.message, /eventType/);
  assert.ok(r.connected);
});

test("UNKNOWN_EVENT, and the connection stays up", async () => {
  const r = await as(server, "ev-r11", "reader");
  const err = next(r, "event-error");
  const ack = await r.emitWithAck("steal-everything", { all: true });
  assert.equal(ack.error.code, "UNKNOWN_EVENT");
  assert.deepEqual(await err, { code: "UNKNOWN_EVENT", message: ack.error.message, event: "steal-everything" });
  assert.ok(r.connected);
  assert.equal((await r.emitWithAck("join-room", "still-here")).ok, true);
});

test("RATE_LIMITED with retryAfterMs; budgets are separate; the connection stays", async () => {
  const limited = await startServer({ READER_EVENT_BURST: "3", READER_EVENT_RATE: "1", OTHER_EVENT_BURST: "2", OTHER_EVENT_RATE: "1" });
  try {
    const r = await as(limited, "rl-r", "reader");
    for (let i = 0; i < 3; i++) assert.equal((await r.emitWithAck("reader-event", { eventType: "T" })).ok, true);
    const err = next(r, "event-error");
    const ack = await r.emitWithAck("reader-event", { eventType: "T" });
    assert.equal(ack.error.code, "RATE_LIMITED");
    assert.ok(ack.error.retryAfterMs > 0 && ack.error.retryAfterMs <= 1000, JSON.stringify(ack));
    const e = await err;
    assert.equal(e.code, "RATE_LIMITED");
    assert.equal(e.retryAfterMs, ack.error.retryAfterMs);
    // Malformed and unknown events cost nothing; the other budget is intact.
    await r.emitWithAck("reader-event", { eventType: "bad type" });
    await r.emitWithAck("nope");
    assert.equal((await r.emitWithAck("join-room", "a")).ok, true);
    assert.equal((await r.emitWithAck("join-room", "b")).ok, true);
    assert.equal((await r.emitWithAck("join-room", "c")).error.code, "RATE_LIMITED");
    assert.ok(r.connected);
    await sleep(ack.error.retryAfterMs + 20);
    assert.equal((await r.emitWithAck("reader-event", { eventType: "T" })).ok, true);
  } finally {
    await limited.stop();
  }
});

function deep(n) {
  let v = 1;
  for (let i = 0; i < n; i++) v = [v];
  return v;
}

test("sessionId defaults to the socket id", async () => {
  const r = await as(server, "ev-r12", "reader");
  const c = await as(server, "ev-c7", "consultant");
  await c.emitWithAck("subscribe-consultant", { consultantId: "ev-c7" });
  await r.emitWithAck("reader-event", { eventType: "SID" });
  await r.emitWithAck("reader-event", { eventType: "SID", sessionId: "custom" });
  await until(() => got(c, "reader-activity").filter((a) => a.eventType === "SID").length === 2);
  const acts = got(c, "reader-activity").filter((a) => a.eventType === "SID");
  assert.equal(acts[0].sessionId, r.id);
  assert.equal(acts[1].sessionId, "custom");
  await barrier(c);
});

test("tokens are not echoed in errors", async () => {
  const r = await as(server, "ev-r13", "reader");
  const ack = await r.emitWithAck("refresh-token", { token: "definitely.not.valid" });
  assert.equal(ack.error.code, "INVALID_PAYLOAD");
  assert.ok(!JSON.stringify(ack).includes("definitely"));
});
