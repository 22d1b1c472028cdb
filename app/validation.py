"""Field types shared by the request bodies of several blueprints, and the checks every body and query string passes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from annotated_types import GroupedMetadata, MaxLen, MinLen
from pydantic import AfterValidator
from quart import request

from app.errors import ApiError


def not_blank(value: str) -> str:
    """Strip surrounding white space; refuse what is left empty."""
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


@dataclass(frozen=True)
class NonBlank(GroupedMetadata):
    """With `Annotated[str, NonBlank(n)]`: a required string of 1..`n` characters that is not only
    white space. Metadata rather than a function returning the type, so a type checker sees `str`."""

    max_length: int

    def __iter__(self) -> Iterator[object]:
        yield MinLen(1)
        yield MaxLen(self.max_length)
        yield AfterValidator(not_blank)


# Limits on what any JSON body or query string may hold, checked before a view runs (issue 14,
# finding 9): PostgreSQL refuses NUL in text, and a parser or validator recursing through
# 10,000 nested arrays runs out of stack; both must be a 400, never a 500.
MAX_JSON_DEPTH = 32
_SPECIAL = re.compile(r'["\\\[\]{}]')


def _check_nesting(text_body: str) -> None:
    """Raise 400 when brackets outside strings nest deeper than MAX_JSON_DEPTH (one linear pass
    over the quotes, backslashes and brackets only)."""
    depth, in_string, escaped_at = 0, False, -1
    for match in _SPECIAL.finditer(text_body):
        char, at = match.group(), match.start()
        if in_string:
            if at == escaped_at:
                continue
            if char == "\\":
                escaped_at = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise ApiError(
                    400, f"request body nests deeper than {MAX_JSON_DEPTH} levels", fields={"body": "nested too deep"}
                )
        elif char in "]}":
            depth -= 1


def refuse_nul(value: str, where: str) -> None:
    """Raise 400 when `value` holds a NUL character (no text column can store one)."""
    if "\x00" in value:
        raise ApiError(400, f"{where} must not contain NUL characters", fields={where: "contains a NUL character"})


def check_json_value(value: Any) -> None:
    """Raise 400 when a parsed JSON body nests deeper than MAX_JSON_DEPTH or holds a NUL in any
    string or key. Iterative, so that checking cannot itself recurse too deep."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "body")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            refuse_nul(item, where)
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            raise ApiError(
                400, f"request body nests deeper than {MAX_JSON_DEPTH} levels", fields={"body": "nested too deep"}
            )
        if isinstance(item, dict):
            for key, child in item.items():
                name = key if where == "body" else f"{where}.{key}"
                refuse_nul(key, name)
                stack.append((child, depth + 1, name))
        else:
            stack.extend((child, depth + 1, where) for child in item)


def parse_json_body(raw: bytes) -> Any:
    """The JSON value of a request body; 400 for bytes that are not UTF-8 or not JSON, or that
    nest too deep (the nesting is counted before parsing, so the parser never recurses far)."""
    try:
        text_body = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "request body must be UTF-8 encoded JSON", fields={"body": "not UTF-8"}) from None
    _check_nesting(text_body)
    try:
        value = json.loads(text_body)
    except (ValueError, RecursionError):
        raise ApiError(400, "request body must be valid JSON", fields={"body": "malformed JSON"}) from None
    check_json_value(value)
    return value


async def check_query() -> None:
    """Refuse a query string with a NUL in any name or value (400)."""
    for name, value in request.args.items(multi=True):
        refuse_nul(name, name or "query")
        refuse_nul(value, name or "query")
