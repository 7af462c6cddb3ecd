// Connection state recovery with the plain official client and no code of ours: after a dropped
// connection it reconnects by itself, `socket.recovered` is true, its subscription is kept and the
// events it missed arrive once, in order; also when the reconnect lands on the other node, after
// a restart of the node, and when it missed more than the node's memory holds. A `pid` shown with another user's token recovers nothing.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { io } from "socket.io-client";
import { startServer, as, token, until, sleep, flakyProxy, http, haveRedis as redisOnPath, redisServer } from "./helpers.mjs";

const haveRedis = redisOnPath("the two-node recovery test");

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** The official client as an app would use it, reconnection on (its default), for any role. */
async function recovering(url, user, role) {
  const socket = io(url, {
    auth: { token: token(user, role) },
    transports: ["websocket"],
    forceNew: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 300,
  });
  cleanups.push(() => socket.close());
  socket.got = [];
  socket.on("reader-activity", (e) => socket.got.push(e.id));
  await new Promise((resolve) => socket.once("connect", resolve));
  return socket;
}

/** A dashboard: such a client, subscribed to one type. */
async function dashboard(url, user, type) {
  const socket = await recovering(url, user, "consultant");
  const reply = await socket.emitWithAck("subscribe-consultant", { consultantId: user, eventTypes: [type] });
  assert.equal(reply.ok, true);
  return socket;
}

const send = async (reader, type, n) => {
  const ids = [];
  for (let i = 0; i < n; i++) ids.push((await reader.emitWithAck("reader-event", { eventType: type, data: { i } })).eventId);
  return ids;
};

/** Drops the dashboard's link, sends while it is away, and checks what the reconnect brings. */
async function dropAndRecover({ proxy, dash, reader, type, beforeReconnect }) {
  const before = await send(reader, type, 3);
  await until(() => dash.got.length >= 3, 5000, "events before the drop").catch((e) => {
    throw new Error(`${e.message}: got ${JSON.stringify(dash.got)} of ${JSON.stringify(before)}`);
  });
  await sleep(100);
  assert.deepEqual(dash.got, before, "each once, in order, before the drop");
  const reconnected = new Promise((resolve) => dash.io.once("reconnect", resolve));
  // Hold reconnects off while events are sent: the proxy refuses nothing, so aim it first.
  await beforeReconnect?.();
  proxy.cutAll();
  await until(() => !dash.connected, 3000, "the drop");
  const missed = await send(reader, type, 4);
  await reconnected;
  await until(() => dash.got.length >= 7, 5000, "the missed events");
  assert.equal(dash.recovered, true, "socket.recovered");
  const live = await send(reader, type, 2);
  await until(() => dash.got.length >= 9, 3000, "live events, still subscribed");
  await sleep(100);
  assert.deepEqual(dash.got, [...before, ...missed, ...live], "each once, in order");
}

test("one node: the official client recovers by itself, and after a restart of the node", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "alice-e2e-recovery-"));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  let server = await startServer({}, { dataDir });
  const proxy = await flakyProxy(server.url);
  cleanups.push(() => proxy.close());
  try {
    const reader = await as(server, "rc-r1", "reader");
    const dash = await dashboard(proxy.url, "rc-c1", "RC");
    await dropAndRecover({ proxy, dash, reader, type: "RC" });

    // The node restarts: the session and the history come back from its file.
    dash.got.length = 0;
    const sent = await send(reader, "RC", 2);
    await until(() => dash.got.length === 2, 3000, "events before the restart");
    reader.close();
    await server.stop({ keepData: true });
    server = await startServer({}, { dataDir });
    proxy.retarget(server.url);
    proxy.cutAll();
    const back = await as(server, "rc-r1", "reader");
    const missed = await send(back, "RC", 3);
    await new Promise((resolve) => (dash.connected ? resolve() : dash.once("connect", resolve)));
    await until(() => dash.got.length >= 5, 5000, "the events missed over the restart");
    assert.equal(dash.recovered, true, "recovered after the restart");
    await sleep(100);
    assert.deepEqual(dash.got, [...sent, ...missed]);
  } finally {
    await server.stop({ keepData: true });
  }
});

