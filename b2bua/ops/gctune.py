"""Garbage-collector settings for a long-running daemon with many short-lived objects.

Measured under load (bench/README.md), CPython's defaults made b2bua spend about a tenth
of its CPU in the cyclic collector, and each full collection walked every object of the
process, imports and configuration included, stopping calls for up to a third of a second
(a p99 call-setup spike).  So, once the service tree is built:

* `gc.freeze` moves everything that exists at start-up (modules, dictionaries, the
  configuration) out of the collector's sight: it lives as long as the process anyway;
* a higher first-generation threshold makes young collections rarer and full ones
  (whose number follows the young ones) rarer still.  Cycles a call leaves behind are
  still collected, a little later.

Reference counting frees almost everything a call allocates; only cycles wait for this.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "tune_gc"]

#: Objects allocated (net) between young collections; young collections per middle one;
#: middle collections per full one (CPython's defaults: 700, 10, 10).
THRESHOLDS = (20_000, 20, 20)


def tune_gc() -> None:
    """Collect once, freeze what start-up left, and raise the thresholds (process-wide)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
