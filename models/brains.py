"""Which brains exist, how each is configured, what a model costs, and how usage adds up.

Read from the environment only (no SDK is imported here), so the web app can list and check
brains without the workers' dependencies, and both sides agree on one catalogue:

- `knowledge-base`: offline, always configured; the default whenever `SAGE_BRAIN` is unset.
- `openai`: any OpenAI-compatible Chat Completions endpoint; `OPENAI_BASE_URL` (optional for
  OpenAI itself), `OPENAI_API_KEY` (optional when a base URL points at a local server such as
  Ollama), `SAGE_OPENAI_MODEL`.
- `anthropic`: the Messages API; `ANTHROPIC_API_KEY`, optional `ANTHROPIC_BASE_URL`,
  `SAGE_ANTHROPIC_MODEL`.

API keys are read where a client is built and nowhere else; nothing here returns one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

KNOWLEDGE_BASE = "knowledge-base"
DEFAULT_MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-sonnet-4-6"}

#: USD per million (input, output) tokens: list prices when this table was written. Local
#: models are absent on purpose: their cost is unknown to us (null), never 0. Prices change:
#: extend or override them with SAGE_LLM_PRICES (see README).
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4-6": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-opus-4-1": (15.00, 75.00),
}


class BrainConfigError(ValueError):
    """A brain is unknown or not configured; the message is one line for the user."""


@dataclass(frozen=True)
class BrainInfo:
    """What the API shows about a brain (never a key)."""

    name: str
    provider: str | None
    model: str | None
    configured: bool
    reason: str | None = None  # why it is not configured

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "provider": self.provider, "model": self.model, "configured": self.configured}


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def brain_info(name: str) -> BrainInfo:
    """The catalogue entry of `name`; raises BrainConfigError if no such brain exists."""
    if name == KNOWLEDGE_BASE:
        return BrainInfo(name, None, None, True)
    if name == "openai":
        model = _env("SAGE_OPENAI_MODEL") or DEFAULT_MODELS["openai"]
        if _env("OPENAI_API_KEY") or _env("OPENAI_BASE_URL"):
            return BrainInfo(name, "openai", model, True)
        return BrainInfo(name, "openai", model, False, "set OPENAI_API_KEY, or OPENAI_BASE_URL for a local server")
    if name == "anthropic":
        model = _env("SAGE_ANTHROPIC_MODEL") or DEFAULT_MODELS["anthropic"]
        if _env("ANTHROPIC_API_KEY"):
            return BrainInfo(name, "anthropic", model, True)
        return BrainInfo(name, "anthropic", model, False, "set ANTHROPIC_API_KEY")
    raise BrainConfigError(f"unknown brain {name!r}; known: {', '.join(BRAIN_NAMES)}")


BRAIN_NAMES = (KNOWLEDGE_BASE, "openai", "anthropic")


def catalogue() -> list[BrainInfo]:
    """Every brain, configured or not."""
    return [brain_info(name) for name in BRAIN_NAMES]


def default_brain() -> str:
    """`SAGE_BRAIN`, else the knowledge base (even when model keys are set)."""
    return _env("SAGE_BRAIN") or KNOWLEDGE_BASE


def usable_brain(name: str | None) -> str:
    """`name` (or the default) if it exists and is configured; else BrainConfigError with why."""
    chosen = name or default_brain()
    info = brain_info(chosen)
    if not info.configured:
        raise BrainConfigError(f"brain {chosen!r} is not configured: {info.reason}")
    return chosen


# --- cost and usage -------------------------------------------------------------------------


PRICES_FORMAT = 'SAGE_LLM_PRICES must be JSON like {"model": [input_usd, output_usd]} per million tokens'


def _price_overrides() -> dict[str, tuple[float, float]]:
    raw = _env("SAGE_LLM_PRICES")
    if not raw:
        return {}
    try:
        extra = json.loads(raw)
        return {str(k): (float(v[0]), float(v[1])) for k, v in extra.items()}
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise BrainConfigError(PRICES_FORMAT) from None


def price_problem() -> str | None:
    """Why SAGE_LLM_PRICES cannot be read, or None (`python -m actors brains` shows it)."""
    try:
        _price_overrides()
    except BrainConfigError as exc:
        return str(exc)
    return None


def price_table() -> dict[str, tuple[float, float]]:
    """Built-in prices overlaid with SAGE_LLM_PRICES (`{"model": [input, output]}` per million).

    A malformed SAGE_LLM_PRICES is ignored here (costs it would have priced stay unknown, never
    wrong) rather than failing a model call that was already paid for.
    """
    try:
        return {**PRICES, **_price_overrides()}
    except BrainConfigError:
        return dict(PRICES)


def cost_usd(model: str | None, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
    """The cost of one call, or None when the model's price or a token count is unknown (never 0 then)."""
    price = price_table().get(model or "")
    if price is None or prompt_tokens is None or completion_tokens is None:
        return None
    return round((prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000, 8)


TASK_USAGE_KEYS = ("provider", "model", "calls", "prompt_tokens", "completion_tokens", "cost_usd", "latency_ms")
SESSION_USAGE_KEYS = ("calls", "prompt_tokens", "completion_tokens", "cost_usd")


def add_calls(usage: dict[str, Any] | None, calls: list[dict[str, Any]]) -> dict[str, Any] | None:
    """`usage` (a task's, or None) plus the given model calls. A cost that is unknown for any call
    makes the sum unknown; a token count the endpoint did not report adds nothing."""
    if not calls:
        return usage
    total = dict(usage or {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "latency_ms": 0})
    for call in calls:
        total["provider"], total["model"] = call.get("provider"), call.get("model")
        total["calls"] += 1
        total["prompt_tokens"] += call.get("prompt_tokens") or 0
        total["completion_tokens"] += call.get("completion_tokens") or 0
        total["latency_ms"] = (total.get("latency_ms") or 0) + int(call.get("latency_ms") or 0)
        cost = call.get("cost_usd")
        total["cost_usd"] = None if cost is None or total["cost_usd"] is None else round(total["cost_usd"] + cost, 8)
    return {key: total.get(key) for key in TASK_USAGE_KEYS}


#: A session's totals before any model call.
NO_SESSION_USAGE: dict[str, Any] = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}


