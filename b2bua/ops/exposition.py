"""The Prometheus text exposition format, version 0.0.4, sans-IO.

A scrape is a list of :class:`Family` (one metric name, its type and help text, and its
samples); :func:`render` turns it into the bytes served at ``/metrics``.  Nothing here
knows where the numbers come from: :mod:`b2bua.ops.metrics` reads the live objects.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "CONTENT_TYPE",
    "Family",
    "Histogram",
    "Sample",
    "format_value",
    "histogram",
    "render",
]

#: The Content-Type of the text format this module writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

MetricType = Literal["counter", "gauge", "histogram", "untyped"]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True, slots=True)
class Sample:
    """One line: ``suffix`` is added to the family name (``_bucket``, ``_sum``, ``_count``)."""

    value: float
    labels: Mapping[str, str] = field(default_factory=dict)
    suffix: str = ""


@dataclass(frozen=True, slots=True)
class Family:
    """One metric: its name, type, help text and samples (in the order given)."""

    name: str
    type: MetricType
    help: str
    samples: Sequence[Sample] = ()

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"invalid metric name {self.name!r}")
        for sample in self.samples:
            for label in sample.labels:
                if not _LABEL.fullmatch(label) or label.startswith("__"):
                    raise ValueError(f"invalid label name {label!r} in {self.name}")


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: integers without a fraction, +Inf, NaN."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{name}="{_escape_label(str(value))}"' for name, value in labels.items())
    return "{" + inner + "}"


def render(families: Iterable[Family]) -> str:
    """The text of one scrape: ``# HELP``, ``# TYPE`` and the samples of each family."""
    lines: list[str] = []
    seen: set[str] = set()
    for family in families:
        if family.name in seen:
            raise ValueError(f"metric {family.name} rendered twice")
        seen.add(family.name)
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            name = family.name + sample.suffix
            lines.append(f"{name}{_labels(sample.labels)} {format_value(sample.value)}")
    return "\n".join(lines) + "\n" if lines else ""


class Histogram:
    """A live histogram with fixed buckets: :meth:`observe` is a bisect and an increment.

    Counts are kept per bucket and made cumulative only when a scrape reads them, so that
    the hot path (one sample per answered request) allocates nothing.
    """

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise ValueError("histogram bounds must be increasing")
        self.bounds = tuple(float(bound) for bound in bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Count one observation (a value equal to a bound goes in that bound's bucket)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def samples(self, labels: Mapping[str, str] | None = None) -> list[Sample]:
        """The cumulative ``_bucket`` samples (``+Inf`` last), then ``_sum`` and ``_count``."""
        base = dict(labels or {})
        samples: list[Sample] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            samples.append(Sample(running, {**base, "le": format_value(bound)}, "_bucket"))
        samples.append(Sample(self.count, {**base, "le": "+Inf"}, "_bucket"))
        samples.append(Sample(self.sum, base, "_sum"))
        samples.append(Sample(self.count, base, "_count"))
        return samples


def histogram(
    bounds: Sequence[float],
    observations: Iterable[float],
    labels: Mapping[str, str] | None = None,
) -> list[Sample]:
    """The ``_bucket``/``_sum``/``_count`` samples of ``observations`` in cumulative buckets.

    ``bounds`` are the upper bounds, increasing; the ``+Inf`` bucket is added.
    """
    live = Histogram(bounds)
    for value in observations:
        live.observe(value)
    return live.samples(labels)
