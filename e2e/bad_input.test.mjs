// Bad input harms only its sender: malformed packets, oversized packets, deep JSON and floods get
// errors or a closed connection, and everyone else carries on.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { startServer, as, token, got, next, until, barrier, http } from "./helpers.mjs";

let server;
before(async () => {
  server = await startServer({ MAX_PACKET_BYTES: "65536" });
});
after(() => server.stop());

/** A raw Engine.IO websocket that has completed the Socket.IO CONNECT. */
async function raw(tok) {
  const url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket";
  const ws = new WebSocket(url);
  const frames = [];
  ws.on("message", (m) => {
    const s = m.toString();
    frames.push(s);
    if (s === "2") ws.send("3");
  });
  await new Promise((r, j) => { ws.once("open", r); ws.once("error", j); });
  await until(() => frames.some((f) => f.startsWith("0{")), 3000, "engine.io open");
  ws.send(`40${JSON.stringify({ token: tok })}`);
  await until(() => frames.some((f) => f.startsWith("40")), 3000, "socket.io connect");
  return { ws, frames, closed: new Promise((r) => ws.once("close", r)) };
}

async function everyoneElseIsFine() {
  const c = await as(server, "bi-watch", "consultant");
  await c.emitWithAck("subscribe-consultant", { consultantId: "bi-watch" });
  const r = await as(server, "bi-ok-reader", "reader");
  await r.emitWithAck("reader-event", { eventType: "STILL_FINE" });
  await until(() => got(c, "reader-activity").some((a) => a.eventType === "STILL_FINE"), 3000, "delivery");
  const health = await http(server, "/health");
  assert.equal(health.status, 200);
  assert.equal(health.body.status, "ok");
  c.close();
  r.close();
}

test("malformed Socket.IO packets get errors or are dropped; the server carries on", async () => {
  const { ws, frames } = await raw(token("bi-raw", "reader"));
  const garbage = [
    "42", "42[", "42{}", "42[1,2]", "42[null]", '42["reader-event",', '42["reader-event"]',
    '42["reader-event",{"eventType":{"$gt":""}}]', "49", "4", '43["x"]', '42["join-room",[[[[[]]]]]]',
    "42" + "[".repeat(500) + "]".repeat(500), '421["get-recent-events",{"limit":"all"}]',
  ];
  for (const g of garbage) if (ws.readyState === WebSocket.OPEN) ws.send(g);
  // Whether the server answered each with event-error or closed this one connection, nothing
  // else may be harmed.
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(frames.some((f) => f.includes("event-error")) || ws.readyState !== WebSocket.OPEN);
  ws.close();
  await everyoneElseIsFine();
});

test("deep JSON within the packet limit is INVALID_PAYLOAD", async () => {
  const r = await as(server, "bi-deep", "reader");
  let deep = 1;
  for (let i = 0; i < 300; i++) deep = [deep];
  const ack = await r.emitWithAck("reader-event", { eventType: "DEEP", data: deep });
  assert.equal(ack.error.code, "INVALID_PAYLOAD");
  assert.ok(r.connected);
});

test("a packet larger than MAX_PACKET_BYTES closes that connection only", async () => {
  const r = await as(server, "bi-huge", "reader");
  const closed = next(r, "disconnect", 5000);
  r.emit("reader-event", { eventType: "HUGE", data: "x".repeat(70 * 1024) });
  assert.match(await closed, /transport (close|error)/);
  await everyoneElseIsFine();
});

test("a flood is rate limited, the connection stays, others are served", async () => {
  const r = await as(server, "bi-flood", "reader");
  let errors = 0;
  r.on("event-error", (e) => { if (e.code === "RATE_LIMITED") errors++; });
  for (let i = 0; i < 2000; i++) r.emit("reader-event", { eventType: "FLOOD" });
  await barrier(r);
  await until(() => got(r, "reader-event-received").length + errors === 2000, 5000, "all answered");
  assert.ok(errors >= 1900, `most of the flood is refused: ${errors}`);
  assert.ok(r.connected);
  await everyoneElseIsFine();
});
