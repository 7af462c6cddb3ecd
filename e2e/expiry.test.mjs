// Token expiry and refresh-token.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, token, connect, next, sleep } from "./helpers.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(() => server.stop());

const now = () => Math.floor(Date.now() / 1000);

test("an expiring token gets TOKEN_EXPIRED then a disconnect", async () => {
  const s = await connect(server, token("x1", "reader", { exp: now() + 2 }));
  const err = next(s, "event-error", 5000);
  const gone = next(s, "disconnect", 5000);
  assert.equal((await err).code, "TOKEN_EXPIRED");
  assert.equal(await gone, "io server disconnect");
});

test("refresh-token before expiry keeps the socket", async () => {
  const s = await connect(server, token("x2", "reader", { exp: now() + 2 }));
  const fresh = token("x2", "reader", { exp: now() + 3600 });
  const reply = next(s, "token-refreshed");
  const ack = await s.emitWithAck("refresh-token", { token: fresh });
  assert.equal(ack.ok, true);
  assert.equal(new Date(ack.expiresAt).getTime(), (now() + 3600) * 1000);
  assert.match(ack.expiresAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual(await reply, { expiresAt: ack.expiresAt });
  await sleep(3000);
  assert.ok(s.connected);
});

test("refresh-token errors", async () => {
  const s = await connect(server, token("x3", "reader"));
  const code = async (tok) => (await s.emitWithAck("refresh-token", { token: tok })).error?.code;
  assert.equal(await code("nonsense"), "INVALID_PAYLOAD");
  assert.equal(await code(token("x3", "reader", { exp: now() - 5 })), "TOKEN_EXPIRED");
  assert.equal(await code(token("someone-else", "reader")), "FORBIDDEN");
  assert.equal(await code(token("x3", "consultant")), "FORBIDDEN");
  assert.equal(await code(token("x3", "authenticated")), "FORBIDDEN");
  assert.ok(s.connected);
});
