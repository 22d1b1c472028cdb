"""A local OpenAI-compatible endpoint that answers each call after a set latency, on one event loop.

    .venv/bin/python bench/fake_openai.py [--port 0] [--latency 1.0] [--chunks 6]

`POST /v1/chat/completions` answers as the Chat Completions API does with `stream: true`: SSE
over chunked transfer encoding, `stream_options.include_usage` honoured (a last chunk with the
usage and no choices). The first token comes after half of the latency, the rest of the answer
in `chunks` pieces spread over the other half, so a call holds its connection for `latency`
seconds, as a model that thinks and then streams would. The answer is the knowledge base's own
output for the context in the prompt (tests/fake_llm.py's `answer_for`), so it validates.

Unlike the tests' threaded fake, this one is a small raw asyncio HTTP/1.1 server (keep-alive,
Content-Length bodies): thousands of waiting connections cost it a coroutine each, not a thread,
so it never is the bottleneck of a run at a concurrency of hundreds.

It counts calls, calls in flight and their peak (what proves a concurrency cap was honoured).
`GET /stats` returns them as JSON; `POST /stats/reset` zeroes the counts between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(1, str(ROOT / "tests"))
# The answer logic imports the agents' playbook, and so the `actors` package, whose import sets
# up the pipeline's broker: an in-memory one is enough here. Only for that import, and only when
# this module sets the broker up: a test process that imports it has its broker already, and
# worker processes it starts inherit its environment (a stub broker there consumes nothing).
_stub = "SAGE_STUB_BROKER" not in os.environ and "actors" not in sys.modules
if _stub:
    os.environ["SAGE_STUB_BROKER"] = "1"
try:
    from fake_llm import answer_for
finally:
    if _stub:
        del os.environ["SAGE_STUB_BROKER"]

MAX_HEADER_BYTES = 64 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


class Counts:
    """What the server has seen since the last reset."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Zero the counts; calls still in flight stay counted as such (and are the new peak)."""
        self.calls = 0  # chat completion requests received
        self.completed = 0  # answered to the end
        self.repairs = 0  # calls that carry an earlier answer back (a repair round)
        self.in_flight = getattr(self, "in_flight", 0)
        self.peak = self.in_flight
        self.first_at: float | None = None
        self.last_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "completed": self.completed,
            "repairs": self.repairs,
            "in_flight": self.in_flight,
            "peak": self.peak,
            "first_at": self.first_at,
            "last_at": self.last_at,
        }


class FakeOpenAI:
    """The server. `await start()` binds it; `port` is then the port it listens on."""

    def __init__(self, latency: float = 1.0, chunks: int = 6, host: str = "127.0.0.1", port: int = 0) -> None:
        self.latency = latency
        self.chunks = max(1, chunks)
        self.host = host
        self.port = port
        self.counts = Counts()
        self._server: asyncio.base_events.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._connection, self.host, self.port, backlog=4096, limit=MAX_HEADER_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # --- HTTP/1.1 ---------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                method, path, headers, body = request
                keep_alive = headers.get("connection", "").lower() != "close"
                await self._route(method, path.split("?", 1)[0], body, writer)
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # a client that went away or spoke nonsense: drop the connection
        finally:
            writer.close()

    async def _route(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> None:
        if path == "/stats" and method == "GET":
            await _respond(writer, 200, self.counts.as_dict())
        elif path == "/stats/reset" and method == "POST":
            self.counts.reset()
            await _respond(writer, 200, {"ok": True})
        elif path.rstrip("/").endswith("/chat/completions"):
            if method != "POST":
                await _respond(writer, 405, _error("use POST"))
                return
            await self._completion(body, writer)
        else:
            await _respond(writer, 404, _error(f"no route {path}"))

    # --- Chat Completions -------------------------------------------------------------------

    async def _completion(self, raw: bytes, writer: asyncio.StreamWriter) -> None:
        counts = self.counts
        try:
            body = json.loads(raw)
            name = body["response_format"]["json_schema"]["name"]
            prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
        except (ValueError, KeyError, TypeError, StopIteration):
            await _respond(writer, 400, _error("expected a chat completion with a json_schema response_format"))
            return
        started = time.monotonic()
        counts.calls += 1
        counts.first_at = counts.first_at or time.time()
        counts.repairs += any(m.get("role") == "assistant" for m in body["messages"])
        counts.in_flight += 1
        counts.peak = max(counts.peak, counts.in_flight)
        try:
            text = answer_for(name, prompt, "ok")
            prompt_tokens = sum(len(json.dumps(m)) for m in body["messages"]) // 4
            usage_wanted = bool((body.get("stream_options") or {}).get("include_usage"))
            await asyncio.sleep(self.latency / 2)
            if not body.get("stream"):
                await _respond(writer, 200, _whole(body.get("model", ""), text, prompt_tokens))
            else:
                await self._stream(writer, body.get("model", ""), text, prompt_tokens, usage_wanted, started)
            counts.completed += 1
            counts.last_at = time.time()
        finally:
            counts.in_flight -= 1

    async def _stream(
        self, writer: asyncio.StreamWriter, model: str, text: str, prompt_tokens: int, usage: bool, started: float
    ) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        size = max(1, -(-len(text) // self.chunks))
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        step = self.latency / 2 / len(pieces)
        for index, piece in enumerate(pieces):
            delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
            await _send(writer, _chunk(model, [{"index": 0, "delta": delta, "finish_reason": None}]))
            # Pace against the call's start, so the chunks end at `latency` however long a write took.
            wait = started + self.latency / 2 + step * (index + 1) - time.monotonic()
            if index < len(pieces) - 1 and wait > 0:
                await asyncio.sleep(wait)
        closing = [_chunk(model, [{"index": 0, "delta": {}, "finish_reason": "stop"}])]
        if usage:
            completion_tokens = len(text) // 4 + 1
            closing.append(
                _chunk(
                    model,
                    [],
                    {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                )
            )
        closing.append("data: [DONE]\n\n")
        for data in closing:
            await _send(writer, data)
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def _chunk(model: str, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> str:
    payload: dict[str, Any] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        payload["usage"] = usage
    return f"data: {json.dumps(payload)}\n\n"


def _whole(model: str, text: str, prompt_tokens: int) -> dict[str, Any]:
    """A non-streamed answer (no product path asks for one; kept so any client gets an answer)."""
    completion_tokens = len(text) // 4 + 1
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": None}}


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    """One request off a keep-alive connection; None when the client closed it between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length") or 0))
    return method, path, headers, body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers are sent by the clients we serve
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _send(writer: asyncio.StreamWriter, data: str) -> None:
    raw = data.encode()
    writer.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
    await writer.drain()


async def _respond(writer: asyncio.StreamWriter, status: int, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    writer.write(
        f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    await writer.drain()


async def serve(latency: float, chunks: int, port: int, ready: Path | None) -> None:
    server = FakeOpenAI(latency=latency, chunks=chunks, port=port)
    await server.start()
    print(f"fake OpenAI endpoint at {server.base_url} ({latency:g} s per call)", flush=True)
    if ready is not None:
        ready.write_text(str(server.port))
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=1.0, help="seconds each call takes")
    parser.add_argument("--chunks", type=int, default=6, help="SSE chunks the answer comes in")
    parser.add_argument("--ready-file", type=Path, help="write the port here once listening")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.latency, args.chunks, args.port, args.ready_file))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
