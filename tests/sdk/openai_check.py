#!/usr/bin/env python3
"""Checks that the official `openai` Python SDK works against switchyard unchanged
apart from base_url. For every model in --models (one route each, e.g. one per
provider kind): a completion, a stream whose text equals the completion's, a
stream with usage and, for the models in --tool-models (routes whose mock dialect
answers tool calls: the Anthropic dialect's "use a tool" rule), a tool call
whole and streamed; other models skip tool calls and say so. Once: an unknown
model, which the SDK maps to openai.NotFoundError; for --completions-models the
legacy `completions.create` whole and streamed (passed through), and on
--no-completions-model its 400 (no OpenAI-shaped target). Prints one PASS/FAIL (or SKIP)
line per model and check; exits 1 on any failure, 2 when the SDK is missing."""

import argparse
import json
import sys
import traceback

try:
    import openai
except ImportError:
    print("FAIL import openai: the SDK is not installed (run the check through its tests/sdk/*.sh, which installs tests/sdk/requirements.txt into the SDK virtualenv)")
    sys.exit(2)

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Say hello."},
]
TOOL_MESSAGES = [{"role": "user", "content": "Please use a tool to get the weather in Paris."}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def split(text):
    return [m.strip() for m in text.split(",") if m.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--api-key", default="sk-switchyard-sdk-check")
    parser.add_argument(
        "--models",
        default="chat",
        help="comma-separated models (routes), e.g. via-openai,via-azure,via-anthropic",
    )
    parser.add_argument(
        "--tool-models",
        default="via-anthropic",
        help="comma-separated models whose target's mock dialect answers tool calls",
    )
    parser.add_argument(
        "--completions-models",
        default="",
        help="routes with an OpenAI-shaped target: legacy /v1/completions passes through",
    )
    parser.add_argument(
        "--no-completions-model",
        default="",
        help="a route with no OpenAI-shaped target: legacy /v1/completions is a 400",
    )
    args = parser.parse_args()
    models = split(args.models)
    tool_models = set(split(args.tool_models))
    if not models:
        parser.error("--models is empty")

    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, timeout=20.0, max_retries=0)
    failures = 0
    passes = 0

    def check(model, name, fn):
        nonlocal failures, passes
        label = f"[{model}] {name}" if model else name
        try:
            detail = fn()
            passes += 1
            print(f"PASS {label}: {detail}")
        except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
            failures += 1
            print(f"FAIL {label}: {type(e).__name__}: {e}")
            traceback.print_exc(limit=3, file=sys.stdout)

    def checks_for(model):
        expected = {}

        def non_streaming():
            completion = client.chat.completions.create(model=model, messages=MESSAGES)
            text = completion.choices[0].message.content
            assert isinstance(text, str) and text.startswith("Hello from"), f"content {text!r}"
            assert completion.choices[0].finish_reason == "stop", completion.choices[0].finish_reason
            assert completion.object == "chat.completion", completion.object
            expected["text"] = text
            return f"{text!r} (model {completion.model})"

        def streaming():
            stream = client.chat.completions.create(model=model, messages=MESSAGES, stream=True)
            pieces = []
            chunks = 0
            finish = None
            for chunk in stream:
                chunks += 1
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.delta and choice.delta.content:
                    pieces.append(choice.delta.content)
                if choice.finish_reason:
                    finish = choice.finish_reason
            text = "".join(pieces)
            assert text.startswith("Hello from"), f"streamed {text!r}"
            assert "text" in expected, "no non-streaming text to compare with"
            assert text == expected["text"], f"streamed {text!r} != {expected['text']!r}"
            assert len(pieces) > 1, f"only {len(pieces)} content piece(s): not streamed"
            assert finish == "stop", f"finish_reason {finish!r}"
            return f"{text!r} in {chunks} chunks, equal to the non-streaming text"

        def streaming_usage():
            stream = client.chat.completions.create(
                model=model,
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
            usage = None
            for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
            assert usage is not None, "no usage chunk"
            assert usage.total_tokens > 0, f"usage {usage}"
            return f"usage {usage.prompt_tokens}+{usage.completion_tokens}"

        def tool_call():
            completion = client.chat.completions.create(
                model=model, messages=TOOL_MESSAGES, tools=TOOLS
            )
            choice = completion.choices[0]
            calls = choice.message.tool_calls
            assert calls, f"no tool_calls in {choice.message}"
            call = calls[0]
            assert call.type == "function", call
            assert call.function.name == "get_weather", call.function
            json.loads(call.function.arguments or "{}")
            assert choice.finish_reason == "tool_calls", choice.finish_reason
            return f"{call.function.name}({call.function.arguments}) id {call.id}"

        def tool_call_streaming():
            stream = client.chat.completions.create(
                model=model, messages=TOOL_MESSAGES, tools=TOOLS, stream=True
            )
            name = None
            arguments = []
            finish = None
            for chunk in stream:
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                for call in (choice.delta.tool_calls or []) if choice.delta else []:
                    if call.function and call.function.name:
                        name = call.function.name
                    if call.function and call.function.arguments:
                        arguments.append(call.function.arguments)
                if choice.finish_reason:
                    finish = choice.finish_reason
            args_text = "".join(arguments)
            assert name == "get_weather", f"tool name {name!r}"
            json.loads(args_text or "{}")
            assert finish == "tool_calls", f"finish_reason {finish!r}"
            return f"{name}({args_text})"

        checks = [
            ("chat.completions.create", non_streaming),
            ("chat.completions.create(stream=True)", streaming),
            ("chat.completions.create(stream=True, include_usage)", streaming_usage),
        ]
        if model in tool_models:
            checks += [
                ("tool_calls", tool_call),
                ("tool_calls (stream=True)", tool_call_streaming),
            ]
        return checks

    for model in models:
        for name, fn in checks_for(model):
            check(model, name, fn)
        if model not in tool_models:
            print(f"SKIP [{model}] tool_calls: the target's mock dialect has no tool-call rule")

    def unknown_model():
        try:
            client.chat.completions.create(model="no-such-model", messages=MESSAGES)
        except openai.NotFoundError as e:
            assert e.status_code == 404
            body = e.body if isinstance(e.body, dict) else {}
            message = body.get("message") or str(e)
            missing = [m for m in models if m not in message]
            assert not missing, f"known models {missing} not listed: {message!r}"
            return f"NotFoundError: {message!r}"
        raise AssertionError("no error for an unknown model")

    check(None, "unknown model -> openai.NotFoundError", unknown_model)

    for model in split(args.completions_models):

        def legacy(model=model):
            whole = client.completions.create(model=model, prompt="Say hello.", max_tokens=32)
            text = whole.choices[0].text
            assert whole.object == "text_completion", whole.object
            assert text.startswith("Hello from"), f"text {text!r}"
            pieces = [
                c.choices[0].text
                for c in client.completions.create(model=model, prompt="Say hello.", max_tokens=32, stream=True)
                if c.choices
            ]
            assert "".join(pieces) == text, f"streamed {''.join(pieces)!r} != {text!r}"
            assert len(pieces) > 1, f"{len(pieces)} piece(s): not streamed"
            return f"{text!r} whole and in {len(pieces)} pieces"

        check(model, "completions.create (legacy), whole and streamed", legacy)
    if args.no_completions_model:

        def no_legacy():
            try:
                client.completions.create(model=args.no_completions_model, prompt="Say hello.")
            except openai.BadRequestError as e:
                return f"BadRequestError: {e.message[:120]}"
            raise AssertionError("legacy completions answered on a route without an OpenAI-shaped target")

        check(args.no_completions_model, "completions.create (legacy) -> openai.BadRequestError", no_legacy)
    total = passes + failures
    print(
        f"{'PASS' if failures == 0 else 'FAIL'} openai {openai.__version__}: "
        f"{passes}/{total} checks passed over {len(models)} models ({', '.join(models)})"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
