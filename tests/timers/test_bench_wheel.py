"""Micro-benchmarks of the timer wheel (pytest-benchmark; figures only, no timing asserts).

Run with ``pytest tests/timers --benchmark-enable``; by default the suite passes
``--benchmark-disable`` and each benchmark body runs once as a smoke test.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from b2bua.timers.wheel import TimerWheel

PENDING = 100_000
HORIZON = 7200.0  # ro_auth_expiry: the longest timer the process keeps


def loaded_wheel(pending: int = PENDING) -> TimerWheel:
    """A wheel holding ``pending`` timers spread over two hours."""
    rng = random.Random(32299)
    wheel = TimerWheel(resolution=0.1, slots=4096)
    for _ in range(pending):
        wheel.schedule(rng.uniform(1.0, HORIZON), _noop)
    return wheel


def _noop() -> None:
    return None


@pytest.mark.benchmark(group="wheel")
def test_bench_schedule_and_cancel(benchmark: Any) -> None:
    """Cost of one schedule() plus cancel() pair with 100k timers pending."""
    wheel = loaded_wheel()
    rng = random.Random(1)
    deadlines = [rng.uniform(1.0, HORIZON) for _ in range(4096)]
    index = [0]

    def schedule_cancel() -> None:
        i = index[0] = (index[0] + 1) & 4095
        wheel.schedule(deadlines[i], _noop).cancel()

    benchmark(schedule_cancel)
    assert len(wheel) == PENDING


@pytest.mark.benchmark(group="wheel")
def test_bench_expire_empty_tick(benchmark: Any) -> None:
    """Cost of an expire() tick that finds nothing due, with 100k timers pending."""
    wheel = loaded_wheel()

    benchmark(wheel.expire, 0.5)
    assert len(wheel) == PENDING


@pytest.mark.benchmark(group="wheel")
def test_bench_expire_tick_with_due_timers(benchmark: Any) -> None:
    """Cost of one 0.1 s expire() tick with 100k pending (~1.4 due, each re-scheduled)."""
    # Every fired timer re-schedules itself two hours later, so the population stays at
    # 100k however many rounds the benchmark runs; the cost includes those re-schedules.
    wheel = TimerWheel(resolution=0.1, slots=4096)
    rng = random.Random(7)

    def again(deadline: float) -> None:
        wheel.schedule(deadline + HORIZON, again, deadline + HORIZON)

    for _ in range(PENDING):
        deadline = rng.uniform(0.0, HORIZON)
        wheel.schedule(deadline, again, deadline)
    now = [0.0]

    def tick() -> int:
        now[0] += 0.1
        return wheel.expire(now[0])

    benchmark(tick)
    assert len(wheel) == PENDING


@pytest.mark.benchmark(group="wheel")
def test_bench_next_deadline(benchmark: Any) -> None:
    """Cost of next_deadline() with 100k timers pending (the driver asks after each wake)."""
    wheel = loaded_wheel()
    expected = wheel.next_deadline()

    assert benchmark(wheel.next_deadline) == expected


@pytest.mark.benchmark(group="wheel")
def test_bench_next_deadline_after_cancelling_the_earliest(benchmark: Any) -> None:
    """Cost of cancelling the earliest timer and asking next_deadline() (cache refill)."""
    wheel = loaded_wheel()
    rng = random.Random(3)

    def cancel_earliest() -> float | None:
        handle = wheel.schedule(0.5, _noop)
        wheel.next_deadline()
        handle.cancel()
        return wheel.next_deadline()

    benchmark(cancel_earliest)
    del rng
    assert len(wheel) == PENDING