def add_session_usage(usage: dict[str, Any] | None, before: dict[str, Any] | None, after: dict[str, Any] | None):
    """A session's totals after one task's usage went from `before` to `after`."""
    if after is None or after == before:
        return usage
    total = dict(usage or NO_SESSION_USAGE)
    before = before or NO_SESSION_USAGE
    for key in ("calls", "prompt_tokens", "completion_tokens"):
        total[key] = (total.get(key) or 0) + after[key] - before[key]
    if total.get("cost_usd") is None or after["cost_usd"] is None:
        total["cost_usd"] = None
    else:
        total["cost_usd"] = round(total["cost_usd"] + after["cost_usd"] - (before["cost_usd"] or 0), 8)
    return {key: total.get(key) for key in SESSION_USAGE_KEYS}


#: `add_session_usage` in SQL, for the statement that already updates the session row
#: (`events.record_events_moving`): a completion's model usage is added to the totals where they
#: are stored, under that statement's lock, so the completion need not read and lock the row first.
#: `usage` is the row's column; the parameters are `session_usage_change(before, after)`. Costs
#: are stored rounded to 8 decimals on both sides, so the decimal sum here rounds as the float
#: sum does there.
SESSION_USAGE_SQL = (
    "jsonb_build_object("
    "'calls', coalesce((usage->>'calls')::bigint, 0) + %s, "
    "'prompt_tokens', coalesce((usage->>'prompt_tokens')::bigint, 0) + %s, "
    "'completion_tokens', coalesce((usage->>'completion_tokens')::bigint, 0) + %s, "
    "'cost_usd', CASE WHEN %s::numeric IS NULL OR (usage IS NOT NULL AND coalesce(usage->'cost_usd', 'null') = 'null') "
    "THEN NULL ELSE round(coalesce((usage->>'cost_usd')::numeric, 0) + %s::numeric - %s::numeric, 8) END)"
)


def session_usage_change(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Any] | None:
    """The parameters of `SESSION_USAGE_SQL` for one task's usage going from `before` to `after`,
    or None when the session's totals do not change (as `add_session_usage` returns them as they were)."""
    if after is None or after == before:
        return None
    before = before or NO_SESSION_USAGE
    deltas = [after[key] - before[key] for key in ("calls", "prompt_tokens", "completion_tokens")]
    return [*deltas, after["cost_usd"], after["cost_usd"], before["cost_usd"] or 0]


def session_usage_dict(usage: dict[str, Any] | None) -> dict[str, Any]:
    """`Session.usage`: the stored totals, or all null when no model was called."""
    return {key: (usage or {}).get(key) for key in SESSION_USAGE_KEYS}
