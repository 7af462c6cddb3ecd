// Consultant scope (PROTOCOL.md, "Consultant scope") from the outside, with the official client:
// under CONSULTANT_SCOPE=assigned nothing of an unassigned reader reaches a consultant through
// delivery, presence, history, a resume or the client's own recovery; admins see everyone; a
// reassignment through the admin API holds before its answer on that node, and on the other
// node, as a change made straight in the table does, within ASSIGNMENT_REFRESH_MS.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { io } from "socket.io-client";
import {
  startServer,
  as,
  got,
  until,
  eventually,
  sleep,
  barrier,
  token,
  http,
  flakyProxy,
  haveRedis as redisOnPath,
  redisServer,
  postgresDb,
} from "./helpers.mjs";

const REFRESH_MS = 400;
const scoped = { CONSULTANT_SCOPE: "assigned", ASSIGNMENT_REFRESH_MS: String(REFRESH_MS), PRESENCE_PUSH_INTERVAL_MS: "100" };
const admin = token("sc-admin", "admin");

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function server(env) {
  const s = await startServer(env);
  cleanups.push(() => s.stop());
  return s;
}

const assign = (server, consultant, readers, bearer = admin) =>
  http(server, `/admin/assignments/${encodeURIComponent(consultant)}`, { method: "PUT", bearer, body: { readers } });
const assigned = async (server, consultant) =>
  (await http(server, `/admin/assignments/${encodeURIComponent(consultant)}`, { bearer: admin })).body.readers;

const activityFrom = (socket, user) => got(socket, "reader-activity").filter((e) => e.userId === user);
const send = async (reader, eventType, data = {}) => (await reader.emitWithAck("reader-event", { eventType, data })).eventId;
const listed = (list) => list.readers.map((r) => r.userId).sort();

test("one node: the admin API replaces and reads a consultant's readers, and refuses others and bad bodies", async () => {
  const s = await server(scoped);
  const put = await assign(s, "api-c", ["api-r2", "api-r1", "api-r1"]);
  assert.equal(put.status, 200);
  assert.deepEqual(put.body, { consultantId: "api-c", readers: ["api-r1", "api-r2"] });
  assert.deepEqual(await assigned(s, "api-c"), ["api-r1", "api-r2"]);
  assert.deepEqual(await assigned(s, "api-nobody"), []);

  const refusals = [
    [await assign(s, "api-c", ["x"], null), 401],
    [await assign(s, "api-c", ["x"], token("api-c", "consultant")), 403],
    [await assign(s, "api-c", ["x"], token("api-r1", "reader")), 403],
    [await http(s, "/admin/assignments/api-c", { bearer: token("api-c", "consultant") }), 403],
    [await http(s, "/admin/assignments/api-c", { method: "PUT", bearer: admin, body: "not json" }), 400],
    [await http(s, "/admin/assignments/api-c", { method: "PUT", bearer: admin, body: { reader: ["x"] } }), 400],
    [await http(s, "/admin/assignments/api-c", { method: "PUT", bearer: admin, body: { readers: [7] } }), 400],
    [await http(s, "/admin/assignments/api-c", { method: "PUT", bearer: admin, body: { readers: ["x".repeat(129)] } }), 400],
    [await http(s, `/admin/assignments/${"c".repeat(129)}`, { method: "PUT", bearer: admin, body: { readers: [] } }), 400],
  ];
  for (const [res, status] of refusals) {
    assert.equal(res.status, status, JSON.stringify(res.body));
    assert.equal(typeof res.body.error, "string", "a message says why");
  }
  assert.match(refusals[4][0].body.error, /readers/);
  assert.deepEqual(await assigned(s, "api-c"), ["api-r1", "api-r2"], "a refused PUT changed nothing");
  assert.equal((await assign(s, "api-c", [])).status, 200);
  assert.deepEqual(await assigned(s, "api-c"), []);
});

