#!/usr/bin/env python3
"""What a user of the official `openai` Python SDK sees when switchyard's primary
target fails during a streaming chat completion.

For each fault, the primary mock is switched through its control endpoint
(POST /_mock/fault), one streaming completion runs through the gateway, and the
outcome is printed: the full text and which target served it, or the exception
type and message. Each case also states what it expects and is marked PASS/FAIL;
the script exits 1 when any case does not behave as documented, 2 without the SDK.

Expects a gateway with two routes over the same two targets (primary, then
fallback): model `chat` (`stream: { continue_after_commit: false }`) and model
`chat-continue` (continuation on, the default); see streaming_faults.sh."""

import argparse
import json
import sys
import time
import urllib.request

try:
    import openai
except ImportError:
    print("FAIL import openai: the SDK is not installed (run the check through its tests/sdk/*.sh, which installs tests/sdk/requirements.txt into the SDK virtualenv)")
    sys.exit(2)

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Say hello."},
]


def set_fault(control: str, fault: dict) -> None:
    request = urllib.request.Request(
        f"http://{control}/_mock/fault",
        data=json.dumps(fault).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200, response.status


def full_text(base_url: str) -> str:
    direct = openai.OpenAI(base_url=base_url, api_key="unused", timeout=10.0, max_retries=0)
    completion = direct.chat.completions.create(model="direct", messages=MESSAGES)
    return completion.choices[0].message.content


def run_stream(client: "openai.OpenAI", model: str) -> dict:
    """One streaming completion; what the SDK user gets out of it."""
    started = time.monotonic()
    result = {"target": None, "text": "", "chunks": 0, "error": None, "continued": False}
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=MESSAGES, stream=True
        )
        result["target"] = raw.headers.get("x-switchyard-target")
        for chunk in raw.parse():
            result["chunks"] += 1
            extra = getattr(chunk, "model_extra", None) or {}
            if (extra.get("x_switchyard") or {}).get("continued"):
                result["continued"] = True
            if chunk.choices and chunk.choices[0].delta.content:
                result["text"] += chunk.choices[0].delta.content
    except Exception as e:  # noqa: BLE001 - the exception is the observation
        result["error"] = e
    result["seconds"] = time.monotonic() - started
    return result


def describe(result: dict) -> str:
    parts = [f"target={result['target']}", f"text={result['text']!r}"]
    if result["continued"]:
        parts.append("continued=True")
    if result["error"] is not None:
        e = result["error"]
        parts.append(f"raised {type(e).__module__}.{type(e).__name__}: {e}")
        code = (getattr(e, "body", None) or {}).get("code") if isinstance(getattr(e, "body", None), dict) else None
        if code:
            parts.append(f"code={code}")
    parts.append(f"{result['seconds']:.2f}s")
    return ", ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True, help="gateway, e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--api-key", default="sk-switchyard-sdk-check")
    parser.add_argument("--primary-control", required=True, help="primary mock's control host:port")
    parser.add_argument("--primary-url", required=True, help="primary mock, e.g. http://127.0.0.1:9101/v1")
    parser.add_argument("--fallback-url", required=True, help="fallback mock")
    args = parser.parse_args()
    # Each target's full answer, asked directly (the mocks are deterministic).
    args.primary_text = full_text(args.primary_url)
    args.fallback_text = full_text(args.fallback_url)

    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, timeout=20.0, max_retries=0)
    fallback_target = "fallback/fallback-model"
    primary_target = "primary/primary-model"
    # The mock's stream: event 1 = role delta, event k + 2 = word k; after 3 events
    # the client holds the greeting, w0 and w1.
    prefix = args.primary_text[: args.primary_text.index(" w2 ") + 1]

    def clean_from_fallback(r):
        return r["error"] is None and r["target"] == fallback_target and r["text"] == args.fallback_text

    def interrupted(r):
        e = r["error"]
        return (
            isinstance(e, openai.APIError)
            and r["target"] == primary_target
            and r["text"] == prefix
            and isinstance(getattr(e, "body", None), dict)
            and e.body.get("code") == "upstream_stream_interrupted"
        )

    def continued(r):
        return r["error"] is None and r["target"] == primary_target and r["text"] == args.primary_text and r["continued"]

    cases = [
        ("503 before the first chunk", "chat", {"mode": "status", "status": 503}, clean_from_fallback),
        ("SSE error event as the first event", "chat", {"mode": "sse_error_event", "after_chunks": 0}, clean_from_fallback),
        ("stall before the first chunk", "chat", {"mode": "stall", "after_chunks": 0}, clean_from_fallback),
        ("reset mid-stream (continuation off)", "chat", {"mode": "reset_mid_stream", "after_chunks": 3}, interrupted),
        ("stall mid-stream (continuation off)", "chat", {"mode": "stall", "after_chunks": 3}, interrupted),
        (
            "reset mid-stream (continuation on, the default)",
            "chat-continue",
            {"mode": "reset_mid_stream", "after_chunks": 3},
            continued,
        ),
    ]
    failures = 0
    for name, model, fault, expect in cases:
        set_fault(args.primary_control, fault)
        try:
            result = run_stream(client, model)
        finally:
            set_fault(args.primary_control, {"mode": "none"})
        ok = expect(result)
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'} {name} [{model}, fault {json.dumps(fault)}]")
        print(f"     {describe(result)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
