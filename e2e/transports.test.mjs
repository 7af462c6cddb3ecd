// Both Engine.IO transports, the upgrade between them, the advertised maxPayload, and CORS.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, as, got, until } from "./helpers.mjs";

let server;
before(async () => {
  server = await startServer({ MAX_PACKET_BYTES: "40000", MAX_EVENT_BYTES: "16384" });
});
after(() => server.stop());

test("long-polling only: events, acks and deliveries work", async () => {
  const c = await as(server, "tp-c", "consultant", { transports: ["polling"] });
  await c.emitWithAck("subscribe-consultant", { consultantId: "tp-c" });
  const r = await as(server, "tp-r", "reader", { transports: ["polling"] });
  assert.equal(r.io.engine.transport.name, "polling");
  const ack = await r.emitWithAck("reader-event", { eventType: "POLLED" });
  assert.equal(ack.ok, true);
  await until(() => got(c, "reader-activity").some((a) => a.id === ack.eventId), 3000, "delivery over polling");
});

test("polling then upgrade to websocket, as browsers connect by default", async () => {
  const r = await as(server, "tp-up", "reader", { transports: ["polling", "websocket"] });
  await until(() => r.io.engine.transport.name === "websocket", 3000, "upgrade");
  assert.equal((await r.emitWithAck("reader-event", { eventType: "UPGRADED" })).ok, true);
});

test("the handshake advertises maxPayload = MAX_PACKET_BYTES", async () => {
  const res = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`);
  const body = await res.text();
  const open = JSON.parse(body.slice(body.indexOf("{")));
  assert.equal(open.maxPayload, 40000);
});

test("CORS allows the configured origins with credentials, and no others", async () => {
  const allowed = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, {
    headers: { origin: "http://localhost:5173" },
  });
  assert.equal(allowed.headers.get("access-control-allow-origin"), "http://localhost:5173");
  assert.equal(allowed.headers.get("access-control-allow-credentials"), "true");
  const other = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, {
    headers: { origin: "http://evil.example" },
  });
  assert.equal(other.headers.get("access-control-allow-origin"), null);
});
