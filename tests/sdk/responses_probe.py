#!/usr/bin/env python3
"""Records what each Responses API client sends, and how its parser takes canned
answers, against capture_server.py run in-process on 127.0.0.1. Prints, per probe,
the request bodies and headers each client sent and the outcome (text, events, or
the exception raised). A research tool (its output fed /work/sdk-findings.md), not
a check: it exits 0 unless a client could not be imported.

Usage: target/sdk-venv/bin/python tests/sdk/responses_probe.py [--only NAME,...]"""

import argparse
import asyncio
import json
import os
import sys
import threading
import traceback

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_TELEMETRY", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import capture_server  # noqa: E402

KEY = "sk-capture-client-key"
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
NOISY_HEADERS = {"host", "content-length", "accept-encoding", "connection"}


def start_server():
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), capture_server.Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def reset():
    with capture_server.LOCK:
        capture_server.REQUESTS.clear()


def captured():
    with capture_server.LOCK:
        return list(capture_server.REQUESTS)


def show_requests():
    for r in captured():
        headers = {k.lower(): v for k, v in r["headers"] if k.lower() not in NOISY_HEADERS}
        print(f"  -> {r['method']} {r['path']}")
        print(f"     headers: {json.dumps(headers, sort_keys=True)}")
        print(f"     body: {json.dumps(r['body'], sort_keys=True)}")


def probe(name, fn):
    reset()
    print(f"=== {name}")
    try:
        result = fn()
        print(f"  OK: {result}")
    except Exception as e:  # noqa: BLE001 - the probe reports what each client raises
        print(f"  RAISED {type(e).__module__}.{type(e).__name__}: {e}")
        traceback.print_exc(limit=-2, file=sys.stdout)
    show_requests()


