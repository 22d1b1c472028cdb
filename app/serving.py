"""One correction to hypercorn, installed in every web process by `app/server.py`.

hypercorn assembles each WebSocket message in memory before the app sees it, up to
`Config.websocket_max_message_size`. Past that it sends a 1009 close frame but keeps reading
what the client sends, parsing one frame per read and buffering the rest inside wsproto, and
never ends the connection: a client that ignores the close grew the web process by 567 MB in
5 seconds (issue 14, finding 2; `bench/hardening.py` measures it). `end_on_too_big` makes a
message over the limit end the connection right after the close frame, so that a socket never
holds more than one message of at most `Settings.ws_max_message_bytes`.
"""

from __future__ import annotations

from hypercorn.protocol import ws_stream
from hypercorn.protocol.events import StreamClosed
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Message, Ping
from wsproto.frame_protocol import CloseReason

_patched = False


async def _handle_events(self: ws_stream.WSStream) -> None:
    """hypercorn's `WSStream._handle_events`, but a message over the limit ends the connection."""
    for event in self.connection.events():
        if isinstance(event, Message):
            try:
                self.buffer.extend(event)
            except ws_stream.FrameTooLargeError:
                await self._send_wsproto_event(CloseConnection(code=CloseReason.MESSAGE_TOO_BIG))
                self.buffer.clear()
                # The difference: stop here, and have the connection closed, instead of reading on.
                await self.send(StreamClosed(stream_id=self.stream_id))
                return
            if event.message_finished:
                assert self.app_put is not None, "set when the handshake is accepted, before any message"
                await self.app_put(self.buffer.to_message())
                self.buffer.clear()
        elif isinstance(event, Ping):
            await self._send_wsproto_event(event.response())
        elif isinstance(event, CloseConnection):
            if self.connection.state == ConnectionState.REMOTE_CLOSING:
                await self._send_wsproto_event(event.response())
            await self.send(StreamClosed(stream_id=self.stream_id))


def end_on_too_big() -> None:
    """Install the correction (idempotent)."""
    global _patched
    if not _patched:
        ws_stream.WSStream._handle_events = _handle_events  # type: ignore[method-assign]  # the correction itself
        _patched = True
