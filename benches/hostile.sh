#!/usr/bin/env bash
# Runs the hostile load against one Alice Realtime node: 500 honest readers and 20 consultants at
# 1,000 events/s, while attackers take turns and then all attack at once (see src/bin/hostile.rs).
# Prints a table per phase; the JSON report and the server's log stay in benches/results/<time>/.
#
#   bash benches/hostile.sh
#   ATTACKS=bad-auth,churn CYCLES=20000 bash benches/hostile.sh
#   ALICE_BIN=/path/to/other/alice-realtime bash benches/hostile.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SECRET=bench-secret-0123456789abcdef
OUT=benches/results/hostile-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
cargo build --release -q -p alice-shell -p alice-benches
BIN=${ALICE_BIN:-target/release/alice-realtime}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

# The attackers open thousands of sockets at once, and the server accepts them.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
port=$(free_port)
jwks_port=$(free_port)
data=$(mktemp -d)
env -i PATH="$PATH" JWT_SECRET=$SECRET JWT_JWKS_URL="http://127.0.0.1:$jwks_port/jwks.json" \
  REALTIME_PORT="$port" HOST=127.0.0.1 DATA_DIR="$data" LOG_LEVEL=warn NODE_ID=alice-hostile \
  READER_EVENT_RATE=1000 READER_EVENT_BURST=2000 MAX_CONNECTIONS_PER_USER=100 ${ALICE_ENV:-} \
  "$BIN" > "$OUT/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$data"' EXIT
wait_port "$port"

target/release/hostile --url "http://127.0.0.1:$port" --server-pid "$server" --secret $SECRET \
  --jwks-port "$jwks_port" ${ATTACKS:+--attacks "$ATTACKS"} ${CYCLES:+--cycles "$CYCLES"} \
  ${ATTACK_SECONDS:+--attack-seconds "$ATTACK_SECONDS"} ${SETTLE_SECONDS:+--settle-seconds "$SETTLE_SECONDS"} \
  > "$OUT/report.json"

if ! kill -0 "$server" 2>/dev/null; then
  echo "the server died during the run; its log: $OUT/server.log" >&2
  exit 1
fi
if grep -q "panicked" "$OUT/server.log"; then
  echo "the server panicked; its log: $OUT/server.log" >&2
  exit 1
fi
echo "no panic; report and server log in $OUT"
