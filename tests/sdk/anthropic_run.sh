#!/usr/bin/env bash
# Runs the official anthropic Python SDK against switchyard's /v1/messages in front
# of mock providers (see anthropic_check.py for what is checked): OpenAI-compatible
# mocks for the original routes, plus one route per provider kind (via-openai,
# via-azure, via-anthropic, via-gemini, via-bedrock) targeting the `primary` mock
# through that kind's dialect.
# Usage: tests/sdk/anthropic_run.sh   (debug build; PROFILE=release for a release build)
# Exits with the check's exit code (0 = every check passed).
set -euo pipefail

source "$(dirname "$0")/lib.sh"
sdk_setup

start_mock() { # NAME PORT FAULT_JSON
    "$bin/mock-provider" --listen "127.0.0.1:$2" --name "$1" --chunks 6 --fault "$3" \
        >"$work/mock-$1.log" 2>&1 &
    pids+=($!)
}

primary_port="$(free_port)"
down_port="$(free_port)"
broken_port="$(free_port)"
tools_port="$(free_port)"
gw_port="$(free_port)"
key="sk-switchyard-anthropic-check"

tool_answer='{"id":"chatcmpl-tools","object":"chat.completion","model":"tools-model","choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}}],"usage":{"prompt_tokens":20,"completion_tokens":7,"total_tokens":27}}'
tool_fault="$(python3 -c 'import json,sys; print(json.dumps({"mode":"status","status":200,"body":sys.argv[1]}))' "$tool_answer")"

start_mock primary "$primary_port" '{"mode":"none"}'
start_mock down "$down_port" '{"mode":"status","status":503}'
start_mock broken "$broken_port" '{"mode":"reset_mid_stream","after_chunks":3}'
start_mock tools "$tools_port" "$tool_fault"
wait_for "http://127.0.0.1:$primary_port/v1/models"

cat >"$work/switchyard.yaml" <<YAML
listen: 127.0.0.1:$gw_port
shards: 1
shutdown_grace: 2s
keys:
  - { name: sdk, key: "\${SDK_KEY}" }
providers:
  primary: { kind: openai-compatible, base_url: "http://127.0.0.1:$primary_port/v1" }
  down:    { kind: openai-compatible, base_url: "http://127.0.0.1:$down_port/v1" }
  broken:  { kind: openai-compatible, base_url: "http://127.0.0.1:$broken_port/v1" }
  tools:   { kind: openai-compatible, base_url: "http://127.0.0.1:$tools_port/v1" }
$(sdk_kind_providers "127.0.0.1:$primary_port")
routes:
  - name: chat
    match: { model: chat }
    targets:
      - { provider: primary, model: primary-model }
  - name: failover
    match: { model: chat-failover }
    retry: { attempts: 1 }
    targets:
      - { provider: down, model: down-model, priority: 0 }
      - { provider: primary, model: primary-model, priority: 1 }
  - name: broken
    match: { model: chat-broken }
    targets:
      - { provider: broken, model: broken-model }
  - name: tools
    match: { model: chat-tools }
    targets:
      - { provider: tools, model: tools-model }
$(sdk_kind_routes)
YAML

start_switchyard "$gw_port" "$key"

echo "== anthropic SDK against switchyard on 127.0.0.1:$gw_port"
run_check "$sdk_py" tests/sdk/anthropic_check.py --base-url "http://127.0.0.1:$gw_port" --api-key "$key" \
    --models "$(sdk_kind_models)" --count-tokens-models via-anthropic --no-count-tokens-model via-openai
