// Presence: a reader is online while any tab is; staff are never listed; pushes are coalesced
// and go only to subscribed sockets.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, as, token, connect, got, sleep, barrier } from "./helpers.mjs";

let server;
before(async () => {
  server = await startServer({ PRESENCE_PUSH_INTERVAL_MS: "300", OTHER_EVENT_BURST: "500", READER_EVENT_BURST: "500" });
});
after(() => server.stop());

const readers = async (c) => (await c.emitWithAck("get-online-readers")).readers;

test("two tabs are one reader; closing one keeps it; closing both removes it", async () => {
  const c = await as(server, "p1-c", "consultant");
  const tab1 = await as(server, "p1-r", "reader");
  const tab2 = await as(server, "p1-r", "reader");
  let me = (await readers(c)).filter((r) => r.userId === "p1-r");
  assert.equal(me.length, 1);
  assert.equal(me[0].connections, 2);
  tab1.close();
  await sleep(100);
  me = (await readers(c)).filter((r) => r.userId === "p1-r");
  assert.equal(me.length, 1, "closing one of two tabs does not remove the reader");
  assert.equal(me[0].connections, 1);
  tab2.close();
  await sleep(100);
  assert.equal((await readers(c)).filter((r) => r.userId === "p1-r").length, 0);
});

test("consultants and admins are not listed; names, book and page are", async () => {
  const c = await as(server, "p2-c", "consultant");
  await as(server, "p2-a", "admin");
  const r = await connect(server, token("p2-r", "reader", { firstName: "Ada", lastName: "Lovelace" }));
  await r.emitWithAck("reader-event", { eventType: "PAGE_TURN", data: { bookId: "moby", page: 12 } });
  const list = await c.emitWithAck("get-online-readers");
  assert.ok(!list.readers.some((x) => x.userId === "p2-c" || x.userId === "p2-a"));
  const me = list.readers.find((x) => x.userId === "p2-r");
  assert.equal(me.firstName, "Ada");
  assert.equal(me.lastName, "Lovelace");
  assert.equal(me.currentBook, "moby");
  assert.equal(me.currentPage, 12);
  assert.match(me.lastActivity, /Z$/);
  await r.emitWithAck("reader-event", { eventType: "PAGE_TURN", data: { currentPage: "xiii" } });
  const again = (await readers(c)).find((x) => x.userId === "p2-r");
  assert.equal(again.currentBook, "moby", "book and page update independently");
  assert.equal(again.currentPage, "xiii", "and keep their JSON type");
  assert.equal(list.readers[0].userId, "p2-r", "most recently active first");
});

test("pushes go to subscribed sockets only, coalesced per interval", async () => {
  const sub = await as(server, "p3-c", "consultant");
  const unsub = await as(server, "p3-c2", "consultant");
  await sub.emitWithAck("subscribe-consultant", { consultantId: "p3-c" });
  await sleep(400);
  const before = got(sub, "online-readers").length;
  const r = await as(server, "p3-r", "reader");
  for (let i = 0; i < 20; i++) await r.emitWithAck("reader-event", { eventType: "P3" });
  await sleep(700);
  await barrier(sub);
  const pushes = got(sub, "online-readers").slice(before);
  assert.ok(pushes.length >= 1, "a change is pushed");
  assert.ok(pushes.length <= 4, `21 changes in ~0.7 s at one push per 300 ms: got ${pushes.length}`);
  const last = pushes.at(-1).readers.find((x) => x.userId === "p3-r");
  assert.ok(last, "the latest push lists the reader");
  await barrier(unsub);
  assert.equal(got(unsub, "online-readers").length, 0);
});
