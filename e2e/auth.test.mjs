// Authentication on connect: where the token comes from, and every connect_error message.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, token, connect } from "./helpers.mjs";

let server;
before(async () => {
  server = await startServer({ HANDSHAKES_PER_MINUTE: "3", MAX_CONNECTIONS_PER_USER: "2" });
});
after(() => server.stop());

const refusal = (tok, opts) =>
  connect(server, tok, opts).then(
    (s) => { s.close(); return "connected"; },
    (e) => e.message,
  );
const now = () => Math.floor(Date.now() / 1000);

test("a token in the auth object or the Authorization header is accepted", async () => {
  const a = await connect(server, token("h1", "reader"));
  assert.ok(a.connected);
  const b = await connect(server, undefined, { extraHeaders: { authorization: `Bearer ${token("h2", "reader")}` } });
  assert.ok(b.connected);
});

test("each refusal has its exact message", async () => {
  assert.equal(await refusal(undefined), "Authentication token required");
  assert.equal(await refusal("garbage"), "Invalid authentication token");
  assert.equal(await refusal(token("u", "reader", {}, "some-other-secret-value")), "Invalid authentication token");
  assert.equal(await refusal(token("u", "reader", { exp: undefined })), "Invalid authentication token");
  assert.equal(await refusal(token(undefined, "reader")), "Invalid authentication token");
  assert.equal(await refusal(token("u", "reader", { exp: now() - 10 })), "Authentication token expired");
  assert.equal(await refusal(token("u", "authenticated")), "Insufficient permissions");
  assert.equal(await refusal(token("u", "superuser")), "Insufficient permissions");
});

test("Supabase tokens carry the role in app_metadata", async () => {
  const tok = token("sb", "authenticated", { app_metadata: { role: "consultant" }, aud: "authenticated" });
  const s = await connect(server, tok);
  const ack = await s.emitWithAck("get-online-readers");
  assert.equal(ack.ok, true);
});

test("a token in the query string is not accepted", async () => {
  const msg = await refusal(undefined, { query: { token: token("q", "reader") } });
  assert.equal(msg, "Authentication token required");
});

test("handshakes are rate limited per user", async () => {
  const results = [];
  for (let i = 0; i < 4; i++) results.push(await refusal(token("hs", "reader")));
  assert.deepEqual(results, ["connected", "connected", "connected", "Rate limit exceeded"]);
  // Another user is unaffected.
  assert.equal(await refusal(token("hs-other", "reader")), "connected");
});

test("too many connections for one user is Server busy", async () => {
  const tok = token("busy", "reader");
  const a = await connect(server, tok);
  const b = await connect(server, tok);
  assert.equal(await refusal(tok), "Server busy");
  a.close();
  b.close();
});