test("one node: a recovery past what memory holds replays from the store", async () => {
  // Memory keeps 3 events; the dashboard misses 12 of them and more of other types.
  const server = await startServer({ HISTORY_CAPACITY: "3" });
  cleanups.push(() => server.stop());
  const proxy = await flakyProxy(server.url);
  cleanups.push(() => proxy.close());
  const reader = await as(server, "rs-r1", "reader");
  const dash = await dashboard(proxy.url, "rs-c1", "RS");
  const before = await send(reader, "RS", 2);
  await until(() => dash.got.length === 2, 3000, "events before the drop");
  const reconnected = new Promise((resolve) => dash.io.once("reconnect", resolve));
  proxy.cutAll();
  await until(() => !dash.connected, 3000, "the drop");
  const missed = [];
  for (let i = 0; i < 4; i++) {
    missed.push(...(await send(reader, "RS", 3)));
    await send(reader, "OTHER", 2);
  }
  await reconnected;
  await until(() => dash.got.length >= 14, 5000, "the missed events");
  assert.equal(dash.recovered, true, "socket.recovered");
  const live = await send(reader, "RS", 2);
  await until(() => dash.got.length >= 16, 3000, "live events, still subscribed");
  await sleep(100);
  assert.deepEqual(dash.got, [...before, ...missed, ...live], "each once, in order");
});

test("a pid shown with another user's token recovers nothing, and is then forgotten", async () => {
  const server = await startServer();
  cleanups.push(() => server.stop());
  const proxy = await flakyProxy(server.url);
  cleanups.push(() => proxy.close());
  const reader = await as(server, "rc-r2", "reader");
  const victim = await dashboard(proxy.url, "rc-c2", "RC2");
  await send(reader, "RC2", 1);
  await until(() => victim.got.length === 1, 3000, "an event");
  const stolen = { pid: victim._pid, offset: victim._lastOffset };
  assert.ok(stolen.pid && stolen.offset, "the client holds a pid and an offset");
  victim.io.reconnection(false);
  proxy.cutAll();
  await until(() => !victim.connected, 3000, "the victim's drop");
  const thief = io(server.url, {
    auth: { token: token("rc-c3", "consultant"), ...stolen },
    transports: ["websocket"],
    forceNew: true,
    reconnection: false,
  });
  cleanups.push(() => thief.close());
  const got = [];
  thief.on("reader-activity", (e) => got.push(e.id));
  await new Promise((resolve) => thief.once("connect", resolve));
  await send(reader, "RC2", 2);
  await sleep(300);
  assert.deepEqual(got, [], "the thief got no subscription");
  assert.notEqual(thief._pid, stolen.pid);
  // The victim's own reconnect recovers nothing now either.
  victim.io.reconnection(true);
  victim.connect();
  await new Promise((resolve) => victim.once("connect", resolve));
  assert.equal(victim.recovered, false);
});

test("two nodes: the reconnect lands on the other node and recovers there", { skip: !haveRedis }, async () => {
  const redis = await redisServer();
  cleanups.push(() => redis.stop());
  const a = await startServer({ REDIS_URL: redis.url, NODE_ID: "rc-a" });
  const b = await startServer({ REDIS_URL: redis.url, NODE_ID: "rc-b" });
  cleanups.push(() => a.stop());
  cleanups.push(() => b.stop());
  const proxy = await flakyProxy(a.url);
  cleanups.push(() => proxy.close());
  const reader = await as(b, "rc-r4", "reader");
  const dash = await dashboard(proxy.url, "rc-c4", "RC4");
  await dropAndRecover({ proxy, dash, reader, type: "RC4", beforeReconnect: () => proxy.retarget(b.url) });
});

/** Events a node has sent by resumes and recoveries (`alice_replayed_events_total`). */
async function replayedOn(server) {
  const { body } = await http(server, "/metrics");
  return Number(/^alice_replayed_events_total (\d+)$/m.exec(body)?.[1] ?? NaN);
}

