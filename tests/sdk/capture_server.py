#!/usr/bin/env python3
"""A tiny capturing HTTP server that speaks just enough of the OpenAI Responses API
(and chat completions) to see what a client sends and which answers its parser
accepts. Used by responses_probe.py to write down each client's requests; not a
provider model: the answers are canned.

Every request is recorded (method, path, headers as [[name, value]], body as JSON
when it parses) and can be read back with GET /_capture/requests (all, in order)
or cleared with POST /_capture/reset.

The answer is chosen by the request's model (or the `x-capture-mode` header):
- anything: a text answer "Hello from capture: w0 w1 w2 " (3 deltas when streamed),
  or a function call to the first tool when `tools` is non-empty and the input has
  no `function_call_output` item yet;
- `mode-error`: streamed, response.created then an `error` event
  (`{"type":"error","code":"server_error","message":"capture boom",...}`);
- `mode-failed`: streamed, response.created then `response.failed`;
- `mode-minimal`: streamed, only `response.output_text.delta` events and
  `response.completed` (no created, no item/part events);
- `mode-no-created`: the full sequence without `response.created`/`in_progress`;
- `mode-error-nested`: streamed, response.created then an `error` event whose error
  is nested (`{"type":"error","error":{"type":"server_error","message":...}}`);
- `mode-data-only`: the full sequence with `data:` lines only (no `event:` lines);
- `mode-no-seq`: the full sequence without `sequence_number` fields;
- `mode-completed-empty`: the full sequence, but `response.completed` carries an
  empty `output` (a client that rebuilds the answer from the events still works);
- `mode-no-items`: created/in_progress, the deltas, completed: no output_item or
  content_part events;
- `mode-done`: the full sequence followed by `data: [DONE]` (chat-style end);
- `mode-truncated`: the full sequence less `response.completed` (connection closed);
- `mode-bare-json`: not streamed, a response with only `id`, `object`, `status`,
  `output` (no model, usage, created_at...);
- `mode-http-500`: an OpenAI-shaped 500 error;
- `mode-bare-completed`: the full sequence, but the final response object carries
  only `id`, `object`, `status`, `output` (no model/usage/created_at...)."""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TEXT_WORDS = ["w0 ", "w1 ", "w2 "]
GREETING = "Hello from capture: "
LOCK = threading.Lock()
REQUESTS = []


def usage():
    return {
        "input_tokens": 11,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 16,
    }


