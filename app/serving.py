"""Two corrections to hypercorn, installed in every web process by `app/server.py`.

**An oversize WebSocket message ends its connection.** hypercorn assembles each WebSocket message
in memory before the app sees it, up to `Config.websocket_max_message_size`. Past that it sends a
1009 close frame but keeps reading what the client sends, parsing one frame per read and buffering
the rest inside wsproto, and never ends the connection: a client that ignores the close grew the
web process by 567 MB in 5 seconds (issue 14, finding 2; `bench/hardening.py` measures it).
`end_on_too_big` makes a message over the limit end the connection right after the close frame, so
that a socket never holds more than one message of at most `Settings.ws_max_message_bytes`.

**One write per HTTP/1 response.** hypercorn's h11 protocol writes a response's head, its body and
its end each as a socket write followed by a `drain` (the end of a response with a `content-length`
is no bytes at all, written all the same); under the read benchmark's 64 connections
`StreamWriter.write` was 12% of a web process's GIL time (py-spy `--gil`, issue 13, fifth pass).
`one_write_per_response` keeps the head of a response whose size is known (a `content-length`, or a
204 or 304, which have no body) until the next event of its stream and writes both at once, and
writes nothing for an end that is no bytes: fewer system calls, though the web's CPU per request
did not move beyond the benchmark's noise. hypercorn sends the head as the app starts the response;
Quart sends a sized body right after it (a file's after opening it), so the head waits no longer
than that. A response without a size (a streamed body) goes out as hypercorn sends it, head first.
It is installed only on the hypercorn release whose `stream_send` it repeats.
"""

from __future__ import annotations

import logging
from importlib.metadata import version
from itertools import chain

import h11
from hypercorn.events import RawData
from hypercorn.protocol import ws_stream
from hypercorn.protocol.events import Body, EndBody, Response, StreamClosed
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h11 import H11Protocol
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Message, Ping
from wsproto.frame_protocol import CloseReason

logger = logging.getLogger(__name__)
_patched = False
_coalescing = False
_stream_send = H11Protocol.stream_send


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


#: The hypercorn release whose `H11Protocol.stream_send` `_coalesced_stream_send` repeats.
_HYPERCORN = "0.18."


def _sized(event: Response) -> bool:
    """Whether the response's whole length is known from its head (so its body follows at once)."""
    return event.status_code in (204, 304) or any(name.lower() == b"content-length" for name, _ in event.headers)


async def _coalesced_stream_send(self: H11Protocol, event: StreamEvent) -> None:
    """`H11Protocol.stream_send`, but a sized final response's head waits for the event after it."""
    held: bytes | None = self.__dict__.pop("_sage_head", None)
    if isinstance(event, Response) and event.status_code >= 200 and _sized(event):
        if held is not None:  # two heads in a row cannot happen; keep hypercorn's order if it did
            await self.send(RawData(data=held))
        headers = list(chain(event.headers, self.config.response_headers("h11")))
        if self.keep_alive_requests >= self.config.keep_alive_max_requests:
            headers.append((b"connection", b"close"))
        head = _h11_bytes(self, h11.Response(headers=headers, status_code=event.status_code))
        if head is not None:
            self.__dict__["_sage_head"] = head
        return
    if isinstance(event, (Body, EndBody)):
        try:
            data = _h11_bytes(self, h11.Data(data=event.data) if isinstance(event, Body) else h11.EndOfMessage())
        except h11.LocalProtocolError:  # a body longer than its content-length: the head first, as hypercorn
            if held is not None:
                await self.send(RawData(data=held))
            raise
        if held is not None or data:
            await self.send(RawData(data=(held or b"") + (data or b"")))
        return
    if held is not None:
        await self.send(RawData(data=held))
    await _stream_send(self, event)


def _h11_bytes(protocol: H11Protocol, event: h11.Response | h11.Data | h11.EndOfMessage) -> bytes | None:
    """What `protocol`'s h11 connection makes of `event`, or None where hypercorn would send
    nothing (a local protocol error on a connection the peer already broke)."""
    try:
        return protocol.connection.send(event)
    except h11.LocalProtocolError:
        if protocol.connection.their_state != h11.ERROR:
            raise
        return None


def one_write_per_response() -> None:
    """Install the coalescing of a response's head with what follows it (idempotent); not on a
    hypercorn release other than the one it was written for (logged)."""
    global _coalescing
    if _coalescing:
        return
    found = version("hypercorn")
    if not found.startswith(_HYPERCORN):
        logger.warning(
            "hypercorn %s: responses are written as hypercorn writes them (one write each needs %sx)", found, _HYPERCORN
        )
        return
    H11Protocol.stream_send = _coalesced_stream_send  # type: ignore[method-assign]  # the correction itself
    _coalescing = True
