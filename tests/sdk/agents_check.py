#!/usr/bin/env python3
"""Checks the `openai-agents` SDK against switchyard's /v1/responses: an `Agent`
with one `@function_tool` on `OpenAIResponsesModel` over
`AsyncOpenAI(base_url=switchyard)`, for every model in --models. The agent's
`tool_choice="required"` makes the mock call the tool (with {"text": "w0 ... "});
the SDK runs it, sends its output back (the SDK resets tool_choice after a tool
ran), and the mock's text answer is the final output. Run whole (`Runner.run`) and
streamed (`Runner.run_streamed`); on --broken-model a stream reset mid-answer is
raised and the tool never runs. Exits 1 on any failure, 2 without the SDK."""

import argparse
import asyncio
import os
import sys

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

try:
    from importlib.metadata import version

    from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
    from openai import AsyncOpenAI
except ImportError as e:
    print(f"FAIL import agents: {e} (run through tests/sdk/responses_run.sh, which installs the SDK virtualenv)")
    sys.exit(2)

from checklib import TOOL_PROMPT, Checker, split

CALLS = []


@function_tool
def lookup(text: str) -> str:
    """Looks a text up."""
    CALLS.append(text)
    return f"found {len(text.split())} words"


def agent_for(base_url, api_key, model):
    client = AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=20.0, max_retries=0)
    return Agent(
        name="lookup-agent",
        instructions="Use the lookup tool, then answer.",
        tools=[lookup],
        model=OpenAIResponsesModel(model=model, openai_client=client),
        model_settings=ModelSettings(tool_choice="required"),
    )


def verify(result, calls_before):
    kinds = [type(item).__name__ for item in result.new_items]
    ran = CALLS[calls_before:]
    assert len(ran) == 1, f"the tool ran {len(ran)} times: {ran}"
    assert ran[0].startswith("w0"), f"tool called with {ran[0]!r}"
    for kind in ("ToolCallItem", "ToolCallOutputItem", "MessageOutputItem"):
        assert kind in kinds, f"no {kind} in {kinds}"
    assert kinds.index("ToolCallOutputItem") < kinds.index("MessageOutputItem"), kinds
    final = result.final_output
    assert isinstance(final, str) and final.startswith("Hello from"), f"final_output {final!r}"
    return f"tool ran with {ran[0]!r}, final_output {final!r}, items {kinds}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--models", default="via-anthropic")
    parser.add_argument("--broken-model", default="", help="a route whose target resets mid-stream")
    args = parser.parse_args()
    set_tracing_disabled(True)
    c = Checker(f"openai-agents {version('openai-agents')}")
    models = split(args.models)

    for model in models:

        def run(model=model):
            before = len(CALLS)
            agent = agent_for(args.base_url, args.api_key, model)
            result = asyncio.run(Runner.run(agent, TOOL_PROMPT, max_turns=4))
            return verify(result, before)

        def run_streamed(model=model):
            async def go():
                agent = agent_for(args.base_url, args.api_key, model)
                result = Runner.run_streamed(agent, TOOL_PROMPT, max_turns=4)
                deltas = 0
                async for event in result.stream_events():
                    data = getattr(event, "data", None)
                    if getattr(data, "type", None) == "response.output_text.delta":
                        deltas += 1
                return result, deltas

            before = len(CALLS)
            result, deltas = asyncio.run(go())
            assert deltas > 1, f"{deltas} text delta(s): not streamed"
            return f"{deltas} text deltas; " + verify(result, before)

        c.check(f"[{model}] Runner.run: tool call -> tool -> answer", run)
        c.check(f"[{model}] Runner.run_streamed: tool call -> tool -> answer", run_streamed)
    if args.broken_model:

        def broken():
            async def go():
                agent = agent_for(args.base_url, args.api_key, args.broken_model)
                result = Runner.run_streamed(agent, TOOL_PROMPT, max_turns=2)
                async for _ in result.stream_events():
                    pass
                return result.final_output

            before = len(CALLS)
            try:
                final = asyncio.run(go())
            except Exception as e:  # noqa: BLE001 - the SDK raises its own or openai's error
                assert len(CALLS) == before, "the tool ran on a broken call"
                return f"{type(e).__module__}.{type(e).__name__}: {e}"
            raise AssertionError(f"no error, final_output {final!r}")

        c.check(f"[{args.broken_model}] Runner.run_streamed: a broken stream is raised", broken)
    return c.finish(f"{len(models)} routes: {', '.join(models)}")


if __name__ == "__main__":
    sys.exit(main())
