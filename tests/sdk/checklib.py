"""What the Responses API client checks (responses_check.py, agents_check.py,
langchain_check.py, litellm_check.py) share: one PASS/FAIL line per check with a
count at the end, the answer a route is expected to give (its chat completion,
which the mock makes deterministic), the mock's record of the last request it got,
and the canned tool. Stdlib and the `openai` SDK only."""

import json
import os
import sys
import traceback
import urllib.request

# A function tool in the Responses API's flat shape. The mock, when forced
# (tool_choice "required"), calls the first tool with {"text": "w0 w1 ... "}.
TOOL = {
    "type": "function",
    "name": "lookup",
    "description": "Looks a text up.",
    "parameters": {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    },
}
PROMPT = "Say hello."
TOOL_PROMPT = "Look the words up, then answer."


def split(text):
    return [m.strip() for m in text.split(",") if m.strip()]


class Checker:
    """Runs named checks, printing PASS (with the check's detail), FAIL (with the
    exception and a short traceback) or SKIP, and counts them."""

    def __init__(self, client_name):
        self.client_name = client_name
        self.passes = 0
        self.failures = 0

    def check(self, label, fn, *args):
        try:
            detail = fn(*args)
            self.passes += 1
            print(f"PASS {label}: {detail}", flush=True)
            return True
        except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
            self.failures += 1
            print(f"FAIL {label}: {type(e).__module__}.{type(e).__name__}: {e}", flush=True)
            traceback.print_exc(limit=4, file=sys.stdout)
            return False

    @staticmethod
    def skip(label, why):
        print(f"SKIP {label}: {why}", flush=True)

    def finish(self, what):
        total = self.passes + self.failures
        verdict = "PASS" if self.failures == 0 and total > 0 else "FAIL"
        print(f"{verdict} {self.client_name}: {self.passes}/{total} checks passed ({what})")
        tag = os.path.splitext(os.path.basename(sys.argv[0]))[0]
        print(f"{tag}: {self.passes} passed, {self.failures} failed")
        return 0 if verdict == "PASS" else 1


def chat_text(client, model):
    """The text `model`'s route answers PROMPT with on /v1/chat/completions: the
    mock's deterministic answer, which /v1/responses must give too."""
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}]
    )
    text = completion.choices[0].message.content
    assert isinstance(text, str) and text.startswith("Hello from"), f"chat answer {text!r}"
    return text


class ExpectedTexts:
    """Each route's chat answer, fetched once."""

    def __init__(self, client):
        self.client = client
        self.texts = {}

    def __call__(self, model):
        if model not in self.texts:
            self.texts[model] = chat_text(self.client, model)
        return self.texts[model]


def last_request(mock):
    """GET http://MOCK/_mock/last_request: {"method", "path", "headers": [[name,
    value], ...], "body"} of the last request the mock received."""
    with urllib.request.urlopen(f"http://{mock}/_mock/last_request", timeout=5) as response:
        assert response.status == 200, response.status
        return json.loads(response.read())


def header_map(record):
    """The recorded request's headers by lower-case name (the last value wins)."""
    return {name.lower(): value for name, value in record.get("headers", [])}


def mock_body(record):
    body = record.get("body")
    if isinstance(body, str):
        try:
            return json.loads(body)
        except ValueError:
            return body
    return body

