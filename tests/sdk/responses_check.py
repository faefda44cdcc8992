#!/usr/bin/env python3
"""Checks the official `openai` Python SDK's Responses API (`client.responses`)
against switchyard's POST /v1/responses, unchanged apart from base_url.

For every model in --models (one route each: one per provider kind, translated onto
chat completions, and routes whose provider serves the Responses API natively):
- `responses.create`: `output_text` is the route's chat completion text (the mock's
  deterministic answer), status completed, usage present;
- `responses.create(stream=True)`: `response.created` first, `response.completed`
  last, every delta inside its item and content part (what `responses.stream`
  needs), the deltas concatenate to the same text, increasing sequence numbers;
- `responses.stream`: the same text event by event and from `get_final_response()`.
--failover-model: a 503 first target is invisible; --broken-model: a stream reset
after its first words ends in `response.failed`, raised as `openai.APIError`.
For --tool-models: a forced function call (tool_choice "required") whole and
streamed, then its `function_call_output` sent back, answered with text.
Also input items with `instructions`, `max_output_tokens` and `temperature` (the
instructions must reach the provider, per the mock's last request).
Errors: an unknown model is `openai.NotFoundError`; `previous_response_id` and
`store=True` on a translated route (--stateless-model) are `openai.BadRequestError`.
Headers (the routes in --kinds, with --mock for the mock's GET /_mock/last_request),
on /v1/responses (whole and streamed) and /v1/chat/completions alike:
`anthropic-beta` reaches anthropic kinds only, `openai-beta` OpenAI-shaped ones
only, `traceparent` and `tracestate` every provider, the client's gateway key none; the client's answer
carries x-switchyard-upstream-request-id, x-switchyard-overhead-ms and (on
--ratelimit-models) x-switchyard-upstream-ratelimit-*.
Exits 1 on any failure, 2 without the SDK."""

import argparse
import json
import sys

try:
    import openai
except ImportError:
    print("FAIL import openai: not installed (run through tests/sdk/responses_run.sh, which installs the SDK virtualenv)")
    sys.exit(2)

from checklib import PROMPT, TOOL, TOOL_PROMPT, Checker, ExpectedTexts, header_map, last_request, mock_body, split

