// Gapless resume with the official client: a dashboard that resubscribes with `since` receives
// exactly what it missed, oldest first, then the live events, with no gap and no repeat at the
// seam, while readers keep sending; on one node, after a restart, and across two nodes over a
// redis-server of this test's own (skipped loudly without one, failing with
// ALICE_REQUIRE_SERVICES=1).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer, as, got, until, barrier, sleep, haveRedis as redisOnPath, redisServer } from "./helpers.mjs";

const haveRedis = redisOnPath("the two-node resume test");

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const activity = (s, type) => got(s, "reader-activity").filter((e) => e.eventType === type).map((e) => e.id);

/** Readers send `type` events one after another until `stop()`; resolves with their ids in send order. */
function stream(readers, type) {
  let running = true;
  const ids = [];
  const done = Promise.all(
    readers.map(async (reader, r) => {
      for (let i = 0; running; i++) {
        const ack = await reader.emitWithAck("reader-event", { eventType: type, data: { r, i } });
        assert.equal(ack.ok, true, JSON.stringify(ack));
        ids.push(ack.eventId);
        await sleep(60); // under the 20 per second rate limit
      }
    }),
  );
  return { ids, stop: async () => ((running = false), await done) };
}

/**
 * A dashboard that watches throughout on `watchOn`, and one that drops off `first` and resumes on
 * `second` while `readers` send: the resumed one must end with exactly the watcher's sequence.
 */
async function dropAndResume({ first, second, watchOn, readers, type, who }) {
  const watcher = await as(watchOn, `${who}-watch`, "consultant");
  await watcher.emitWithAck("subscribe-consultant", { consultantId: `${who}-watch`, eventTypes: [type] });
  const dash = await as(first, who, "consultant");
  await dash.emitWithAck("subscribe-consultant", { consultantId: who, eventTypes: [type] });
  const s = stream(readers, type);
  await until(() => activity(dash, type).length >= 20, 10000, "events before the drop");
  dash.close();
  const before = activity(dash, type);
  await sleep(150);
  const again = await as(second, who, "consultant");
  const reply = await again.emitWithAck("subscribe-consultant", {
    consultantId: who,
    eventTypes: [type],
    since: before.at(-1),
  });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  assert.equal(reply.resumed, true);
  assert.ok(reply.replayed > 0, `something was missed while away: ${JSON.stringify(reply)}`);
  await sleep(300);
  await s.stop();
  await until(() => activity(watcher, type).length === s.ids.length, 10000, "the watcher has every event");
  await until(() => before.length + activity(again, type).length >= s.ids.length, 10000, "the resumed dashboard catches up");
  await sleep(200);
  await Promise.all([watcher, again].map(barrier));
  const seen = [...before, ...activity(again, type)];
  assert.equal(new Set(seen).size, seen.length, "nothing twice");
  assert.deepEqual(seen, activity(watcher, type), "nothing missed, in the one order");
  assert.deepEqual([...seen].sort(), [...s.ids].sort(), "every acknowledged event");
  again.close();
  watcher.close();
  return reply;
}

test("on one node: exactly what was missed, then live, also after a restart", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "alice-e2e-resume-"));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  let server = await startServer({}, { dataDir });
  try {
    const readers = [await as(server, "rs-r1", "reader"), await as(server, "rs-r2", "reader")];
    await dropAndResume({ first: server, second: server, watchOn: server, readers, type: "RS", who: "rs-c1" });
    const last = (await readers[0].emitWithAck("reader-event", { eventType: "RS2" })).eventId;
    await server.stop({ keepData: true });

    server = await startServer({}, { dataDir });
    const reader = await as(server, "rs-r1", "reader");
    const after = [];
    for (let i = 0; i < 3; i++) after.push((await reader.emitWithAck("reader-event", { eventType: "RS2" })).eventId);
    const dash = await as(server, "rs-c1", "consultant");
    const reply = await dash.emitWithAck("subscribe-consultant", { consultantId: "rs-c1", eventTypes: ["RS2"], since: last });
    assert.deepEqual([reply.resumed, reply.replayed], [true, 3]);
    await until(() => activity(dash, "RS2").length === 3, 5000, "the replay");
    assert.deepEqual(activity(dash, "RS2"), after);
  } finally {
    await server.stop({ keepData: true });
  }
});

