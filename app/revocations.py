"""The revocations channel (`sage:{db}:revocations`): tells every web process that someone lost access.

Published after the database change (or the Redis session deletion) is done, as compact JSON:

- `{"user_id": 5, "team_id": 3, "reason": "removed"}`: user 5 was removed from team 3. Close
  their open WebSockets on sessions of team 3 with `access_revoked` (code 4403).
- `{"user_id": 5, "team_id": null, "reason": "logout"}`: one of user 5's login sessions ended.
  `team_id` null means "all teams": a socket of user 5 re-checks its own auth id with
  `app.login_sessions.user_id_from_auth_id(auth_id, refresh=False)` and closes with
  `access_revoked` if that session is gone (so logging out on one device does not close the
  sockets of another). The same goes out, with reason `deleted`, when the account is deleted
  (`DELETE /auth/me`: every session of it is gone, so every socket closes), and with reason
  `logout` when a new login drops the user's oldest session (`Settings.max_logins_per_user`).

Every request re-checks the session and the team access anyway, so a lost message only leaves
an already-open socket streaming until it reconnects; the channel is an accelerator for sockets,
not the source of truth.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from models.events import namespace, revocations_channel

log = logging.getLogger(__name__)


def message(user_id: int, team_id: int | None, reason: str) -> str:
    """The JSON text published for one revocation."""
    return json.dumps({"user_id": user_id, "team_id": team_id, "reason": reason}, separators=(",", ":"))


async def publish_revocation(redis: Any, user_id: int, team_id: int | None, reason: str) -> None:
    """Publish a revocation; a Redis failure is logged, not raised (the change itself is already done)."""
    try:
        await redis.publish(revocations_channel(namespace(redis)), message(user_id, team_id, reason))
    except Exception:
        log.exception("could not publish a revocation for user %s", user_id)
