// Shared helpers for the end-to-end suite: start the real server binary with its own data
// directory and environment, sign tokens, and connect the official socket.io-client.
import { spawn, spawnSync } from "node:child_process";
import { createServer, connect as netConnect } from "node:net";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

export const SECRET = "e2e-secret-0123456789abcdef";
const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.ALICE_BIN ?? join(here, "..", "target", "debug", "alice-realtime");

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A failed test must not leave a server running (the runner would wait for it forever).
const children = new Set();
process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

/** Starts a server; resolves once it listens. `env` overrides the defaults. */
export async function startServer(env = {}, { dataDir } = {}) {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), "alice-e2e-"));
  const child = spawn(BIN, [], {
    env: {
      PATH: process.env.PATH,
      JWT_SECRET: SECRET,
      REALTIME_PORT: "0",
      HOST: "127.0.0.1",
      DATA_DIR: dir,
      LOG_FORMAT: "json",
      LOG_LEVEL: "info",
      ...env,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  children.add(child);
  // Unreferenced, so a failed test's leftover server cannot keep the runner alive; the exit
  // hook above kills it.
  child.unref();
  child.stderr.unref();
  child.on("exit", () => children.delete(child));
  const logs = [];
  const lines = createInterface({ input: child.stderr });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start:\n" + logs.join("\n"))), 15000);
    lines.on("line", (line) => {
      logs.push(line);
      try {
        const entry = JSON.parse(line);
        if (entry.fields?.message === "Alice Realtime listening") {
          clearTimeout(timer);
          resolve(`http://${entry.fields.addr}`);
        }
      } catch {}
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${logs.join("\n")}`));
    });
  });
  const exited = new Promise((r) => child.on("exit", (code, signal) => r({ code, signal })));
  const sockets = [];
  return {
    url,
    dir,
    logs,
    child,
    sockets,
    /** Stops with SIGTERM (a graceful shutdown); resolves with the exit status. */
    async stop({ keepData = false } = {}) {
      for (const s of sockets) s.close();
      child.ref();
      if (child.exitCode === null) child.kill("SIGTERM");
      const status = await exited;
      if (!keepData && !dataDir) rmSync(dir, { recursive: true, force: true });
      return status;
    },
  };
}

function b64url(value) {
  return Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
}

/** An HS256 token. `claims` override the defaults (sub, role, exp one hour ahead). */
export function token(sub, role, claims = {}, secret = SECRET) {
  const payload = { sub, role, iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 3600, ...claims };
  for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
  const body = `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url(payload)}`;
  const sig = createHmac("sha256", secret).update(body).digest("base64url");
  return `${body}.${sig}`;
}

/** Connects; resolves with the socket, or rejects with the connect_error message. */
export function connect(server, tok, opts = {}) {
  const socket = io(server.url, {
    auth: tok === undefined ? undefined : { token: tok },
    transports: ["websocket"],
    reconnection: false,
    forceNew: true,
    ...opts,
  });
  server.sockets.push(socket);
  socket.received = [];
  socket.onAny((event, payload) => socket.received.push({ event, payload }));
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => {
      socket.close();
      reject(err);
    });
  });
}

/** Connects a user by role. */
export const as = (server, sub, role, opts) => connect(server, token(sub, role), opts);

/** Payloads of `event` a socket has received so far. */
export const got = (socket, event) => socket.received.filter((m) => m.event === event).map((m) => m.payload);

/** Waits until `fn()` is true, or fails after `ms`. */
export async function until(fn, ms = 3000, what = "condition") {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (fn()) return;
    await sleep(10);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Waits until `check()` (which may be async) is true, or fails after `ms`. */
export async function eventually(what, check, ms = 10_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Waits for the next `event` on a socket. */
export const next = (socket, event, ms = 3000) =>
  new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    socket.once(event, (p) => {
      clearTimeout(t);
      resolve(p);
    });
  });

/** A round trip that proves every earlier message from this socket was handled. */
export const barrier = (socket) => socket.emitWithAck("leave-room", "barrier");

/** GET/PUT/POST JSON from the server; `body` (a value, or text as it is) is sent as JSON. */
export async function http(server, path, { method = "GET", bearer, body } = {}) {
  const headers = bearer ? { authorization: `Bearer ${bearer}` } : {};
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(server.url + path, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    answer = text;
  }
  return { status: res.status, body: answer };
}

/**
 * Whether redis-server is on the PATH. Without it the caller's cluster tests skip, saying so
 * loudly, or fail when ALICE_REQUIRE_SERVICES=1.
 */
export function haveRedis(what) {
  if (spawnSync("redis-server", ["--version"]).status === 0) return true;
  if (process.env.ALICE_REQUIRE_SERVICES === "1") throw new Error("redis-server is required on the PATH");
  console.log(`\n*** SKIPPED: redis-server is not on the PATH; ${what} did not run ***\n`);
  return false;
}

/** A redis-server of the caller's own on a free port; `stop()` kills it and removes its files. */
export async function redisServer() {
  const port = await new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
  const dir = mkdtempSync(join(tmpdir(), "alice-redis-"));
  const child = spawn("redis-server", ["--bind", "127.0.0.1", "--port", String(port), "--save", "", "--dir", dir], {
    stdio: "ignore",
  });
  children.add(child);
  child.on("exit", () => children.delete(child));
  await sleep(300);
  return {
    url: `redis://127.0.0.1:${port}`,
    stop() {
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A TCP proxy in front of `url` that cuts its connections at random while `cutting`: a cut closes
 * both directions at once, or first stops one direction (so a request or its answer is lost) and
 * closes the rest a moment later. Returns its URL and a count of cuts.
 */
export async function flakyProxy(url, { minMs = 150, maxMs = 700 } = {}) {
  let target = new URL(url);
  const pairs = new Set();
  let cuts = 0;
  let timer;
  const server = createServer((client) => {
    const upstream = netConnect(Number(target.port), target.hostname);
    const pair = { client, upstream };
    pairs.add(pair);
    const close = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on("error", close);
      s.on("close", close);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const cut = () => {
    const list = [...pairs];
    if (list.length > 0) {
      const { client, upstream } = list[Math.floor(Math.random() * list.length)];
      cuts++;
      const how = Math.floor(Math.random() * 3);
      if (how === 0) {
        client.destroy();
        upstream.destroy();
      } else {
        // One direction goes silent first: what crosses it meanwhile is lost.
        if (how === 1) upstream.unpipe(client);
        else client.unpipe(upstream);
        setTimeout(() => (client.destroy(), upstream.destroy()), 50 + Math.random() * 150);
      }
    }
    timer = setTimeout(cut, minMs + Math.random() * (maxMs - minMs));
  };
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    cuts: () => cuts,
    startCutting: () => (timer = setTimeout(cut, minMs)),
    /** Closes every connection now. */
    cutAll: () => {
      for (const { client, upstream } of pairs) (client.destroy(), upstream.destroy());
    },
    /** New connections go to `next` from now on. */
    retarget: (next) => (target = new URL(next)),
    stopCutting: () => clearTimeout(timer),
    close: () => {
      clearTimeout(timer);
      for (const { client, upstream } of pairs) (client.destroy(), upstream.destroy());
      server.close();
    },
  };
}

/**
 * A PostgreSQL database of the caller's own on the server of `ALICE_TEST_DATABASE_URL` (or the
 * local one), made and dropped with psql; `null` when there is none, said loudly (a failure with
 * ALICE_REQUIRE_SERVICES=1). `sql(text)` runs a statement in it, as an admin tool would.
 */
export function postgresDb(what) {
  const admin = process.env.ALICE_TEST_DATABASE_URL ?? "postgres://root@127.0.0.1:5432/test";
  const psql = (url, sql) => spawnSync("psql", [url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], { encoding: "utf8" });
  const probe = psql(admin, "SELECT 1");
  if (probe.error || probe.status !== 0) {
    if (process.env.ALICE_REQUIRE_SERVICES === "1") throw new Error(`PostgreSQL is required at ${admin}`);
    console.log(`\n*** SKIPPED: no PostgreSQL at ${admin} (or no psql); ${what} did not run ***\n`);
    return null;
  }
  const name = `alice_e2e_${process.pid}_${Math.floor(Math.random() * 1e9)}`;
  const made = psql(admin, `CREATE DATABASE ${name}`);
  if (made.status !== 0) throw new Error(`cannot create a database: ${made.stderr}`);
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    sql(text) {
      const r = psql(url.toString(), text);
      if (r.status !== 0) throw new Error(`psql failed: ${r.stderr}`);
      return r.stdout.trim();
    },
    drop() {
      psql(admin, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

