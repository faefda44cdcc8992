#!/usr/bin/env python3
"""Checks that the official `anthropic` Python SDK works against switchyard's
/v1/messages unchanged apart from base_url, with OpenAI-compatible mock targets
behind it: `messages.create`, `messages.stream` (text_stream and the final
message), raw stream events in order, failover visible in x-switchyard-target,
tool_use blocks, a mid-stream failure and gateway errors the SDK maps to its
exception types; `messages.count_tokens` on --count-tokens-models (anthropic
targets: passed through) and its 400 on --no-count-tokens-model. Prints one
PASS/FAIL line per check; exits 1 on any failure, 2 when the SDK is missing.

Expects the routes of anthropic_run.sh: `chat` (healthy mock), `chat-failover`
(503 primary, then the healthy mock), `chat-broken` (reset after two words) and
`chat-tools` (a mock answering a tool call).

Then, for every model in --models (e.g. one route per provider kind: via-openai,
via-azure, via-anthropic, via-gemini, via-bedrock, all in front of the `primary`
mock): `messages.create`, `messages.stream` whose text equals the created one,
and raw stream events in order; for the models in --tool-models (targets whose
mock dialect answers tool calls: the Anthropic dialect's "use a tool" rule) a
tool_use block, whole and streamed; other models skip tool use and say so."""

import argparse
import sys
import traceback

try:
    import anthropic
except ImportError:
    print("FAIL import anthropic: the SDK is not installed (run the check through its tests/sdk/*.sh, which installs tests/sdk/requirements.txt into the SDK virtualenv)")
    sys.exit(2)

