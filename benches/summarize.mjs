// Summarizes a compare.sh results directory: median of each figure per server and setup, and the
// ratios Alice / Node and, where they ran, Alice / baseline (an earlier build) and Alice / floor.
// Lower is better for CPU, latency and memory; higher for throughput.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2];
const runs = readdirSync(dir).filter((f) => f.endsWith(".json")).map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
const figures = {
  "delivered/s": (r) => r.deliveredPerSecond,
  "server µs CPU/delivery": (r) => r.server.cpuMicrosPerDelivery,
  "p50 ms": (r) => r.latencyMicros.p50 / 1000,
  "p99 ms": (r) => r.latencyMicros.p99 / 1000,
  "p999 ms": (r) => r.latencyMicros.p999 / 1000,
  "lost": (r) => r.lost,
  "duplicates": (r) => r.duplicates,
  "bytes/idle connection": (r) => r.server.bytesPerIdleConnection,
  "generator µs CPU/delivery": (r) => r.generator.cpuMicrosPerDelivery,
  "Redis commands/event": (r) => r.redisCommandsPerAccepted ?? 0,
};
const kinds = ["alice", "baseline", "node", "floor"];
const withoutRound = (label) => label.replace(/-r\d+$/, "");
const setups = [...new Set(runs.map((r) => withoutRound(r.label).replace(/^[a-z]+-/, "")))].sort();
const ratio = (x, y) => (y ? (x / y).toFixed(3) : "—");
for (const setup of setups) {
  const of = (kind) => runs.filter((r) => withoutRound(r.label) === `${kind}-${setup}`);
  const [alice, ...others] = kinds.map((kind) => ({ kind, runs: of(kind) }));
  const ran = others.filter((o) => o.runs.length > 0);
  if (!alice.runs.length || !ran.length) continue;
  console.log(`\n${setup} (${alice.runs.length} run(s) each, medians)`);
  const head = ["alice", ...ran.flatMap((o) => [o.kind, `alice/${o.kind}`])];
  console.log(`${"figure".padEnd(28)}${head.map((h) => h.padStart(15)).join("")}`);
  for (const [name, get] of Object.entries(figures)) {
    const x = median(alice.runs.map(get));
    const cells = [x.toFixed(2), ...ran.flatMap((o) => {
      const y = median(o.runs.map(get));
      return [y.toFixed(2), ratio(x, y)];
    })];
    console.log(`${name.padEnd(28)}${cells.map((c) => String(c).padStart(15)).join("")}`);
  }
}
