"""Field types shared by the request bodies of several blueprints."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field


def not_blank(value: str) -> str:
    """Strip surrounding white space; refuse what is left empty."""
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


def text(max_length: int) -> object:
    """A required string of 1..`max_length` characters that is not only white space."""
    return Annotated[str, Field(min_length=1, max_length=max_length), AfterValidator(not_blank)]
