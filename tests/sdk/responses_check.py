#!/usr/bin/env python3
"""Checks that the official `openai` Python SDK's Responses API works against
switchyard's /v1/responses (translated onto chat completions) unchanged apart
from base_url: `responses.create` (output_text, usage), a function tool round
trip, `responses.create(stream=True)` events in order with sequence numbers,
`responses.stream()` and its final response, failover, a mid-stream failure
that the SDK raises as `openai.APIError`, and a stateful request refused with
`openai.BadRequestError`. Prints one PASS/FAIL line per check; exits 1 on any
failure, 2 when the SDK is missing.

Expects the routes of responses_run.sh: `chat` (healthy mock), `chat-failover`
(503 primary, then the healthy mock), `chat-broken` (reset after three words),
and one route per provider kind in --models."""

import argparse
import sys
import traceback

try:
    import openai
except ImportError:
    print("FAIL import openai: the SDK is not installed (python3 -m pip install openai)")
    sys.exit(2)

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather now",
          "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}]
failures = 0


def check(name):
    def wrap(fn):
        global failures
        try:
            fn()
            print(f"PASS {name}")
        except Exception:  # noqa: BLE001 - every failure is reported
            failures += 1
            print(f"FAIL {name}")
            traceback.print_exc()
        return fn
    return wrap


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--models", default="")
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.base_url + "/v1", api_key=args.api_key, max_retries=0)

    def whole_and_stream(model):
        r = client.responses.create(model=model, input="hi", instructions="be terse", max_output_tokens=64)
        assert r.status == "completed" and r.id.startswith("resp_sy"), r
        assert r.output_text, r
        assert r.usage.output_tokens > 0, r.usage
        kinds, text, final = [], "", None
        for n, event in enumerate(client.responses.create(model=model, input="hi", stream=True)):
            assert event.sequence_number == n, (n, event)
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                text += event.delta
            if event.type == "response.completed":
                final = event.response
        assert kinds[:2] == ["response.created", "response.in_progress"], kinds
        assert kinds[-1] == "response.completed", kinds
        assert text == r.output_text == final.output_text, (text, r.output_text)
        with client.responses.stream(model=model, input="hi") as stream:
            for _ in stream:
                pass
            assert stream.get_final_response().output_text == r.output_text

    for model in ["chat", "chat-failover"] + [m for m in args.models.split(",") if m]:
        check(f"create and stream via {model}")(lambda model=model: whole_and_stream(model))

    @check("function tool round trip")
    def _():
        r = client.responses.create(model="chat", input="weather?", tools=TOOLS, tool_choice="required")
        call = next(o for o in r.output if o.type == "function_call")
        assert call.name == "get_weather" and call.arguments.startswith("{"), call
        with client.responses.stream(model="chat", input="weather?", tools=TOOLS, tool_choice="required") as s:
            for _ in s:
                pass
            streamed = next(o for o in s.get_final_response().output if o.type == "function_call")
        assert streamed.arguments == call.arguments, (streamed, call)
        back = client.responses.create(model="chat", tools=TOOLS, input=[
            {"role": "user", "content": "weather?"},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ])
        assert back.output_text, back

    @check("a mid-stream failure raises openai.APIError")
    def _():
        seen = []
        try:
            for event in client.responses.create(model="chat-broken", input="hi", stream=True):
                seen.append(event.type)
        except openai.APIError as e:
            assert "after the response started" in e.message, e.message
            assert "response.output_text.delta" in seen and seen[-1] == "response.failed", seen
            return
        raise AssertionError(f"no error raised: {seen}")

    @check("a stateful request is a BadRequestError")
    def _():
        try:
            client.responses.create(model="chat", input="hi", previous_response_id="resp_abc")
        except openai.BadRequestError as e:
            assert "previous_response_id" in e.message, e.message
            return
        raise AssertionError("accepted")

    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
