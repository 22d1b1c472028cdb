"""A fake model endpoint on a free loopback port speaking both wire formats, streamed as SSE.

`POST /v1/chat/completions` is OpenAI-compatible Chat Completions, `POST /v1/messages` is
Anthropic's Messages API; both stream with chunked transfer encoding, as the real ones do, so
the official SDKs are driven unchanged. The answer is the knowledge base's own output for the
context in the prompt, so it is valid and its citations exist; `plan` scripts what the next
requests get instead:

- `ok`, `slow` (the same, streamed slowly), `invalid` (no `summary`), `bad-citation` (cites a
  decision that does not exist), `notjson`, `length` (cut by the token limit), `cut` (the
  connection drops midway), `401`, `404`, `429` (with `Retry-After: retry_after`), `500`, `hang`
  (no answer for `hang_seconds`).

Every request is kept in `requests` (path, headers, body) for the tests to inspect. Each waits
`latency` seconds before it is answered; `in_flight` and `peak` count the requests being
answered at once (now, and at most). A request stops counting just before its answer's closing
frames are written (the finish reason, an error status, a cut): the client may hand its slot to
another call the moment it reads them, sooner than this thread gets the GIL back to count.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from actors.agents.playbook import PLAYBOOK


def context_from_prompt(text: str) -> dict[str, Any]:
    """The agent context the prompt's JSON carries, in the playbook's shape."""
    payload = json.loads(text[text.index("{") :])
    return {
        "feature_name": payload["feature_name"],
        "description": payload["description"],
        "session_decisions": payload["session_decisions"],
        "upstream": {role: {"output": out} for role, out in payload["upstream"].items()},
    }


def answer_for(schema_name: str, prompt: str, mode: str) -> str:
    """The JSON text the fake model answers with."""
    if schema_name == "health_check":
        return json.dumps({"ok": True})
    role = schema_name.removesuffix("_output")
    output = PLAYBOOK[role](context_from_prompt(prompt))
    if mode == "invalid":
        output.pop("summary")
    if mode == "bad-citation" and output["decisions"]:
        output["decisions"][0]["based_on_keys"] = ["nobody.said.this"]
    if mode == "notjson":
        return "Sure! Here is the plan: use a database."
    return json.dumps(output)


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # hundreds of calls may connect at once (the default backlog is 5)


class FakeModelServer:
    """The server; `with FakeModelServer() as fake:` starts it on a free port and stops it."""

    def __init__(self, key: str | None = None, chunks: int = 12, slow_delay: float = 0.03) -> None:
        self.key = key
        self.chunks = chunks
        self.slow_delay = slow_delay
        self.plan: list[str] = []
        self.default = "ok"
        self.retry_after = "1"
        self.requests: list[dict[str, Any]] = []
        self.latency = 0.0
        self.hang_seconds = 60.0
        self.in_flight = 0
        self.peak = 0
        self._lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def next_mode(self) -> str:
        with self._lock:
            return self.plan.pop(0) if self.plan else self.default

    def __enter__(self) -> FakeModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with fake._lock:
                    fake.requests.append(
                        {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                    )
                    fake.in_flight += 1
                    fake.peak = max(fake.peak, fake.in_flight)
                self._counted = True
                try:
                    self._answer(body)
                finally:
                    self._answered()

            def _answered(self) -> None:
                """No longer in flight (once): called before the frames that end the answer."""
                if self._counted:
                    self._counted = False
                    with fake._lock:
                        fake.in_flight -= 1

            def _answer(self, body: dict) -> None:
                anthropic = self.path.rstrip("/").endswith("/messages")
                mode = fake.next_mode()
                given = self.headers.get("x-api-key") or self.headers.get("Authorization", "").removeprefix("Bearer ")
                if fake.key is not None and given != fake.key:
                    mode = "401"
                if fake.latency:
                    time.sleep(fake.latency)
                if mode == "hang":
                    time.sleep(fake.hang_seconds)
                    self.close_connection = True
                    return
                if mode in {"401", "404", "429", "500"}:
                    self._answered()
                    self._error(int(mode), anthropic)
                    return
                if anthropic:
                    name = body["tool_choice"]["name"]
                    prompt = body["messages"][0]["content"]
                else:
                    name = body["response_format"]["json_schema"]["name"]
                    prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
                text = answer_for(name, prompt, mode)
                prompt_tokens = sum(len(json.dumps(m)) for m in body["messages"]) // 4
                (self._anthropic if anthropic else self._openai)(body["model"], text, prompt_tokens, mode)

            def _error(self, status: int, anthropic: bool) -> None:
                message = {401: "invalid api key", 404: "model not found", 429: "slow down", 500: "boom"}[status]
                if anthropic:
                    payload = {"type": "error", "error": {"type": "api_error", "message": message}}
                else:
                    payload = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", fake.retry_after)
                self.end_headers()
                self.wfile.write(data)

            def _start_stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

            def _send(self, data: str) -> None:
                raw = data.encode()
                self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
                self.wfile.flush()

            def _end(self) -> None:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _pieces(self, text: str, mode: str) -> list[str]:
                count = fake.chunks * (3 if mode == "slow" else 1)
                size = max(1, -(-len(text) // count))
                pieces = [text[i : i + size] for i in range(0, len(text), size)]
                if mode == "length":
                    pieces = pieces[: len(pieces) // 2]
                return pieces

            def _pace(self, mode: str) -> None:
                if mode == "slow":
                    time.sleep(fake.slow_delay)

            def _cut(self) -> None:
                # Drop the connection without the closing chunk: a stream cut midway.
                self._answered()
                self.wfile.flush()
                self.close_connection = True
                self.connection.close()

            def _openai(self, model: str, text: str, prompt_tokens: int, mode: str) -> None:
                self._start_stream()

                def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> None:
                    payload = {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": model,
                        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
                    }
                    if usage:
                        payload["usage"] = usage
                    self._send(f"data: {json.dumps(payload)}\n\n")

                pieces = self._pieces(text, mode)
                for index, piece in enumerate(pieces):
                    if mode == "cut" and index == len(pieces) // 2:
                        self._cut()
                        return
                    chunk({"role": "assistant", "content": piece} if index == 0 else {"content": piece})
                    self._pace(mode)
                sent = "".join(pieces)
                self._answered()
                chunk({}, "length" if mode == "length" else "stop")
                chunk(
                    {},
                    usage={
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": len(sent) // 4 + 1,
                        "total_tokens": prompt_tokens + len(sent) // 4 + 1,
                    },
                )
                self._send("data: [DONE]\n\n")
                self._end()

            def _anthropic(self, model: str, text: str, prompt_tokens: int, mode: str) -> None:
                self._start_stream()

                def event(kind: str, payload: dict) -> None:
                    self._send(f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n")

                event(
                    "message_start",
                    {
                        "message": {
                            "id": "msg_fake",
                            "type": "message",
                            "role": "assistant",
                            "model": model,
                            "content": [],
                            "stop_reason": None,
                            "stop_sequence": None,
                            "usage": {"input_tokens": prompt_tokens, "output_tokens": 1},
                        }
                    },
                )
                if mode == "notjson":
                    block = {"type": "text", "text": ""}
                else:
                    block = {"type": "tool_use", "id": "toolu_fake", "name": "answer", "input": {}}
                event("content_block_start", {"index": 0, "content_block": block})
                pieces = self._pieces(text, mode)
                for index, piece in enumerate(pieces):
                    if mode == "cut" and index == len(pieces) // 2:
                        self._cut()
                        return
                    if mode == "notjson":
                        delta = {"type": "text_delta", "text": piece}
                    else:
                        delta = {"type": "input_json_delta", "partial_json": piece}
                    event("content_block_delta", {"index": 0, "delta": delta})
                    self._pace(mode)
                sent = "".join(pieces)
                self._answered()
                event("content_block_stop", {"index": 0})
                event(
                    "message_delta",
                    {
                        "delta": {
                            "stop_reason": "max_tokens" if mode == "length" else "tool_use",
                            "stop_sequence": None,
                        },
                        "usage": {"output_tokens": len(sent) // 4 + 1},
                    },
                )
                event("message_stop", {})
                self._end()

        return Handler


def serve_openai(monkeypatch: Any, key: str) -> Iterator[FakeModelServer]:
    """A fake endpoint, with the `openai` brain pointed at it through `monkeypatch` (model
    `fake-gpt`, priced so that costs are known); for a fixture to `yield from`."""
    with FakeModelServer(key=key) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        monkeypatch.setenv("OPENAI_API_KEY", key)
        monkeypatch.setenv("SAGE_OPENAI_MODEL", "fake-gpt")
        monkeypatch.setenv("SAGE_LLM_PRICES", json.dumps({"fake-gpt": [1.0, 2.0]}))
        yield server
