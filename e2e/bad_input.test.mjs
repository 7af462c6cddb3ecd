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

/** Sends `frames` on a fresh connection, then a probe that asks for an ack; says what came back. */
async function outcome(frames) {
  const { ws, frames: got, closed } = await raw(token(`bi-raw-${Math.random()}`, "reader"));
  const from = got.length;
  for (const f of frames) if (ws.readyState === WebSocket.OPEN) ws.send(f);
  if (ws.readyState === WebSocket.OPEN) ws.send('4299["probe-x"]');
  const answered = () => got.slice(from).some((f) => f.startsWith("4399"));
  const ended = await Promise.race([
    closed.then(() => true),
    until(answered, 3000, "the probe's ack").then(() => false),
  ]);
  const replies = got.slice(from).filter((f) => f.startsWith("42")).map((f) => JSON.parse(f.slice(2)));
  ws.close();
  return { closed: ended, errors: replies.filter(([name, e]) => name === "event-error" && e.event !== "probe-x") };
}

// Each bad frame on its own connection, with its exact outcome: a packet Socket.IO cannot parse
// closes that connection (as the official server does); a well-formed event with a bad payload
// gets exactly one event-error and the connection carries on.
const closes = [
  ["42", "no event"], ["42[", "truncated JSON"], ["42{}", "not an array"], ["42[1,2]", "a name that is not a string"],
  ["42[null]", "a null name"], ['42["reader-event",', "a truncated argument"],
  ['42["reader-event",{"eventType":"T"}', "an unclosed array"], ["49", "an unknown Socket.IO type"],
  ["4", "no Socket.IO type"], ['43["x"]', "an ack nobody asked for"], ["4x", "a letter for a type"],
  ["7", "an unknown Engine.IO type"], ["\u00ff\u0000", "not a packet"],
  ["42" + "[".repeat(500) + "]".repeat(500), "nested arrays with no name"],
  ['451-["reader-event",{"_placeholder":true,"num":0}]', "an attachment announced, text sent instead"],
];
for (const [frame, what] of closes) {
  test(`a packet Socket.IO cannot parse closes that connection: ${what}`, async () => {
    const { closed, errors } = await outcome([frame]);
    assert.equal(closed, true);
    assert.deepEqual(errors, []);
  });
}

const refused = [
  ['42["reader-event"]', "reader-event", "Payload must be an object"],
  ['42["reader-event",{"eventType":{"$gt":""}}]', "reader-event", "eventType must be"],
  ['42["join-room",[[[[[]]]]]]', "join-room", "Room must be"],
  ['421["get-recent-events",{"limit":"all"}]', "get-recent-events", "limit must be"],
  ['42["reader-event",{"eventType":"T","data":' + "[".repeat(500) + "]".repeat(500) + "}]", "reader-event", "data is nested deeper than 32 levels"],
  ['42["steal-everything",{}]', "steal-everything", "Unknown event"],
];
for (const [frame, event, message] of refused) {
  test(`a bad payload gets one event-error and the connection stays: ${frame.slice(0, 48)}`, async () => {
    const { closed, errors } = await outcome([frame]);
    assert.equal(closed, false);
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.equal(errors[0][1].event, event);
    assert.ok(errors[0][1].message.startsWith(message), errors[0][1].message);
  });
}

test("binary attachments on an event are INVALID_PAYLOAD, and the connection stays", async () => {
  const { closed, errors } = await outcome(['451-["reader-event",{"eventType":"T","data":{"_placeholder":true,"num":0}}]', Buffer.from([1, 2, 3])]);
  assert.equal(closed, false);
  assert.equal(errors.length, 1);
  assert.equal(errors[0][1].code, "INVALID_PAYLOAD");
  assert.match(errors[0][1].message, /Binary attachments/);
});

test("after all of that, everyone else is fine", async () => {
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
