"""The one error contract of `docs/api.md`: every failure becomes `{"error": {...}}`."""

from __future__ import annotations

import logging
from typing import Any

import peewee
from quart import Quart, Response, jsonify
from quart_schema import RequestSchemaValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import HTTPException

from models.db import DatabaseUnavailable, is_connection_error

log = logging.getLogger(__name__)

CODES = {
    400: "validation_error",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


#: Sent with a 503: soon enough for a person to retry, long enough for a service to restart.
RETRY_LATER = {"Retry-After": "5"}


class ApiError(Exception):
    """Raise anywhere in a request to answer with the envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.fields = fields
        self.headers = headers or {}


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    fields: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Build the envelope response."""
    body: dict[str, Any] = {"code": code or CODES.get(status, "error"), "message": message}
    if fields:
        body["fields"] = fields
    response = jsonify({"error": body})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _reason(item: dict[str, Any]) -> str:
    """A short, human reason for one pydantic error ("must be at most 64 characters").

    It reads as a sentence after the field's name; pydantic's own wording ("String should have
    at least 1 character") is a message for programmers, so the common kinds are rephrased.
    """
    kind = item.get("type", "")
    ctx = item.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind in {"model_type", "dict_type", "model_attributes_type"} and not item.get("loc"):
        return "must be a JSON object"
    if kind == "string_too_short":
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"must be at least {least} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        return "has characters that are not allowed"
    if kind in {"string_type", "str_type"}:
        return "must be text"
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return "must be a whole number"
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        bound = next(iter(ctx.values()), "")
        words = {
            "greater_than": "greater than",
            "greater_than_equal": "at least",
            "less_than": "less than",
            "less_than_equal": "at most",
        }
        return f"must be {words[kind]} {bound}"
    if kind in {"literal_error", "enum"}:
        expected = str(ctx.get("expected", "")).replace("'", "")
        return f"must be one of {expected}" if expected else "is not one of the allowed values"
    if kind == "bool_type" or kind == "bool_parsing":
        return "must be true or false"
    if kind == "extra_forbidden":
        return "is not an accepted field"
    message = str(item.get("msg", "invalid"))
    if "valid email address" in message:
        return "must be an email address, like name@example.com"
    # A validator's ValueError arrives as "Value error, <our message>".
    return message.removeprefix("Value error, ")


def validation_message(fields: dict[str, str]) -> str:
    """One sentence naming every field that failed: "username is required; password must be ..."."""
    parts = []
    for field, reason in fields.items():
        verb = "is " if reason == "required" else ""
        parts.append(f"{field} {verb}{reason}")
    return "; ".join(parts)


def _validation_fields(error: RequestSchemaValidationError) -> dict[str, str]:
    """Pydantic's errors as `{field: reason}`; a body that is not an object is `{"body": ...}`."""
    inner = error.validation_error
    fields: dict[str, str] = {}
    errors = getattr(inner, "errors", None)
    if callable(errors):
        for item in errors():
            loc = ".".join(str(p) for p in item.get("loc", ()) if p != "__root__") or "body"
            fields.setdefault(loc, _reason(item))
    if not fields:
        # Not a pydantic error (a TypeError from the loader): the body as a whole is wrong.
        fields["body"] = "must be a JSON object"
    return fields


def register_error_handlers(app: Quart) -> None:
    """Route every error class through the envelope."""

    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        return error_response(error.status, error.message, error.code, error.fields, error.headers)

    @app.errorhandler(RequestSchemaValidationError)
    async def schema_error(error: RequestSchemaValidationError) -> Response:
        fields = _validation_fields(error)
        return error_response(400, validation_message(fields), "validation_error", fields)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        messages = {
            400: "malformed request",
            401: "log in first",
            403: "forbidden",
            404: "not found",
            405: "method not allowed",
            408: "the request body took too long to arrive",
            413: "request body is too large",
            415: "request body must be JSON",
        }
        # MethodNotAllowed carries the methods itself; its `.response` is None.
        allowed = getattr(error, "valid_methods", None)
        headers = {"Allow": ", ".join(allowed)} if status == 405 and allowed else None
        return error_response(status, messages.get(status, error.description or "error"), headers=headers)

    # A service that is down is the operator's problem, not a bug: 503 with the envelope (and a
    # hint to come back), never 500. Redis carries the login sessions, so during a Redis outage
    # every request with a cookie lands here; the database after `reconnecting` gave up.
    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    async def redis_unavailable(error: Exception) -> Response:
        log.warning("Redis is unavailable: %s", error)
        return error_response(503, "a service is unavailable; try again in a moment", headers=RETRY_LATER)

    @app.errorhandler(DatabaseUnavailable)
    async def database_unavailable(error: Exception) -> Response:
        log.warning("the database is unavailable: %s", error)
        return error_response(503, "a service is unavailable; try again in a moment", headers=RETRY_LATER)

    @app.errorhandler(peewee.OperationalError)
    @app.errorhandler(peewee.InterfaceError)
    async def database_error(error: Exception) -> Response:
        if is_connection_error(error):
            return await database_unavailable(error)
        return await unexpected(error)

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        return error_response(500, "internal server error", "internal_error")
