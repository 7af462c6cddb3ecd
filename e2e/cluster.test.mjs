// Two nodes over a redis-server of this test's own: official clients on different nodes see one
// server. Skips loudly without redis-server (fails with ALICE_REQUIRE_SERVICES=1).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, as, got, until, barrier, sleep, haveRedis as redisOnPath, redisServer } from "./helpers.mjs";

const haveRedis = redisOnPath("the cluster end-to-end tests");

let redis, a, b;
before(async () => {
  if (!haveRedis) return;
  redis = await redisServer();
  const env = { REDIS_URL: redis.url, PRESENCE_TTL_MS: "1500", PRESENCE_PUSH_INTERVAL_MS: "100" };
  a = await startServer({ ...env, NODE_ID: "e2e-a" });
  b = await startServer({ ...env, NODE_ID: "e2e-b" });
});
after(async () => {
  if (!haveRedis) return;
  await a?.stop();
  await b?.stop();
  redis.stop();
});

test("events cross nodes exactly once, by the same rules", { skip: !haveRedis }, async () => {
  const subscribed = await as(b, "cl-c1", "consultant");
  await subscribed.emitWithAck("subscribe-consultant", { consultantId: "cl-c1" });
  const inRoom = await as(b, "cl-c2", "consultant");
  await inRoom.emitWithAck("join-room", "cl-class");
  const tabOnB = await as(b, "cl-r", "reader");
  const otherReaderOnB = await as(b, "cl-other", "reader");
  const reader = await as(a, "cl-r", "reader");
  await reader.emitWithAck("join-room", "cl-class");
  const ids = [];
  for (let i = 0; i < 10; i++) ids.push((await reader.emitWithAck("reader-event", { eventType: "CL", data: { i } })).eventId);
  const activity = (s) => got(s, "reader-activity").filter((e) => e.eventType === "CL").map((e) => e.id);
  await until(() => [subscribed, inRoom, tabOnB].every((s) => activity(s).length >= 10), 10000, "cross-node delivery");
  await sleep(300);
  await Promise.all([subscribed, inRoom, tabOnB, otherReaderOnB].map(barrier));
  for (const s of [subscribed, inRoom, tabOnB]) assert.deepEqual(activity(s), ids);
  assert.deepEqual(activity(otherReaderOnB), []);
});

/** Asks `ask()` every 100 ms until `done(answer)`, for up to 5 s; returns the last answer. */
async function poll(ask, done) {
  const deadline = Date.now() + 5000;
  let answer = await ask();
  while (!done(answer) && Date.now() < deadline) {
    await sleep(100);
    answer = await ask();
  }
  return answer;
}

test("presence spans nodes: two tabs on two nodes are one reader", { skip: !haveRedis }, async () => {
  const watcher = await as(b, "pr-c", "consultant");
  const tab1 = await as(a, "pr-r", "reader");
  await as(b, "pr-r", "reader");
  const reader = async () => (await watcher.emitWithAck("get-online-readers")).readers.find((r) => r.userId === "pr-r");
  assert.equal((await poll(reader, (me) => me?.connections === 2))?.connections, 2);
  tab1.close();
  const after = await poll(reader, (me) => me?.connections === 1);
  assert.equal(after?.connections, 1, "closing one of two tabs keeps the reader");
});

test("recent events are cluster-wide", { skip: !haveRedis }, async () => {
  const reader = await as(a, "re-r", "reader");
  const ack = await reader.emitWithAck("reader-event", { eventType: "RE" });
  const c = await as(b, "re-c", "consultant");
  const listed = async () => (await c.emitWithAck("get-recent-events", { userId: "re-r" })).events.some((e) => e.id === ack.eventId);
  assert.ok(await poll(listed, (found) => found), "node B lists an event accepted by node A");
});
