#!/usr/bin/env python3
"""Checks that the official `openai` Python SDK works against switchyard unchanged
apart from base_url: a completion, a stream, a stream with usage, and an error the
SDK maps to its exception type. Prints one PASS/FAIL line per check; exits 1 on
any failure, 2 when the SDK is missing."""

import argparse
import sys
import traceback

try:
    import openai
except ImportError:
    print("FAIL import openai: the SDK is not installed (python3 -m pip install openai)")
    sys.exit(2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--api-key", default="sk-switchyard-sdk-check")
    parser.add_argument("--model", default="chat")
    args = parser.parse_args()

    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, timeout=20.0, max_retries=0)
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Say hello."},
    ]
    failures = 0
    expected = {}

    def check(name, fn):
        nonlocal failures
        try:
            detail = fn()
            print(f"PASS {name}: {detail}")
        except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
            failures += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            traceback.print_exc(limit=3, file=sys.stdout)

    def non_streaming():
        completion = client.chat.completions.create(model=args.model, messages=messages)
        text = completion.choices[0].message.content
        assert isinstance(text, str) and text.startswith("Hello from"), f"content {text!r}"
        assert completion.choices[0].finish_reason == "stop", completion.choices[0].finish_reason
        assert completion.object == "chat.completion", completion.object
        expected["text"] = text
        return f"{text!r} (model {completion.model})"

    def streaming():
        stream = client.chat.completions.create(model=args.model, messages=messages, stream=True)
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
        if "text" in expected:
            assert text == expected["text"], f"streamed {text!r} != {expected['text']!r}"
        assert len(pieces) > 1, f"only {len(pieces)} content piece(s): not streamed"
        assert finish == "stop", f"finish_reason {finish!r}"
        return f"{text!r} in {chunks} chunks"

    def streaming_usage():
        stream = client.chat.completions.create(
            model=args.model,
            messages=messages,
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

    def unknown_model():
        try:
            client.chat.completions.create(model="no-such-model", messages=messages)
        except openai.NotFoundError as e:
            assert e.status_code == 404
            body = e.body if isinstance(e.body, dict) else {}
            message = body.get("message") or str(e)
            assert args.model in message, f"known models not listed: {message!r}"
            return f"NotFoundError: {message!r}"
        raise AssertionError("no error for an unknown model")

    check("chat.completions.create", non_streaming)
    check("chat.completions.create(stream=True)", streaming)
    check("chat.completions.create(stream=True, include_usage)", streaming_usage)
    check("unknown model -> openai.NotFoundError", unknown_model)
    print(f"{'PASS' if failures == 0 else 'FAIL'} openai {openai.__version__}: {4 - failures}/4 checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
