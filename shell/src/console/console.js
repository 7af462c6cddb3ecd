// The Alice Realtime console: the views a consultant or admin needs, over the official Socket.IO
// browser client. It speaks the same protocol as any client.
"use strict";

// ---- The connection: the official Socket.IO client (vendor/socket.io.min.js) ----
class Realtime {
  constructor(token, handlers) {
    this.on = handlers; // { connect, connectError, disconnect, event(name, payload) }
    this.closedByUs = false;
    // The page signs in again itself after a drop (`signIn`), so the client does not reconnect.
    this.socket = io({ auth: { token }, transports: ["websocket"], reconnection: false });
    this.socket.on("connect", () => this.on.connect());
    this.socket.on("connect_error", (err) => this.on.connectError(err.message));
    this.socket.on("disconnect", () => {
      if (!this.closedByUs) this.on.disconnect();
    });
    this.socket.onAny((name, payload) => this.on.event(name, payload));
  }

  /** Emits an event and resolves with its acknowledgement (rejects after 10 s without one). */
  call(name, payload) {
    const socket = this.socket.timeout(10_000);
    return payload === undefined ? socket.emitWithAck(name) : socket.emitWithAck(name, payload);
  }

  close() {
    this.closedByUs = true;
    this.socket.disconnect();
  }
}

// ---- The page ----
const $ = (id) => document.getElementById(id);
const state = { rt: null, claims: null, token: null, statsTimer: null, reconnectTimer: null };
const CHARTS_EVERY_MS = 10_000;
const charts = new Charts(async () => {
  const reply = await api("/console/activity");
  return reply.ok ? reply.body : null;
});
const MAX_FEED = 200;

function setState(text, kind) {
  $("state").textContent = text;
  $("state").className = `state ${kind}`;
}

function say(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return null;
  }
}

function roleOf(claims) {
  const roles = ["reader", "consultant", "admin"];
  return [claims?.app_metadata?.role, claims?.user_role, claims?.role].find((r) => roles.includes(r));
}

const time = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
const isSupport = (type) => type.includes("HELP_REQUEST") || type.includes("FEEDBACK");

function text(tag, content, cls) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (cls) el.className = cls;
  return el;
}

function eventItem(e, data) {
  const li = document.createElement("li");
  const t = text("time", time(e.timestamp));
  t.dateTime = e.timestamp;
  li.append(t, text("span", `${e.eventType} · ${e.userId}`, `type${isSupport(e.eventType) ? " support" : ""}`));
  if (data !== null && data !== undefined) li.append(text("code", JSON.stringify(data)));
  return li;
}

function showReaders({ count, readers }) {
  $("online-count").textContent = count;
  const rows = readers.map((r) => {
    const tr = document.createElement("tr");
    const name = [r.firstName, r.lastName].filter(Boolean).join(" ");
    tr.append(
      text("td", name ? `${name} (${r.userId})` : r.userId),
      text("td", r.currentBook ?? "—"),
      text("td", r.currentPage ?? "—"),
      text("td", time(r.lastActivity)),
      text("td", r.connections),
    );
    const spark = document.createElement("td");
    spark.className = "spark";
    spark.dataset.user = r.userId;
    charts.fillSparkline(spark);
    tr.append(spark);
    return tr;
  });
  $("readers").replaceChildren(...rows);
}

function addActivity(e) {
  const feed = $("feed");
  feed.prepend(eventItem(e, e.data));
  while (feed.children.length > MAX_FEED) feed.lastChild.remove();
}

function explain(err) {
  switch (err.code) {
    case "RATE_LIMITED": return `Slow down: too many requests. Try again in ${Math.ceil((err.retryAfterMs ?? 1000) / 1000)} s.`;
    case "TOKEN_EXPIRED": return "Your session expired. Paste a fresh token to sign in again.";
    case "UNAUTHORIZED": case "FORBIDDEN": return `Not allowed: ${err.message}.`;
    case "UNAVAILABLE": return "The server is busy and did not accept that. Try again shortly.";
    default: return `The server said: ${err.message}`;
  }
}

async function loadRecent() {
  const reply = await state.rt.call("get-recent-events", { limit: 50 });
  if (!reply.ok) return say(explain(reply.error));
  $("recent").replaceChildren(...reply.events.map((e) => eventItem(e, e.eventData)));
}

async function subscribe() {
  const types = $("filter").value.split(",").map((s) => s.trim()).filter(Boolean);
  const reply = await state.rt.call("subscribe-consultant", { consultantId: state.claims.sub, eventTypes: types });
  if (!reply.ok) return say(explain(reply.error));
  say("");
  $("who").querySelector(".filter").textContent = reply.eventTypes.length ? reply.eventTypes.join(", ") : "every type";
}