# The order the official stream keeps; each present event's first occurrence must
# follow the previous one's.
ORDER = [
    "response.created",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACESTATE = "switchyard=sdkcheck"
ANTHROPIC_BETA = "prompt-caching-2024-07-31"
OPENAI_BETA = "responses=v1"
ANTHROPIC_KINDS = {"anthropic"}
OPENAI_KINDS = {"openai", "azure", "openai-compatible"}


def event_order(kinds):
    """Asserts the stream's shape; returns a short summary."""
    assert kinds, "no events"
    assert kinds[:2] == ["response.created", "response.in_progress"], f"first events {kinds[:2]}"
    assert kinds[-1] == "response.completed", f"last event {kinds[-1]!r}"
    assert kinds.count("response.completed") == 1, "more than one response.completed"
    assert "error" not in kinds and "response.failed" not in kinds, kinds
    firsts = [kinds.index(k) for k in ORDER if k in kinds]
    assert firsts == sorted(firsts), f"events out of order: {kinds}"
    return f"{len(kinds)} events, {kinds.count('response.output_text.delta')} deltas"


def check_sequence(numbers):
    assert numbers == list(range(len(numbers))), f"sequence numbers not 0, 1, ...: {numbers}"


def text_checks(c, client, expected, model, mock):
    def create():
        r = client.responses.create(model=model, input=PROMPT)
        want = expected(model)
        assert r.object == "response", r.object
        assert r.id.startswith("resp_"), f"id {r.id!r}"
        assert r.status == "completed", r.status
        assert r.output_text == want, f"output_text {r.output_text!r} != chat text {want!r}"
        u = r.usage
        assert u is not None, "no usage"
        assert u.input_tokens > 0 and u.output_tokens > 0, u
        assert u.total_tokens == u.input_tokens + u.output_tokens, u
        return f"{r.output_text!r} usage {u.input_tokens}+{u.output_tokens} id {r.id}"

    def create_stream():
        kinds, seq, text, final = [], [], [], None
        for event in client.responses.create(model=model, input=PROMPT, stream=True):
            kinds.append(event.type)
            seq.append(getattr(event, "sequence_number", None))
            if event.type == "response.output_text.delta":
                text.append(event.delta)
            elif event.type == "response.completed":
                final = event.response
        summary = event_order(kinds)
        check_sequence(seq)
        want = expected(model)
        assert "".join(text) == want, f"deltas {''.join(text)!r} != {want!r}"
        assert len(text) > 1, f"{len(text)} delta(s): not streamed"
        assert final.output_text == want, f"completed output_text {final.output_text!r}"
        assert final.usage is not None and final.usage.output_tokens > 0, f"completed usage {final.usage}"
        return summary

    def stream_manager():
        text = []
        with client.responses.stream(model=model, input=PROMPT) as stream:
            for event in stream:
                if event.type == "response.output_text.delta":
                    text.append(event.delta)
            final = stream.get_final_response()
        want = expected(model)
        assert "".join(text) == want, f"deltas {''.join(text)!r} != {want!r}"
        assert final.output_text == want, f"final output_text {final.output_text!r} != {want!r}"
        assert final.usage is not None, "final response without usage"
        return f"{final.output_text!r}"

    def create_options():
        instructions = "Answer tersely, sdk-check-instructions."
        r = client.responses.create(
            model=model,
            input=[{"role": "user", "content": [{"type": "input_text", "text": PROMPT}]}],
            instructions=instructions,
            max_output_tokens=64,
            temperature=0.5,
        )
        # Read the mock's record first: expected() may ask the route itself.
        body = mock_body(last_request(mock)) if mock else None
        assert r.status == "completed" and r.output_text == expected(model), r.output_text
        note = ""
        if mock:
            assert instructions in json.dumps(body), f"instructions did not reach the provider: {body}"
            note = ", instructions reached the provider"
        return f"{r.output_text!r}{note}"

    c.check(f"[{model}] responses.create", create)
    c.check(f"[{model}] responses.create(input items, instructions, max_output_tokens)", create_options)
    c.check(f"[{model}] responses.create(stream=True)", create_stream)
    c.check(f"[{model}] responses.stream", stream_manager)


def function_call(output):
    calls = [item for item in output if item.type == "function_call"]
    assert len(calls) == 1, f"{len(calls)} function calls in {[o.type for o in output]}"
    call = calls[0]
    assert call.name == TOOL["name"], f"called {call.name!r}"
    arguments = json.loads(call.arguments)
    assert isinstance(arguments.get("text"), str), f"arguments {call.arguments!r}"
    assert call.call_id, "no call_id"
    return call


def tool_checks(c, client, model):
    state = {}

    def forced():
        r = client.responses.create(model=model, input=TOOL_PROMPT, tools=[TOOL], tool_choice="required")
        call = function_call(r.output)
        state["call"] = call
        return f"{call.name}({call.arguments}) call_id {call.call_id}"

    def forced_stream():
        kinds, pieces = [], []
        with client.responses.stream(
            model=model, input=TOOL_PROMPT, tools=[TOOL], tool_choice="required"
        ) as stream:
            for event in stream:
                kinds.append(event.type)
                if event.type == "response.function_call_arguments.delta":
                    pieces.append(event.delta)
            final = stream.get_final_response()
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
        added = kinds.index("response.output_item.added")
        assert added < kinds.index("response.function_call_arguments.delta"), kinds
        call = function_call(final.output)
        assert "".join(pieces) == call.arguments, f"deltas {''.join(pieces)!r} != {call.arguments!r}"
        return f"{call.name}({call.arguments}) in {len(pieces)} argument deltas"

    def round_trip():
        call = state.get("call")
        assert call is not None, "no function call from the forced check"
        items = [
            {"role": "user", "content": TOOL_PROMPT},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "found it"},
        ]
        r = client.responses.create(model=model, input=items, tools=[TOOL])
        assert r.status == "completed", r.status
        assert r.output_text.startswith("Hello from"), f"answer {r.output_text!r}"
        assert not [o for o in r.output if o.type == "function_call"], "called the tool again"
        return f"{r.output_text!r}"

    c.check(f"[{model}] tool_choice required -> function_call", forced)
    c.check(f"[{model}] tool_choice required -> function_call (responses.stream)", forced_stream)
    c.check(f"[{model}] function_call_output -> text", round_trip)


