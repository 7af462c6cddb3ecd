// The console page in a real browser: headless Chromium (Debian's package) driven by
// playwright-core. Skips loudly without Chromium (fails with ALICE_REQUIRE_SERVICES=1).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startServer, as, token } from "./helpers.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  if (process.env.ALICE_REQUIRE_SERVICES === "1") throw new Error(`Chromium is required at ${CHROMIUM}`);
  console.log(`\n*** SKIPPED: no Chromium at ${CHROMIUM}; the console browser test did not run ***\n`);
}
const artifacts = join(dirname(fileURLToPath(import.meta.url)), "artifacts");

let server, browser;
before(async () => {
  if (!haveChromium) return;
  server = await startServer({ PRESENCE_PUSH_INTERVAL_MS: "200" });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  mkdirSync(artifacts, { recursive: true });
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

async function signIn(page, tok) {
  await page.goto(server.url + "/");
  await page.fill("#token", tok);
  await page.click("#signin-form button");
}

test("a consultant signs in and sees readers and their activity live", { skip: !haveChromium }, async () => {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  await signIn(page, token("console-consultant", "consultant", { firstName: "Cleo" }));
  await page.waitForSelector("#state.on", { timeout: 5000 });
  assert.equal(await page.textContent("#state"), "Live");
  // The page talks through the vendored official client (its `io` and `io.Manager`), not one of ours.
  assert.equal(await page.evaluate(() => typeof io === "function" && typeof io.Manager), "function");

  const reader = await as(server, "reader-ada", "reader");
  await reader.emitWithAck("reader-event", { eventType: "PAGE_TURN", data: { bookId: "moby-dick", page: 42 } });
  const sentAt = Date.now();
  await page.waitForSelector("#feed li:has-text('PAGE_TURN · reader-ada')", { timeout: 1000 });
  await page.waitForSelector("#readers td:has-text('moby-dick')", { timeout: 1000 });
  assert.ok(Date.now() - sentAt < 1000, "shown within a second");
  await reader.emitWithAck("reader-event", { eventType: "HELP_REQUEST", data: { question: "What is a harpoon?" } });
  await page.waitForSelector("#feed li .type.support", { timeout: 1000 });
  assert.equal(await page.textContent("#online-count"), "1");

  await page.click("#reload-recent");
  await page.waitForSelector("#recent li:has-text('HELP_REQUEST')", { timeout: 2000 });
  await page.screenshot({ path: join(artifacts, "console.png"), fullPage: true });
  await page.close();
});

test("an admin also sees the server figures, refreshing", { skip: !haveChromium }, async () => {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
  await signIn(page, token("console-admin", "admin"));
  await page.waitForSelector("#stats-card:not([hidden]) dd", { timeout: 5000 });
  const figures = await page.$$eval("#stats div", (divs) => Object.fromEntries(divs.map((d) => [d.querySelector("dt").textContent, d.querySelector("dd").textContent])));
  assert.ok(Number(figures.Connections) >= 1, JSON.stringify(figures));
  assert.ok("Queue" in figures && "Dead letters" in figures && "Events / minute" in figures);
  await page.screenshot({ path: join(artifacts, "console-phone.png"), fullPage: true });
  await page.close();
});

test("errors are shown in words", { skip: !haveChromium }, async () => {
  const page = await browser.newPage();
  const expired = token("console-late", "consultant", { exp: Math.floor(Date.now() / 1000) - 60 });
  await signIn(page, expired);
  await page.waitForSelector("#message:not([hidden])", { timeout: 5000 });
  assert.equal(await page.textContent("#message"), "Could not sign in: Authentication token expired.");
  await signIn(page, token("console-reader", "reader"));
  assert.match(await page.textContent("#message"), /for consultants and admins/);
  await page.close();
});

test("an admin edits a consultant's assignments, and the consultant sees its readers", { skip: !haveChromium }, async () => {
  const admin = await browser.newPage({ viewport: { width: 390, height: 844 } });
  await signIn(admin, token("console-admin-2", "admin"));
  await admin.waitForSelector("#assignments-card:not([hidden])", { timeout: 5000 });
  await admin.fill("#assign-consultant", "console-cleo");
  await admin.fill("#assign-readers", "reader-ada\nreader-bo");
  await admin.click("#assignments-form button[type=submit]");
  await admin.waitForSelector("#message:has-text('Saved: console-cleo has 2 reader(s).')", { timeout: 3000 });
  await admin.fill("#assign-readers", "");
  await admin.click("#assign-load");
  await admin.waitForFunction(() => document.querySelector("#assign-readers").value === "reader-ada\nreader-bo");
  await admin.screenshot({ path: join(artifacts, "console-assignments.png"), fullPage: true });
  await admin.close();

  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  await signIn(page, token("console-cleo", "consultant"));
  await page.waitForSelector("#assigned-card:not([hidden]) li", { timeout: 5000 });
  assert.deepEqual(await page.$$eval("#assigned li", (lis) => lis.map((li) => li.textContent)), ["reader-ada", "reader-bo"]);
  assert.equal(await page.textContent("#assigned-count"), "2");
  await page.close();
});

/** The console's charts as drawn: each chart's series labels and data (uPlot's own). */
const drawn = (page) => page.evaluate(() => Object.fromEntries(Object.entries(charts.plots).map(([id, { plot }]) => [
  id, { labels: plot.series.slice(1).map((s) => s.label), data: plot.data.slice(1), width: plot.width },
])));
const total = (series) => series.flat().reduce((a, v) => a + (v ?? 0), 0);

test("the last hour is charted with data, and fits a phone", { skip: !haveChromium }, async () => {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  await signIn(page, token("console-admin-charts", "admin"));
  await page.waitForSelector("#chart-events .uplot canvas", { timeout: 5000 });
  const reader = await as(server, "reader-chart", "reader");
  for (const eventType of ["PAGE_TURN", "PAGE_TURN", "PAGE_TURN", "WORD_LOOKUP"]) {
    await reader.emitWithAck("reader-event", { eventType, data: { bookId: "moby-dick" } });
  }
  // The page refreshes within a second of new activity.
  await page.waitForFunction(() => {
    const events = charts.plots["chart-events"]?.plot;
    return events && events.series.some((s) => s.label === "WORD_LOOKUP");
  }, null, { timeout: 5000 });
  await page.waitForFunction(() => charts.plots["chart-delivery"].plot.data[1].some((v) => v !== null), null, { timeout: 5000 });
  const charted = await drawn(page);
  const events = charted["chart-events"];
  const byType = Object.fromEntries(events.labels.map((label, i) => [label, total(events.data[i])]));
  assert.ok(byType.PAGE_TURN >= 3 && byType.WORD_LOOKUP >= 1, JSON.stringify(byType));
  assert.ok(charted["chart-online"].data[0].at(-1) >= 1, "the reader is online this minute");
  assert.ok(total(charted["chart-delivery"].data) > 0, "deliveries to this page were timed");
  assert.deepEqual(charted["chart-delivery"].labels, ["p50", "p99"]);
  for (const id of ["chart-events", "chart-online", "chart-delivery"]) {
    assert.equal(await page.locator(`#${id} canvas`).count(), 1, `${id} is drawn`);
  }
  // The reader's row carries a sparkline of its events.
  const spark = page.locator("#readers td.spark[data-user='reader-chart'] svg");
  await spark.waitFor({ timeout: 5000 });
  assert.match(await spark.getAttribute("aria-label"), /^[1-9]\d* events in the last hour$/);
  await page.screenshot({ path: join(artifacts, "console-charts.png"), fullPage: true });

  // At phone width the charts shrink to the screen and nothing scrolls sideways.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForFunction(() => charts.plots["chart-events"].plot.width < 390, null, { timeout: 3000 });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390), "no sideways scrolling");
  await page.screenshot({ path: join(artifacts, "console-charts-phone.png"), fullPage: true });
  reader.close();
  await page.close();
});
