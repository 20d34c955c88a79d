"""Micro-benchmarks of what every new INVITE pays before it becomes a call (figures only).

Run with ``make bench-micro``; by default the suite passes ``--benchmark-disable`` and each
benchmark body runs once as a smoke test.  Measured here: the trusted-source check (the
source address used to be parsed for every request: 7% of b2bua's CPU under load) and
the admission controller's decision.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from b2bua.call.admission import AdmissionController
from b2bua.call.routing import is_trusted

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.0/8"))


@pytest.mark.benchmark
def test_bench_is_trusted_repeat_source(benchmark: Any) -> None:
    """The check for a source seen before (an SBC sends every call): a cached parse."""
    assert benchmark(is_trusted, "127.0.0.1", TRUSTED) is True


@pytest.mark.benchmark
def test_bench_is_trusted_parse(benchmark: Any) -> None:
    """What each request paid before the cache: parse the address, match the networks."""

    def parse_and_match() -> bool:
        address = ipaddress.ip_address("127.0.0.1")
        return any(address in network for network in TRUSTED)

    assert benchmark(parse_and_match) is True


@pytest.mark.benchmark
def test_bench_admission_decision(benchmark: Any) -> None:
    """One admit() with both signals on and the process not overloaded."""
    control = AdmissionController(max_call_rate=1e9, overload_lag=0.5)
    clock = iter(range(10**9))
    assert benchmark(lambda: control.admit(float(next(clock)))) is None