def failure_checks(c, client, failover, broken):
    """A failed first target is invisible (--failover-model); a stream broken after
    it started (--broken-model) ends in response.failed, which the SDK raises."""

    def failed_over():
        r = client.responses.create(model=failover, input=PROMPT)
        assert r.status == "completed" and r.output_text.startswith("Hello from"), r
        text = []
        with client.responses.stream(model=failover, input=PROMPT) as stream:
            for event in stream:
                if event.type == "response.output_text.delta":
                    text.append(event.delta)
            final = stream.get_final_response()
        assert "".join(text) == final.output_text == r.output_text, (text, final.output_text, r.output_text)
        return f"{r.output_text!r} whole and streamed"

    def mid_stream():
        seen = []
        try:
            for event in client.responses.create(model=broken, input=PROMPT, stream=True):
                seen.append(event.type)
        except openai.APIError as e:
            assert "response.output_text.delta" in seen, f"failed before any text: {seen}"
            assert seen[-1] == "response.failed", f"last event {seen[-1] if seen else None!r}: {seen}"
            assert "response.completed" not in seen, seen
            return f"APIError after {len(seen)} events: {e.message}"
        raise AssertionError(f"no error raised: {seen}")

    if failover:
        c.check(f"[{failover}] a 503 first target fails over", failed_over)
    if broken:
        c.check(f"[{broken}] a mid-stream reset -> response.failed -> openai.APIError", mid_stream)


def error_checks(c, client, models, stateless):
    def unknown_model():
        try:
            client.responses.create(model="no-such-model", input=PROMPT)
        except openai.NotFoundError as e:
            assert e.status_code == 404, e.status_code
            assert "no-such-model" in e.message, f"not about the model: {e.message!r}"
            return f"NotFoundError: {e.message}"
        raise AssertionError("no error for an unknown model")

    def unknown_model_stream():
        try:
            with client.responses.stream(model="no-such-model", input=PROMPT) as stream:
                for _ in stream:
                    pass
        except openai.NotFoundError as e:
            assert "no-such-model" in e.message, f"not about the model: {e.message!r}"
            return f"NotFoundError: {e.message}"
        raise AssertionError("no error for an unknown model")

    def stateful():
        try:
            client.responses.create(model=stateless, input=PROMPT, previous_response_id="resp_earlier")
        except openai.BadRequestError as e:
            assert e.status_code == 400, e.status_code
            assert "previous_response_id" in e.message, f"message {e.message!r}"
            return f"BadRequestError: {e.message}"
        raise AssertionError("previous_response_id accepted on a translated route")

    def stored():
        try:
            client.responses.create(model=stateless, input=PROMPT, store=True)
        except openai.BadRequestError as e:
            assert "store" in e.message, f"message {e.message!r}"
            return f"BadRequestError: {e.message}"
        raise AssertionError("store: true accepted on a translated route")

    c.check("unknown model -> openai.NotFoundError", unknown_model)
    c.check("unknown model (responses.stream) -> openai.NotFoundError", unknown_model_stream)
    if stateless:
        c.check(f"[{stateless}] previous_response_id -> openai.BadRequestError", stateful)
        c.check(f"[{stateless}] store=True -> openai.BadRequestError", stored)


