"""Queries on users: creation and lookup by login name. Plain sync code: run it through `run_db`."""

from __future__ import annotations

import peewee
from peewee import fn

from models.schema import User, utcnow


class DuplicateUser(Exception):
    """The username or email is already taken; `field` names which."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} is already taken")
        self.field = field


def _taken_field(username: str, email: str) -> str:
    clash = User.select(User.username).where(fn.LOWER(User.username) == username.lower()).exists()
    return "username" if clash else "email"


def create_user(username: str, email: str, password_hash: str) -> User:
    """Insert a user (email stored lowercased); raise DuplicateUser on a case-insensitive clash."""
    email = email.lower()
    now = utcnow()
    try:
        # A savepoint, so a clash leaves the caller's transaction usable.
        with User._meta.database.atomic():
            return User.create(
                username=username, email=email, password_hash=password_hash, created_at=now, updated_at=now
            )
    except peewee.IntegrityError:
        raise DuplicateUser(_taken_field(username, email)) from None


def find_user_by_login(login: str) -> User | None:
    """The user whose username or email matches `login`, ignoring case (one query)."""
    login = login.strip().lower()
    column = fn.LOWER(User.email) if "@" in login else fn.LOWER(User.username)
    return User.select().where(column == login).first()


def get_user(user_id: int) -> User | None:
    """The user with this id, or None."""
    return User.get_or_none(User.id == user_id)


def delete_user(user_id: int) -> bool:
    """Delete the user; the database's ON DELETE rules take what they own (models/schema.py).
    True if there was such a user."""
    return User.delete().where(User.id == user_id).execute() > 0


def user_exists(user_id: int) -> bool:
    """Whether a user with this id exists (one indexed query)."""
    return User.select(User.id).where(User.id == user_id).exists()
