// Summarizes a compare.sh results directory: median of each figure per server and setup, and the
// ratios Alice / Node and, where the floor ran, Alice / floor. Lower is better for CPU, latency and
// memory; higher for throughput.
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
const setups = [...new Set(runs.map((r) => r.label.replace(/^(alice|node|floor)-/, "").replace(/-r\d+$/, "")))].sort();
for (const setup of setups) {
  const of = (kind) => runs.filter((r) => r.label.startsWith(`${kind}-${setup}`));
  const [a, n, f] = [of("alice"), of("node"), of("floor")];
  if (!a.length || !n.length) continue;
  const floor = f.length > 0;
  console.log(`\n${setup} (${a.length} run(s) each, medians)`);
  const head = ["alice", "node", "alice/node", ...(floor ? ["floor", "alice/floor"] : [])];
  console.log(`${"figure".padEnd(28)}${head.map((h) => h.padStart(12)).join("")}`);
  const ratio = (x, y) => (y ? (x / y).toFixed(3) : "—");
  for (const [name, get] of Object.entries(figures)) {
    const [x, y] = [median(a.map(get)), median(n.map(get))];
    const cells = [x.toFixed(2), y.toFixed(2), ratio(x, y)];
    if (floor) {
      const z = median(f.map(get));
      cells.push(z.toFixed(2), ratio(x, z));
    }
    console.log(`${name.padEnd(28)}${cells.map((c) => String(c).padStart(12)).join("")}`);
  }
}
