"""The cycle collector of a long-lived process, a web process or a worker, once it has started.

Two settings, both made after start-up:

- `gc.freeze()`: everything alive at the end of start-up (modules, classes, the app, the SDKs,
  the pools) leaves the collector's generations for good, so a full collection walks only what
  the work made since (issue 13: a web process's full collections had walked ~90,000 start-up
  objects, pauses of 40-126 ms; a worker's had taken a tenth of its CPU with calls in flight).
- `GC_THRESHOLDS`: Python's default (700, 10, 10) runs a young collection every 700 net
  allocations. A worker carrying hundreds of model calls keeps many of its young objects alive
  across that window (the calls' state, messages in flight), so they are walked, promoted, and
  walked again by the middle and full collections that the promotions bring on. At 50,000 a
  worker under `bench/llm_scale.py` spent 2.3 % of its CPU in the collector instead of 6.6 %
  (`perf`, same load), for about 10 MB more at its peak. A web process fanning events out to 500
  sockets delivered them with a p90 of 33-37 ms instead of 47-85 (`bench/ws_fanout.py`); its
  reads under `bench/api.py` were unchanged (bench/README.md, ninth pass). Cyclic garbage still
  goes, a little later.
"""

from __future__ import annotations

import gc

#: Young-generation allocations between collections, then how many young collections per middle
#: one and middle ones per full one.
GC_THRESHOLDS = (50_000, 20, 10)


def settle() -> None:
    """Collect once, freeze what is alive, and set the thresholds (at the end of start-up)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
