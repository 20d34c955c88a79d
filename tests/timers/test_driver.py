"""Tests for the Twisted driver of the timer wheel, in virtual time."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger

from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerHandle, TimerWheel


def make(start: float = 0.0) -> tuple[Clock, WheelDriver, list[dict[str, Any]]]:
    clock = Clock()
    clock.advance(start)
    driver = WheelDriver(TimerWheel(resolution=0.1), clock)
    events: list[dict[str, Any]] = []
    driver.log = Logger(observer=cast(ILogObserver, events.append))
    return clock, driver, events


def test_one_reactor_call_armed_at_the_earliest_deadline() -> None:
    """However many timers are scheduled, one delayed call is armed, at the earliest."""
    clock, driver, _ = make()
    for deadline in (30.0, 4.5, 12.0):
        driver.schedule(deadline, lambda: None)
    calls = clock.getDelayedCalls()
    assert len(calls) == 1
    assert calls[0].getTime() == 4.5
    assert driver.armed_at == 4.5


def test_a_later_schedule_does_not_touch_the_reactor() -> None:
    """Scheduling behind the armed deadline leaves the same delayed call in place."""
    clock, driver, _ = make()
    driver.schedule(5.0, lambda: None)
    (armed,) = clock.getDelayedCalls()
    driver.schedule(6.0, lambda: None)
    driver.schedule(5.0, lambda: None)
    assert clock.getDelayedCalls() == [armed]
    assert armed.active()


def test_an_earlier_schedule_re_arms() -> None:
    """Scheduling ahead of the armed deadline replaces the delayed call."""
    clock, driver, _ = make()
    driver.schedule(5.0, lambda: None)
    (old,) = clock.getDelayedCalls()
    driver.schedule(2.25, lambda: None)
    (new,) = clock.getDelayedCalls()
    assert not old.active()
    assert new.getTime() == 2.25


def test_fires_at_the_exact_sub_second_deadline() -> None:
    """A 12.345 s timer is not run at 12.344 s and runs at 12.345 s, not at a slot edge."""
    clock, driver, _ = make()
    seen: list[float] = []
    driver.schedule(12.345, lambda: seen.append(clock.seconds()))
    assert clock.getDelayedCalls()[0].getTime() == 12.345
    clock.advance(12.344)
    assert seen == []
    clock.advance(0.001)  # 12.344 + 0.001 == 12.344999999999999 in binary floating point
    assert clock.seconds() < 12.345
    assert seen == []
    clock.advance(12.345 - clock.seconds())
    assert seen == [12.345]


def test_runs_timers_in_order_and_re_arms_for_the_rest() -> None:
    """Successive timers run in deadline order, each on its own wake-up."""
    clock, driver, _ = make()
    seen: list[tuple[str, float]] = []
    for name, deadline in (("b", 2.0), ("a", 1.0), ("c", 3.5)):
        driver.schedule(deadline, lambda n: seen.append((n, clock.seconds())), name)
    clock.advance(1.0)
    assert seen == [("a", 1.0)]
    assert clock.getDelayedCalls()[0].getTime() == 2.0
    clock.advance(10.0)
    assert [n for n, _ in seen] == ["a", "b", "c"]
    assert clock.getDelayedCalls() == []
    assert driver.armed_at is None


def test_reschedule_inside_a_callback() -> None:
    """A callback that schedules the next timer gets it run at its own deadline."""
    clock, driver, _ = make()
    seen: list[float] = []

    def tick() -> None:
        seen.append(clock.seconds())
        if len(seen) < 3:
            driver.schedule(clock.seconds() + 1.5, tick)

    driver.schedule(1.0, tick)
    clock.pump([1.0, 1.5, 1.5, 1.5])
    assert seen == [1.0, 2.5, 4.0]
    assert len(clock.getDelayedCalls()) == 0


def test_a_due_timer_scheduled_by_a_callback_runs_without_waiting() -> None:
    """A callback's timer for 'now' runs on the next wake-up, armed with no delay."""
    clock, driver, _ = make()
    seen: list[str] = []

    def first() -> None:
        seen.append("first")
        driver.schedule(clock.seconds(), seen.append, "immediate")

    driver.schedule(1.0, first)
    driver.schedule(9.0, seen.append, "later")
    clock.advance(1.0)
    assert seen == ["first", "immediate"]
    assert clock.getDelayedCalls()[0].getTime() == 9.0


