"""Whole-second arithmetic for CC-Time (RFC 4006 §8.21), sans-IO.

Talk time is measured in float seconds; CC-Time is an Unsigned32 of whole seconds. Interim
reports carry whole seconds and carry the fraction over; only the final report rounds, by
``billing_rounding``. A tolerance of a microsecond absorbs binary floating-point noise
(``30.1 - 0.1 == 30.000000000000004``), so a call that lasted exactly 30 s is never billed 31.
"""

from __future__ import annotations

import math
from enum import StrEnum

__all__ = ["EPSILON", "BillingRounding", "final_seconds", "whole_seconds"]

#: Seconds of floating-point noise ignored at whole-second boundaries.
EPSILON = 1e-6


class BillingRounding(StrEnum):
    """How the final report rounds the last fraction of a second (config ``billing_rounding``)."""

    UP = "up"  # per-second prepaid billing; Kamailio's behaviour; the default
    NEAREST = "nearest"  # half a second or more counts as a second
    DOWN = "down"


def whole_seconds(seconds: float) -> int:
    """Whole seconds in ``seconds`` (truncated, never negative): what an interim report carries."""
    return max(0, math.floor(seconds + EPSILON))


def final_seconds(seconds: float, rounding: BillingRounding) -> int:
    """``seconds`` rounded per ``rounding``, never negative: what the final report carries."""
    if rounding is BillingRounding.UP:
        value = math.ceil(seconds - EPSILON)
    elif rounding is BillingRounding.NEAREST:
        value = math.floor(seconds + 0.5 + EPSILON)
    else:
        value = math.floor(seconds + EPSILON)
    return max(0, value)
