"""The seven role agents: capabilities, a context, and `execute_task` backed by a brain."""

from __future__ import annotations

import copy
import enum
from typing import Any, ClassVar

import orjson

from actors.agents.brain import Brain, get_brain
from models.schema import CATEGORIES, CONFIDENCE_LEVELS


class Capability(enum.StrEnum):
    DESIGN = "DESIGN"
    IMPLEMENT = "IMPLEMENT"
    TEST = "TEST"
    REVIEW = "REVIEW"
    DEPLOY = "DEPLOY"
    DOCUMENT = "DOCUMENT"
    AUDIT = "AUDIT"
    OPTIMIZE = "OPTIMIZE"


class InvalidOutput(ValueError):
    """A brain returned output that breaks the contract (unknown category, missing field...)."""


def _json_copy(value: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a context, which is JSON read back from the database: an orjson round trip,
    several times faster than `copy.deepcopy`, when it gives the same value back (no tuples, no
    non-string keys, no number beyond 64 bits or not finite); `copy.deepcopy` otherwise."""
    try:
        copied = orjson.loads(orjson.dumps(value))
    except TypeError:  # orjson.JSONEncodeError is one: a big integer, a non-string key
        return copy.deepcopy(value)
    return copied if copied == value else copy.deepcopy(value)  # a tuple, NaN or infinity: not JSON


class Agent:
    """One role on the team. Holds a context; `execute_task` asks the brain and checks its answer."""

    role: ClassVar[str]
    title: ClassVar[str]
    capabilities: ClassVar[tuple[Capability, ...]]

    def __init__(self, brain: Brain | None = None) -> None:
        self.brain = brain or get_brain()
        self.context: dict[str, Any] = {}
        self.last_output: dict[str, Any] | None = None

    def set_context(self, context: dict[str, Any]) -> None:
        """Give the agent the feature, the session's decisions and upstream outputs (a deep copy)."""
        self.context = _json_copy(context)

    def execute_task(self, description: str) -> dict[str, Any]:
        """Do the role's work on `description` in the current context and return its output data."""
        return self.conclude(description, self.brain.think(self.role, description, self.context))

    def conclude(self, description: str, raw: dict[str, Any]) -> dict[str, Any]:
        """The output data from the brain's answer `raw` (checked, with role, brain and provenance);
        `execute_task`'s second half, for a caller that awaited the brain itself."""
        output = self._validated(raw)
        output["role"] = self.role
        output["task_description"] = description
        output["brain"] = {"name": self.brain.name, "version": self.brain.version}
        output["provenance"] = {
            "upstream_decisions": sorted({k for d in output["decisions"] for k in d["based_on_keys"]}),
            "session_decisions": sorted({i for d in output["decisions"] for i in d["based_on_session_decisions"]}),
            "upstream_roles": sorted(self.context.get("upstream", {})),
        }
        self.last_output = output
        return output

    def state(self) -> dict[str, Any]:
        """What a snapshot stores about the agent."""
        return {
            "role": self.role,
            "title": self.title,
            "capabilities": [c.value for c in self.capabilities],
            "brain": {"name": self.brain.name, "version": self.brain.version},
        }

    def _validated(self, raw: dict[str, Any]) -> dict[str, Any]:
        output = _json_copy(raw)
        for field in ("summary", "artifacts", "decisions", "concerns"):
            if field not in output:
                raise InvalidOutput(f"{self.role}: output has no {field!r}")
        for decision in output["decisions"]:
            if decision.get("category") not in CATEGORIES:
                raise InvalidOutput(f"{self.role}: unknown category {decision.get('category')!r}")
            if decision.get("confidence") not in CONFIDENCE_LEVELS:
                raise InvalidOutput(f"{self.role}: unknown confidence {decision.get('confidence')!r}")
            if not decision.get("text") or not decision.get("key"):
                raise InvalidOutput(f"{self.role}: a decision needs a key and a text")
            decision.setdefault("rationale", "")
            decision.setdefault("based_on_keys", [])
            decision.setdefault("based_on_session_decisions", [])
        return output


C = Capability


class ArchitectAgent(Agent):
    role, title = "architect", "Software architect (team lead)"
    capabilities = (C.DESIGN, C.REVIEW, C.DOCUMENT)


class BackendAgent(Agent):
    role, title = "backend_dev", "Backend developer"
    capabilities = (C.IMPLEMENT, C.TEST, C.DOCUMENT)


class DBAAgent(Agent):
    role, title = "dba", "Database administrator"
    capabilities = (C.DESIGN, C.IMPLEMENT, C.OPTIMIZE)


class FrontendAgent(Agent):
    role, title = "frontend_dev", "Frontend developer"
    capabilities = (C.IMPLEMENT, C.TEST)


class UIUXAgent(Agent):
    role, title = "ui_ux", "UI/UX designer"
    capabilities = (C.DESIGN, C.REVIEW)


class SecurityAgent(Agent):
    role, title = "security", "Security engineer"
    capabilities = (C.AUDIT, C.REVIEW, C.TEST)


class ITAdminAgent(Agent):
    role, title = "it_admin", "IT administrator"
    capabilities = (C.DEPLOY, C.OPTIMIZE, C.DOCUMENT)


AGENT_CLASSES: dict[str, type[Agent]] = {
    cls.role: cls
    for cls in (ArchitectAgent, BackendAgent, DBAAgent, FrontendAgent, UIUXAgent, SecurityAgent, ITAdminAgent)
}


def make_agent(role: str, brain: Brain | None = None) -> Agent:
    """A fresh agent for `role`."""
    return AGENT_CLASSES[role](brain)