async function api(path, init = {}) {
  const headers = { authorization: `Bearer ${state.token}`, "content-type": "application/json" };
  const res = await fetch(path, { ...init, headers }).catch(() => null);
  if (!res) return { ok: false, error: "The server could not be reached." };
  const body = await res.json().catch(() => ({}));
  return res.ok ? { ok: true, body } : { ok: false, error: body.error ?? `The server answered ${res.status}.` };
}

/** A consultant's own assigned readers. */
async function loadMine() {
  const reply = await api("/assignments/mine");
  if (!reply.ok) return say(reply.error);
  $("assigned-card").hidden = false;
  $("assigned-count").textContent = reply.body.readers.length;
  $("assigned").replaceChildren(...reply.body.readers.map((r) => text("li", r)));
}

const assignmentsPath = () => `/admin/assignments/${encodeURIComponent($("assign-consultant").value.trim())}`;

async function loadAssignments() {
  const reply = await api(assignmentsPath());
  if (!reply.ok) return say(reply.error);
  say("");
  $("assign-readers").value = reply.body.readers.join("\n");
}

async function saveAssignments() {
  const readers = $("assign-readers").value.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
  const reply = await api(assignmentsPath(), { method: "PUT", body: JSON.stringify({ readers }) });
  if (!reply.ok) return say(reply.error);
  $("assign-readers").value = reply.body.readers.join("\n");
  say(`Saved: ${reply.body.consultantId} has ${reply.body.readers.length} reader(s).`);
}

async function refreshStats() {
  const res = await fetch("/stats", { headers: { authorization: `Bearer ${state.token}` } }).catch(() => null);
  if (!res || !res.ok) return;
  const s = await res.json();
  const figures = [
    ["Node", s.node],
    ["Connections", s.connections],
    ["Online readers", s.onlineUsersCount],
    ["Events / minute", s.eventsPerMinute],
    ["Queue", s.queueStats.queueSize],
    ["Dead letters", s.queueStats.dlqSize],
    ["Nodes", (s.nodes ?? [s.node]).join(", ")],
  ];
  $("stats").replaceChildren(...figures.map(([k, v]) => {
    const div = document.createElement("div");
    div.append(text("dt", k), text("dd", String(v)));
    return div;
  }));
}

function signIn(token) {
  state.token = token;
  state.claims = claimsOf(token);
  const role = roleOf(state.claims);
  if (!state.claims || !role) return say("That does not look like a token with a role. Paste the whole token.");
  if (role === "reader") return say("This console is for consultants and admins; that token is a reader's.");
  say("");
  setState("Connecting…", "wait");
  state.rt?.close();
  state.rt = new Realtime(token, {
    connect: async () => {
      setState("Live", "on");
      $("signin").hidden = true;
      $("console").hidden = false;
      const who = $("who");
      who.replaceChildren(
        text("strong", `${state.claims.sub}`),
        text("span", ` · ${role} · showing `),
        text("span", "every type", "filter"),
      );
      charts.start(CHARTS_EVERY_MS);
      await subscribe();
      await loadRecent();
      if (role === "consultant") await loadMine();
      if (role === "admin") {
        $("assignments-card").hidden = false;
        $("stats-card").hidden = false;
        await refreshStats();
        clearInterval(state.statsTimer);
        state.statsTimer = setInterval(refreshStats, 2000);
      }
    },
    connectError: (message) => {
      charts.stop();
      setState("Signed out", "off");
      $("signin").hidden = false;
      say(`Could not sign in: ${message}.`);
      state.rt.close();
    },
    disconnect: () => {
      setState("Reconnecting…", "wait");
      clearTimeout(state.reconnectTimer);
      state.reconnectTimer = setTimeout(() => signIn(state.token), 2000);
    },
    event: (name, payload) => {
      if (name === "reader-activity") {
        addActivity(payload);
        charts.nudge();
      } else if (name === "online-readers") {
        showReaders(payload);
        charts.nudge();
      } else if (name === "event-error") {
        if (payload.code === "TOKEN_EXPIRED") {
          clearTimeout(state.reconnectTimer);
          state.rt.closedByUs = true;
          charts.stop();
          setState("Signed out", "off");
          $("signin").hidden = false;
        }
        say(explain(payload));
      }
    },
  });
}

$("signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  signIn($("token").value.trim());
});
$("filter-form").addEventListener("submit", (e) => {
  e.preventDefault();
  subscribe();
});
$("reload-recent").addEventListener("click", () => loadRecent());
$("assign-load").addEventListener("click", () => loadAssignments());
$("assignments-form").addEventListener("submit", (e) => {
  e.preventDefault();
  saveAssignments();
});