test("one node: a scoped consultant receives, lists and reads only its readers; admins everyone", async () => {
  const s = await server(scoped);
  await assign(s, "sc-c1", ["sc-r1"]);
  const consultant = await as(s, "sc-c1", "consultant");
  const subscribed = await consultant.emitWithAck("subscribe-consultant", { consultantId: "sc-c1" });
  assert.equal(subscribed.ok, true);
  const inRoom = await as(s, "sc-c1", "consultant");
  await inRoom.emitWithAck("join-room", "sc-class");
  const unsubscribed = await as(s, "sc-c1", "consultant");
  await barrier(unsubscribed);
  const watcher = await as(s, "sc-admin", "admin");
  await watcher.emitWithAck("subscribe-consultant", { consultantId: "sc-c1" });
  const r1 = await as(s, "sc-r1", "reader");
  const r2 = await as(s, "sc-r2", "reader");
  for (const r of [r1, r2]) await r.emitWithAck("join-room", "sc-class");

  // Rule 1 (subscribed), rule 2 (support, unsubscribed) and rule 4 (room): r1's reach c1, r2's do not.
  const mine = [await send(r1, "PAGE_TURN"), await send(r1, "HELP_REQUEST")];
  const theirs = [await send(r2, "PAGE_TURN"), await send(r2, "HELP_REQUEST"), await send(r2, "FEEDBACK")];
  await until(() => got(watcher, "reader-activity").length >= 5, 3000, "the admin's deliveries");
  await Promise.all([consultant, inRoom, unsubscribed].map(barrier));
  await sleep(200);
  assert.deepEqual(activityFrom(consultant, "sc-r1").map((e) => e.id), mine);
  assert.deepEqual(activityFrom(inRoom, "sc-r1").map((e) => e.id), mine);
  assert.deepEqual(activityFrom(unsubscribed, "sc-r1").map((e) => e.id), [mine[1]], "support only");
  for (const socket of [consultant, inRoom, unsubscribed]) assert.deepEqual(activityFrom(socket, "sc-r2"), []);
  assert.deepEqual(got(watcher, "reader-activity").map((e) => e.id).sort(), [...mine, ...theirs].sort());

  // Presence: snapshots, answers and pushes list r1 only; the admin sees both.
  for (const list of got(consultant, "online-readers")) {
    assert.ok(list.readers.every((r) => r.userId === "sc-r1"), JSON.stringify(list));
  }
  assert.deepEqual(listed(await consultant.emitWithAck("get-online-readers")), ["sc-r1"]);
  assert.equal((await consultant.emitWithAck("get-online-readers")).count, 1);
  assert.deepEqual(listed(await watcher.emitWithAck("get-online-readers")), ["sc-r1", "sc-r2"]);

  // History: its readers' events only; naming another reader is forbidden.
  const recent = await consultant.emitWithAck("get-recent-events", { limit: 200 });
  assert.ok(recent.events.length >= 2 && recent.events.every((e) => e.userId === "sc-r1"), JSON.stringify(recent));
  const forbidden = await consultant.emitWithAck("get-recent-events", { userId: "sc-r2" });
  assert.equal(forbidden.error.code, "FORBIDDEN");
  const all = await watcher.emitWithAck("get-recent-events", { limit: 200 });
  assert.ok(all.events.some((e) => e.userId === "sc-r2"));

  // A reassignment holds as soon as the PUT answers: r2 now, not r1.
  assert.equal((await assign(s, "sc-c1", ["sc-r2"])).status, 200);
  const now = [await send(r2, "PAGE_TURN")];
  const gone = await send(r1, "PAGE_TURN");
  await until(() => activityFrom(consultant, "sc-r2").length === 1, 3000, "the newly assigned reader's event");
  await barrier(consultant);
  await sleep(100);
  assert.deepEqual(activityFrom(consultant, "sc-r2").map((e) => e.id), now);
  assert.ok(!got(consultant, "reader-activity").some((e) => e.id === gone), "the unassigned reader's event");
  await until(() => {
    const pushes = got(consultant, "online-readers");
    return pushes.length > 0 && listed(pushes.at(-1)).join() === "sc-r2";
  }, 3000, "a push that lists the newly assigned reader only");
});

test("one node: a resume and the official client's recovery replay only what the scope allows then", async () => {
  const s = await server(scoped);
  await assign(s, "rs-c", ["rs-r1"]);
  const r1 = await as(s, "rs-r1", "reader");
  const r2 = await as(s, "rs-r2", "reader");

  // subscribe-consultant with since.
  const first = await as(s, "rs-c", "consultant");
  await first.emitWithAck("subscribe-consultant", { consultantId: "rs-c" });
  const seen = await send(r1, "A");
  await until(() => got(first, "reader-activity").length === 1, 3000, "the first event");
  first.close();
  const missed = await send(r1, "A");
  await send(r2, "A");
  await send(r2, "HELP_REQUEST");
  const again = await as(s, "rs-c", "consultant");
  const reply = await again.emitWithAck("subscribe-consultant", { consultantId: "rs-c", since: seen });
  assert.deepEqual([reply.resumed, reply.replayed], [true, 1]);
  await barrier(again);
  assert.deepEqual(got(again, "reader-activity").map((e) => e.id), [missed]);

  // Connection state recovery: the plain official client, reconnecting by itself.
  const proxy = await flakyProxy(s.url);
  cleanups.push(() => proxy.close());
  const dash = io(proxy.url, {
    auth: { token: token("rs-c", "consultant") },
    transports: ["websocket"],
    forceNew: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 300,
  });
  cleanups.push(() => dash.close());
  dash.seen = [];
  dash.on("reader-activity", (e) => dash.seen.push(e));
  await new Promise((resolve) => dash.once("connect", resolve));
  await dash.emitWithAck("subscribe-consultant", { consultantId: "rs-c" });
  await send(r1, "B");
  await until(() => dash.seen.length === 1, 3000, "an event before the drop");
  const reconnected = new Promise((resolve) => dash.io.once("reconnect", resolve));
  proxy.cutAll();
  await until(() => !dash.connected, 3000, "the drop");
  const away = [await send(r1, "B"), await send(r2, "B"), await send(r2, "HELP_REQUEST"), await send(r1, "B")];
  await reconnected;
  await until(() => dash.seen.length >= 3, 5000, "the missed events");
  assert.equal(dash.recovered, true, "socket.recovered");
  await sleep(200);
  assert.deepEqual(dash.seen.slice(1).map((e) => e.id), [away[0], away[3]]);
  assert.ok(dash.seen.every((e) => e.userId === "rs-r1"));
});

