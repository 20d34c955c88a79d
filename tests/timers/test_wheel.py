"""Tests for the sans-IO hashed timer wheel."""

from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b2bua.timers.wheel import TimerHandle, TimerWheel


def test_fires_in_deadline_order_whatever_the_scheduling_order() -> None:
    """Timers run in deadline order across ticks and within one tick."""
    wheel = TimerWheel(resolution=0.1)
    fired: list[str] = []
    for name, deadline in [("c", 3.0), ("a", 1.05), ("b", 1.07), ("d", 250.0), ("z", 1.01)]:
        wheel.schedule(deadline, fired.append, name)
    assert wheel.expire(1000.0) == 5
    assert fired == ["z", "a", "b", "c", "d"]


def test_equal_deadlines_run_in_scheduling_order() -> None:
    """Ties on the deadline are broken by the order of schedule() calls."""
    wheel = TimerWheel()
    fired: list[int] = []
    for i in range(10):
        wheel.schedule(5.0, fired.append, i)
    wheel.expire(5.0)
    assert fired == list(range(10))


def test_never_fires_before_the_exact_sub_resolution_deadline() -> None:
    """A 12.345 s deadline on a 0.1 s wheel is not fired at 12.3 or 12.3449, only at 12.345."""
    wheel = TimerWheel(resolution=0.1)
    fired: list[str] = []
    wheel.schedule(12.345, fired.append, "x")
    assert wheel.expire(12.3) == 0
    assert wheel.expire(12.3449) == 0
    assert fired == []
    assert wheel.expire(12.345) == 1
    assert fired == ["x"]


def test_partially_due_tick_keeps_the_rest_for_later() -> None:
    """In the tick that holds now, only timers with deadline <= now run; the rest stay."""
    wheel = TimerWheel(resolution=1.0)
    fired: list[float] = []
    for deadline in (7.1, 7.5, 7.9):
        wheel.schedule(deadline, fired.append, deadline)
    assert wheel.expire(7.5) == 2
    assert fired == [7.1, 7.5]
    assert len(wheel) == 1
    assert wheel.next_deadline() == 7.9
    assert wheel.expire(7.9) == 1
    assert len(wheel) == 0


def test_next_deadline_is_exact_not_rounded_to_the_slot() -> None:
    """next_deadline() returns the earliest deadline itself, not its tick boundary."""
    wheel = TimerWheel(resolution=0.1)
    assert wheel.next_deadline() is None
    wheel.schedule(20.0, lambda: None)
    wheel.schedule(12.345, lambda: None)
    wheel.schedule(12.399, lambda: None)
    assert wheel.next_deadline() == 12.345


def test_next_deadline_follows_cancel_and_expire() -> None:
    """Cancelling or running the earliest timer moves next_deadline() to the next one."""
    wheel = TimerWheel()
    first = wheel.schedule(1.5, lambda: None)
    wheel.schedule(2.5, lambda: None)
    wheel.schedule(9.25, lambda: None)
    first.cancel()
    assert wheel.next_deadline() == 2.5
    wheel.expire(3.0)
    assert wheel.next_deadline() == 9.25
    wheel.expire(10.0)
    assert wheel.next_deadline() is None


def test_cancel_is_idempotent_and_keeps_len_right() -> None:
    """A cancelled timer never runs, len() drops once, and a second cancel is harmless."""
    wheel = TimerWheel()
    fired: list[str] = []
    handle = wheel.schedule(1.0, fired.append, "cancelled")
    wheel.schedule(1.0, fired.append, "kept")
    assert len(wheel) == 2
    states = [handle.active]
    handle.cancel()
    handle.cancel()
    states.append(handle.active)
    assert states == [True, False]
    assert len(wheel) == 1
    wheel.expire(2.0)
    assert fired == ["kept"]
    assert len(wheel) == 0


def test_cancel_after_firing_is_harmless() -> None:
    """Cancelling a handle whose timer already ran changes nothing."""
    wheel = TimerWheel()
    handle = wheel.schedule(1.0, lambda: None)
    wheel.schedule(5.0, lambda: None)
    wheel.expire(1.0)
    assert not handle.active
    handle.cancel()
    assert len(wheel) == 1
    assert wheel.next_deadline() == 5.0


def test_callback_can_cancel_a_later_timer_of_the_same_batch() -> None:
    """A timer cancelled by an earlier callback of the same expire() does not run."""
    wheel = TimerWheel()
    fired: list[str] = []
    victim: list[TimerHandle] = []

    def killer() -> None:
        fired.append("killer")
        victim[0].cancel()

    wheel.schedule(1.0, killer)
    victim.append(wheel.schedule(2.0, fired.append, "victim"))
    wheel.schedule(3.0, fired.append, "survivor")
    assert wheel.expire(5.0) == 2
    assert fired == ["killer", "survivor"]
    assert len(wheel) == 0