def header_checks(c, client, mock, model, kind, key, ratelimit, api):
    sent = {
        "anthropic-beta": ANTHROPIC_BETA,
        "openai-beta": OPENAI_BETA,
        "traceparent": TRACEPARENT,
        "tracestate": TRACESTATE,
    }

    def round_trip():
        if api == "responses":
            raw = client.responses.with_raw_response.create(model=model, input=PROMPT, extra_headers=sent)
            text = raw.parse().output_text
        elif api == "responses stream":
            raw = client.responses.with_raw_response.create(
                model=model, input=PROMPT, stream=True, extra_headers=sent
            )
            text = "".join(e.delta for e in raw.parse() if e.type == "response.output_text.delta")
        else:
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": PROMPT}], extra_headers=sent
            )
            text = raw.parse().choices[0].message.content
        assert text.startswith("Hello from"), f"answer {text!r}"
        upstream = header_map(last_request(mock))
        notes = []
        assert upstream.get("traceparent") == TRACEPARENT, f"traceparent at the provider: {upstream.get('traceparent')!r} (it got {sorted(upstream)})"
        # Each beta header is the kind's own: it reaches that kind, and only it.
        for name, value, owners in (
            ("anthropic-beta", ANTHROPIC_BETA, ANTHROPIC_KINDS),
            ("openai-beta", OPENAI_BETA, OPENAI_KINDS),
        ):
            if kind in owners:
                assert upstream.get(name) == value, f"{name} at the provider: {upstream.get(name)!r}"
            else:
                assert name not in upstream, f"{name} reached a {kind} provider"
        assert upstream.get("tracestate") == TRACESTATE, f"tracestate at the provider: {upstream.get('tracestate')!r}"
        leaked = [name for name, value in upstream.items() if key in value]
        assert not leaked, f"the gateway key reached the provider in {leaked}"
        notes.append(f"{sorted(n for n in sent if n in upstream)} forwarded")
        got = {name.lower(): value for name, value in raw.headers.items()}
        request_id = got.get("x-switchyard-upstream-request-id")
        assert request_id, f"no x-switchyard-upstream-request-id in {sorted(got)}"
        assert request_id.startswith("req_mock_"), f"not the provider's request id: {request_id!r}"
        overhead = got.get("x-switchyard-overhead-ms")
        assert overhead is not None, f"no x-switchyard-overhead-ms in {sorted(got)}"
        assert float(overhead) >= 0, f"x-switchyard-overhead-ms {overhead!r}"
        limits = sorted(n for n in got if n.startswith("x-switchyard-upstream-ratelimit-"))
        if ratelimit:
            assert limits, f"no x-switchyard-upstream-ratelimit-* in {sorted(got)}"
        # The check's key has no rpm/tpm, so the gateway describes no standing of
        # its own: any x-ratelimit-* here would be the provider's, unrenamed.
        leaked_back = [n for n in got if n.startswith("x-ratelimit-")]
        assert not leaked_back, f"provider rate-limit headers passed through unrenamed: {leaked_back}"
        notes.append(f"request id {request_id!r}, overhead {overhead} ms, {len(limits)} rate-limit headers")
        return "; ".join(notes)

    c.check(f"[{model}] {api} headers ({kind}): beta/trace forwarded, key kept, x-switchyard-* back", round_trip)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--models", required=True, help="comma-separated routes")
    parser.add_argument("--tool-models", default="via-anthropic")
    parser.add_argument("--stateless-model", default="via-anthropic", help="a translated route ('' skips)")
    parser.add_argument("--failover-model", default="", help="a route whose first target answers 503")
    parser.add_argument("--broken-model", default="", help="a route whose target resets mid-stream")
    parser.add_argument("--kinds", default="", help="MODEL=KIND,... for the header checks")
    parser.add_argument("--ratelimit-models", default="", help="routes whose provider sends x-ratelimit-*")
    parser.add_argument("--mock", default="", help="host:port serving GET /_mock/last_request ('' skips headers)")
    args = parser.parse_args()

    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, timeout=20.0, max_retries=0)
    c = Checker(f"openai {openai.__version__} responses")
    expected = ExpectedTexts(client)
    models = split(args.models)
    for model in models:
        text_checks(c, client, expected, model, args.mock)
    for model in split(args.tool_models):
        tool_checks(c, client, model)
    failure_checks(c, client, args.failover_model, args.broken_model)
    error_checks(c, client, models, args.stateless_model)
    kinds = dict(pair.split("=", 1) for pair in split(args.kinds))
    ratelimit = set(split(args.ratelimit_models))
    if args.mock:
        for api in ("responses", "responses stream", "chat"):
            for model, kind in kinds.items():
                header_checks(c, client, args.mock, model, kind, args.api_key, model in ratelimit, api)
    else:
        c.skip("headers", "no --mock")
    return c.finish(f"{len(models)} routes: {', '.join(models)}")


if __name__ == "__main__":
    sys.exit(main())
