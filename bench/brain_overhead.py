"""What a model brain adds around the model itself: prompt building, validation, and one streamed
call through each SDK against the local fake endpoint of the tests (no network, no model time).

    .venv/bin/python bench/brain_overhead.py [--calls 20]

Prints medians: prompt build and contract validation per role (microseconds), and a whole
`think()` per provider (milliseconds), which is the SDK, HTTP and SSE parsing cost on loopback.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fake_llm import FakeModelServer  # noqa: E402

from actors.agents.contract import check_output, session_decision_ids, upstream_keys  # noqa: E402
from actors.agents.llm import AnthropicBrain, OpenAIBrain  # noqa: E402
from actors.agents.playbook import PLAYBOOK  # noqa: E402
from actors.agents.prompts import build_prompt  # noqa: E402
from models.schema import AGENT_ROLES, STAGE_OF_ROLE  # noqa: E402


def contexts(feature: str) -> dict[str, tuple[dict, dict]]:
    outputs: dict[str, dict] = {}
    result = {}
    for role in AGENT_ROLES:
        context = {
            "feature_name": feature,
            "description": "store a card and charge it later",
            "session_decisions": [],
            "upstream": {r: {"output": outputs[r]} for r in AGENT_ROLES if STAGE_OF_ROLE[r] < STAGE_OF_ROLE[role]},
        }
        outputs[role] = PLAYBOOK[role](context)
        result[role] = (context, outputs[role])
    return result


def median_us(fn, repeat: int = 200) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    roles = contexts("Saved payment methods")
    print(f"{'role':<14}{'prompt build':>14}{'validation':>12}{'prompt tokens':>15}")
    for role, (context, output) in roles.items():
        build = median_us(lambda c=context, r=role: build_prompt(r, "task", c))
        keys, ids = upstream_keys(context), session_decision_ids(context)
        check = median_us(lambda o=output, r=role, k=keys, i=ids: check_output(r, o, k, i))
        system, user, _ = build_prompt(role, "task", context)
        print(f"{role:<14}{build:>11.0f} us{check:>9.0f} us{(len(system) + len(user)) // 4:>15}")
    with FakeModelServer(chunks=40) as fake:
        os.environ.update(
            OPENAI_BASE_URL=fake.openai_url,
            OPENAI_API_KEY="bench",
            SAGE_OPENAI_MODEL="fake",
            ANTHROPIC_BASE_URL=fake.anthropic_url,
            ANTHROPIC_API_KEY="bench",
            SAGE_ANTHROPIC_MODEL="fake",
        )
        context = roles["backend_dev"][0]
        for cls in (OpenAIBrain, AnthropicBrain):
            cls().think("backend_dev", "task", context)  # warm-up: imports, first connection
            took = []
            for _ in range(args.calls):
                started = time.perf_counter()
                cls().think("backend_dev", "task", context)
                took.append(time.perf_counter() - started)
            print(f"{cls.name} think() on loopback, 40 SSE chunks: median {statistics.median(took) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
