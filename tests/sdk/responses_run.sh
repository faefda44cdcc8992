#!/usr/bin/env bash
# Runs the Responses API clients against switchyard's /v1/responses: the official
# openai SDK (responses_check.py: create, stream, tools, failover, a mid-stream
# failure, errors, header round trips), the openai-agents SDK (agents_check.py),
# LangChain's ChatOpenAI(use_responses_api=True) (langchain_check.py) and
# litellm.responses (litellm_check.py). Mocks: `primary` (healthy, behind every
# route but chat-broken), `down` (503, chat-failover's first target), `broken`
# (resets streams after three words, chat-broken). Routes: chat (openai-compatible,
# translated), one per provider kind (via-openai, which serves the Responses API
# natively by default, via-azure, via-anthropic, via-gemini, via-bedrock:
# translated onto chat completions), via-openai-chat (kind openai with
# `responses: false`: translated) and via-passthrough (kind openai-compatible with
# `responses: true`: passed through to the mock's /v1/responses).
# Usage: tests/sdk/responses_run.sh   (debug build; PROFILE=release for a release build)
# Exits 1 when any check failed (each prints its PASS/FAIL lines).
set -euo pipefail

source "$(dirname "$0")/lib.sh"
sdk_setup

mock_port="$(free_port)"
control_port="$(free_port)"
gw_port="$(free_port)"
key="sk-switchyard-responses-check"
mock="127.0.0.1:$mock_port"

"$bin/mock-provider" --listen "$mock" --control "127.0.0.1:$control_port" --name primary --chunks 6 \
    >"$work/mock.log" 2>&1 &
pids+=($!)
start_mock() { # NAME PORT FAULT_JSON
    "$bin/mock-provider" --listen "127.0.0.1:$2" --name "$1" --chunks 6 --fault "$3" \
        >"$work/mock-$1.log" 2>&1 &
    pids+=($!)
}
down_port="$(free_port)"
broken_port="$(free_port)"
start_mock down "$down_port" '{"mode":"status","status":503}'
start_mock broken "$broken_port" '{"mode":"reset_mid_stream","after_chunks":3}'
wait_for "http://$mock/v1/models"
wait_for "http://127.0.0.1:$broken_port/v1/models"

cat >"$work/switchyard.yaml" <<YAML
listen: 127.0.0.1:$gw_port
shards: 1
shutdown_grace: 2s
keys:
  - { name: sdk, key: "\${SDK_KEY}" }
providers:
  primary: { kind: openai-compatible, base_url: "http://$mock/v1" }
  down:    { kind: openai-compatible, base_url: "http://127.0.0.1:$down_port/v1" }
  broken:  { kind: openai-compatible, base_url: "http://127.0.0.1:$broken_port/v1" }
$(sdk_kind_providers "$mock")
  kind-openai-chat: { kind: openai, base_url: "http://$mock/v1", api_key: sk-mock-openai, responses: false }
  kind-passthrough: { kind: openai-compatible, base_url: "http://$mock/v1", responses: true }
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
$(sdk_kind_routes)
  - name: via-openai-chat
    match: { model: via-openai-chat }
    targets:
      - { provider: kind-openai-chat, model: openai-model }
  - name: via-passthrough
    match: { model: via-passthrough }
    targets:
      - { provider: kind-passthrough, model: passthrough-model }
YAML

start_switchyard "$gw_port" "$key"

base="http://127.0.0.1:$gw_port/v1"
models="chat,$(sdk_kind_models),via-openai-chat,via-passthrough"
kinds="via-openai=openai,via-azure=azure,via-anthropic=anthropic,via-gemini=gemini,via-bedrock=bedrock"
kinds="$kinds,via-openai-chat=openai,via-passthrough=openai-compatible"
echo "== Responses API clients against switchyard on 127.0.0.1:$gw_port"
run_checks \
    "$sdk_py" tests/sdk/responses_check.py --base-url "$base" --api-key "$key" --models "$models" \
    --tool-models chat,via-anthropic,via-openai-chat,via-passthrough --stateless-model via-anthropic \
    --failover-model chat-failover --broken-model chat-broken \
    --kinds "$kinds" --ratelimit-models "$(sdk_kind_models),via-openai-chat,via-passthrough" \
    --mock "127.0.0.1:$control_port" \
    --- "$sdk_py" tests/sdk/agents_check.py --base-url "$base" --api-key "$key" \
    --models via-anthropic,via-openai-chat,via-passthrough --broken-model chat-broken \
    --- "$sdk_py" tests/sdk/langchain_check.py --base-url "$base" --api-key "$key" \
    --models via-anthropic,via-openai,via-passthrough --tool-models via-anthropic,via-passthrough --broken-model chat-broken \
    --- "$sdk_py" tests/sdk/litellm_check.py --base-url "$base" --api-key "$key" \
    --models via-anthropic,via-gemini,via-bedrock,via-passthrough --broken-model chat-broken \
    --mock "127.0.0.1:$control_port"
