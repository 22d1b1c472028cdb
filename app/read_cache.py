"""Encoded session views kept by the version of the rows they were built from (issue 13).

A finished session is read far more often than it changes, and building its detail or replay
(five queries, their rows, the JSON) was most of a read's cost. Each web process keeps the last
bodies it built, keyed by view and session, with the digest of the rows they came from
(`models.queries.session_version`, one query over `id:xmin` of every row the view reads). A read
still checks the login, the account and the access first, every time; then asks the digest in
the same read-only transaction (one snapshot) and answers from the cache only when it is equal,
so a new decision, event, task state, snapshot or rerun, or a cascade's SET NULL, is seen by the
very next read. A read whose body is kept asks all of that in one statement outside any
transaction (`peek`, `app.access.session_access_with`): one statement is one snapshot. The body's hash is its ETag: a client that sends it back gets 304 without the body
being built or sent.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

#: Bodies kept per web process, and the largest kept (a bigger one is built every time).
MAX_ENTRIES = 512
MAX_BODY_BYTES = 4 * 1024 * 1024


class BodyCache:
    """A bounded LRU of `key -> (version, body, etag)`; safe to share between database threads."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self._entries: OrderedDict[Hashable, tuple[str, bytes, str]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries, self.max_body_bytes = max_entries, max_body_bytes

    def peek(self, key: Hashable, version: str | None) -> tuple[bytes, str] | None:
        """The kept body for `key` and its ETag if it was built from `version`, else None."""
        if version is None:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != version:
                return None
            self._entries.move_to_end(key)
            return entry[1], entry[2]

    def get_or_build(self, key: Hashable, version: str | None, build: Callable[[], bytes]) -> tuple[bytes, str]:
        """The body for `key` at `version` and its ETag: the kept one if it has that version, else
        `build()`'s (kept unless `version` is None, which means "not cacheable")."""
        kept = self.peek(key, version)
        if kept is not None:
            return kept
        body = build()
        etag = hashlib.blake2b(body, digest_size=16).hexdigest()
        with self._lock:
            if version is not None and len(body) <= self.max_body_bytes:
                self._entries[key] = (version, body, etag)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            else:
                self._entries.pop(key, None)
        return body, etag
