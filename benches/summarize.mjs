// Summarizes a compare.sh results directory: median of each figure per server and setup, and the
// ratios Alice / Node. Lower is better for CPU, latency and memory; higher for throughput.
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
const setups = [...new Set(runs.map((r) => r.label.replace(/^(alice|node)-/, "").replace(/-r\d+$/, "")))].sort();
for (const setup of setups) {
  const of = (kind) => runs.filter((r) => r.label.startsWith(`${kind}-${setup}`));
  const [a, n] = [of("alice"), of("node")];
  if (!a.length || !n.length) continue;
  console.log(`\n${setup} (${a.length} run(s) each, medians)`);
  console.log(`${"figure".padEnd(28)}${"alice".padStart(12)}${"node".padStart(12)}${"alice/node".padStart(12)}`);
  for (const [name, f] of Object.entries(figures)) {
    const [x, y] = [median(a.map(f)), median(n.map(f))];
    const ratio = y ? (x / y).toFixed(3) : "—";
    console.log(`${name.padEnd(28)}${x.toFixed(2).padStart(12)}${y.toFixed(2).padStart(12)}${String(ratio).padStart(12)}`);
  }
}
