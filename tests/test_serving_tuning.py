"""How a web process is tuned for its reads (issue 13): what `app.server` does around the app."""

from __future__ import annotations

import gc

from app.server import served_app


async def test_a_served_app_freezes_its_start_up_objects_once_started(settings, database, redis_client):
    gc.unfreeze()
    app = served_app(settings)
    assert gc.get_freeze_count() == 0
    try:
        async with app.test_app():
            # The app and everything imported and opened at start-up are out of the collector's
            # generations, so a full collection no longer walks them.
            assert gc.get_freeze_count() > 10_000
            assert not gc.is_tracked(app) or app not in gc.get_objects()
            response = await app.test_client().get("/health")
            assert response.status_code == 200
    finally:
        gc.unfreeze()
