"""Language-model brains: OpenAI-compatible Chat Completions and Anthropic Messages.

Both go through the providers' official SDKs with their own retries off (`max_retries=0`): the
pipeline's policy (ARCHITECTURE.md decision 5) is the only one. Every call streams, so the
browser sees the answer grow (`on_progress`) and token counts are the endpoint's own. A call
is one coroutine per provider (`_stream_openai`, `_stream_anthropic`) on the async clients
(`AsyncOpenAI`, `AsyncAnthropic`), one client per endpoint per process, reused by every call on
the process's event loop (`actors.parking`): the pipeline parks the worker thread while
`athink` runs, and `think` (tests, `brains check`) runs the same coroutine and waits for it.

Calls to an endpoint go through its limiter (`actors.agents.limits`): at most
`SAGE_LLM_MAX_CONCURRENCY` in flight across the deployment, and a 429 pauses the endpoint and
is tried again inside the same attempt (counted in the call's `throttled`), unless the wait
would outlast the attempt (then it is the task's failure, and its retry honours `Retry-After`).

`think` asks for the role's JSON Schema as structured output, validates the answer with
`contract.check_output`, sends the errors back once for a repair, and raises `BrainError` (one
readable line, never a key or a stack trace) when the answer is still wrong or the call fails.
Every call, failed ones included, is kept in `calls` for the task's usage and the snapshot.
"""

from __future__ import annotations

import abc
import asyncio
import email.utils
import importlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from actors import parking
from actors.agents import contract, limits
from actors.agents.prompts import PROMPT_VERSION, build_prompt, estimate_tokens, repair_message
from models.brains import brain_info, cost_usd

DEFAULT_TIMEOUT_SECONDS = 120.0
PING_SCHEMA_NAME = "health_check"
PING_SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}
DEFAULT_MAX_TOKENS = 8192
CONNECT_TIMEOUT_SECONDS = 10.0


class BrainError(Exception):
    """A model call or its answer failed; `str()` is the one-line reason shown on the task.

    `retry_after` is the endpoint's own wait (from `Retry-After`), which the pipeline honours
    when it is longer than its next delay.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass
class Answer:
    """What one streamed call gave back."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_at: float | None = None


ProgressFn = Callable[[str, int, bool], None]


