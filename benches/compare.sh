#!/usr/bin/env bash
# Runs the same load against Alice Realtime and the Node reference server, alternating, on one
# node and on two nodes over Redis, and on one node against the floor (benches/src/bin/floor.rs:
# tungstenite and the frames, nothing else), then prints each figure side by side and the ratios.
#
#   bash benches/compare.sh                  # defaults below
#   ROUNDS=3 RATE=4000 DURATION=20 bash benches/compare.sh
#   SWEEP="2000 4000 8000 16000" bash benches/compare.sh   # also find the highest sustainable rate
#   ALICE_ENV="LOG_READ_PACE_MS=0" bash benches/compare.sh  # extra settings for Alice's nodes
#   ALICE_BIN=/path/to/other/alice-realtime bash benches/compare.sh  # another build of Alice
#   BASELINE_BIN=/path/to/older/alice-realtime bash benches/compare.sh  # also an earlier build,
#                                            # alternating with the others, as kind "baseline";
#                                            # BASELINE_ENV (default ALICE_ENV) are its settings
#   NODES=2 KINDS="alice node" bash benches/compare.sh  # only some of the runs
set -euo pipefail
# A baseline named relative to where the script was started, before the cd below.
if [ -n "${BASELINE_BIN:-}" ]; then
  BASELINE_BIN=$(realpath "$BASELINE_BIN")
  [ -x "$BASELINE_BIN" ] || { echo "BASELINE_BIN $BASELINE_BIN is not an executable" >&2; exit 2; }
fi
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-2}
READERS=${READERS:-500}
CONSULTANTS=${CONSULTANTS:-10}
RATE=${RATE:-2000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
IDLE=${IDLE:-2000}
SWEEP=${SWEEP:-}
NODES=${NODES:-1 2}
KINDS=${KINDS:-alice ${BASELINE_BIN:+baseline }node floor}
[ -n "${KINDS// /}" ] || { echo "KINDS names no server" >&2; exit 2; }
case " $KINDS " in *" baseline "*) [ -n "${BASELINE_BIN:-}" ] || { echo "the baseline kind needs BASELINE_BIN" >&2; exit 2; } ;; esac
SECRET=bench-secret-0123456789abcdef
OUT=benches/results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"

cargo build --release -q -p alice-shell -p alice-benches
(cd benches/reference && npm ci --no-audit --no-fund --silent)
BIN=${ALICE_BIN:-target/release/alice-realtime}
LOADGEN=target/release/loadgen
FLOOR=target/release/floor

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start_server KIND PORT [REDIS_URL] -> prints the pid
start_server() {
  local kind=$1 port=$2 redis=${3:-} data
  data=$(mktemp -d)
  if [ "$kind" = alice ] || [ "$kind" = baseline ]; then
    local bin=$BIN extra=${ALICE_ENV:-}
    [ "$kind" = baseline ] && { bin=$BASELINE_BIN; extra=${BASELINE_ENV-${ALICE_ENV:-}}; }
    env -i PATH="$PATH" JWT_SECRET=$SECRET REALTIME_PORT="$port" HOST=127.0.0.1 DATA_DIR="$data" LOG_LEVEL=warn \
      NODE_ID="alice-$port" ${redis:+REDIS_URL=$redis} $extra \
      READER_EVENT_RATE=1000 READER_EVENT_BURST=2000 MAX_CONNECTIONS_PER_USER=100 \
      "$bin" >/dev/null 2>&1 &
  elif [ "$kind" = floor ]; then
    env -i REALTIME_PORT="$port" "$FLOOR" >/dev/null 2>&1 &
  else
    env -i PATH="$PATH" JWT_SECRET=$SECRET REALTIME_PORT="$port" ${redis:+REDIS_URL=$redis} \
      DATA_DIR="$data" node benches/reference/server.js >/dev/null 2>&1 &
  fi
  echo $!
}

# run LABEL KIND NODES RATE -> writes $OUT/LABEL.json
run() {
  local label=$1 kind=$2 nodes=$3 rate=$4 redis_pid= redis= urls=() pids=()
  if [ "$nodes" -gt 1 ]; then
    local rport; rport=$(free_port)
    redis-server --bind 127.0.0.1 --port "$rport" --save "" --appendonly no >/dev/null 2>&1 &
    redis_pid=$!; PIDS+=("$redis_pid"); wait_port "$rport"; redis=redis://127.0.0.1:$rport
  fi
  for _ in $(seq "$nodes"); do
    local port pid; port=$(free_port)
    pid=$(start_server "$kind" "$port" "$redis"); PIDS+=("$pid"); pids+=("$pid")
    wait_port "$port"; urls+=(--url "http://127.0.0.1:$port")
  done
  sleep 0.5
  local args=("${urls[@]}" --secret $SECRET --readers "$READERS" --consultants "$CONSULTANTS" --idle "$IDLE"
    --rate "$rate" --duration "$DURATION" --warmup "$WARMUP" --label "$label")
  for p in "${pids[@]}"; do args+=(--server-pid "$p"); done
  [ -n "$redis" ] && args+=(--redis "127.0.0.1:${redis##*:}")
  "$LOADGEN" "${args[@]}" > "$OUT/$label.json"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  [ -n "$redis_pid" ] && { kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; }
  echo "  $label: $(node -e 'const r=require(process.argv[1]); console.log(`${r.deliveredPerSecond.toFixed(0)} deliveries/s, p99 ${(r.latencyMicros.p99/1000).toFixed(1)} ms, lost ${r.lost}, dup ${r.duplicates}, server ${r.server.cpuMicrosPerDelivery.toFixed(2)} µs CPU/delivery, ${Math.round(r.server.bytesPerIdleConnection)} B/idle conn${r.redisCommandsPerAccepted ? `, ${r.redisCommandsPerAccepted.toFixed(2)} Redis commands/event` : ""}`)' "$PWD/$OUT/$label.json")"
}

# The order of the kinds in each round, one line per round. What ran just before moves a run's
# CPU figures, and a rotation keeps each kind's predecessor, so each round takes the order whose
# pairs (each kind and the one before it, across rounds too) ran least so far; the first round
# keeps the order given.
orders_of_rounds() {
  python3 - "$ROUNDS" $KINDS <<'PY'
import itertools, sys
rounds, kinds = int(sys.argv[1]), sys.argv[2:]
pairs, last = {}, None
for r in range(rounds):
    def cost(order):
        before = [last, *order[:-1]]
        return sum(pairs.get(pair, 0) for pair in zip(before, order))
    order = min(itertools.permutations(kinds), key=cost) if r else tuple(kinds)
    for pair in zip([last, *order[:-1]], order):
        pairs[pair] = pairs.get(pair, 0) + 1
    last = order[-1]
    print(" ".join(order))
PY
}

echo "load: $READERS readers, $CONSULTANTS consultants, $RATE events/s, ${DURATION}s measured, $IDLE idle connections; results in $OUT"
mapfile -t ORDERS < <(orders_of_rounds)
for round in $(seq "$ROUNDS"); do
  for nodes in $NODES; do
    for kind in ${ORDERS[$((round - 1))]}; do
      # The floor does not cluster: it runs on one node only.
      [ "$kind" = floor ] && [ "$nodes" != 1 ] && continue
      run "$kind-${nodes}node-r$round" "$kind" "$nodes" "$RATE"
    done
  done
done
for rate in $SWEEP; do
  for kind in alice node; do
    IDLE=0 run "$kind-sweep-$rate" "$kind" 1 "$rate"
  done
done

node benches/summarize.mjs "$OUT"
