"""The provider interface behind the agents: a `Brain` turns a role, a task and a context into output.

The pipeline only ever calls `Brain.think`; a language-model brain is another class with the
same method, registered in `BRAINS` and chosen with `SAGE_BRAIN`, with no change to the pipeline.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from actors.agents.playbook import PLAYBOOK


class Brain(Protocol):
    """What an agent needs from whatever does its thinking."""

    name: str
    version: str

    def think(self, role: str, task_description: str, context: dict[str, Any]) -> dict[str, Any]:
        """Return `summary`, `artifacts`, `decisions` (key, text, rationale, category, confidence,
        based_on_keys, based_on_session_decisions) and `concerns` for one task."""
        ...


class KnowledgeBaseBrain:
    """The default brain: offline and deterministic, driven by `knowledge.py` and `playbook.py`."""

    name = "knowledge-base"
    version = "1"

    def think(self, role: str, task_description: str, context: dict[str, Any]) -> dict[str, Any]:
        return PLAYBOOK[role](context)


BRAINS: dict[str, type] = {KnowledgeBaseBrain.name: KnowledgeBaseBrain}


class UnknownBrain(ValueError):
    """SAGE_BRAIN names no registered brain."""


def get_brain(name: str | None = None) -> Brain:
    """The brain named by `name`, else `SAGE_BRAIN`, else the knowledge base."""
    chosen = name or os.environ.get("SAGE_BRAIN") or KnowledgeBaseBrain.name
    try:
        return BRAINS[chosen]()
    except KeyError:
        raise UnknownBrain(f"unknown brain {chosen!r}; known: {', '.join(sorted(BRAINS))}") from None
