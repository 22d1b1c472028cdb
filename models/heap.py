"""The cycle collector of a long-lived process, a web process or a worker, once it has started.

Two settings, both made after start-up:

- `gc.freeze()`: everything alive at the end of start-up (modules, classes, the app, the SDKs,
  the pools) leaves the collector's generations for good, so a full collection walks only what
  the work made since (issue 13: the web's full collections had walked ~90,000 start-up objects,
  40-126 ms pauses; a worker's a tenth of its CPU with model calls in flight).
- `GC_THRESHOLDS`: Python's default (700, 10, 10) runs a young collection every 700 net
  allocations. A worker carrying hundreds of model calls, or a web process serving sockets,
  keeps many of its young objects alive across that window (the calls' state, messages in
  flight), so they are walked again and promoted, and the middle and old generations fill and
  are collected over and over. At 50,000 a worker under `bench/llm_scale.py` spent 2.3 % of its
  CPU in the collector instead of 6.6 % (`perf`, same run length and load), for about 10 MB more
  at its peak (bench/README.md, ninth pass). Cyclic garbage still goes, a little later.
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
