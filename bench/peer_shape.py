"""The shape both peers run: one session's 7 tasks as 1 + 2 + 2 + 2, each a no-op.

The peers run on their own Redis database (BENCH_PEER_REDIS_URL, default db 10) so that they
never share a queue with the product's worker. Each member of the last stage appends
"<run id> <time.time()>" to DONE_KEY; a run is complete when both have, and its latency is the
later stamp minus the time the bench submitted it (all processes share this machine's clock).
"""

from __future__ import annotations

import os

PEER_REDIS_URL = os.environ.get("BENCH_PEER_REDIS_URL", "redis://127.0.0.1:6379/10")
SHAPE = (1, 2, 2, 2)
LAST = len(SHAPE) - 1
DONE_KEY = "bench:done"