test("scope all (the default): assignments change nothing, as before", async () => {
  const s = await server({ PRESENCE_PUSH_INTERVAL_MS: "100" });
  await assign(s, "al-c", ["al-r1"]);
  const consultant = await as(s, "al-c", "consultant");
  await consultant.emitWithAck("subscribe-consultant", { consultantId: "al-c" });
  const r2 = await as(s, "al-r2", "reader");
  const id = await send(r2, "PAGE_TURN");
  await until(() => got(consultant, "reader-activity").some((e) => e.id === id), 3000, "an unassigned reader's event");
  assert.deepEqual(listed(await consultant.emitWithAck("get-online-readers")), ["al-r2"]);
  const recent = await consultant.emitWithAck("get-recent-events", { userId: "al-r2" });
  assert.deepEqual(recent.events.map((e) => e.id), [id]);
});

/** Waits until `consultant` receives `reader`'s next event (sent every 100 ms), within `ms`. */
async function reachesWithin(consultant, reader, ms) {
  const started = Date.now();
  while (Date.now() - started < ms) {
    const id = await send(reader, "PROBE");
    await sleep(100);
    if (got(consultant, "reader-activity").some((e) => e.id === id)) return Date.now() - started;
  }
  throw new Error(`the reader's events did not reach the consultant within ${ms} ms`);
}

/**
 * Two nodes' consultant (on B, assigned nobody at first), the reader it will be assigned (on A),
 * and a reader on A it never is.
 */
async function twoNodes(a, b, prefix) {
  const consultant = await as(b, `${prefix}-c`, "consultant");
  await consultant.emitWithAck("subscribe-consultant", { consultantId: `${prefix}-c` });
  const reader = await as(a, `${prefix}-r`, "reader");
  const stranger = await as(a, `${prefix}-x`, "reader");
  const id = await send(reader, "PROBE");
  await sleep(REFRESH_MS * 2);
  await barrier(consultant);
  assert.ok(!got(consultant, "reader-activity").some((e) => e.id === id), "nothing before the assignment");
  return { consultant, reader, stranger };
}

/**
 * Nothing of `stranger` reached `consultant` (live, listed, in history), and a dashboard of the
 * same consultant resuming on `other` after `since` replays only the assigned reader's events.
 */
async function nothingOfTheStranger({ consultant, reader, stranger }, other, prefix) {
  await send(stranger, "PAGE_TURN");
  await send(stranger, "HELP_REQUEST");
  const seen = await send(reader, "PAGE_TURN");
  await until(() => got(consultant, "reader-activity").some((e) => e.id === seen), 3000, "the assigned reader's event");
  await barrier(consultant);
  assert.deepEqual(activityFrom(consultant, `${prefix}-x`), [], "delivery");
  for (const list of got(consultant, "online-readers")) {
    assert.ok(list.readers.every((r) => r.userId !== `${prefix}-x`), "presence pushes");
  }
  assert.deepEqual(listed(await consultant.emitWithAck("get-online-readers")), [`${prefix}-r`]);
  const recent = await consultant.emitWithAck("get-recent-events", { limit: 200 });
  assert.ok(recent.events.length > 0 && recent.events.every((e) => e.userId === `${prefix}-r`), "history");
  const missed = [await send(stranger, "PAGE_TURN"), await send(reader, "PAGE_TURN"), await send(stranger, "FEEDBACK")];
  const resumed = await as(other, `${prefix}-c`, "consultant");
  const reply = await resumed.emitWithAck("subscribe-consultant", { consultantId: `${prefix}-c`, since: seen });
  assert.equal(reply.resumed, true, "a resume on the other node");
  // Replayed, or live if that node had not read it back from the log yet: once either way.
  await until(() => got(resumed, "reader-activity").length >= 1, 3000, "the missed event");
  await sleep(300);
  await barrier(resumed);
  assert.deepEqual(got(resumed, "reader-activity").map((e) => e.id), [missed[1]]);
}

