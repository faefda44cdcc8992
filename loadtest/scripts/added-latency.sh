#!/usr/bin/env bash
# Added latency of sequential requests on one keep-alive connection (closed
# loop, 3 s), with the mock, the gateway and the load generator all on the same
# CPUs (default: core 0 only, so no cross-core wake-up is measured): prints
# the load generator's p50/p99 in µs direct to the mock and through switchyard.
# Usage: loadtest/scripts/added-latency.sh [SWITCHYARD_BIN] [CPUS]
#   (build first: cargo build --release -p switchyard -p loadtest)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${1:-target/release/switchyard}"; CORES="${2:-0}"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
w=$(mktemp -d); mp=$(free_port); gp=$(free_port)
taskset -c $CORES target/release/mock-provider --listen 127.0.0.1:$mp --name m --chunks 4 >/dev/null 2>&1 & mpid=$!
cat > $w/c.yaml <<Y
listen: 127.0.0.1:$gp
shards: 1
log: { request_sample: 0.0 }
providers:
  m: { kind: openai-compatible, base_url: "http://127.0.0.1:$mp/v1" }
routes:
  - name: chat
    match: { model: chat }
    targets: [{ provider: m, model: mm }]
Y
taskset -c $CORES $BIN run --config $w/c.yaml >$w/gw.log 2>&1 & gpid=$!
sleep 1.5
run() { taskset -c $CORES target/release/loadgen --target 127.0.0.1:$1 --connections 1 --duration 3s --warmup 0.5s --model chat --json $w/r.json >/dev/null 2>&1; python3 -c "import json; d=json.load(open('$w/r.json'))['latency_us']; print(d['p50'], d['p99'])"; }
d=$(run $mp); g=$(run $gp)
echo "direct p50/p99 $d µs | through switchyard $g µs ($BIN, cpus $CORES)"
kill $gpid $mpid; wait 2>/dev/null; rm -rf $w
