// The client library against the real server binary (see ../../e2e/helpers.mjs): receipts,
// typed errors, retries of RATE_LIMITED, the queue kept in a storage adapter across a restart of
// the app, and a dashboard that resumes after its link drops.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { ReaderClient, DashboardClient, AliceError } from "../index.js";
import { startServer, token, sleep, flakyProxy, eventually } from "../../../e2e/helpers.mjs";

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function server(env) {
  const s = await startServer(env);
  cleanups.push(() => s.stop());
  return s;
}

/** A storage adapter like localStorage, in memory. */
class MemoryStorage {
  items = new Map();
  getItem(key) {
    return this.items.get(key) ?? null;
  }
  setItem(key, value) {
    this.items.set(key, value);
  }
}

test("send resolves with the receipt; an event the server refuses rejects with its code", async () => {
  const s = await server();
  const reader = new ReaderClient(s.url, { token: token("js-r1", "reader") });
  cleanups.push(() => reader.close());
  const receipt = await reader.send("JS_PAGE", { page: 1 });
  assert.equal(receipt.ok, true);
  assert.equal(receipt.duplicate, false);
  assert.match(receipt.eventId, /^[0-9a-f-]{36}$/);
  await assert.rejects(reader.send("not a type"), (e) => e instanceof AliceError && e.code === "INVALID_PAYLOAD");
  assert.equal(reader.pending, 0);
});

test("RATE_LIMITED is waited out and retried, in order", async () => {
  const s = await server({ READER_EVENT_RATE: "5", READER_EVENT_BURST: "2" });
  const reader = new ReaderClient(s.url, { token: token("js-r2", "reader") });
  cleanups.push(() => reader.close());
  const receipts = await Promise.all([0, 1, 2, 3, 4, 5].map((n) => reader.send("JS_RATE", { n })));
  assert.ok(receipts.every((r) => r.ok && !r.duplicate));
  const admin = await new Promise((resolve) => {
    const d = new DashboardClient(s.url, { token: token("js-a", "admin"), consultantId: "js-a" });
    cleanups.push(() => d.close());
    d.socket.once("connect", () => resolve(d.socket));
  });
  const page = await admin.emitWithAck("get-recent-events", { userId: "js-r2", limit: 10 });
  assert.deepEqual(page.events.map((e) => e.eventData.n).reverse(), [0, 1, 2, 3, 4, 5], "each once, in order");
});

test("unacknowledged events wait in storage and go out, once, when the app comes back", async () => {
  const s = await server();
  const storage = new MemoryStorage();
  // The first run of the app cannot reach the server (nothing listens there) and is closed.
  const offline = new ReaderClient("http://127.0.0.1:9", { token: token("js-r3", "reader"), storage, socketOptions: { reconnection: false } });
  const lost = [offline.send("JS_KEPT", { n: 0 }), offline.send("JS_KEPT", { n: 1 })];
  offline.close();
  await Promise.allSettled(lost);
  assert.equal(JSON.parse(storage.getItem("alice-realtime:unacknowledged")).length, 2);
  const back = new ReaderClient(s.url, { token: token("js-r3", "reader"), storage });
  cleanups.push(() => back.close());
  await eventually("the kept events to go out", () => back.pending === 0);
  assert.equal(JSON.parse(storage.getItem("alice-realtime:unacknowledged")).length, 0);
  const dash = new DashboardClient(s.url, { token: token("js-c3", "consultant"), consultantId: "js-c3" });
  cleanups.push(() => dash.close());
  await eventually("the dashboard", () => dash.socket.connected);
  const page = await dash.socket.emitWithAck("get-recent-events", { userId: "js-r3", limit: 10 });
  assert.deepEqual(page.events.map((e) => e.eventData.n).reverse(), [0, 1]);
});

test("a dashboard whose link drops resumes where it stopped: each event once, in order", async () => {
  const s = await server();
  const proxy = await flakyProxy(s.url, { minMs: 100, maxMs: 300 });
  cleanups.push(() => proxy.close());
  const got = [];
  const subscriptions = [];
  const dash = new DashboardClient(proxy.url, {
    token: token("js-c4", "consultant"),
    consultantId: "js-c4",
    eventTypes: ["JS_LIVE"],
    onActivity: (e) => got.push(e.id),
    onSubscribed: (reply) => subscriptions.push(reply),
    socketOptions: { reconnectionDelay: 50, reconnectionDelayMax: 200 },
  });
  cleanups.push(() => dash.close());
  let reconnects = 0;
  let recovered = 0;
  dash.socket.io.on("reconnect", () => reconnects++);
  dash.socket.on("connect", () => dash.socket.recovered && recovered++);
  await eventually("the first subscription", () => subscriptions.length === 1);
  const reader = new ReaderClient(s.url, { token: token("js-r4", "reader") });
  cleanups.push(() => reader.close());
  proxy.startCutting();
  const ids = [];
  for (let n = 0; n < 40; n++) {
    ids.push((await reader.send("JS_LIVE", { n })).eventId);
    await sleep(60);
  }
  proxy.stopCutting();
  await eventually("every event", () => got.length >= ids.length);
  await sleep(200);
  assert.ok(reconnects > 0, "the link dropped and the dashboard came back");
  // The server recovers the connection itself, or the dashboard resumes with `since`; a connection
  // cut again before either answered counts a reconnect with neither (the next one does it).
  assert.ok(recovered + subscriptions.length - 1 <= reconnects, JSON.stringify({ recovered, reconnects, subscriptions }));
  assert.ok(recovered + subscriptions.length - 1 > 0, "recovered or resumed at least once");
  assert.ok(subscriptions.slice(1).every((r) => r.resumed === true), JSON.stringify(subscriptions));
  assert.deepEqual(got, ids);
});
