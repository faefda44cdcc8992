#!/usr/bin/env bash
# Instructions the gateway executes per proxied chat completion, counted by
# callgrind (repeatable whatever else the machine runs): the gateway (legacy
# driver, one shard, a client key) serves N and then N+500 requests from one
# keep-alive client in front of the mock; the difference / 500 is the cost of a
# request without start-up.
# With `events` as the third argument it counts per relayed SSE event instead:
# N streams of 4 chunks, then N of 68; the difference / (64 × N) is one event
# without the request around it.
# With CALLGRIND_KEEP=DIR each run's profile is kept as DIR/callgrind.COUNT.CHUNKS.out
# (per function: callgrind_annotate --inclusive=yes DIR/callgrind.600.4.out).
# Usage: loadtest/scripts/instructions-per-request.sh [SWITCHYARD_BIN] [N] [events]
#   (build first: cargo build --release -p switchyard -p loadtest)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${1:-target/release/switchyard}"
N="${2:-100}"
MODE="${3:-requests}"
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# run_once COUNT CHUNKS: prints the gateway's total instruction count for COUNT
# requests (streamed in `events` mode) answered with CHUNKS chunks.
run_once() {
    local count=$1 chunks=$2 work mock_port gw_port mock_pid gw_pid
    work="$(mktemp -d)"
    mock_port="$(free_port)"; gw_port="$(free_port)"
    target/release/mock-provider --listen "127.0.0.1:$mock_port" --name m --chunks "$chunks" >/dev/null 2>&1 &
    mock_pid=$!
    cat >"$work/c.yaml" <<YAML
listen: 127.0.0.1:$gw_port
shards: 1
driver: legacy
shutdown_grace: 1s
log: { request_sample: 0.0 }
keys:
  - { name: k, key: sk-test }
providers:
  m: { kind: openai-compatible, base_url: "http://127.0.0.1:$mock_port/v1" }
routes:
  - name: chat
    match: { model: chat }
    targets: [{ provider: m, model: mm }]
YAML
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$BIN" run --config "$work/c.yaml" >"$work/gw.log" 2>&1 &
    gw_pid=$!
    python3 - "$gw_port" "$count" "$MODE" <<'PY'
import http.client, json, sys, time
port, n, stream = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "events"
for _ in range(600):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/healthz"); c.getresponse().read(); break
    except OSError:
        time.sleep(0.1)
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
body = json.dumps({"model": "chat", "stream": stream, "messages": [{"role": "user", "content": "hello there"}]})
headers = {"content-type": "application/json", "authorization": "Bearer sk-test",
           "user-agent": "OpenAI/Python 3.57.0", "x-stainless-lang": "python",
           "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
for _ in range(n):
    c.request("POST", "/v1/chat/completions", body, headers)
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
    kill -TERM "$gw_pid"; wait "$gw_pid" 2>/dev/null || true
    kill "$mock_pid"; wait "$mock_pid" 2>/dev/null || true
    callgrind_annotate "$work/cg.out" 2>/dev/null | grep -m1 "PROGRAM TOTALS" | awk '{print $1}' | tr -d ,
    if [ -n "${CALLGRIND_KEEP:-}" ]; then
        mkdir -p "$CALLGRIND_KEEP" && cp "$work/cg.out" "$CALLGRIND_KEEP/callgrind.$count.$chunks.out"
    fi
    rm -rf "$work"
}

if [ "$MODE" = events ]; then
    small=$(run_once "$N" 4)
    large=$(run_once "$N" 68)
    echo "instructions per event: $(( (large - small) / (64 * N) ))  ($small for $N streams of 4 chunks, $large of 68; $BIN)"
    exit 0
fi
small=$(run_once "$N" 4)
large=$(run_once $((N + 500)) 4)
echo "instructions per request: $(( (large - small) / 500 ))  ($small for $N, $large for $((N + 500)); $BIN)"
