// `clientEventId` with the official client: a reader app that resends an event (its ack got
// lost) gets the first answer with `duplicate: true`, and the event is stored and delivered once:
// from the same socket, another socket, after a restart, concurrently, and on another node (over
// a redis-server of this test's own; skipped loudly without one, failing with
// ALICE_REQUIRE_SERVICES=1).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer, as, got, until, barrier, sleep, haveRedis as redisOnPath, redisServer } from "./helpers.mjs";

const haveRedis = redisOnPath("the two-node idempotency test");

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const send = (socket, key, eventType = "ID") =>
  socket.emitWithAck("reader-event", { eventType, data: { key }, clientEventId: key });
const activity = (s, type) => got(s, "reader-activity").filter((e) => e.eventType === type).map((e) => e.id);

async function stored(server, reader, type) {
  const page = await reader.emitWithAck("get-recent-events", { limit: 200, eventTypes: [type] });
  return page.events.map((e) => e.id);
}

test("on one node: a repeated key is answered like the first and kept once, also after a restart", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "alice-e2e-keys-"));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  let server = await startServer({}, { dataDir });
  try {
    const dash = await as(server, "id-c1", "consultant");
    await dash.emitWithAck("subscribe-consultant", { consultantId: "id-c1", eventTypes: ["ID"] });
    const reader = await as(server, "id-r1", "reader");
    const tab = await as(server, "id-r1", "reader");
    const first = await send(reader, "k-1");
    assert.deepEqual([first.ok, first.duplicate], [true, false]);
    const again = await send(reader, "k-1");
    const fromTab = await send(tab, "k-1");
    for (const r of [again, fromTab]) {
      assert.deepEqual([r.ok, r.eventId, r.duplicate], [true, first.eventId, true]);
    }
    // Another user's key is another key; no key is never a repeat.
    const otherUser = await send(await as(server, "id-r2", "reader"), "k-1");
    assert.deepEqual([otherUser.duplicate, otherUser.eventId !== first.eventId], [false, true]);
    const plain = [
      await reader.emitWithAck("reader-event", { eventType: "ID" }),
      await reader.emitWithAck("reader-event", { eventType: "ID" }),
    ];
    assert.ok(plain.every((p) => p.duplicate === false) && plain[0].eventId !== plain[1].eventId);

    // Sent at the same moment from two sockets: accepted once, both told the same id.
    const both = await Promise.all([send(reader, "k-2"), send(tab, "k-2")]);
    assert.equal(both[0].eventId, both[1].eventId);
    assert.deepEqual(both.map((b) => b.duplicate).sort(), [false, true]);

    await barrier(dash);
    await sleep(100);
    const expected = [first.eventId, otherUser.eventId, plain[0].eventId, plain[1].eventId, both[0].eventId];
    assert.deepEqual(activity(dash, "ID"), expected, "each delivered once");
    assert.deepEqual(got(tab, "reader-activity").filter((e) => e.eventType === "ID").length, 4, "the other tab too, once each");
    await server.stop({ keepData: true });

    server = await startServer({}, { dataDir });
    const back = await as(server, "id-r1", "reader");
    const afterRestart = await send(back, "k-1");
    assert.deepEqual([afterRestart.eventId, afterRestart.duplicate], [first.eventId, true]);
    const own = await stored(server, back, "ID");
    assert.equal(own.filter((id) => id === first.eventId).length, 1, "stored once");
    assert.equal(own.length, 4, "id-r1's own: the first, two without keys, k-2");
    const bad = await back.emitWithAck("reader-event", { eventType: "ID", clientEventId: "has space" });
    assert.equal(bad.error.code, "INVALID_PAYLOAD");
  } finally {
    await server.stop({ keepData: true });
  }
});

test("across two nodes: the same key at the same moment on both is accepted once", { skip: !haveRedis }, async () => {
  const redis = await redisServer();
  cleanups.push(() => redis.stop());
  const env = { REDIS_URL: redis.url };
  const a = await startServer({ ...env, NODE_ID: "id-a" });
  const b = await startServer({ ...env, NODE_ID: "id-b" });
  cleanups.push(() => a.stop());
  cleanups.push(() => b.stop());
  const dashA = await as(a, "id-c2", "consultant");
  const dashB = await as(b, "id-c3", "consultant");
  for (const [d, id] of [[dashA, "id-c2"], [dashB, "id-c3"]]) {
    await d.emitWithAck("subscribe-consultant", { consultantId: id, eventTypes: ["ID2"] });
  }
  const onA = await as(a, "id-r3", "reader");
  const onB = await as(b, "id-r3", "reader");
  const answers = [];
  for (let i = 0; i < 10; i++) {
    answers.push(await Promise.all([send(onA, `c-${i}`, "ID2"), send(onB, `c-${i}`, "ID2")]));
  }
  for (const [x, y] of answers) {
    assert.ok(x.ok && y.ok, JSON.stringify([x, y]));
    assert.equal(x.eventId, y.eventId, "both told the one event");
    assert.deepEqual([x.duplicate, y.duplicate].sort(), [false, true]);
  }
  const later = await send(onB, "c-0", "ID2");
  assert.deepEqual([later.eventId, later.duplicate], [answers[0][0].eventId, true]);
  const ids = answers.map(([x]) => x.eventId);
  await until(() => [dashA, dashB].every((d) => activity(d, "ID2").length >= 10), 10000, "delivery on both nodes");
  await sleep(300);
  await Promise.all([dashA, dashB].map(barrier));
  for (const d of [dashA, dashB]) assert.deepEqual(activity(d, "ID2"), ids, "once each, in one order");
  let kept = [];
  for (let tries = 0; tries < 50 && kept.length < 10; tries++) {
    await sleep(100);
    kept = await stored(a, onA, "ID2");
  }
  assert.deepEqual([...kept].sort(), [...ids].sort(), "stored once each");
});
