"""The provider interface behind the agents: a `Brain` turns a role, a task and a context into output.

The pipeline only ever calls `Brain.think`; the language-model brains (`llm.py`) are other
classes with the same method, registered in `BRAINS` and chosen by a session's `brain` or
`SAGE_BRAIN`, with no change to the pipeline. Which brains are configured is `models.brains`.
"""

from __future__ import annotations

from typing import Any, Protocol

from actors.agents.llm import AnthropicBrain, OpenAIBrain
from actors.agents.playbook import PLAYBOOK
from models.brains import default_brain


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
    #: Answers at once (well under a millisecond, no I/O): the pipeline runs it inside the claim's
    #: transaction and records its answer there (`models.lifecycle.claim_role`'s `run`). A brain
    #: without this runs after the claim commits, so a slow one never holds the session's lock.
    instant = True

    def think(self, role: str, task_description: str, context: dict[str, Any]) -> dict[str, Any]:
        return PLAYBOOK[role](context)


BRAINS: dict[str, type] = {cls.name: cls for cls in (KnowledgeBaseBrain, OpenAIBrain, AnthropicBrain)}


class UnknownBrain(ValueError):
    """SAGE_BRAIN names no registered brain."""


def get_brain(name: str | None = None) -> Brain:
    """The brain named by `name`, else `SAGE_BRAIN`, else the knowledge base."""
    chosen = name or default_brain()
    try:
        return BRAINS[chosen]()
    except KeyError:
        raise UnknownBrain(f"unknown brain {chosen!r}; known: {', '.join(sorted(BRAINS))}") from None
