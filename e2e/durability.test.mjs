// Accepted events survive a restart: stored once, served by get-recent-events and /stats after it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer, as, token, http } from "./helpers.mjs";

test("events accepted before a graceful restart are there after it, once each", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "alice-durable-"));
  try {
    const first = await startServer({ READER_EVENT_BURST: "200" }, { dataDir });
    const r = await as(first, "dur-r", "reader");
    const ids = [];
    const sends = [];
    for (let i = 0; i < 150; i++) sends.push(r.emitWithAck("reader-event", { eventType: "DURABLE", data: { i } }));
    for (const ack of await Promise.all(sends)) {
      assert.equal(ack.ok, true);
      ids.push(ack.eventId);
    }
    const status = await first.stop({ keepData: true });
    assert.equal(status.code, 0, "a graceful stop flushes the queue and exits 0");

    const second = await startServer({}, { dataDir });
    try {
      const c = await as(second, "dur-c", "consultant");
      const seen = [];
      let since;
      for (;;) {
        const page = await c.emitWithAck("get-recent-events", { userId: "dur-r", limit: 100, ...(since ? { since } : {}) });
        assert.equal(page.ok, true);
        if (!since) {
          // Newest first without a cursor; start paging forward from before the oldest.
          assert.equal(page.events[0].id, ids.at(-1));
          const oldest = await c.emitWithAck("get-recent-events", { userId: "dur-r", since: "00000000-0000-7000-8000-000000000000", limit: 100 });
          seen.push(...oldest.events.map((e) => e.id));
          since = seen.at(-1);
          if (!oldest.hasMore) break;
          continue;
        }
        seen.push(...page.events.map((e) => e.id));
        since = seen.at(-1);
        if (!page.hasMore) break;
      }
      assert.deepEqual(seen, ids, "every accepted event, once, in order");
      const stats = await http(second, "/stats", { bearer: token("dur-c", "consultant") });
      assert.equal(stats.status, 200);
      const row = stats.body.dashboardStats.find((x) => x.eventType === "DURABLE");
      assert.equal(row.eventCount, 150);
      assert.equal(row.uniqueUsers, 1);
      assert.match(row.hour, /T\d\d:00:00\.000Z$/);
    } finally {
      await second.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