/**
 * A reader's tab and a consultant in a room drop together and recover on `back`: the tab gets
 * what the reader's other tab sent meanwhile (never what it sent itself), the consultant what
 * came through its room; the tab never gets another reader's events. `other` is the node of the
 * other tab.
 */
async function tabAndRoomRecover({ via, other, back, proxy, prefix, beforeReconnect }) {
  const reader = `${prefix}-r1`;
  const tab = await recovering(proxy.url, reader, "reader");
  const room = await recovering(proxy.url, `${prefix}-c1`, "consultant");
  const otherTab = await as(other, reader, "reader");
  const stranger = await as(via, `${prefix}-r2`, "reader");
  for (const s of [room, otherTab, stranger]) assert.equal((await s.emitWithAck("join-room", `${prefix}-class`)).ok ?? true, true);
  const sendOn = async (socket, n) => {
    const ids = [];
    for (let i = 0; i < n; i++) ids.push((await socket.emitWithAck("reader-event", { eventType: `${prefix}-T` })).eventId);
    return ids;
  };
  const first = await sendOn(otherTab, 1);
  await until(() => tab.got.length === 1 && room.got.length === 1, 5000, "the first event, to both");
  // The tab's own event: its other tab gets it, the room does not (the tab is not in it).
  await sendOn(tab, 1);
  await sleep(200);
  assert.deepEqual([tab.got, room.got], [first, first]);

  // They reconnect only once everything is sent, so what they missed must come by replay.
  for (const s of [tab, room]) s.io.reconnection(false);
  await beforeReconnect?.();
  proxy.cutAll();
  await until(() => !tab.connected && !room.connected, 3000, "the drop");
  const replayedBefore = await replayedOn(back);
  const missed = await sendOn(otherTab, 3);
  const strangers = await sendOn(stranger, 2);
  const reconnected = Promise.all([tab, room].map((s) => new Promise((resolve) => s.once("connect", resolve))));
  for (const s of [tab, room]) (s.io.reconnection(true), s.connect());
  await reconnected;
  await until(() => tab.got.length >= 4 && room.got.length >= 4 + 2, 5000, "the missed events").catch((e) => {
    throw new Error(`${e.message}: tab ${JSON.stringify(tab.got)}, room ${JSON.stringify(room.got)}`);
  });
  assert.equal(tab.recovered, true, "the reader's tab recovered");
  assert.equal(room.recovered, true, "the consultant recovered");
  assert.equal((await replayedOn(back)) - replayedBefore, 3 + 5, "by the recoveries' replays");
  const live = await sendOn(otherTab, 1);
  await sendOn(tab, 1);
  await until(() => tab.got.length >= 5, 3000, "live events");
  await sleep(200);
  assert.deepEqual(tab.got, [...first, ...missed, ...live], "the other tab's events, each once, in order");
  // The stranger is in the room too: the consultant gets its 2 events through the room (the tab
  // never does), but not the tab's own 2, whose socket is in no room.
  await until(() => room.got.length >= 7, 3000, "the room's live event");
  assert.deepEqual(room.got, [...first, ...missed, ...strangers, ...live], "each once, in order");
}

test("one node: a reader's tab recovers its other tab's events, a consultant its room's", async () => {
  const server = await startServer();
  cleanups.push(() => server.stop());
  const proxy = await flakyProxy(server.url);
  cleanups.push(() => proxy.close());
  await tabAndRoomRecover({ via: server, other: server, back: server, proxy, prefix: "tr1" });
});

test("two nodes: a reader's tab and a consultant recover on the other node", { skip: !haveRedis }, async () => {
  const redis = await redisServer();
  cleanups.push(() => redis.stop());
  const a = await startServer({ REDIS_URL: redis.url, NODE_ID: "tr-a" });
  const b = await startServer({ REDIS_URL: redis.url, NODE_ID: "tr-b" });
  cleanups.push(() => a.stop());
  cleanups.push(() => b.stop());
  const proxy = await flakyProxy(a.url);
  cleanups.push(() => proxy.close());
  await tabAndRoomRecover({ via: a, other: b, back: b, proxy, prefix: "tr2", beforeReconnect: () => proxy.retarget(b.url) });
});