@dataclass
class _Stream:
    """Progress of the call in flight, reported to `on_progress` (coalescing is the receiver's)."""

    on_progress: ProgressFn | None
    parts: list[str] = field(default_factory=list)
    chars: int = 0
    first_token_at: float | None = None

    def add(self, text: str) -> None:
        if not text:
            return
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        self.parts.append(text)
        self.chars += len(text)
        if self.on_progress is not None:
            self.on_progress(self.text, (self.chars + 3) // 4, False)

    @property
    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""


class ModelBrain(abc.ABC):
    """The shared part of the model brains: prompt, call, validate, repair once, record."""

    name = "model"
    provider = "model"
    version = PROMPT_VERSION

    def __init__(self) -> None:
        info = brain_info(self.name)
        self.model = info.model or ""
        self.calls: list[dict[str, Any]] = []  # every call of the current attempt
        self.trimmed: list[dict[str, Any]] = []
        self.on_progress: ProgressFn | None = None
        self.timeout = _env_number("SAGE_LLM_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS)
        self.max_tokens = int(_env_number("SAGE_LLM_MAX_TOKENS", DEFAULT_MAX_TOKENS))
        self.time_limit: float | None = None  # the attempt's limit; calls end before it

    # --- the Brain interface ----------------------------------------------------------------

    def think(self, role: str, task_description: str, context: dict[str, Any]) -> dict[str, Any]:
        """Ask the model for the role's output; valid, or BrainError (waits for `athink`)."""
        return parking.run(self.athink(role, task_description, context))

    async def athink(self, role: str, task_description: str, context: dict[str, Any]) -> dict[str, Any]:
        """`think` as a coroutine, for the process's event loop."""
        self.calls = []
        info = brain_info(self.name)
        if not info.configured:
            raise BrainError(f"{self.name}: not configured where this worker runs ({info.reason})")
        started = time.monotonic()
        deadline = started + min(self.timeout * 2, (self.time_limit or 1e9) - 5)
        system, user, self.trimmed = build_prompt(role, task_description, context)
        messages: list[dict[str, Any]] = [{"role": "user", "content": user}]
        keys, session_ids = contract.upstream_keys(context), contract.session_decision_ids(context)
        name, schema = contract.schema_name(role), contract.json_schema(role)
        for round_ in ("answer", "repair"):
            answer = await self._call(name, schema, system, messages, deadline)
            try:
                data = json.loads(answer.text)
            except json.JSONDecodeError as exc:
                errors = [f"the answer is not valid JSON ({exc.msg} at character {exc.pos})"]
            else:
                output, errors = contract.check_output(role, data, keys, session_ids)
                if output is not None:
                    return output
            self.calls[-1]["validation_errors"] = errors
            if round_ == "repair":
                more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
                raise BrainError(f"{self._who()} answer still invalid after one repair: {errors[0]}{more}")
            messages += [
                {"role": "assistant", "content": answer.text or "(empty)"},
                {"role": "user", "content": repair_message(errors)},
            ]
        raise AssertionError("not reached")

    def ping(self) -> dict[str, Any]:
        """One small structured call, for `python -m actors brains check`: what came back, or BrainError."""
        self.calls = []
        info = brain_info(self.name)
        if not info.configured:
            raise BrainError(f"{self.name}: not configured ({info.reason})")
        parking.run(
            self._call(
                PING_SCHEMA_NAME,
                PING_SCHEMA,
                "You are a health check. Answer with the JSON object asked for, and nothing else.",
                [{"role": "user", "content": 'Answer {"ok": true}.'}],
                time.monotonic() + self.timeout,
            )
        )
        return dict(self.calls[-1])

    def record(self) -> dict[str, Any]:
        """What the snapshot keeps about this brain's work on the attempt."""
        return {
            "brain": self.name,
            "provider": self.provider,
            "model": self.model,
            "prompt_version": self.version,
            "context_trimmed": self.trimmed,
            "calls": self.calls,
        }

    # --- one call ---------------------------------------------------------------------------

    def _who(self) -> str:
        return f"{self.name} model {self.model!r}:"

    async def _call(
        self, name: str, schema: dict[str, Any], system: str, messages: list[dict[str, Any]], deadline: float
    ) -> Answer:
        """One streamed call with its record in `calls`; BrainError unless it finished normally.

        A 429 before any output waits (the endpoint's pause) and asks again, inside this call.
        """
        if deadline - time.monotonic() <= 1:
            raise BrainError(f"{self._who()} no time left in this attempt for another call")
        timeout = min(self.timeout, deadline - time.monotonic())
        sent = [{"role": "system", "content": system}, *messages]
        stream = _Stream(self.on_progress)
        started = time.monotonic()
        record: dict[str, Any] = {
            "brain": self.name,
            "provider": self.provider,
            "model": self.model,
            "prompt_version": self.version,
            "messages": sent,
            "answer": None,
            "finish_reason": None,
            "prompt_tokens": None,
            "completion_tokens": None,
            "time_to_first_token_ms": None,
            "latency_ms": None,
            "cost_usd": None,
            "error": None,
            "throttled": 0,
        }
        self.calls.append(record)
        answer = Answer()
        limiter = limits.limiter_for(self.name, self._base_url())
        try:
            while True:
                timeout = min(self.timeout, deadline - time.monotonic())
                if timeout <= 1:
                    raise BrainError(f"{self._who()} no time left in this attempt for another call")
                try:
                    slot = await limiter.slot(deadline - 1)
                except limits.SlotTimeout:
                    raise BrainError(
                        f"{self._who()} no free slot before the attempt's time ran out "
                        f"(SAGE_LLM_MAX_CONCURRENCY={limiter.cap})"
                    ) from None
                async with slot:
                    try:
                        answer = await self._stream(name, schema, system, messages, timeout, deadline, stream)
                        slot.succeeded = True
                        break
                    except Exception as exc:
                        if getattr(exc, "status_code", None) != 429 or stream.parts:
                            raise
                        wait = await limiter.throttled(_retry_after(getattr(exc, "response", None)))
                        if time.monotonic() + wait > deadline - 2:
                            raise  # no time to wait here: the task's retry honours Retry-After
                record["throttled"] += 1
                await asyncio.sleep(wait)
        except BrainError as exc:
            record["error"] = str(exc)
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the call becomes one line, never a trace
            error = self._describe(exc, timeout, streaming=bool(stream.parts))
            record["error"] = str(error)
            raise error from None
        finally:
            record["latency_ms"] = int((time.monotonic() - started) * 1000)
            record["answer"] = answer.text or stream.text
            first = answer.first_token_at or stream.first_token_at
            record["time_to_first_token_ms"] = int((first - started) * 1000) if first else None
            record["finish_reason"] = answer.finish_reason
            record["prompt_tokens"] = answer.prompt_tokens
            record["completion_tokens"] = answer.completion_tokens
            tokens_known = answer.prompt_tokens is not None and answer.completion_tokens is not None
            if tokens_known or record["error"] is None:
                record["cost_usd"] = cost_usd(self.model, answer.prompt_tokens, answer.completion_tokens)
            elif not stream.parts:
                # Refused before any answer (down, 401, 404, 429...): nothing was generated to pay for.
                record["prompt_tokens"] = record["completion_tokens"] = 0
                record["cost_usd"] = cost_usd(self.model, 0, 0)
            if self.on_progress is not None:
                done = answer.completion_tokens
                self.on_progress(
                    record["answer"], done if done is not None else estimate_tokens(record["answer"]), True
                )
        failed = None
        if answer.finish_reason in {"length", "max_tokens"}:
            failed = BrainError(
                f"{self._who()} the answer was cut by the token limit (finish_reason {answer.finish_reason}, "
                f"max {self.max_tokens} tokens); raise SAGE_LLM_MAX_TOKENS"
            )
        elif answer.finish_reason is None:
            failed = BrainError(f"{self._who()} the stream ended before the answer was complete")
        if failed is not None:
            record["error"] = str(failed)
            raise failed
        return answer

    @abc.abstractmethod
    async def _stream(self, name, schema, system, messages, timeout, deadline, stream) -> Answer:
        """One streamed request in the provider's wire format (each provider's SDK differs)."""

    def _describe(self, exc: Exception, timeout: float, streaming: bool = False) -> BrainError:
        """One line for a failed call, from the SDK's exception (status, never the key)."""
        name = _network_failure(exc) or type(exc).__name__
        status = getattr(exc, "status_code", None)
        who = self._who()
        if "Timeout" in name:
            return BrainError(f"{who} no answer within {timeout:.0f} s (request timeout)")
        if status is None:
            if streaming:
                # Output had begun: the connection dropped under the stream.
                return BrainError(f"{who} the stream was cut midway (connection lost)")
            if "Connection" in name:
                return BrainError(f"{who} cannot reach the endpoint at {self._base_url()}")
            return BrainError(f"{who} the call failed ({name})")
        detail = self._scrub(_server_message(exc))
        if status == 401:
            return BrainError(f"{who} the endpoint refused the API key (401)")
        if status == 403:
            return BrainError(f"{who} access denied (403){detail}")
        if status == 404:
            return BrainError(f"{who} the endpoint does not know this model or path (404){detail}")
        if status == 429:
            retry_after = _retry_after(getattr(exc, "response", None))
            wait = f"; retry after {retry_after:g} s" if retry_after else ""
            return BrainError(f"{who} rate limited (429){wait}{detail}", retry_after=retry_after)
        return BrainError(f"{who} the endpoint failed ({status}){detail}")

    def _scrub(self, text: str) -> str:
        for key in self._secrets():
            if key:
                text = text.replace(key, "[key]")
        return text

    def _secrets(self) -> list[str]:
        return []

    def _base_url(self) -> str:
        return "(default)"


def _network_failure(exc: BaseException) -> str | None:
    """What went wrong on the wire, named as `_describe` reads it, from aiohttp's exception under
    the SDK's; None when aiohttp raised none.

    The SDKs' aiohttp transport maps every aiohttp connection error to httpx's `ConnectTimeout`
    (a refused connection or a server that hung up mid-stream would read as a timeout), so the
    cause is looked at instead.
    """
    import aiohttp

    seen = 0
    cause = exc.__cause__ or exc.__context__
    while cause is not None and seen < 8:
        if isinstance(cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
            return "Timeout"
        if isinstance(cause, aiohttp.ClientError):  # refused, or lost: `_describe` tells them apart by `streaming`
            return "Connection"
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return None


def _server_message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    message = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else None
    if not message:
        return ""
    message = " ".join(str(message).split())
    return f": {message[:200]}"


def _retry_after(response: Any) -> float | None:
    """Seconds from `Retry-After` (seconds or an HTTP date) or `retry-after-ms`, else None."""
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(raw) if raw else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class OpenAIBrain(ModelBrain):
    """Any OpenAI-compatible Chat Completions endpoint (OpenAI, Ollama, vLLM, llama.cpp, LM Studio)."""

    name = "openai"
    provider = "openai"

    def _client(self):
        import openai

        key = os.environ.get("OPENAI_API_KEY") or "not-needed"  # local servers ignore it
        base_url = os.environ.get("OPENAI_BASE_URL") or None
        return _shared_client(
            ("openai", base_url, key),
            lambda: openai.AsyncOpenAI(
                api_key=key, base_url=base_url, max_retries=0, http_client=openai.DefaultAioHttpClient()
            ),
        )

    def _secrets(self) -> list[str]:
        return [os.environ.get("OPENAI_API_KEY", "")]

    def _base_url(self) -> str:
        return os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"

    def _limit_parameter(self) -> str:
        return "max_completion_tokens" if "api.openai.com" in self._base_url() else "max_tokens"

    async def _stream(self, name, schema, system, messages, timeout, deadline, stream) -> Answer:
        import openai

        return await _stream_openai(
            self._client(),
            {
                "model": self.model,
                "messages": [],  # sent in `extra_body`, below
                # The body is plain JSON already: in `extra_body` it is sent as is, where the SDK's
                # typed transform would walk every message and every node of the schema on every
                # call (a third of a call's CPU, and at thousands of calls CPU counts).
                "extra_body": {
                    "messages": [{"role": "system", "content": system}, *messages],
                    # OpenAI's own newer models refuse `max_tokens`; compatible servers know only it.
                    self._limit_parameter(): self.max_tokens,
                    "response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema}},
                },
                "timeout": _timeout(openai, timeout),
            },
            deadline,
            stream,
            self._who(),
        )


def _timeout(sdk: Any, seconds: float):
    """The SDK's timeout object: `seconds` for the request, a short connect timeout within it."""
    return sdk.Timeout(seconds, connect=min(CONNECT_TIMEOUT_SECONDS, seconds))


_clients: dict[tuple[str, str | None, str | None], Any] = {}


def load_configured_sdks() -> list[str]:
    """Import the SDK (and its HTTP transport) of every model brain configured in this process,
    as a worker does at boot (`actors.supervisor`); the names of the modules imported."""
    loaded = [sdk for sdk in ("openai", "anthropic") if brain_info(sdk).configured]
    if loaded:
        loaded.append("aiohttp")
    for module in loaded:
        importlib.import_module(module)
    return loaded


def _shared_client(key: tuple[str, str | None, str | None], make: Callable[[], Any]) -> Any:
    """One async SDK client per endpoint and key in this process (making one costs tens of ms of
    CPU; its connection pool is reused). Only ever used on the process's event loop.

    The clients send through aiohttp (the SDKs' `DefaultAioHttpClient`, their `aiohttp` extra),
    not their default httpx transport: httpx's connection pool walks every pooled connection,
    probing each idle one's socket, twice per request, so with a hundred calls in flight a call
    cost about twice the worker CPU (bench/README.md, "Third pass: the model path")."""
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = make()
    return client


async def _server_events(response: Any, who: str) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of a server-sent-event stream, read off the SDK's raw streaming response.

    The SDK's own stream builds a typed model per chunk, which was most of a call's CPU; the
    request, its authentication and its error statuses still go through the SDK. An error the
    endpoint reports inside the stream is a BrainError, as the SDK's stream would raise.
    """
    async for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            continue  # the stream ends right after; read it to its end so the response closes cleanly
        payload = json.loads(data)
        if payload.get("type") == "error" or isinstance(payload.get("error"), dict):
            message = " ".join(str((payload.get("error") or {}).get("message") or "unknown error").split())
            raise BrainError(f"{who} the endpoint failed while streaming: {message[:200]}")
        yield payload


async def _stream_openai(client: Any, request: dict[str, Any], deadline: float, stream: _Stream, who: str) -> Answer:
    """One streamed Chat Completions call, start to finish."""
    answer = Answer()
    create = client.chat.completions.with_streaming_response.create
    async with create(**request, stream=True, stream_options={"include_usage": True}) as response:
        async for chunk in _server_events(response, who):
            usage = chunk.get("usage")
            if usage:
                answer.prompt_tokens = usage.get("prompt_tokens")
                answer.completion_tokens = usage.get("completion_tokens")
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    stream.add(delta["content"])
                if choice.get("finish_reason"):
                    answer.finish_reason = choice["finish_reason"]
            if time.monotonic() > deadline:
                raise BrainError(f"{who} the answer was still streaming when the attempt's time ran out")
    answer.text, answer.first_token_at = stream.text, stream.first_token_at
    return answer


class AnthropicBrain(ModelBrain):
    """The Anthropic Messages API, answering through one forced tool whose input is the output."""

    name = "anthropic"
    provider = "anthropic"

    def _client(self):
        import anthropic

        key = os.environ.get("ANTHROPIC_API_KEY")
        base_url = os.environ.get("ANTHROPIC_BASE_URL") or None
        return _shared_client(
            ("anthropic", base_url, key),
            lambda: anthropic.AsyncAnthropic(
                api_key=key, base_url=base_url, max_retries=0, http_client=anthropic.DefaultAioHttpClient()
            ),
        )

    def _secrets(self) -> list[str]:
        return [os.environ.get("ANTHROPIC_API_KEY", "")]

    def _base_url(self) -> str:
        return os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com"

    async def _stream(self, name, schema, system, messages, timeout, deadline, stream) -> Answer:
        import anthropic

        return await _stream_anthropic(
            self._client(),
            {
                "model": self.model,
                "messages": [],  # sent in `extra_body`, as is (see OpenAIBrain._stream)
                "max_tokens": self.max_tokens,
                "extra_body": {
                    "system": system,
                    "messages": messages,
                    "tools": [{"name": name, "description": "Record the complete answer.", "input_schema": schema}],
                    "tool_choice": {"type": "tool", "name": name},
                },
                "timeout": _timeout(anthropic, timeout),
            },
            deadline,
            stream,
            self._who(),
        )


async def _stream_anthropic(client: Any, request: dict[str, Any], deadline: float, stream: _Stream, who: str) -> Answer:
    """One streamed Messages call, start to finish; the forced tool's input JSON is the answer."""
    answer = Answer()
    async with client.messages.with_streaming_response.create(**request, stream=True) as response:
        async for event in _server_events(response, who):
            kind = event.get("type")
            if kind == "message_start":
                usage = event["message"].get("usage") or {}
                answer.prompt_tokens = usage.get("input_tokens")
                answer.completion_tokens = usage.get("output_tokens")
            elif kind == "content_block_delta":
                delta = event.get("delta") or {}
                if delta.get("type") == "input_json_delta":
                    stream.add(delta.get("partial_json") or "")
                elif delta.get("type") == "text_delta":
                    stream.add(delta.get("text") or "")
            elif kind == "message_delta":
                if (event.get("delta") or {}).get("stop_reason"):
                    answer.finish_reason = event["delta"]["stop_reason"]
                output_tokens = (event.get("usage") or {}).get("output_tokens")
                if output_tokens is not None:
                    answer.completion_tokens = output_tokens
            if time.monotonic() > deadline:
                raise BrainError(f"{who} the answer was still streaming when the attempt's time ran out")
    answer.text, answer.first_token_at = stream.text, stream.first_token_at
    return answer
