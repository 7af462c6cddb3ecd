// Who receives reader-activity: the four rules, exactly one copy per socket, never the sender,
// never another reader. Counts are exact: every test ends with a barrier on every receiver, so a
// copy that should not have come would have arrived by then.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, as, got, until, barrier } from "./helpers.mjs";

let server;
before(async () => {
  server = await startServer({ OTHER_EVENT_BURST: "500", READER_EVENT_BURST: "500" });
});
after(() => server.stop());

const activity = (s, type) => got(s, "reader-activity").filter((a) => a.eventType === type);

async function settle(sockets, expected) {
  await until(() => sockets.every((s, i) => activity(s.sock, s.type).length >= expected[i]), 3000, "deliveries");
  // A round trip through the same server loop after the last delivery: extra copies would be here.
  await Promise.all(sockets.map((s) => barrier(s.sock)));
  return sockets.map((s) => activity(s.sock, s.type).length);
}

test("rule 1: subscriptions with type filters", async () => {
  const all = await as(server, "d1-c-all", "consultant");
  const turns = await as(server, "d1-c-turns", "consultant");
  const other = await as(server, "d1-c-other", "consultant");
  const unsub = await as(server, "d1-c-none", "consultant");
  await all.emitWithAck("subscribe-consultant", { consultantId: "d1-c-all" });
  await turns.emitWithAck("subscribe-consultant", { consultantId: "d1-c-turns", eventTypes: ["D1_TURN"] });
  await other.emitWithAck("subscribe-consultant", { consultantId: "d1-c-other", eventTypes: ["D1_OTHER"] });
  const r = await as(server, "d1-r", "reader");
  await r.emitWithAck("reader-event", { eventType: "D1_TURN", data: { page: 4 } });
  const counts = await settle(
    [all, turns, other, unsub, r].map((sock) => ({ sock, type: "D1_TURN" })),
    [1, 1, 0, 0, 0],
  );
  assert.deepEqual(counts, [1, 1, 0, 0, 0]);
  const a = activity(all, "D1_TURN")[0];
  assert.deepEqual(Object.keys(a).sort(), ["data", "eventType", "id", "sessionId", "timestamp", "userId"]);
  assert.equal(a.userId, "d1-r");
  assert.deepEqual(a.data, { page: 4 });
  assert.match(a.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
});

test("rule 2: support events reach every consultant and admin, subscribed or not", async () => {
  const c = await as(server, "d2-c", "consultant");
  const a = await as(server, "d2-a", "admin");
  const filtered = await as(server, "d2-cf", "consultant");
  await filtered.emitWithAck("subscribe-consultant", { consultantId: "d2-cf", eventTypes: ["NOTHING"] });
  const bystander = await as(server, "d2-other-reader", "reader");
  const r = await as(server, "d2-r", "reader");
  await r.emitWithAck("reader-event", { eventType: "D2_HELP_REQUEST" });
  await r.emitWithAck("reader-event", { eventType: "D2_help_request" });
  const counts = await settle(
    [c, a, filtered, bystander].map((sock) => ({ sock, type: "D2_HELP_REQUEST" })),
    [1, 1, 1, 0],
  );
  assert.deepEqual(counts, [1, 1, 1, 0]);
  assert.equal(activity(c, "D2_help_request").length, 0, "support events match case-sensitively");
  await r.emitWithAck("reader-event", { eventType: "D2_FEEDBACK" });
  const fb = await settle([c, a, bystander].map((sock) => ({ sock, type: "D2_FEEDBACK" })), [1, 1, 0]);
  assert.deepEqual(fb, [1, 1, 0]);
});

test("rule 3: the reader's other devices get it, the sending socket does not", async () => {
  const tab1 = await as(server, "d3-r", "reader");
  const tab2 = await as(server, "d3-r", "reader");
  const tab3 = await as(server, "d3-r", "reader");
  const stranger = await as(server, "d3-other", "reader");
  await tab1.emitWithAck("reader-event", { eventType: "D3" });
  const counts = await settle([tab1, tab2, tab3, stranger].map((sock) => ({ sock, type: "D3" })), [0, 1, 1, 0]);
  assert.deepEqual(counts, [0, 1, 1, 0]);
});

test("rule 4: staff in a room the sender joined; readers get nothing through rooms", async () => {
  const c = await as(server, "d4-c", "consultant");
  const nosy = await as(server, "d4-nosy", "reader");
  const r = await as(server, "d4-r", "reader");
  await c.emitWithAck("join-room", "d4-class");
  await nosy.emitWithAck("join-room", "d4-class");
  await nosy.emitWithAck("join-room", "consultants");
  await r.emitWithAck("reader-event", { eventType: "D4_BEFORE" });
  await r.emitWithAck("join-room", "d4-class");
  await r.emitWithAck("reader-event", { eventType: "D4" });
  const counts = await settle([c, nosy].map((sock) => ({ sock, type: "D4" })), [1, 0]);
  assert.deepEqual(counts, [1, 0]);
  assert.equal(activity(c, "D4_BEFORE").length, 0, "only rooms the sender had joined route its events");
  // A consultant in the room receives whatever its filter says.
  await c.emitWithAck("subscribe-consultant", { consultantId: "d4-c", eventTypes: ["UNRELATED"] });
  await r.emitWithAck("reader-event", { eventType: "D4_AGAIN" });
  assert.deepEqual(await settle([{ sock: c, type: "D4_AGAIN" }], [1]), [1]);
});

test("a socket in every group gets one copy", async () => {
  const c = await as(server, "d5-c", "consultant");
  await c.emitWithAck("subscribe-consultant", { consultantId: "d5-c" });
  for (const room of ["d5-a", "d5-b"]) await c.emitWithAck("join-room", room);
  const r = await as(server, "d5-r", "reader");
  for (const room of ["d5-a", "d5-b"]) await r.emitWithAck("join-room", room);
  await r.emitWithAck("reader-event", { eventType: "D5_HELP_REQUEST" });
  assert.deepEqual(await settle([{ sock: c, type: "D5_HELP_REQUEST" }], [1]), [1]);
});

test("readers never receive another reader's activity, whatever they try", async () => {
  const spy = await as(server, "d6-spy", "reader");
  await spy.emitWithAck("join-room", "d6-room");
  await spy.emitWithAck("subscribe-consultant", { consultantId: "d6-spy" });
  const victim = await as(server, "d6-victim", "reader");
  await victim.emitWithAck("join-room", "d6-room");
  for (const t of ["D6", "D6_HELP_REQUEST", "D6_FEEDBACK"]) await victim.emitWithAck("reader-event", { eventType: t });
  await barrier(spy);
  assert.equal(got(spy, "reader-activity").length, 0);
});
