// Exactly once over flaky links: reader apps and dashboards use the client library
// (`clients/js`, over the official socket.io-client) through TCP proxies that cut their
// connections at random, in both directions, while readers send and dashboards watch; beside them
// a dashboard written against the plain official client, which relies on its own connection state
// recovery alone. Every event a reader app was asked to send must be stored exactly once and reach
// every dashboard exactly once, in one order; on one node, and on two over a redis-server of this
// test's own (skipped loudly without one, failing with ALICE_REQUIRE_SERVICES=1).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { ReaderClient, DashboardClient } from "../clients/js/index.js";
import { startServer, as, sleep, token, flakyProxy, eventually, haveRedis as redisOnPath, redisServer } from "./helpers.mjs";

const haveRedis = redisOnPath("the two-node flaky-link test");

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const EVENTS_PER_READER = 30;
const fast = { reconnectionDelay: 50, reconnectionDelayMax: 300, timeout: 2000 };

/** Every event of `user` the server lists, asked directly (not through a proxy). */
async function storedOf(server, user) {
  const admin = await as(server, `fl-admin-${user}`, "admin");
  const page = await admin.emitWithAck("get-recent-events", { userId: user, limit: 200 });
  admin.close();
  assert.equal(page.ok, true, JSON.stringify(page));
  assert.equal(page.hasMore, false);
  return page.events.map((e) => e.id);
}

async function run(nodes, tag) {
  const proxies = [];
  for (const node of nodes) {
    const p = await flakyProxy(node.url, { minMs: 60, maxMs: 250 });
    cleanups.push(() => p.close());
    proxies.push(p);
  }
  const via = (i) => proxies[i % proxies.length].url;

  const dashboards = [0, 1].map((i) => {
    const view = { ids: [], raw: 0, resumes: [], recovered: 0 };
    const client = new DashboardClient(via(i + 1), {
      token: token(`${tag}-c${i}`, "consultant"),
      consultantId: `${tag}-c${i}`,
      eventTypes: ["FL"],
      socketOptions: fast,
      onActivity: (e) => view.ids.push(e.id),
      onSubscribed: (reply) => view.resumes.push(reply.resumed),
    });
    client.socket.on("reader-activity", () => view.raw++);
    client.socket.on("connect", () => client.socket.recovered && view.recovered++);
    cleanups.push(() => client.close());
    return { client, view };
  });
  // The plain official client, as an app would write it: it subscribes when a connection was not
  // recovered (the first), and has its emits retried until answered; the rest is the client's own
  // connection state recovery.
  const plain = io(via(0), {
    auth: { token: token(`${tag}-p`, "consultant") },
    transports: ["websocket"],
    forceNew: true,
    retries: 100,
    ackTimeout: 1000,
    ...fast,
  });
  cleanups.push(() => plain.close());
  const plainView = { ids: [], connects: 0, fresh: 0, subscribed: false };
  plain.on("reader-activity", (e) => plainView.ids.push(e.id));
  plain.on("connect", () => {
    plainView.connects++;
    if (plain.recovered) return;
    plainView.fresh++;
    plain
      .emitWithAck("subscribe-consultant", { consultantId: `${tag}-p`, eventTypes: ["FL"] })
      .then((reply) => (plainView.subscribed = reply.ok === true));
  });
  await eventually("the dashboards to subscribe", () => dashboards.every((d) => d.view.resumes.length > 0), 30_000);
  await eventually("the plain client to subscribe", () => plainView.subscribed, 30_000);

  for (const p of proxies) p.startCutting();
  const readers = [0, 1, 2].map((k) => {
    const client = new ReaderClient(via(k), { token: token(`${tag}-r${k}`, "reader"), ackTimeoutMs: 1500, socketOptions: fast });
    cleanups.push(() => client.close());
    return client;
  });
  const receipts = await Promise.all(
    readers.map(async (reader, k) => {
      const sent = [];
      for (let n = 0; n < EVENTS_PER_READER; n++) {
        // Halfway through, every link of the first proxy drops at once: the plain client surely
        // misses events while it reconnects.
        if (k === 0 && n === EVENTS_PER_READER / 2) proxies[0].cutAll();
        sent.push(reader.send("FL", { k, n }));
        await sleep(70); // within the reader rate limit
      }
      return Promise.all(sent);
    }),
  );
  for (const p of proxies) p.stopCutting();
  const cuts = proxies.reduce((n, p) => n + p.cuts(), 0);
  assert.ok(cuts >= 5, `the links were cut (${cuts} times)`);

  const ids = receipts.flat().map((r) => r.eventId);
  assert.equal(new Set(ids).size, ids.length, "one event per send, whatever was resent");
  const duplicates = receipts.flat().filter((r) => r.duplicate).length;

  for (let k = 0; k < readers.length; k++) {
    const expected = receipts[k].map((r) => r.eventId).sort();
    let stored = [];
    await eventually(
      `reader ${k}'s events in the store`,
      async () => {
        stored = await storedOf(nodes[nodes.length - 1], `${tag}-r${k}`);
        return stored.length >= expected.length;
      },
      30_000,
    );
    assert.deepEqual(stored.sort(), expected, `reader ${k}: stored exactly once`);
  }
  const views = [...dashboards.map((d) => d.view), plainView];
  await eventually("every event on every dashboard", () => views.every((v) => v.ids.length >= ids.length), 30_000).catch(
    (e) => {
      throw new Error(`${e.message}: ${views.map((v) => v.ids.length)} of ${ids.length}, plain ${JSON.stringify(plainView)}`);
    },
  );
  await sleep(300);
  for (const view of views) {
    assert.equal(view.ids.length, ids.length, "nothing twice");
    assert.deepEqual([...view.ids].sort(), [...ids].sort(), "every acknowledged event");
  }
  assert.ok(plainView.connects > 1, `the plain client's link was cut (${plainView.connects} connects)`);
  assert.equal(plainView.fresh, 1, "every reconnect of the plain client recovered");
  if (dashboards.every((d) => d.view.resumes.every((r) => r !== false))) {
    assert.deepEqual(dashboards[0].view.ids, dashboards[1].view.ids, "one order");
    assert.deepEqual(plainView.ids, dashboards[0].view.ids, "one order, the plain client's too");
  }
  const raw = dashboards.map((d) => d.view.raw - d.view.ids.length);
  console.log(
    `${tag}: ${ids.length} events, ${cuts} cuts, ${duplicates} answered as duplicates, ` +
      `recovered ${dashboards.map((d) => d.view.recovered)} (plain client: ${plainView.connects - plainView.fresh} of ${plainView.connects - 1} reconnects), ` +
      `resumed with since ${dashboards.map((d) => d.view.resumes.length - 1)}, repeats the library dropped ${raw}`,
  );
  // The server itself repeats nothing to a dashboard that resumed.
  assert.deepEqual(raw, [0, 0], "no repeats reached the library");
}

test("one node: every event stored once and shown once on every dashboard", async () => {
  const server = await startServer();
  cleanups.push(() => server.stop());
  await run([server], "fl1");
});

test("two nodes: every event stored once and shown once on every dashboard", { skip: !haveRedis }, async () => {
  const redis = await redisServer();
  cleanups.push(() => redis.stop());
  const a = await startServer({ REDIS_URL: redis.url, NODE_ID: "fl-a" });
  const b = await startServer({ REDIS_URL: redis.url, NODE_ID: "fl-b" });
  cleanups.push(() => a.stop());
  cleanups.push(() => b.stop());
  await run([a, b], "fl2");
});
