"""Overload control: the admission controller alone, and in the call map and its service."""

from __future__ import annotations

from b2bua.call.admission import LATE_PROBES, PROBE_INTERVAL, AdmissionController
from b2bua.ops.exposition import render
from b2bua.ops.metrics import Sources, collect
from b2bua.sip.message import Response
from tests.call.test_callmap import CALLEE, SBC, Holder, World, connected, invite, statuses


def test_rate_limit_is_a_token_bucket_of_one_second() -> None:
    """max_call_rate 10: ten calls at once, the eleventh refused, one more after 0.15 s."""
    control = AdmissionController(max_call_rate=10)
    assert [control.admit(100.0) for _ in range(10)] == [None] * 10
    assert control.admit(100.0) == "Call Rate Exceeded"
    assert control.admit(100.15) is None
    assert control.admit(100.15) == "Call Rate Exceeded"
    assert control.stats.refused_rate == 2


def test_idle_time_never_banks_more_than_one_second_of_calls() -> None:
    """After a long idle spell the bucket holds max_call_rate calls, not more."""
    control = AdmissionController(max_call_rate=2)
    control.admit(0.0)
    assert [control.admit(3600.0) for _ in range(3)] == [None, None, "Call Rate Exceeded"]


def test_no_limits_admit_everything() -> None:
    """Both signals off (0): every call is taken, whatever the lag."""
    control = AdmissionController()
    for _ in range(10):
        control.observe_lag(5.0)
    assert control.admit(0.0) is None and not control.overloaded


def test_lag_refuses_after_consecutive_late_probes_and_recovers_at_once() -> None:
    """Three late probes in a row: overloaded; one probe under half the limit: taking calls."""
    control = AdmissionController(overload_lag=0.1)
    for _ in range(LATE_PROBES - 1):
        control.observe_lag(0.3)
    assert control.admit(0.0) is None
    control.observe_lag(0.3)
    assert control.overloaded and control.admit(0.0) == "Overloaded"
    control.observe_lag(0.07)  # under the limit but not under half of it: still overloaded
    assert control.admit(0.0) == "Overloaded"
    control.observe_lag(0.01)
    assert control.admit(0.0) is None
    assert (control.stats.refused_lag, control.stats.overload_episodes) == (2, 1)


def test_one_late_probe_is_not_overload() -> None:
    """A single stall (or a test clock's jump) between prompt probes never refuses calls."""
    control = AdmissionController(overload_lag=0.1)
    for lag in (0.0, 30.0, 0.0, 30.0, 0.01, 30.0):
        control.observe_lag(lag)
    assert not control.overloaded


def test_overloaded_call_map_answers_503_with_retry_after_before_any_observer() -> None:
    """Refused for overload: 503 + Retry-After, no call, no observer (no CCR) asked."""
    world = World(calls="overload_lag = 0.1\nretry_after = 3\n")
    holder = Holder()
    world.callmap.add_observer(holder)
    for _ in range(LATE_PROBES):
        world.callmap.admission.observe_lag(1.0)
    world.send(invite())
    refused = world.take(SBC)[-1]
    assert isinstance(refused, Response) and refused.status == 503
    assert refused.reason == "Overloaded" and refused.headers.get("Retry-After") == "3"
    assert holder.held == [] and len(world.callmap) == 0 and world.all_to(CALLEE) == []
    assert world.callmap.stats.refused_overload == 1


def test_rate_limited_call_map_keeps_calls_in_progress_going() -> None:
    """max_call_rate 1: a second INVITE in the same second gets 503; the first call goes on."""
    world = World(calls="max_call_rate = 1\n")
    connected(world)
    world.send(invite(call_id="second", branch="z9hG4bK-2"))
    assert statuses(world.take(SBC))[-1] == 503
    assert len(world.callmap) == 1 and world.callmap.active == 1


def test_service_probe_measures_the_event_loop_lag() -> None:
    """The started service probes the wheel every 50 ms; late probes overload the map."""
    world = World(calls="overload_lag = 0.1\n")
    world.service.startService()
    admission = world.callmap.admission
    world.clock.advance(PROBE_INTERVAL)
    assert admission.lag == 0.0
    for _ in range(LATE_PROBES):
        world.clock.advance(0.5)  # the reactor was busy: each probe runs 0.45 s late
    assert admission.overloaded and abs(admission.lag - 0.45) < 1e-9
    world.clock.advance(PROBE_INTERVAL)
    assert not admission.overloaded
    world.service.stopService()
    world.clock.advance(1.0)
    assert admission.lag == 0.0  # no probe after stop


def test_refusals_for_overload_are_a_metric() -> None:
    """b2bua_calls_refused_overload_total reads the call map's overload refusals."""
    world = World(calls="max_call_rate = 1\n")
    world.send(invite())
    world.send(invite(call_id="second", branch="z9hG4bK-2"))
    world.send(invite(call_id="third", branch="z9hG4bK-3"))
    text = render(collect(Sources(world.callmap, world.endpoint, None, None)))
    assert "b2bua_calls_refused_overload_total 2\n" in text
