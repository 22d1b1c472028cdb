"""The role agents and the brains that think for them."""

from actors.agents.base import AGENT_CLASSES, Agent, Capability, InvalidOutput, make_agent
from actors.agents.brain import BRAINS, Brain, KnowledgeBaseBrain, UnknownBrain, get_brain
from actors.agents.llm import BrainError

__all__ = [
    "AGENT_CLASSES",
    "BRAINS",
    "Agent",
    "Brain",
    "BrainError",
    "Capability",
    "InvalidOutput",
    "KnowledgeBaseBrain",
    "UnknownBrain",
    "get_brain",
    "make_agent",
]
