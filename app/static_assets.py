"""Static assets: fingerprinted URLs, long cache lifetimes and gzip.

`url_for("static", filename=...)` gets `?v=<fingerprint of the file's content>`, so a page always
names the exact version it was rendered with; a request carrying `v` may then be cached for a
year (`immutable`), and one without it is revalidated (`no-cache`, by ETag). Text assets are
sent gzip-compressed to clients that accept it (the session bundle shrinks about four times),
compressed once per file version and kept in memory.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

from quart import Quart, Response, request

COMPRESSIBLE = {
    "text/css",
    "text/javascript",
    "application/javascript",
    "image/svg+xml",
    "text/plain",
    "application/json",
}
YEAR = 365 * 24 * 3600
MIN_BYTES = 512


class _Versions:
    """Content fingerprints (and gzip bodies) per file, recomputed when the file changes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._hashes: dict[str, tuple[int, str]] = {}
        self._gzipped: dict[tuple[str, int], bytes] = {}

    def _path(self, filename: str) -> Path | None:
        path = (self.folder / filename).resolve()
        if not path.is_file() or self.folder.resolve() not in path.parents:
            return None
        return path

    def fingerprint(self, filename: str) -> str | None:
        path = self._path(filename)
        if path is None:
            return None
        stamp = path.stat().st_mtime_ns
        held = self._hashes.get(filename)
        if held is None or held[0] != stamp:
            held = (stamp, hashlib.sha256(path.read_bytes()).hexdigest()[:12])
            self._hashes[filename] = held
        return held[1]

    def gzipped(self, filename: str, body: bytes) -> bytes:
        path = self._path(filename)
        key = (filename, path.stat().st_mtime_ns if path else 0)
        if key not in self._gzipped:
            self._gzipped[key] = gzip.compress(body, compresslevel=9, mtime=0)
        return self._gzipped[key]


def register(app: Quart) -> None:
    """Fingerprint static URLs and add cache headers and gzip to static responses."""
    assert app.static_folder is not None, "the app is created with its static folder"
    versions = _Versions(Path(app.static_folder))

    @app.url_defaults
    def _fingerprint(endpoint: str, values: dict) -> None:
        if endpoint == "static" and "filename" in values and "v" not in values:
            version = versions.fingerprint(values["filename"])
            if version:
                values["v"] = version

    @app.after_request
    async def _cache_and_compress(response: Response) -> Response:
        if request.endpoint != "static" or response.status_code not in (200, 304):
            return response
        filename = (request.view_args or {}).get("filename", "")
        versioned = request.args.get("v") and request.args.get("v") == versions.fingerprint(filename)
        response.headers["Cache-Control"] = f"public, max-age={YEAR}, immutable" if versioned else "no-cache"
        response.vary.add("Accept-Encoding")
        if (
            response.status_code != 200
            or response.mimetype not in COMPRESSIBLE
            or "gzip" not in request.headers.get("Accept-Encoding", "")
            or "Content-Encoding" in response.headers
            or "Range" in request.headers
        ):
            return response
        body = await response.get_data(as_text=False)
        if len(body) < MIN_BYTES:
            return response
        compressed = versions.gzipped(filename, body)
        response.set_data(compressed)
        response.headers["Content-Encoding"] = "gzip"
        # A strong ETag names the bytes sent: the gzip body gets its own.
        etag = response.get_etag()[0]
        if etag:
            response.set_etag(f"{etag}-gz")
        return response
