"""The `auth` blueprint: signup, login, logout, me, delete the account (docs/api.md "Auth")."""

from __future__ import annotations

import re

from pydantic import BaseModel, EmailStr, Field, field_validator
from quart import Blueprint, Response, current_app, request
from quart_schema import validate_request

from app import login_sessions, ratelimit
from app.db_thread import run_db
from app.errors import ApiError
from app.login_sessions import current_user_id, login_required
from app.passwords import MAX_PASSWORD_BYTES, check_password, hash_password
from app.revocations import publish_revocation
from models.serialize import user_dict
from models.users import DuplicateUser, create_user, delete_user, find_user_by_login, get_user

blueprint = Blueprint("auth", __name__, url_prefix="/auth")

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")


class _PasswordBody(BaseModel):
    """bcrypt reads only 72 bytes: a longer password is refused, never silently truncated."""

    password: str = Field(min_length=8, max_length=128)

    @field_validator("password")
    @classmethod
    def _fits_bcrypt(cls, value: str) -> str:
        if len(value.encode("utf-8")) > MAX_PASSWORD_BYTES:
            raise ValueError(f"must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8 (bcrypt reads no further)")
        return value


class SignupBody(_PasswordBody):
    username: str = Field(min_length=3, max_length=64)
    email: EmailStr = Field(max_length=255)

    @field_validator("username")
    @classmethod
    def _username_chars(cls, value: str) -> str:
        if not USERNAME.match(value):
            raise ValueError("may contain only letters, digits, '_', '.' and '-'")
        return value


class LoginBody(_PasswordBody):
    username: str = Field(min_length=1, max_length=255, description="username or email")
    # Any length may be tried (accounts are only ever created with 8+); the byte rule still holds.
    password: str = Field(min_length=1, max_length=128)


def _redis():
    return current_app.extensions["sage_redis"]


def _address() -> str:
    return request.remote_addr or "unknown"


@blueprint.post("/signup")
@validate_request(SignupBody)
async def signup(data: SignupBody):
    """Create an account and log in: 201 `{"user": User}`."""
    settings = current_app.extensions["sage_settings"]
    await ratelimit.count_signup_attempt(_redis(), settings, _address())
    password_hash = await hash_password(data.password, settings.bcrypt_rounds)
    try:
        user = await run_db(create_user, data.username, str(data.email), password_hash)
    except DuplicateUser as exc:
        raise ApiError(409, f"that {exc.field} is already taken", fields={exc.field: "already taken"}) from None
    # The machine that made the account is trusted as a login's is (finding 13): someone else's
    # guesses must not lock the new user out of it.
    await ratelimit.remember_address(_redis(), settings, user.id, _address())
    await login_sessions.start_login(user.id)
    return {"user": user_dict(user)}, 201


@blueprint.post("/login")
@validate_request(LoginBody)
async def login(data: LoginBody):
    """Log in by username or email: 200 `{"user": User}` and a fresh session cookie."""
    settings = current_app.extensions["sage_settings"]
    redis, address = _redis(), _address()
    user = await run_db(find_user_by_login, data.username)
    # Keyed by id when the account exists, so "name" and "email" share one counter.
    account = str(user.id) if user else data.username.strip().lower()
    # Reserve the attempt before hashing: parallel guesses cannot all pass a check made before
    # any of them was counted (finding 1). A failure keeps its reservation.
    await ratelimit.reserve_login(redis, settings, account, address, user.id if user else None)
    # A missing user is still hashed against (check_password is then False), so timing tells nothing.
    matches = await check_password(data.password, user.password_hash if user else None, settings.bcrypt_rounds)
    if not matches or user is None:
        raise ApiError(401, "wrong username or password")
    await ratelimit.record_login_success(redis, settings, account, address, user.id)
    await login_sessions.start_login(user.id)
    return {"user": user_dict(user)}


@blueprint.post("/logout")
@login_required
async def logout():
    """End this login session: 204; the old cookie answers 401 from now on."""
    user_id = await login_sessions.end_login()
    if user_id is not None:
        await publish_revocation(_redis(), user_id, None, "logout")
    return Response(status=204)


@blueprint.get("/me")
@login_required
async def me():
    """The logged-in user: 200 `{"user": User}`."""
    user = await run_db(get_user, await current_user_id())
    if user is None:  # deleted while logged in
        await login_sessions.end_login()
        raise ApiError(401, "log in first")
    return {"user": user_dict(user)}


class DeleteAccountBody(BaseModel):
    password: str = Field(min_length=1, max_length=128)


@blueprint.delete("/me")
@login_required
@validate_request(DeleteAccountBody)
async def delete_me(data: DeleteAccountBody):
    """Delete the account after checking its password: 204.

    What it owns goes with it, as the README's "Deleting data" says; every login session of the
    user ends and their open sockets are told (`revocations`, team null) and closed.
    """
    settings = current_app.extensions["sage_settings"]
    redis, address = _redis(), _address()
    user_id = await current_user_id()
    user = await run_db(get_user, user_id)
    if user is None:
        await login_sessions.end_login()
        raise ApiError(401, "log in first")
    # A stolen cookie must not buy unlimited password guesses: the login limits hold here too.
    await ratelimit.reserve_login(redis, settings, str(user.id), address, user.id)
    if not await check_password(data.password, user.password_hash, settings.bcrypt_rounds):
        raise ApiError(403, "wrong password", fields={"password": "wrong password"})
    await ratelimit.release_address(redis, address)
    await run_db(delete_user, user.id)
    await login_sessions.delete_all_sessions(redis, user.id)
    await ratelimit.forget_user(redis, user.id)
    login_sessions.forget_cookie()
    await publish_revocation(redis, user.id, None, "deleted")
    return Response(status=204)