def openai_probes(base):
    import openai

    print(f"# openai {openai.__version__}")
    client = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0, timeout=10)

    def plain():
        r = client.responses.create(model="m", input="Say hello.")
        return f"output_text={r.output_text!r} usage={r.usage}"

    def with_tools():
        r = client.responses.create(model="m", input="Weather in Paris?", tools=[TOOL])
        return f"output={[o.model_dump() for o in r.output]}"

    def tool_round_trip():
        first = client.responses.create(model="m", input="Weather in Paris?", tools=[TOOL])
        call = first.output[0]
        items = [
            {"role": "user", "content": "Weather in Paris?"},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ]
        r = client.responses.create(model="m", input=items, tools=[TOOL])
        return f"output_text={r.output_text!r}"

    def stream_create(model="m"):
        def run():
            kinds = []
            text = []
            for event in client.responses.create(model=model, input="Say hello.", stream=True):
                kinds.append(event.type)
                if event.type == "response.output_text.delta":
                    text.append(event.delta)
            return f"events={kinds} text={''.join(text)!r}"

        return run

    def stream_manager(model="m", tools=None):
        def run():
            kinds = []
            extra = {"tools": tools} if tools else {}
            with client.responses.stream(model=model, input="Say hello.", **extra) as stream:
                for event in stream:
                    kinds.append(event.type)
                final = stream.get_final_response()
            return f"events={kinds} final.output_text={final.output_text!r} output={[o.type for o in final.output]}"

        return run

    def headers():
        raw = client.responses.with_raw_response.create(
            model="m",
            input="Say hello.",
            extra_headers={"openai-beta": "responses=v1", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        )
        return f"status={raw.status_code} x-request-id={raw.headers.get('x-request-id')} parsed={raw.parse().output_text!r}"

    probe("openai responses.create (plain)", plain)
    probe("openai responses.create (tools)", with_tools)
    probe("openai responses.create (function_call_output round trip)", tool_round_trip)
    probe("openai responses.create(stream=True)", stream_create())
    probe("openai responses.stream", stream_manager())
    probe("openai responses.stream (tools)", stream_manager(tools=[TOOL]))
    probe("openai with_raw_response + extra_headers", headers)
    for mode in [
        "mode-error",
        "mode-error-nested",
        "mode-failed",
        "mode-minimal",
        "mode-no-created",
        "mode-bare-completed",
        "mode-data-only",
        "mode-no-seq",
    ]:
        probe(f"openai create(stream=True) [{mode}]", stream_create(mode))
        probe(f"openai responses.stream [{mode}]", stream_manager(mode))

    def http_500():
        client.responses.create(model="mode-http-500", input="x")

    probe("openai create [mode-http-500]", http_500)

    def previous():
        r = client.responses.create(model="m", input="And again.", previous_response_id="resp_abc")
        return r.output_text

    probe("openai create(previous_response_id=...)", previous)


def agents_probes(base):
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
    from openai import AsyncOpenAI

    from importlib.metadata import version

    print(f"# openai-agents {version('openai-agents')}")
    set_tracing_disabled(True)

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return f"sunny in {city}"

    def make(model="m"):
        client = AsyncOpenAI(base_url=base, api_key=KEY, max_retries=0, timeout=10)
        return Agent(
            name="weather",
            instructions="Answer with the weather.",
            tools=[get_weather],
            model=OpenAIResponsesModel(model=model, openai_client=client),
        )

    def run():
        result = asyncio.run(Runner.run(make(), "Weather in Paris?", max_turns=4))
        return f"final_output={result.final_output!r} items={[type(i).__name__ for i in result.new_items]}"

    def run_streamed():
        async def go():
            result = Runner.run_streamed(make(), "Weather in Paris?", max_turns=4)
            kinds = []
            async for event in result.stream_events():
                kinds.append(getattr(event, "type", "?"))
            return f"final_output={result.final_output!r} event kinds={sorted(set(kinds))}"

        return asyncio.run(go())

    def run_error():
        async def go():
            result = Runner.run_streamed(make("mode-error"), "Weather in Paris?", max_turns=2)
            async for _ in result.stream_events():
                pass
            return result.final_output

        return asyncio.run(go())

    probe("agents Runner.run", run)
    probe("agents Runner.run_streamed", run_streamed)
    probe("agents Runner.run_streamed [mode-error]", run_error)


def langchain_probes(base):
    import langchain_openai
    from langchain_openai import ChatOpenAI

    print(f"# langchain-openai {getattr(langchain_openai, '__version__', '?')}")

    def llm(model="m", **kw):
        return ChatOpenAI(model=model, use_responses_api=True, base_url=base, api_key=KEY, max_retries=0, timeout=10, **kw)

    def invoke():
        m = llm().invoke("Say hello.")
        return f"content={m.content!r} text={m.text!r} usage={m.usage_metadata}"

    def stream():
        chunks = list(llm().stream("Say hello."))
        text = "".join(c.text if isinstance(c.text, str) else c.text() for c in chunks)
        return f"{len(chunks)} chunks text={text!r}"

    def tools():
        m = llm().bind_tools([TOOL]).invoke("Weather in Paris?")
        return f"tool_calls={m.tool_calls}"

    def stream_error():
        return list(llm("mode-error").stream("Say hello."))

    def stream_failed():
        return list(llm("mode-failed").stream("Say hello."))

    probe("langchain invoke", invoke)
    probe("langchain stream", stream)
    probe("langchain bind_tools invoke", tools)
    probe("langchain stream [mode-error]", stream_error)
    probe("langchain stream [mode-failed]", stream_failed)


def litellm_probes(base):
    import litellm

    from importlib.metadata import version

    litellm.suppress_debug_info = True
    print(f"# litellm {version('litellm')}")

    def plain():
        r = litellm.responses(model="openai/m", api_base=base, api_key=KEY, input="Say hello.")
        return f"type={type(r).__name__} output_text={getattr(r, 'output_text', None)!r} output={r.output}"

    def streamed(model="openai/m"):
        def run():
            kinds = []
            text = []
            for event in litellm.responses(model=model, api_base=base, api_key=KEY, input="Say hello.", stream=True):
                kind = getattr(event, "type", None)
                kind = getattr(kind, "value", kind)
                kinds.append(kind)
                if kind == "response.output_text.delta":
                    text.append(event.delta)
            return f"events={kinds} text={''.join(text)!r}"

        return run

    probe("litellm.responses", plain)
    # A model litellm does not know is streamed "faked": one non-streaming request,
    # events synthesized from its answer. Registered with supports_native_streaming,
    # the request carries stream: true and litellm parses the SSE itself.
    probe("litellm.responses(stream=True) [unregistered model: faked]", streamed())
    probe("litellm.responses(stream=True) [unregistered, mode-error: faked]", streamed("openai/mode-error"))
    litellm.register_model({"m": {"litellm_provider": "openai", "mode": "responses", "supports_native_streaming": True}})
    probe("litellm.responses(stream=True) [registered: native]", streamed())


MATRIX_MODES = [
    "mode-error",
    "mode-error-nested",
    "mode-failed",
    "mode-minimal",
    "mode-no-created",
    "mode-no-items",
    "mode-bare-completed",
    "mode-completed-empty",
    "mode-data-only",
    "mode-no-seq",
    "mode-done",
    "mode-truncated",
]


def matrix_probes(base):
    """Each streaming parser against each canned stream shape, with and without a
    forced function call (the capture server calls the first tool)."""
    import litellm
    import openai
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
    from langchain_openai import ChatOpenAI

    set_tracing_disabled(True)
    litellm.suppress_debug_info = True
    litellm.register_model(
        {m: {"litellm_provider": "openai", "mode": "responses", "supports_native_streaming": True} for m in MATRIX_MODES + ["m", "mode-bare-json"]}
    )
    client = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0, timeout=10)

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return f"sunny in {city}"

    def openai_stream(mode, tools):
        extra = {"tools": [TOOL]} if tools else {}
        with client.responses.stream(model=mode, input="Say hello.", **extra) as stream:
            for _ in stream:
                pass
            final = stream.get_final_response()
        return f"output_text={final.output_text!r} output={[o.type for o in final.output]} usage={final.usage is not None}"

    def agents_stream(mode, tools):
        async def go():
            from openai import AsyncOpenAI

            agent = Agent(
                name="a",
                instructions="x",
                tools=[get_weather] if tools else [],
                model=OpenAIResponsesModel(model=mode, openai_client=AsyncOpenAI(base_url=base, api_key=KEY, max_retries=0, timeout=10)),
            )
            result = Runner.run_streamed(agent, "Weather in Paris?", max_turns=3)
            async for _ in result.stream_events():
                pass
            return f"final_output={result.final_output!r} items={[type(i).__name__ for i in result.new_items]}"

        return asyncio.run(go())

    def agents_run(mode, tools):
        async def go():
            from openai import AsyncOpenAI

            agent = Agent(
                name="a",
                instructions="x",
                tools=[get_weather] if tools else [],
                model=OpenAIResponsesModel(model=mode, openai_client=AsyncOpenAI(base_url=base, api_key=KEY, max_retries=0, timeout=10)),
            )
            result = await Runner.run(agent, "Weather in Paris?", max_turns=3)
            return f"final_output={result.final_output!r}"

        return asyncio.run(go())

    def langchain_stream(mode, tools):
        llm = ChatOpenAI(model=mode, use_responses_api=True, base_url=base, api_key=KEY, max_retries=0, timeout=10)
        if tools:
            llm = llm.bind_tools([TOOL])
        chunks = list(llm.stream("Say hello."))
        total = chunks[0]
        for c in chunks[1:]:
            total = total + c
        return f"text={total.text!r} tool_calls={total.tool_calls} usage={total.usage_metadata}"

    def litellm_stream(mode, tools):
        extra = {"tools": [TOOL]} if tools else {}
        kinds = []
        text = []
        for event in litellm.responses(model=f"openai/{mode}", api_base=base, api_key=KEY, input="Say hello.", stream=True, **extra):
            kind = getattr(event.type, "value", event.type)
            kinds.append(kind)
            if kind == "response.output_text.delta":
                text.append(event.delta)
        return f"text={''.join(text)!r} last={kinds[-1] if kinds else None}"

    parsers = [
        ("openai responses.stream", openai_stream),
        ("agents run_streamed", agents_stream),
        ("langchain stream", langchain_stream),
        ("litellm stream", litellm_stream),
    ]
    for mode in MATRIX_MODES:
        for tools in (False, True):
            for name, fn in parsers:
                label = f"{name} [{mode}{' +tool' if tools else ''}]"
                reset()
                try:
                    print(f"MATRIX OK     {label}: {fn(mode, tools)}")
                except Exception as e:  # noqa: BLE001
                    print(f"MATRIX RAISED {label}: {type(e).__module__}.{type(e).__name__}: {str(e)[:200]}")
    def openai_create(mode, tools):
        extra = {"tools": [TOOL]} if tools else {}
        r = client.responses.create(model=mode, input="Say hello.", **extra)
        return f"output_text={r.output_text!r} output={[o.type for o in r.output]} usage={r.usage}"

    def langchain_invoke(mode, tools):
        llm = ChatOpenAI(model=mode, use_responses_api=True, base_url=base, api_key=KEY, max_retries=0, timeout=10)
        if tools:
            llm = llm.bind_tools([TOOL])
        m = llm.invoke("Say hello.")
        return f"text={m.text!r} tool_calls={m.tool_calls} usage={m.usage_metadata}"

    def litellm_plain(mode, tools):
        extra = {"tools": [TOOL]} if tools else {}
        r = litellm.responses(model=f"openai/{mode}", api_base=base, api_key=KEY, input="Say hello.", **extra)
        return f"output={[o.type for o in r.output]} usage={r.usage}"

    for tools in (False, True):
        for name, fn in [
            ("openai create", openai_create),
            ("agents Runner.run", agents_run),
            ("langchain invoke", langchain_invoke),
            ("litellm plain", litellm_plain),
        ]:
            label = f"{name} [mode-bare-json{' +tool' if tools else ''}]"
            try:
                print(f"MATRIX OK     {label}: {fn('mode-bare-json', tools)}")
            except Exception as e:  # noqa: BLE001
                print(f"MATRIX RAISED {label}: {type(e).__module__}.{type(e).__name__}: {str(e)[:200]}")
    for mode in ["mode-bare-completed", "mode-http-500"]:
        reset()
        try:
            print(f"MATRIX OK     agents Runner.run [{mode} +tool]: {agents_run(mode, True)}")
        except Exception as e:  # noqa: BLE001
            print(f"MATRIX RAISED agents Runner.run [{mode} +tool]: {type(e).__module__}.{type(e).__name__}: {str(e)[:200]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="openai,agents,langchain,litellm,matrix")
    args = parser.parse_args()
    port = start_server()
    base = f"http://127.0.0.1:{port}/v1"
    table = {
        "openai": openai_probes,
        "agents": agents_probes,
        "langchain": langchain_probes,
        "litellm": litellm_probes,
        "matrix": matrix_probes,
    }
    for name in args.only.split(","):
        table[name](base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
