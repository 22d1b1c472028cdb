"""The cap on model calls per endpoint (actors/agents/limits.py): leases in Redis that a dead
holder gives back by expiring, and the back-pressure of a 429."""

from __future__ import annotations

import time

from actors import parking
from actors.agents import limits


def test_a_slot_held_by_a_dead_process_comes_back_when_its_lease_expires(monkeypatch, redis_client):
    monkeypatch.setenv("SAGE_LLM_MAX_CONCURRENCY", "1")
    limiter = limits.limiter_for("openai", "http://dead-holder.test/v1")
    # A lease taken by a process that was SIGKILLed: nobody renews or releases it.
    redis_client.zadd(limiter.leases, {"dead-process-token": int(time.time() * 1000) + 700})

    async def take() -> tuple[str | None, list[str]]:
        slot = await limiter.slot(time.monotonic() + 20)
        held = [m for m in redis_client.zrange(limiter.leases, 0, -1)]
        async with slot:
            pass
        return slot.token, held

    token, held = parking.run(take())
    assert token is not None and held == [token]  # the dead lease was swept, not shared
    assert redis_client.zcard(limiter.leases) == 0  # released


def test_a_429_pauses_the_endpoint_halves_its_cap_once_and_successes_grow_it_back(monkeypatch, redis_client):
    monkeypatch.setenv("SAGE_LLM_MAX_CONCURRENCY", "8")
    limiter = limits.limiter_for("openai", "http://throttled.test/v1")

    async def storm() -> float:
        waits = [await limiter.throttled(0.3) for _ in range(5)]  # a burst of 429s
        return max(waits)

    assert parking.run(storm()) == 0.3
    assert redis_client.get(limiter.lowered) == "4"  # halved once for the burst, not five times
    assert 0 < redis_client.pttl(limiter.pause) <= 300

    async def succeed(times: int) -> None:
        for _ in range(times):
            slot = await limiter.slot(time.monotonic() + 20)  # waits out the pause
            slot.succeeded = True
            async with slot:
                pass

    parking.run(succeed(2))
    assert redis_client.get(limiter.lowered) == "6"
    parking.run(succeed(2))
    assert redis_client.get(limiter.lowered) is None  # back to the full cap