def response_object(body, output, status="completed"):
    tools = body.get("tools") or []
    return {
        "id": "resp_capture_1",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model", "capture-model"),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": tools,
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": usage() if status == "completed" else None,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def has_tool_output(body):
    items = body.get("input")
    if not isinstance(items, list):
        return False
    return any(isinstance(i, dict) and i.get("type") == "function_call_output" for i in items)


def tool_name(tool):
    return tool.get("name") or (tool.get("function") or {}).get("name") or "tool"


def wants_tool(body):
    tools = [t for t in (body.get("tools") or []) if t.get("type") == "function"]
    if tools and not has_tool_output(body):
        return tool_name(tools[0])
    return None


def message_item(text, status="completed"):
    content = [] if text is None else [{"type": "output_text", "text": text, "annotations": []}]
    return {
        "id": "msg_capture_1",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def call_item(name, arguments, status="completed"):
    return {
        "id": "fc_capture_1",
        "type": "function_call",
        "status": status,
        "call_id": "call_capture_1",
        "name": name,
        "arguments": arguments,
    }


ARGS = '{"city": "Paris"}'


class Events:
    def __init__(self, no_seq=False):
        self.no_seq = no_seq
        self.seq = 0
        self.out = []

    def add(self, kind, **fields):
        event = {"type": kind, "sequence_number": self.seq, **fields}
        if self.no_seq:
            del event["sequence_number"]
        self.seq += 1
        self.out.append(event)


def stream_events(body, mode):
    ev = Events(no_seq=mode == "mode-no-seq")
    created = response_object(body, [], status="in_progress")
    if mode not in ("mode-no-created", "mode-minimal"):
        ev.add("response.created", response=created)
        ev.add("response.in_progress", response=created)
    if mode == "mode-error":
        ev.add("error", code="server_error", message="capture boom", param=None)
        return ev.out
    if mode == "mode-error-nested":
        ev.add("error", error={"type": "server_error", "code": "server_error", "message": "capture nested boom"})
        return ev.out
    if mode == "mode-failed":
        failed = response_object(body, [], status="failed")
        failed["error"] = {"code": "server_error", "message": "capture failed"}
        ev.add("response.failed", response=failed)
        return ev.out
    tool = wants_tool(body)
    minimal = mode in ("mode-minimal", "mode-no-items")
    if tool:
        final = call_item(tool, ARGS)
        if not minimal:
            ev.add("response.output_item.added", output_index=0, item=call_item(tool, "", "in_progress"))
        for piece in ['{"city": ', '"Paris"}']:
            ev.add(
                "response.function_call_arguments.delta",
                item_id="fc_capture_1",
                output_index=0,
                delta=piece,
            )
        if not minimal:
            ev.add(
                "response.function_call_arguments.done",
                item_id="fc_capture_1",
                output_index=0,
                arguments=ARGS,
                name=tool,
            )
            ev.add("response.output_item.done", output_index=0, item=final)
    else:
        text = GREETING + "".join(TEXT_WORDS)
        final = message_item(text)
        ids = {"item_id": "msg_capture_1", "output_index": 0, "content_index": 0}
        if not minimal:
            ev.add("response.output_item.added", output_index=0, item=message_item(None, "in_progress"))
            ev.add(
                "response.content_part.added",
                part={"type": "output_text", "text": "", "annotations": []},
                **ids,
            )
        pieces = [GREETING + TEXT_WORDS[0]] + TEXT_WORDS[1:]
        for piece in pieces:
            ev.add("response.output_text.delta", delta=piece, logprobs=[], **ids)
        if not minimal:
            ev.add("response.output_text.done", text=text, logprobs=[], **ids)
            ev.add(
                "response.content_part.done",
                part={"type": "output_text", "text": text, "annotations": []},
                **ids,
            )
            ev.add("response.output_item.done", output_index=0, item=final)
    done = response_object(body, [final])
    if mode == "mode-completed-empty":
        done["output"] = []
    if mode == "mode-bare-completed":
        done = {"id": done["id"], "object": "response", "status": "completed", "output": [final]}
    if mode != "mode-truncated":
        ev.add("response.completed", response=done)
    return ev.out


def chat_completion(body):
    text = GREETING + "".join(TEXT_WORDS)
    return {
        "id": "chatcmpl-capture",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "capture-model"),
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _json(self, status, obj, headers=()):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", "req_capture_1")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _record(self, body_bytes):
        try:
            body = json.loads(body_bytes) if body_bytes else None
        except ValueError:
            body = body_bytes.decode("utf-8", "replace")
        entry = {
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body,
        }
        with LOCK:
            REQUESTS.append(entry)
        return body

    def do_GET(self):
        if self.path.startswith("/_capture/requests"):
            with LOCK:
                self._json(200, list(REQUESTS))
            return
        self._record(b"")
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": "capture-model", "object": "model"}]})
            return
        self._json(404, {"error": {"message": "unknown path", "type": "invalid_request_error"}})

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.startswith("/_capture/reset"):
            with LOCK:
                REQUESTS.clear()
            self._json(200, {"ok": True})
            return
        body = self._record(raw)
        if not isinstance(body, dict):
            body = {}
        mode = self.headers.get("x-capture-mode") or str(body.get("model", ""))
        if mode == "mode-http-500":
            self._json(500, {"error": {"message": "capture 500", "type": "server_error", "code": None}})
            return
        if self.path.rstrip("/").endswith("/chat/completions"):
            self._json(200, chat_completion(body))
            return
        if not self.path.rstrip("/").endswith("/responses"):
            self._json(404, {"error": {"message": "unknown path", "type": "invalid_request_error"}})
            return
        if body.get("stream"):
            self._sse(stream_events(body, mode), named=mode != "mode-data-only", done=mode == "mode-done")
            return
        tool = wants_tool(body)
        output = [call_item(tool, ARGS)] if tool else [message_item(GREETING + "".join(TEXT_WORDS))]
        answer = response_object(body, output)
        if mode == "mode-bare-json":
            answer = {k: answer[k] for k in ("id", "object", "status", "output")}
        self._json(200, answer, headers=[("x-ratelimit-remaining-requests", "99")])

    def _sse(self, events, named=True, done=False):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        for event in events:
            head = f"event: {event['type']}\n" if named else ""
            self.wfile.write(f"{head}data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        if done:
            self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--port-file", help="write the bound port here")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    if args.port_file:
        with open(args.port_file, "w") as f:
            f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