test("a since the server never issued, or not an id, gets INVALID_PAYLOAD", async () => {
  const server = await startServer();
  cleanups.push(() => server.stop());
  const dash = await as(server, "rs-c2", "consultant");
  for (const since of ["01900000-0000-7000-8000-000000000001", "yesterday", 42]) {
    const reply = await dash.emitWithAck("subscribe-consultant", { consultantId: "rs-c2", since });
    assert.equal(reply.ok, false);
    assert.equal(reply.error.code, "INVALID_PAYLOAD", JSON.stringify(since));
  }
});

test("above RESUME_MAX_EVENTS nothing is replayed", async () => {
  const server = await startServer({ RESUME_MAX_EVENTS: "5" });
  cleanups.push(() => server.stop());
  const reader = await as(server, "rs-r3", "reader");
  const ids = [];
  for (let i = 0; i < 7; i++) ids.push((await reader.emitWithAck("reader-event", { eventType: "RS3" })).eventId);
  const dash = await as(server, "rs-c3", "consultant");
  const exact = await dash.emitWithAck("subscribe-consultant", { consultantId: "rs-c3", since: ids[1] });
  assert.deepEqual([exact.resumed, exact.replayed], [true, 5]);
  const over = await dash.emitWithAck("subscribe-consultant", { consultantId: "rs-c3", since: ids[0] });
  assert.deepEqual([over.ok, over.resumed, over.replayed], [true, false, 0]);
  await barrier(dash);
  assert.deepEqual(activity(dash, "RS3"), ids.slice(2), "only the first resume replayed");
});

test("across two nodes: drop off one, resume on the other, while both take events", { skip: !haveRedis }, async () => {
  const redis = await redisServer();
  cleanups.push(() => redis.stop());
  const env = { REDIS_URL: redis.url };
  const a = await startServer({ ...env, NODE_ID: "rs-a" });
  const b = await startServer({ ...env, NODE_ID: "rs-b" });
  cleanups.push(() => a.stop());
  cleanups.push(() => b.stop());
  const readers = [await as(a, "rs-r4", "reader"), await as(b, "rs-r5", "reader")];
  await dropAndResume({ first: a, second: b, watchOn: a, readers, type: "RS4", who: "rs-c4" });

  // An id node A accepted a moment ago resumes on node B at once, whether or not B has read it
  // yet: B first reads the log to its end.
  for (let i = 0; i < 5; i++) {
    const issued = (await readers[0].emitWithAck("reader-event", { eventType: "RS4" })).eventId;
    const onB = await as(b, "rs-c4b", "consultant");
    const fresh = await onB.emitWithAck("subscribe-consultant", { consultantId: "rs-c4b", since: issued });
    assert.deepEqual([fresh.ok, fresh.resumed, fresh.replayed], [true, true, 0], JSON.stringify(fresh));
    onB.close();
  }
});

test("every reader-activity, live or replayed, ends with its position in the log as a string", async () => {
  const server = await startServer();
  cleanups.push(() => server.stop());
  const reader = await as(server, "rs-r6", "reader");
  const first = (await reader.emitWithAck("reader-event", { eventType: "RS6" })).eventId;
  const dash = await as(server, "rs-c6", "consultant");
  const offsets = [];
  dash.on("reader-activity", (e, offset, ...rest) => offsets.push([e.id, offset, rest.length]));
  await dash.emitWithAck("subscribe-consultant", { consultantId: "rs-c6", eventTypes: ["RS6"], since: first });
  for (let i = 0; i < 3; i++) await reader.emitWithAck("reader-event", { eventType: "RS6" });
  await until(() => offsets.length === 3, 3000, "live events");
  const more = await as(server, "rs-c6", "consultant");
  const replayed = [];
  more.on("reader-activity", (e, offset) => replayed.push([e.id, offset]));
  await more.emitWithAck("subscribe-consultant", { consultantId: "rs-c6", eventTypes: ["RS6"], since: first });
  await until(() => replayed.length === 3, 3000, "the replay");
  const position = (o) => o.split("-").map(BigInt);
  for (const [, offset, rest] of offsets) {
    assert.match(offset, /^\d+-\d+$/);
    assert.equal(rest, 0, "the offset is the last argument");
  }
  const order = offsets.map(([, o]) => position(o));
  for (let i = 1; i < order.length; i++) {
    const [a, b] = [order[i - 1], order[i]];
    assert.ok(a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]), "offsets follow the log");
  }
  assert.deepEqual(replayed, offsets.map(([id, o]) => [id, o]), "a replay carries the same offsets");
});
