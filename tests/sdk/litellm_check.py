#!/usr/bin/env python3
"""Checks `litellm.responses(model="openai/<route>", api_base=switchyard, ...)`:
for every model in --models, a plain call answers the route's chat completion text
(the mock's deterministic answer) with usage, and a streamed call yields more than
one text delta adding up to the same text, ending in response.completed.

litellm fakes streaming for models missing from its cost map (one non-streaming
request, events synthesized from it): each route is registered with
`supports_native_streaming`, and with --mock the check confirms from the mock's
GET /_mock/last_request that the provider was asked to stream. On --broken-model
a stream reset mid-answer raises. Exits 1 on any
failure, 2 without the package."""

import argparse
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")

try:
    from importlib.metadata import version

    import litellm
    import openai
except ImportError as e:
    print(f"FAIL import litellm: {e} (run through tests/sdk/responses_run.sh, which installs the SDK virtualenv)")
    sys.exit(2)

from checklib import PROMPT, Checker, ExpectedTexts, last_request, mock_body, split


def asked_to_stream(record):
    """Whether the provider request streams: `"stream": true` in an OpenAI or
    Anthropic body, or Gemini's and Bedrock's streaming paths."""
    path = record.get("path", "")
    if ":streamGenerateContent" in path or path.endswith("/converse-stream"):
        return True
    body = mock_body(record)
    return isinstance(body, dict) and body.get("stream") is True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--models", default="via-anthropic")
    parser.add_argument("--mock", default="", help="host:port serving GET /_mock/last_request")
    parser.add_argument("--broken-model", default="", help="a route whose target resets mid-stream")
    args = parser.parse_args()
    litellm.suppress_debug_info = True
    c = Checker(f"litellm {version('litellm')}")
    expected = ExpectedTexts(openai.OpenAI(base_url=args.base_url, api_key=args.api_key, timeout=20.0, max_retries=0))
    models = split(args.models)
    litellm.register_model(
        {
            m: {"litellm_provider": "openai", "mode": "responses", "supports_native_streaming": True}
            for m in models + split(args.broken_model)
        }
    )

    def call(model, **extra):
        return litellm.responses(
            model=f"openai/{model}",
            api_base=args.base_url,
            api_key=args.api_key,
            input=PROMPT,
            timeout=20.0,
            num_retries=0,
            **extra,
        )

    for model in models:

        def plain(model=model):
            r = call(model)
            texts = [
                part.text
                for item in r.output
                if getattr(item, "type", None) == "message"
                for part in item.content
                if getattr(part, "type", None) == "output_text"
            ]
            want = expected(model)
            assert "".join(texts) == want, f"text {''.join(texts)!r} != {want!r}"
            assert r.usage and r.usage.output_tokens > 0, f"usage {r.usage}"
            return f"{''.join(texts)!r} usage {r.usage.input_tokens}+{r.usage.output_tokens}"

        def streamed(model=model):
            kinds, pieces = [], []
            for event in call(model, stream=True):
                kind = getattr(event.type, "value", event.type)
                kinds.append(kind)
                if kind == "response.output_text.delta":
                    pieces.append(event.delta)
            want = expected(model)
            assert "".join(pieces) == want, f"streamed {''.join(pieces)!r} != {want!r}"
            assert len(pieces) > 1, f"{len(pieces)} delta(s): not streamed"
            assert kinds[-1] == "response.completed", f"last event {kinds[-1]!r}"
            note = ""
            if args.mock:
                record = last_request(args.mock)
                assert asked_to_stream(record), f"the provider was not asked to stream: {record.get('path')} {mock_body(record)}"
                note = ", the provider streamed"
            return f"{len(pieces)} deltas in {len(kinds)} events{note}"

        c.check(f"[{model}] litellm.responses", plain)
        c.check(f"[{model}] litellm.responses(stream=True)", streamed)
    if args.broken_model:

        def broken():
            kinds = []
            try:
                for event in call(args.broken_model, stream=True):
                    kinds.append(getattr(event.type, "value", event.type))
            except Exception as e:  # noqa: BLE001 - litellm wraps the failure in its own classes
                assert "response.output_text.delta" in kinds, f"failed before any text: {kinds}"
                assert "response.completed" not in kinds, kinds
                return f"{type(e).__name__} after {len(kinds)} events"
            raise AssertionError(f"no error: {kinds}")

        c.check(f"[{args.broken_model}] a mid-stream reset is raised", broken)
    return c.finish(f"{len(models)} routes: {', '.join(models)}")


if __name__ == "__main__":
    sys.exit(main())
