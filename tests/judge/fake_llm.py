"""A scripted OpenAI-compatible chat server on 127.0.0.1 for tests: real HTTP, answers chosen by a script.

Each request takes the next step of `script` (when one is left), else asks `responder(body)` for one. A step is
an int (an HTTP error status), ("sleep", seconds) (answer late, to make the client time out), ("raw", status,
content type, body) (any body, e.g. an HTML page with status 200), ("echo_key", status) (an error whose message
quotes the request's API key, as some proxies do), or a string (the assistant's message content)."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def valid_judge_answer(body: dict, label: str = "correct") -> str:
    """A well-formed judge answer for whatever sentences the request numbers."""
    user = body["messages"][1]["content"] if len(body["messages"]) > 1 else body["messages"][0]["content"]
    count = len(re.findall(r"^\d+\. ", user, flags=re.MULTILINE))
    entries = [{"index": i, "label": label, "reason": "", "objects": []} for i in range(1, count + 1)]
    return json.dumps({"sentences": entries, "corrected": "A corrected text."})


class FakeChatServer:
    def __init__(self, responder=valid_judge_answer):
        self.script: list = []
        self.responder = responder
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _next_step(self, body: dict):
        with self.lock:
            self.requests.append(body)
            if self.script:
                return self.script.pop(0)
        return self.responder(body)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    step = fake._next_step(body)
                    if isinstance(step, tuple) and step[0] == "echo_key":
                        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                        step = (
                            "raw",
                            step[1],
                            "application/json",
                            json.dumps(
                                {
                                    "error": {
                                        "message": f"Incorrect API key provided: {key}.",
                                        "type": "invalid_request_error",
                                        "code": "invalid_api_key",
                                    }
                                }
                            ).encode(),
                        )
                    self._answer(step)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

            def _answer(self, step) -> None:
                if isinstance(step, tuple) and step[0] == "raw":
                    _, status, content_type, data = step
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if isinstance(step, tuple) and step[0] == "sleep":
                    time.sleep(step[1])
                    step = "{}"
                if isinstance(step, int):
                    self._send(step, {"error": {"message": f"scripted {step}", "type": "server_error"}})
                    return
                self._send(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": 0,
                        "model": "fake",
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": step}}
                        ],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                    },
                )

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                if status >= 400:  # the SDK retries after what the server asks: 1 ms keeps the tests fast
                    self.send_header("retry-after-ms", "1")
                self.end_headers()
                self.wfile.write(data)

        return Handler