def test_timers_scheduled_by_callbacks_for_the_past_run_in_the_next_expire() -> None:
    """Defined behaviour: a due timer added by a callback waits for the next expire() call."""
    wheel = TimerWheel()
    fired: list[str] = []

    def reschedule() -> None:
        fired.append("first")
        wheel.schedule(0.5, fired.append, "past")  # already due
        wheel.schedule(4.0, fired.append, "now")  # due at the current now too

    wheel.schedule(1.0, reschedule)
    wheel.schedule(2.0, fired.append, "second")
    assert wheel.expire(4.0) == 2
    assert fired == ["first", "second"]
    assert wheel.next_deadline() == 0.5
    assert wheel.expire(4.0) == 2
    assert fired == ["first", "second", "past", "now"]


def test_next_deadline_inside_a_callback_sees_the_rest_of_the_batch() -> None:
    """During expire(), next_deadline() still reports due timers not yet run."""
    wheel = TimerWheel()
    seen: list[float | None] = []
    wheel.schedule(1.0, lambda: seen.append(wheel.next_deadline()))
    wheel.schedule(2.0, lambda: seen.append(wheel.next_deadline()))
    wheel.schedule(8.0, lambda: None)
    wheel.expire(5.0)
    assert seen == [2.0, 8.0]


def test_handle_and_wheel_describe_themselves() -> None:
    """A handle's repr names its deadline and state; the wheel reports its resolution."""
    wheel = TimerWheel(resolution=0.25)
    handle = wheel.schedule(3.5, print)
    assert wheel.resolution == 0.25
    assert "3.5" in repr(handle)
    assert "active" in repr(handle)
    handle.cancel()
    assert "inactive" in repr(handle)


def test_a_timer_rescheduling_itself_for_now_cannot_loop_forever() -> None:
    """A callback that reschedules itself at 'now' runs once per expire() call."""
    wheel = TimerWheel()
    count = [0]

    def again() -> None:
        count[0] += 1
        wheel.schedule(1.0, again)

    wheel.schedule(1.0, again)
    assert wheel.expire(1.0) == 1
    assert wheel.expire(1.0) == 1
    assert count[0] == 2


def test_timers_a_revolution_apart_share_a_slot_but_not_a_firing() -> None:
    """On an 8-slot wheel, timers 8 ticks apart hash together yet fire at their own time."""
    wheel = TimerWheel(resolution=1.0, slots=8)
    fired: list[float] = []
    for deadline in (1.5, 9.5, 17.5):
        wheel.schedule(deadline, fired.append, deadline)
    assert wheel.expire(2.0) == 1
    assert fired == [1.5]
    assert wheel.next_deadline() == 9.5
    assert wheel.expire(17.5) == 2
    assert fired == [1.5, 9.5, 17.5]


def test_a_large_time_jump_fires_everything_due_in_order() -> None:
    """After a jump of days, every due timer runs once, in order, without walking ticks."""
    wheel = TimerWheel(resolution=0.01)
    fired: list[float] = []
    for deadline in (86400.0 * 3, 1.0, 1000.0, 86400.0):
        wheel.schedule(deadline, fired.append, deadline)
    assert wheel.expire(86400.0 * 2) == 3
    assert fired == [1.0, 1000.0, 86400.0]
    assert len(wheel) == 1


def test_past_deadlines_are_allowed_and_run_at_once() -> None:
    """A deadline already in the past (even negative) runs at the next expire()."""
    wheel = TimerWheel()
    fired: list[float] = []
    wheel.schedule(-3.25, fired.append, -3.25)
    wheel.schedule(0.0, fired.append, 0.0)
    assert wheel.next_deadline() == -3.25
    assert wheel.expire(0.0) == 2
    assert fired == [-3.25, 0.0]


def test_exception_with_handler_is_reported_and_the_next_timer_runs() -> None:
    """A raising callback goes to on_error; the following timers still run."""
    wheel = TimerWheel()
    fired: list[str] = []
    errors: list[tuple[TimerHandle, Exception]] = []

    def boom() -> None:
        raise RuntimeError("boom")

    bad = wheel.schedule(1.0, boom)
    wheel.schedule(2.0, fired.append, "after")
    assert wheel.expire(3.0, on_error=lambda h, e: errors.append((h, e))) == 2
    assert fired == ["after"]
    assert errors[0][0] is bad
    assert isinstance(errors[0][1], RuntimeError)
    assert len(wheel) == 0


def test_exception_without_handler_propagates_and_keeps_the_rest() -> None:
    """Without on_error the exception escapes, and the timers not yet run stay scheduled."""
    wheel = TimerWheel()
    fired: list[str] = []

    def boom() -> None:
        raise ValueError("boom")

    wheel.schedule(1.0, fired.append, "before")
    wheel.schedule(2.0, boom)
    wheel.schedule(3.0, fired.append, "after")
    with pytest.raises(ValueError, match="boom"):
        wheel.expire(5.0)
    assert fired == ["before"]
    assert len(wheel) == 1
    assert wheel.next_deadline() == 3.0
    assert wheel.expire(5.0) == 1
    assert fired == ["before", "after"]


