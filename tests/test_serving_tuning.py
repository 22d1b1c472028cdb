"""How a web process is tuned for its reads (issue 13): what `app.server` does around the app."""

from __future__ import annotations

import gc

from app.server import served_app
from models import heap


async def test_a_served_app_freezes_its_start_up_objects_once_started(settings, database, redis_client):
    gc.unfreeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # Python's default
    app = served_app(settings)
    assert gc.get_freeze_count() == 0
    try:
        async with app.test_app():
            # The app and everything imported and opened at start-up are out of the collector's
            # generations, so a full collection no longer walks them.
            assert gc.get_freeze_count() > 10_000
            assert not gc.is_tracked(app) or app not in gc.get_objects()
            # And young objects are collected every 50,000 allocations, not every 700.
            assert gc.get_threshold() == heap.GC_THRESHOLDS == (50_000, 20, 10)
            response = await app.test_client().get("/health")
            assert response.status_code == 200
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def _h11_protocol(sent: list[bytes]):
    """hypercorn's h11 protocol with a request received and its writes recorded in `sent`, as
    hypercorn's own tests build it (no socket, no app)."""
    from unittest.mock import AsyncMock, Mock

    from hypercorn.config import Config
    from hypercorn.events import RawData
    from hypercorn.protocol.h11 import H11Protocol

    async def send(event) -> None:
        if isinstance(event, RawData):
            sent.append(event.data)

    config = Config()
    config.include_date_header = False  # two runs must make the same bytes
    context = Mock()
    context.event_class.return_value = AsyncMock()
    protocol = H11Protocol(AsyncMock(), config, context, AsyncMock(), Mock(), False, None, None, send)
    protocol.connection.receive_data(b"GET /sessions/1 HTTP/1.1\r\nHost: sage\r\n\r\n")
    protocol.connection.next_event()  # the request, as `_handle_events` would read it
    protocol.connection.next_event()  # its end
    return protocol


async def _writes(stream_send, events) -> list[bytes]:
    sent: list[bytes] = []
    protocol = _h11_protocol(sent)
    for event in events:
        await stream_send(protocol, event)
    return sent


async def test_a_response_goes_out_in_one_write_with_the_same_bytes():
    from hypercorn.protocol.events import Body, EndBody, Response

    from app import serving

    body = b'{"id":1}\n'
    sized = [
        Response(stream_id=1, status_code=200, headers=[(b"content-length", str(len(body)).encode())]),
        Body(stream_id=1, data=body),
        EndBody(stream_id=1),
    ]
    before = await _writes(serving._stream_send, sized)
    after = await _writes(serving._coalesced_stream_send, sized)
    assert len(before) >= 2  # hypercorn's own: the head, then the body (then an empty end)
    assert after == [b"".join(before)]  # one write, the same bytes
    assert after[0].startswith(b"HTTP/1.1 200 ") and after[0].endswith(body)

    # An empty response (a 304): the head and its end together.
    empty = [Response(stream_id=1, status_code=304, headers=[(b"etag", b'"v1"')]), EndBody(stream_id=1)]
    before = await _writes(serving._stream_send, empty)
    assert await _writes(serving._coalesced_stream_send, empty) == [b"".join(before)]


async def test_a_streamed_response_goes_out_as_hypercorn_sends_it():
    """A response without a size (a streamed body) is not held: head, chunks and end go out as
    hypercorn writes them, the head before the app's first chunk."""
    from hypercorn.protocol.events import Body, EndBody, Response, StreamClosed

    from app import serving

    chunked = [
        Response(stream_id=1, status_code=200, headers=[(b"content-type", b"application/x-ndjson")]),
        Body(stream_id=1, data=b"first\n"),
        Body(stream_id=1, data=b"second\n"),
        EndBody(stream_id=1),
        StreamClosed(stream_id=1),
    ]
    before = await _writes(serving._stream_send, chunked)
    after = await _writes(serving._coalesced_stream_send, chunked)
    assert after == before and after[0].startswith(b"HTTP/1.1 200 ") and after[0].endswith(b"\r\n\r\n")


async def test_a_body_longer_than_its_length_fails_after_its_head_as_in_hypercorn():
    import h11
    import pytest
    from hypercorn.protocol.events import Body, Response

    from app import serving

    events = [
        Response(stream_id=1, status_code=200, headers=[(b"content-length", b"2")]),
        Body(stream_id=1, data=b"too long"),
    ]
    for stream_send in (serving._stream_send, serving._coalesced_stream_send):
        sent: list[bytes] = []
        protocol = _h11_protocol(sent)
        await stream_send(protocol, events[0])
        with pytest.raises(h11.LocalProtocolError):
            await stream_send(protocol, events[1])
        assert len(sent) == 1 and sent[0].startswith(b"HTTP/1.1 200 ")  # the head, and no body


def test_the_one_write_correction_is_installed_only_on_the_hypercorn_it_repeats(monkeypatch):
    from hypercorn.protocol.h11 import H11Protocol

    from app import serving

    monkeypatch.setattr(serving, "_coalescing", False)
    monkeypatch.setattr(H11Protocol, "stream_send", serving._stream_send)
    monkeypatch.setattr(serving, "version", lambda name: "0.19.0")
    serving.one_write_per_response()
    assert H11Protocol.stream_send is serving._stream_send
    monkeypatch.setattr(serving, "version", lambda name: "0.18.0")
    serving.one_write_per_response()
    serving.one_write_per_response()  # idempotent
    assert H11Protocol.stream_send is serving._coalesced_stream_send


async def test_a_served_app_imports_the_workers_package_before_freezing(settings, database, redis_client, monkeypatch):
    """`POST /sessions` enqueues through `actors.pipeline`: a web process imports it as it starts
    (not on its first POST, which it made 80-100 ms slower) and before `gc.freeze`, so its objects
    are frozen with the rest."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from app import server

    order: list[str] = []
    monkeypatch.setattr(server, "preload_enqueueing", lambda: order.append("preload"))
    monkeypatch.setattr(server, "freeze_start_up_objects", lambda: order.append("freeze"))
    app = server.served_app(settings)
    async with app.test_app():
        assert order == ["preload", "freeze"]
    # And what it does, in a fresh interpreter (this one imported the package long ago).
    check = (
        "import sys; from app.server import preload_enqueueing; assert 'actors.pipeline' not in sys.modules;"
        " preload_enqueueing(); assert 'actors.pipeline' in sys.modules"
    )
    env = {
        **os.environ,
        "SAGE_STUB_BROKER": "1",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
    }
    subprocess.run([sys.executable, "-c", check], env=env, cwd=Path(server.__file__).parent.parent, check=True)
