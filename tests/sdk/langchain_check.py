#!/usr/bin/env python3
"""Checks LangChain's `ChatOpenAI(use_responses_api=True, base_url=switchyard)`:
for every model in --models, `invoke` answers the route's chat completion text
(the mock's deterministic answer) with usage, and `stream` yields more than one
chunk that add up to the same text; for --tool-models, `bind_tools(...,
tool_choice="required")` makes the mock call the tool, whole and streamed (the
call's name and id come from the stream's output_item events); on --broken-model
a stream reset mid-answer raises rather than returning the partial text (LangChain
returns it silently when a stream just ends). Exits 1 on any
failure, 2 without the package."""

import argparse
import sys

try:
    from importlib.metadata import version

    import openai
    from langchain_openai import ChatOpenAI
except ImportError as e:
    print(f"FAIL import langchain_openai: {e} (run through tests/sdk/responses_run.sh, which installs the SDK virtualenv)")
    sys.exit(2)

from checklib import PROMPT, TOOL, TOOL_PROMPT, Checker, ExpectedTexts, split


def text_of(message):
    text = message.text
    return text() if callable(text) else text


def verify_call(calls):
    assert len(calls) == 1, f"{len(calls)} tool calls: {calls}"
    call = calls[0]
    assert call["name"] == TOOL["name"], f"tool call {call}"
    assert isinstance(call["args"].get("text"), str), f"args {call['args']}"
    assert call["id"], f"no call id: {call}"
    return f"{call['name']}({call['args']}) id {call['id']}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--models", default="via-anthropic")
    parser.add_argument("--tool-models", default="via-anthropic")
    parser.add_argument("--broken-model", default="", help="a route whose target resets mid-stream")
    args = parser.parse_args()
    c = Checker(f"langchain-openai {version('langchain-openai')}")
    expected = ExpectedTexts(openai.OpenAI(base_url=args.base_url, api_key=args.api_key, timeout=20.0, max_retries=0))

    def llm(model):
        return ChatOpenAI(
            model=model,
            use_responses_api=True,
            base_url=args.base_url,
            api_key=args.api_key,
            timeout=20.0,
            max_retries=0,
        )

    models = split(args.models)
    for model in models:

        def invoke(model=model):
            message = llm(model).invoke(PROMPT)
            want = expected(model)
            assert text_of(message) == want, f"text {text_of(message)!r} != {want!r}"
            usage = message.usage_metadata
            assert usage and usage["input_tokens"] > 0 and usage["output_tokens"] > 0, f"usage {usage}"
            return f"{text_of(message)!r} usage {usage['input_tokens']}+{usage['output_tokens']}"

        def stream(model=model):
            chunks = list(llm(model).stream(PROMPT))
            total = chunks[0]
            for chunk in chunks[1:]:
                total = total + chunk
            pieces = [text_of(chunk) for chunk in chunks if text_of(chunk)]
            want = expected(model)
            assert text_of(total) == want, f"streamed {text_of(total)!r} != {want!r}"
            assert len(pieces) > 1, f"{len(pieces)} text chunk(s): not streamed"
            assert total.usage_metadata, "no usage on the stream"
            return f"{len(pieces)} text chunks, equal to invoke's text"

        c.check(f"[{model}] invoke", invoke)
        c.check(f"[{model}] stream", stream)

    for model in split(args.tool_models):

        def tools(model=model):
            message = llm(model).bind_tools([TOOL], tool_choice="required").invoke(TOOL_PROMPT)
            return verify_call(message.tool_calls)

        def tools_stream(model=model):
            chunks = list(llm(model).bind_tools([TOOL], tool_choice="required").stream(TOOL_PROMPT))
            total = chunks[0]
            for chunk in chunks[1:]:
                total = total + chunk
            return verify_call(total.tool_calls)

        c.check(f"[{model}] bind_tools(tool_choice=required).invoke", tools)
        c.check(f"[{model}] bind_tools(tool_choice=required).stream", tools_stream)
    if args.broken_model:

        def broken():
            pieces = []
            try:
                for chunk in llm(args.broken_model).stream(PROMPT):
                    pieces.append(text_of(chunk))
            except (openai.APIError, ValueError) as e:
                # LangChain raises the response.failed event's error as a ValueError.
                assert "".join(pieces).startswith("Hello from"), f"failed before any text: {pieces}"
                return f"{type(e).__name__} after {''.join(pieces)!r}: {e}"
            raise AssertionError(f"no error: a silently short answer {''.join(pieces)!r}")

        c.check(f"[{args.broken_model}] a mid-stream reset is raised (not a short answer)", broken)
    return c.finish(f"{len(models)} routes: {', '.join(models)}")


if __name__ == "__main__":
    sys.exit(main())