MESSAGES = [{"role": "user", "content": "Say hello."}]
SYSTEM = "You are a helpful assistant."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8080")
    parser.add_argument("--api-key", default="sk-switchyard-anthropic-check")
    parser.add_argument(
        "--models",
        default="",
        help="comma-separated models (routes) to run the core checks on, e.g. via-openai,via-azure",
    )
    parser.add_argument(
        "--tool-models",
        default="via-anthropic",
        help="comma-separated models whose target's mock dialect answers tool calls",
    )
    parser.add_argument(
        "--count-tokens-models",
        default="",
        help="routes whose target is kind anthropic: messages.count_tokens passes through",
    )
    parser.add_argument(
        "--no-count-tokens-model",
        default="",
        help="a route with no anthropic target: messages.count_tokens is a 400",
    )
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    tool_models = {m.strip() for m in args.tool_models.split(",") if m.strip()}

    client = anthropic.Anthropic(
        base_url=args.base_url, api_key=args.api_key, timeout=20.0, max_retries=0
    )
    failures = 0
    passes = 0
    expected = {}

    def check(name, fn):
        nonlocal failures, passes
        try:
            detail = fn()
            passes += 1
            print(f"PASS {name}: {detail}")
        except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
            failures += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            traceback.print_exc(limit=3, file=sys.stdout)

    def create():
        message = client.messages.create(
            model="chat", max_tokens=64, system=SYSTEM, messages=MESSAGES
        )
        assert message.type == "message", message.type
        assert message.role == "assistant", message.role
        assert message.id.startswith("msg_"), message.id
        assert message.content[0].type == "text", message.content
        text = message.content[0].text
        assert text.startswith("Hello from primary"), f"text {text!r}"
        assert message.stop_reason == "end_turn", message.stop_reason
        assert message.usage.output_tokens > 0 and message.usage.input_tokens > 0, message.usage
        expected["text"] = text
        return f"{text!r} (model {message.model}, usage {message.usage.input_tokens}/{message.usage.output_tokens})"

    def stream_text():
        pieces = []
        with client.messages.stream(
            model="chat", max_tokens=64, system=SYSTEM, messages=MESSAGES
        ) as stream:
            for piece in stream.text_stream:
                pieces.append(piece)
            final = stream.get_final_message()
        text = "".join(pieces)
        assert text == expected.get("text"), f"{text!r} != {expected.get('text')!r}"
        assert final.content[0].text == text, final.content
        assert final.stop_reason == "end_turn", final.stop_reason
        assert final.usage.output_tokens > 0, final.usage
        return f"{len(pieces)} text pieces, final usage {final.usage.input_tokens}/{final.usage.output_tokens}"

    def raw_events():
        stream = client.messages.create(
            model="chat", max_tokens=64, messages=MESSAGES, stream=True
        )
        kinds = [event.type for event in stream]
        assert kinds[0] == "message_start", kinds
        assert kinds[1] == "content_block_start", kinds
        assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"], kinds
        assert set(kinds[2:-3]) == {"content_block_delta"}, kinds
        return " ".join(dict.fromkeys(kinds)) + f" ({len(kinds)} events)"

    def failover():
        raw = client.messages.with_raw_response.create(
            model="chat-failover", max_tokens=64, messages=MESSAGES
        )
        target = raw.headers.get("x-switchyard-target")
        message = raw.parse()
        assert target == "primary/primary-model", target
        assert message.content[0].text == expected.get("text"), message.content
        return f"served by {target} after {raw.headers.get('x-switchyard-attempts')} attempts"

    def tool_use():
        message = client.messages.create(
            model="chat-tools",
            max_tokens=64,
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[
                {
                    "name": "get_weather",
                    "description": "Current weather",
                    "input_schema": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                }
            ],
            tool_choice={"type": "any"},
        )
        block = message.content[0]
        assert block.type == "tool_use", message.content
        assert block.name == "get_weather" and block.input == {"city": "Paris"}, block
        assert message.stop_reason == "tool_use", message.stop_reason
        return f"{block.name}({block.input}) id {block.id}"

    def mid_stream_error():
        pieces = []
        try:
            with client.messages.stream(
                model="chat-broken", max_tokens=64, messages=MESSAGES
            ) as stream:
                for piece in stream.text_stream:
                    pieces.append(piece)
        except anthropic.APIStatusError as e:
            assert pieces, "text arrived before the failure"
            return f"{type(e).__name__} after {''.join(pieces)!r}: {str(e)[:100]}"
        raise AssertionError(f"no error raised; got {''.join(pieces)!r}")

    def not_found():
        try:
            client.messages.create(model="no-such-model", max_tokens=8, messages=MESSAGES)
        except anthropic.NotFoundError as e:
            assert e.body["error"]["type"] == "not_found_error", e.body
            return f"NotFoundError: {e.body['error']['message'][:80]}"
        raise AssertionError("no error raised")

    def bad_key():
        other = anthropic.Anthropic(
            base_url=args.base_url, api_key="sk-wrong", timeout=20.0, max_retries=0
        )
        try:
            other.messages.create(model="chat", max_tokens=8, messages=MESSAGES)
        except anthropic.AuthenticationError as e:
            return f"AuthenticationError: {e.body['error']['message']}"
        raise AssertionError("no error raised")

    check("messages.create", create)
    check("messages.stream text_stream", stream_text)
    check("raw stream events", raw_events)
    check("failover", failover)
    check("tool_use", tool_use)
    check("mid-stream failure", mid_stream_error)
    check("unknown model", not_found)
    check("bad key", bad_key)

    for model in [m.strip() for m in args.count_tokens_models.split(",") if m.strip()]:

        def count_tokens(model=model):
            short = client.messages.count_tokens(model=model, messages=MESSAGES)
            long = client.messages.count_tokens(
                model=model, messages=[{"role": "user", "content": "Say hello. " * 40}]
            )
            assert short.input_tokens > 0, short
            # The provider counts (the mock: body bytes / 4): a longer message counts more.
            assert long.input_tokens > short.input_tokens, (short, long)
            return f"input_tokens {short.input_tokens}, {long.input_tokens} for a 40 times longer message"

        check(f"[{model}] messages.count_tokens", count_tokens)
    if args.no_count_tokens_model:

        def no_count_tokens():
            try:
                client.messages.count_tokens(model=args.no_count_tokens_model, messages=MESSAGES)
            except anthropic.BadRequestError as e:
                assert e.body["type"] == "error", e.body
                return f"BadRequestError: {e.body['error']['message'][:120]}"
            raise AssertionError("count_tokens answered on a route without an anthropic target")

        check(f"[{args.no_count_tokens_model}] messages.count_tokens -> 400", no_count_tokens)

    for model in models:
        for name, fn in model_checks(client, model, tool_models):
            check(f"[{model}] {name}", fn)
        if model not in tool_models:
            print(f"SKIP [{model}] tool_use: the target's mock dialect has no tool-call rule")

    total = passes + failures
    print(
        f"{'PASS' if failures == 0 else 'FAIL'} anthropic {anthropic.__version__}: "
        f"{passes}/{total} checks passed"
        + (f" (8 on the original routes, count_tokens, the rest over {', '.join(models)})" if models else "")
    )
    return 1 if failures else 0


TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]
TOOL_MESSAGES = [{"role": "user", "content": "Please use a tool to get the weather in Paris."}]


def model_checks(client, model, tool_models):
    """The core checks for one model (route): (name, fn) pairs."""
    expected = {}

    def create():
        message = client.messages.create(
            model=model, max_tokens=64, system=SYSTEM, messages=MESSAGES
        )
        assert message.type == "message", message.type
        assert message.role == "assistant", message.role
        assert message.content[0].type == "text", message.content
        text = message.content[0].text
        assert text.startswith("Hello from primary"), f"text {text!r}"
        assert message.stop_reason == "end_turn", message.stop_reason
        assert message.usage.output_tokens > 0, message.usage
        expected["text"] = text
        return f"{text!r} (model {message.model}, usage {message.usage.input_tokens}/{message.usage.output_tokens})"

    def stream_text():
        pieces = []
        with client.messages.stream(
            model=model, max_tokens=64, system=SYSTEM, messages=MESSAGES
        ) as stream:
            for piece in stream.text_stream:
                pieces.append(piece)
            final = stream.get_final_message()
        text = "".join(pieces)
        assert "text" in expected, "no messages.create text to compare with"
        assert text == expected["text"], f"{text!r} != {expected['text']!r}"
        assert len(pieces) > 1, f"only {len(pieces)} text piece(s): not streamed"
        assert final.content[0].text == text, final.content
        assert final.stop_reason == "end_turn", final.stop_reason
        return f"{text!r} in {len(pieces)} text pieces, equal to messages.create"

    def raw_events():
        stream = client.messages.create(
            model=model, max_tokens=64, messages=MESSAGES, stream=True
        )
        kinds = [event.type for event in stream]
        assert kinds[0] == "message_start", kinds
        assert kinds[1] == "content_block_start", kinds
        assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"], kinds
        assert set(kinds[2:-3]) <= {"content_block_delta", "ping"}, kinds
        return " ".join(dict.fromkeys(kinds)) + f" ({len(kinds)} events)"

    def tool_use():
        message = client.messages.create(
            model=model, max_tokens=64, messages=TOOL_MESSAGES, tools=TOOLS
        )
        block = message.content[0]
        assert block.type == "tool_use", message.content
        assert block.name == "get_weather", block
        assert message.stop_reason == "tool_use", message.stop_reason
        return f"{block.name}({block.input}) id {block.id}"

    def tool_use_stream():
        with client.messages.stream(
            model=model, max_tokens=64, messages=TOOL_MESSAGES, tools=TOOLS
        ) as stream:
            final = stream.get_final_message()
        block = final.content[0]
        assert block.type == "tool_use", final.content
        assert block.name == "get_weather", block
        assert final.stop_reason == "tool_use", final.stop_reason
        return f"{block.name}({block.input}) id {block.id}"

    checks = [
        ("messages.create", create),
        ("messages.stream text_stream", stream_text),
        ("raw stream events", raw_events),
    ]
    if model in tool_models:
        checks += [("tool_use", tool_use), ("tool_use (stream)", tool_use_stream)]
    return checks


if __name__ == "__main__":
    sys.exit(main())
