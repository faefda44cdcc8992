# shellcheck shell=bash
# Shared by the SDK checks (run.sh, anthropic_run.sh, streaming_faults.sh): the
# build, free ports, background processes with their cleanup, and waiting for a
# server. Source it after `set -euo pipefail`, then call `sdk_setup`.

sdk_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# sdk_setup: goes to the repository root, builds mock-provider and switchyard
# (PROFILE=debug, or release), makes sure the SDK virtualenv has
# tests/sdk/requirements.txt (see sdk_venv), and makes $work (removed on exit,
# with every process in $pids ended). The checks run with "$sdk_py".
sdk_setup() {
    cd "$sdk_root"
    PROFILE="${PROFILE:-debug}"
    local flag=
    if [ "$PROFILE" = release ]; then flag=--release; fi

    echo "== building ($PROFILE)"
    # One invocation: the workspace's features unify as in `cargo test --workspace`,
    # so nothing is rebuilt (two separate builds each recompile serde & co.).
    cargo build $flag -p loadtest -p switchyard --bin mock-provider --bin switchyard
    bin="target/$PROFILE"

    sdk_venv
    work="$(mktemp -d)"
    pids=()
    trap cleanup EXIT INT TERM
}

# sdk_venv: creates the virtualenv ${SDK_VENV:-target/sdk-venv} when missing and
# installs tests/sdk/requirements.txt into it when the requirements changed since
# the last install (a stamp holds their hash) or a client is missing, so a
# rerun costs no pip call. Sets sdk_py, and the environment that keeps every
# client off the internet (the checks must not hang on a client phoning home).
sdk_venv() {
    SDK_VENV="${SDK_VENV:-$sdk_root/target/sdk-venv}"
    sdk_py="$SDK_VENV/bin/python"
    local requirements="$sdk_root/tests/sdk/requirements.txt"
    local stamp="$SDK_VENV/.switchyard-requirements"
    local want
    want="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [ ! -x "$sdk_py" ]; then
        echo "== creating the SDK virtualenv $SDK_VENV"
        python3 -m venv "$SDK_VENV"
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] ||
        ! "$sdk_py" -c 'import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ("openai", "anthropic", "agents", "langchain_openai", "litellm")))' 2>/dev/null; then
        echo "== installing the SDKs into $SDK_VENV (tests/sdk/requirements.txt)"
        local started=$SECONDS
        "$sdk_py" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        echo "$want" >"$stamp"
        echo "== installed in $((SECONDS - started)) s"
    fi
    sdk_offline_env
}

# sdk_offline_env: the settings that stop the clients reaching out on their own:
# litellm's remote cost map and telemetry, the agents SDK's trace export,
# LangSmith tracing, Hugging Face downloads (litellm's tokenizers).
sdk_offline_env() {
    export OPENAI_AGENTS_DISABLE_TRACING=1
    export LITELLM_LOCAL_MODEL_COST_MAP=True
    export LITELLM_LOG=ERROR
    export LITELLM_TELEMETRY=False
    export LANGCHAIN_TRACING_V2=false
    export LANGSMITH_TRACING=false
    export HF_HUB_OFFLINE=1
    export DO_NOT_TRACK=1
    export PYTHONUNBUFFERED=1
}

cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for() { # URL [header...]: waits up to 15 s for a 200
    local url="$1"; shift
    for _ in $(seq 1 150); do
        if python3 - "$url" "$@" <<'PY' 2>/dev/null; then return 0; fi
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers=dict(h.split(": ", 1) for h in sys.argv[2:]))
sys.exit(0 if urllib.request.urlopen(req, timeout=1).status == 200 else 1)
PY
        sleep 0.1
    done
    echo "timed out waiting for $url" >&2
    return 1
}

# start_switchyard PORT KEY: runs $work/switchyard.yaml (its one key is
# ${SDK_KEY}) and waits until it answers on PORT.
start_switchyard() {
    SDK_KEY="$2" "$bin/switchyard" run --config "$work/switchyard.yaml" >"$work/switchyard.log" 2>&1 &
    pids+=($!)
    wait_for "http://127.0.0.1:$1/v1/models" "Authorization: Bearer $2"
}

# run_check COMMAND...: runs the check and exits with its status, showing the
# end of switchyard's log when it failed.
run_check() {
    local status=0
    "$@" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "== switchyard log"
        tail -n 30 "$work/switchyard.log"
    fi
    exit "$status"
}

# run_checks COMMAND [--- COMMAND]...: runs every check (commands separated by a
# `---` word), then exits 1 if any failed, showing the end of switchyard's log.
run_checks() {
    local failed=() cmd=()
    local word
    for word in "$@" ---; do
        if [ "$word" != --- ]; then
            cmd+=("$word")
            continue
        fi
        if [ "${#cmd[@]}" -gt 0 ]; then
            echo "== ${cmd[*]:0:2}"
            "${cmd[@]}" || failed+=("${cmd[1]:-${cmd[0]}} (exit $?)")
        fi
        cmd=()
    done
    if [ "${#failed[@]}" -gt 0 ]; then
        echo "== FAILED: ${failed[*]}"
        echo "== switchyard log"
        tail -n 30 "$work/switchyard.log"
        exit 1
    fi
}

# The provider kinds every SDK check goes through, one route each (`via-KIND`).
sdk_kinds=(openai azure anthropic gemini bedrock)

# sdk_kind_models: the route models, comma-separated (via-openai,via-azure,...).
sdk_kind_models() {
    local IFS=,
    local models=("${sdk_kinds[@]/#/via-}")
    echo "${models[*]}"
}

# sdk_kind_providers ADDR: YAML provider entries (2-space indent), one per kind,
# all pointing at the one mock-provider on ADDR, which speaks every dialect by path.
sdk_kind_providers() {
    cat <<YAML
  kind-openai:    { kind: openai,    base_url: "http://$1/v1", api_key: sk-mock-openai }
  kind-azure:     { kind: azure,     base_url: "http://$1", api_key: mock-azure-key, api_version: 2024-10-21 }
  kind-anthropic: { kind: anthropic, base_url: "http://$1", api_key: sk-ant-mock }
  kind-gemini:    { kind: gemini,    base_url: "http://$1/v1beta", api_key: mock-gemini-key }
  kind-bedrock:
    kind: bedrock
    base_url: "http://$1"
    region: us-east-1
    aws_access_key_id: AKIDEXAMPLE
    aws_secret_access_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
YAML
}

# sdk_kind_routes: YAML route entries (2-space indent), `via-KIND` -> kind-KIND.
sdk_kind_routes() {
    local kind
    for kind in "${sdk_kinds[@]}"; do
        cat <<YAML
  - name: via-$kind
    match: { model: via-$kind }
    targets:
      - { provider: kind-$kind, model: $kind-model }
YAML
    done
}