def test_arguments_are_passed_to_the_callback() -> None:
    """schedule(deadline, f, *args) calls f(*args)."""
    wheel = TimerWheel()
    got: list[tuple[int, str]] = []
    wheel.schedule(1.0, lambda a, b: got.append((a, b)), 7, "x")
    wheel.expire(1.0)
    assert got == [(7, "x")]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_deadlines_are_refused(bad: float) -> None:
    """NaN and infinite deadlines raise ValueError instead of corrupting the heap."""
    with pytest.raises(ValueError, match="finite"):
        TimerWheel().schedule(bad, lambda: None)


@pytest.mark.parametrize(("resolution", "slots"), [(0.0, 8), (-1.0, 8), (0.1, 0), (0.1, 12)])
def test_bad_geometry_is_refused(resolution: float, slots: int) -> None:
    """A non-positive resolution or a slot count that is not a power of two is refused."""
    with pytest.raises(ValueError, match="must be"):
        TimerWheel(resolution=resolution, slots=slots)


def test_memory_stays_bounded_under_schedule_and_cancel_churn() -> None:
    """Scheduling and cancelling far-future timers over and over does not grow the wheel."""
    wheel = TimerWheel(resolution=0.1, slots=256)
    keep = wheel.schedule(10.0, lambda: None)
    for i in range(50_000):
        wheel.schedule(7200.0 + i * 0.37, lambda: None).cancel()
    assert len(wheel) == 1
    # White-box: the occupied-tick heap is rebuilt once stale entries dominate.
    assert len(wheel._heap) <= 2 * 1 + 64 + 1
    assert sum(len(slot) for slot in wheel._slots) == 1
    assert wheel.next_deadline() == 10.0
    assert keep.active
    keep.cancel()
    assert wheel._heap == []  # an empty wheel drops every stale entry at once


def test_one_hundred_thousand_timers() -> None:
    """100k random timers, a third cancelled: the rest fire once each, in order, never early."""
    rng = random.Random(4006)
    wheel = TimerWheel(resolution=0.1, slots=4096)
    fired: list[tuple[float, float]] = []
    now = [0.0]

    def fire(deadline: float) -> None:
        fired.append((deadline, now[0]))

    handles = [
        wheel.schedule(deadline, fire, deadline)
        for deadline in (rng.uniform(0.0, 7200.0) for _ in range(100_000))
    ]
    cancelled = set()
    for handle in rng.sample(handles, 33_333):
        handle.cancel()
        cancelled.add(handle.deadline)
    assert len(wheel) == 100_000 - 33_333
    while len(wheel):
        nxt = wheel.next_deadline()
        assert nxt is not None
        now[0] = nxt + rng.uniform(0.0, 30.0)
        wheel.expire(now[0])
    deadlines = [d for d, _ in fired]
    assert len(fired) == 100_000 - 33_333
    assert deadlines == sorted(deadlines)
    assert all(at >= d for d, at in fired)
    assert not cancelled.intersection(deadlines)
    assert wheel.next_deadline() is None


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("schedule"), st.floats(0.0, 50.0, allow_nan=False)),
            st.tuples(st.just("cancel"), st.integers(0, 200)),
            st.tuples(st.just("advance"), st.floats(0.0, 10.0, allow_nan=False)),
        ),
        max_size=80,
    ),
    resolution=st.sampled_from([0.01, 0.1, 1.0]),
)
def test_matches_a_sorted_list_model(ops: list[tuple[str, float]], resolution: float) -> None:
    """Against a naive model: same timers fire, same order, next_deadline() always exact."""
    wheel = TimerWheel(resolution=resolution, slots=16)
    fired: list[int] = []
    model: dict[int, float] = {}
    handles: list[TimerHandle] = []
    now = 0.0
    for op, value in ops:
        if op == "schedule":
            ident = len(handles)
            handles.append(wheel.schedule(value, fired.append, ident))
            model[ident] = value
        elif op == "cancel" and handles:
            ident = int(value) % len(handles)
            handles[ident].cancel()
            model.pop(ident, None)
        elif op == "advance":
            now += value
            expected = sorted((d, i) for i, d in model.items() if d <= now)
            del fired[:]
            wheel.expire(now)
            assert fired == [i for _, i in expected]
            for _, i in expected:
                del model[i]
        assert len(wheel) == len(model)
        assert wheel.next_deadline() == (min(model.values()) if model else None)


def test_the_wheel_is_sans_io() -> None:
    """Importing the wheel loads nothing from twisted (it is a [core] module)."""
    code = (
        "import sys, b2bua.timers.wheel; "
        "bad = sorted(m for m in sys.modules if m.startswith('twisted')); "
        "print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