const haveRedis = redisOnPath("the two-node consultant scope tests");
const pg = haveRedis ? postgresDb("the two-node consultant scope test on PostgreSQL") : null;
if (pg) cleanups.unshift(() => pg.drop());

// Refreshes a minute apart: only the bus (a PUT) and LISTEN/NOTIFY (a change in the table) can
// make B follow within a second.
test("two nodes sharing PostgreSQL: a PUT on A and a change made in the table reach B at once", { skip: !pg }, async () => {
  const redis = await redisServer();
  cleanups.push(() => redis.stop());
  const env = { ...scoped, ASSIGNMENT_REFRESH_MS: "60000", REDIS_URL: redis.url, DATABASE_URL: pg.url };
  const a = await server({ ...env, NODE_ID: "sp-a" });
  const b = await server({ ...env, NODE_ID: "sp-b" });
  const nodes = await twoNodes(a, b, "sp");
  const { consultant, reader } = nodes;
  assert.equal((await assign(a, "sp-c", ["sp-r"])).status, 200);
  await reachesWithin(consultant, reader, 1000);
  assert.deepEqual(await assigned(b, "sp-c"), ["sp-r"], "one table");
  await nothingOfTheStranger(nodes, a, "sp");

  // As the suite's trigger or an admin tool would: straight into the table.
  pg.sql("UPDATE consultant_assignments SET active = false WHERE consultant_id = 'sp-c'");
  await sleep(1000);
  const after = await send(reader, "PROBE");
  await sleep(300);
  await barrier(consultant);
  assert.ok(!got(consultant, "reader-activity").some((e) => e.id === after), "unassigned in the table");
  pg.sql("INSERT INTO consultant_assignments (consultant_id, user_id) VALUES ('sp-c', 'sp-r')");
  await reachesWithin(consultant, reader, 1000);
  const events = await consultant.emitWithAck("get-recent-events", { limit: 200 });
  assert.ok(events.events.length > 0 && events.events.every((e) => e.userId === "sp-r"));
});

test("two nodes with files of their own: assignments live in Redis, so B follows a PUT on A, after a restart too", { skip: !haveRedis }, async () => {
  const redis = await redisServer();
  cleanups.push(() => redis.stop());
  const env = { ...scoped, REDIS_URL: redis.url };
  const a = await server({ ...env, NODE_ID: "so-a" });
  const b = await startServer({ ...env, NODE_ID: "so-b" });
  const nodes = await twoNodes(a, b, "so");
  const { consultant, reader, stranger } = nodes;
  assert.equal((await assign(a, "so-c", ["so-r"])).status, 200);
  await reachesWithin(consultant, reader, REFRESH_MS + 1000);
  await nothingOfTheStranger(nodes, a, "so");
  // B's refreshes keep it, and its API reads it.
  await sleep(REFRESH_MS * 2);
  assert.deepEqual(await assigned(b, "so-c"), ["so-r"]);
  const id = await send(reader, "PROBE");
  await until(() => got(consultant, "reader-activity").some((e) => e.id === id), 3000, "still assigned after B's refreshes");

  // B is down while the assignment changes; it starts again on its own file and follows it.
  await b.stop({ keepData: true });
  assert.equal((await assign(a, "so-c", ["so-x"])).status, 200);
  const again = await startServer({ ...env, NODE_ID: "so-b" }, { dataDir: b.dir });
  cleanups.push(() => again.stop().then(() => rmSync(b.dir, { recursive: true, force: true })));
  const watcher = await as(again, "so-c", "consultant");
  await watcher.emitWithAck("subscribe-consultant", { consultantId: "so-c" });
  const theirs = await send(stranger, "PAGE_TURN");
  const not = await send(reader, "PAGE_TURN");
  await until(() => got(watcher, "reader-activity").some((e) => e.id === theirs), 3000, "the newly assigned reader, after B's restart");
  await barrier(watcher);
  assert.ok(!got(watcher, "reader-activity").some((e) => e.id === not), "nothing of the unassigned one");
  // A's readers reach B's list with A's next heartbeat; never the unassigned one.
  let list;
  await eventually("the assigned reader listed on B", async () => {
    await sleep(200);
    list = listed(await watcher.emitWithAck("get-online-readers"));
    assert.ok(!list.includes("so-r"), JSON.stringify(list));
    return list.join() === "so-x";
  });
});