def test_cancelled_earliest_timer_costs_one_empty_wake_up() -> None:
    """Cancelling the armed timer is lazy: the wake-up finds nothing and re-arms."""
    clock, driver, _ = make()
    seen: list[str] = []
    handle = driver.schedule(1.0, seen.append, "cancelled")
    driver.schedule(3.0, seen.append, "kept")
    handle.cancel()
    clock.advance(1.0)
    assert seen == []
    assert clock.getDelayedCalls()[0].getTime() == 3.0
    clock.advance(2.0)
    assert seen == ["kept"]


def test_rearm_after_cancel_moves_the_reactor_call() -> None:
    """An explicit rearm() after a cancel arms for the new earliest deadline."""
    clock, driver, _ = make()
    handle = driver.schedule(1.0, lambda: None)
    driver.schedule(3.0, lambda: None)
    handle.cancel()
    driver.rearm()
    (armed,) = clock.getDelayedCalls()
    assert armed.getTime() == 3.0
    driver.rearm()
    assert clock.getDelayedCalls() == [armed]


def test_a_failing_callback_is_logged_and_the_next_one_runs() -> None:
    """An exception is logged with log.failure and does not stop the wheel."""
    clock, driver, events = make()
    seen: list[str] = []

    def boom() -> None:
        raise RuntimeError("kaboom")

    driver.schedule(1.0, boom)
    driver.schedule(1.0, seen.append, "same tick")
    driver.schedule(2.0, seen.append, "later")
    clock.advance(5.0)
    assert seen == ["same tick", "later"]
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(RuntimeError)
    assert failures[0]["deadline"] == 1.0


def test_stop_disarms_and_start_resumes() -> None:
    """After stop() nothing runs; start() re-arms for what is pending."""
    clock, driver, _ = make()
    seen: list[str] = []
    driver.schedule(1.0, seen.append, "x")
    driver.stop()
    assert clock.getDelayedCalls() == []
    driver.schedule(0.5, seen.append, "y")
    assert clock.getDelayedCalls() == []
    clock.advance(2.0)
    assert seen == []
    driver.start()
    clock.advance(0.0)
    assert seen == ["y", "x"]


def test_call_later_counts_from_the_clock() -> None:
    """call_later(delay) schedules at clock.seconds() + delay."""
    clock, driver, _ = make(start=100.0)
    handle = driver.call_later(2.5, lambda: None)
    assert handle.deadline == 102.5
    assert driver.seconds() == 100.0
    assert clock.getDelayedCalls()[0].getTime() == 102.5


def test_one_hundred_thousand_timers_through_one_reactor_call() -> None:
    """100k timers keep a single delayed call and all run, in order, never early."""
    clock, driver, _ = make()
    fired: list[tuple[float, float]] = []
    handles: list[TimerHandle] = []
    for i in range(100_000):
        deadline = (i * 7919 % 100_000) / 100.0 + 0.005
        handles.append(
            driver.schedule(deadline, lambda d: fired.append((d, clock.seconds())), deadline)
        )
    assert len(clock.getDelayedCalls()) == 1
    assert len(driver.wheel) == 100_000
    clock.pump([0.5] * 2010)
    assert len(fired) == 100_000
    deadlines = [d for d, _ in fired]
    assert deadlines == sorted(deadlines)
    assert all(at >= d for d, at in fired)
    assert clock.getDelayedCalls() == []
