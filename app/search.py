"""`GET /search`: every feature and decision the caller can read, typo-tolerant and ranked.

See `models/search.py` for the matching, and docs/api.md for the contract.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, Field
from quart import Blueprint, jsonify
from quart_schema import validate_querystring

from app.db_thread import run_db
from app.errors import ApiError
from app.login_sessions import current_user_id, login_required
from app.validation import NonBlank
from models.schema import AgentRole, Category
from models.search import Filters, search
from models.teams import visible_teams

blueprint = Blueprint("search", __name__)

Role = AgentRole


class SearchQuery(BaseModel):
    q: Annotated[str, NonBlank(200)]
    team_id: int | None = Field(default=None, gt=0)
    role: Role | None = None
    category: Category | None = None
    since: dt.date | None = None
    limit: int = Field(default=20, ge=1, le=100)


def _search(user_id: int, query: SearchQuery) -> dict:
    readable = tuple(team.id for team, _ in visible_teams(user_id))
    if query.team_id is not None:
        if query.team_id not in readable:
            raise ApiError(404, "team not found")
        readable = (query.team_id,)
    filters = Filters(readable, query.role, query.category, query.since, query.limit)
    return {"results": search(query.q, filters)}


@blueprint.get("/search")
@login_required
@validate_querystring(SearchQuery)
async def search_route(query_args: SearchQuery):
    """Ranked results with plain-text snippets and highlight offsets, best first."""
    return jsonify(await run_db(_search, await current_user_id(), query_args))
