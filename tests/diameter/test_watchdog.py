# mypy: disable-error-code="union-attr,arg-type,comparison-overlap,unreachable,index,misc"
# (tests poke Optional results and state attributes mypy narrows too eagerly)
"""RFC 3539 appendix A watchdog, in virtual time: every row of the state table."""

from __future__ import annotations

import pytest

from b2bua.diameter.watchdog import Watchdog, WatchdogAction, WatchdogState

A = WatchdogAction
S = WatchdogState


def make(now: float = 0.0) -> Watchdog:
    return Watchdog(now, rand=lambda: 0.5)  # Tw exactly 30 s


def okay() -> Watchdog:
    wd = make()
    assert wd.on_connection_up(0.0) == []
    return wd


def down() -> Watchdog:
    wd = okay()
    wd.on_connection_down(1.0)
    return wd


def reopen() -> Watchdog:
    wd = down()
    assert wd.on_connection_up(2.0) == [A.SEND_WATCHDOG]
    return wd


def test_jitter_bounds_and_minimum():
    """Tw = Twinit +-2 s from the injected source; Twinit below 6 s is refused."""
    assert Watchdog(100.0, rand=lambda: 0.0).next_deadline() == 128.0
    assert Watchdog(100.0, rand=lambda: 1.0).next_deadline() == 132.0
    assert Watchdog(0.0, tw_init=6.0, rand=lambda: 0.5).next_deadline() == 6.0
    with pytest.raises(ValueError):
        Watchdog(0.0, tw_init=5.0)


def test_initial_timer_attempts_open():
    """INITIAL + timer: AttemptOpen, SetWatchdog, stay INITIAL."""
    wd = make()
    assert wd.on_timer(29.0) == []
    assert wd.on_timer(30.0) == [A.ATTEMPT_OPEN]
    assert wd.state is S.INITIAL and wd.next_deadline() == 60.0


def test_initial_receive_is_thrown_away():
    """INITIAL + DWA or non-DWA: Throwaway, Pending cleared, state unchanged."""
    wd = make()
    wd.pending = True
    assert wd.on_receive(1.0, True) == [] and not wd.pending
    assert wd.on_receive(1.0, False) == []
    assert wd.state is S.INITIAL


def test_initial_connection_up_goes_okay():
    """INITIAL + connection up: SetWatchdog, OKAY, no validation needed."""
    wd = okay()
    assert wd.state is S.OKAY and wd.usable and wd.next_deadline() == 30.0


def test_okay_receive_resets_timer():
    """OKAY + any message: SetWatchdog; a DWA also clears Pending."""
    wd = okay()
    wd.on_receive(10.0, False)
    assert wd.next_deadline() == 40.0
    wd.pending = True
    wd.on_receive(20.0, True)
    assert not wd.pending and wd.state is S.OKAY and wd.next_deadline() == 50.0


def test_okay_idle_sends_dwr_then_suspect():
    """OKAY + timer, no DWR pending: send DWR; timer again with DWR pending: SUSPECT + Failover."""
    wd = okay()
    assert wd.on_timer(30.0) == [A.SEND_WATCHDOG]
    assert wd.pending and wd.state is S.OKAY
    assert wd.on_timer(60.0) == [A.FAILOVER]
    assert wd.state is S.SUSPECT and not wd.usable


def test_suspect_recovers_on_any_message():
    """SUSPECT + DWA: OKAY + Failback; SUSPECT + non-DWA also fails back."""
    for is_dwa in (True, False):
        wd = okay()
        wd.on_timer(30.0)
        wd.on_timer(60.0)
        assert wd.on_receive(61.0, is_dwa) == [A.FAILBACK]
        assert wd.state is S.OKAY and wd.next_deadline() == 91.0
        assert wd.pending is not is_dwa


def test_suspect_second_timer_closes():
    """SUSPECT + timer: CloseConnection, DOWN (2 Tw without an answer)."""
    wd = okay()
    wd.on_timer(30.0)
    wd.on_timer(60.0)
    assert wd.on_timer(90.0) == [A.CLOSE_CONNECTION]
    assert wd.state is S.DOWN


def test_down_timer_attempts_open_and_throws_away():
    """DOWN + timer: AttemptOpen; DOWN + messages: Throwaway."""
    wd = down()
    assert wd.on_timer(wd.next_deadline()) == [A.ATTEMPT_OPEN]
    assert wd.on_receive(40.0, True) == [] and wd.on_receive(40.0, False) == []
    assert wd.state is S.DOWN


def test_connection_down_from_each_state():
    """OKAY/SUSPECT/REOPEN + connection down: CloseConnection (+Failover from OKAY), DOWN."""
    wd = okay()
    assert wd.on_connection_down(5.0) == [A.CLOSE_CONNECTION, A.FAILOVER]
    assert wd.state is S.DOWN and wd.next_deadline() == 35.0
    wd = okay()
    wd.on_timer(30.0)
    wd.on_timer(60.0)
    assert wd.on_connection_down(61.0) == [A.CLOSE_CONNECTION]
    wd = reopen()
    assert wd.on_connection_down(3.0) == [A.CLOSE_CONNECTION]
    assert wd.state is S.DOWN
    assert wd.on_connection_down(4.0) == []
    assert make().on_connection_down(1.0) == []


def test_reopen_needs_three_dwas():
    """DOWN + connection up: REOPEN with a DWR; OKAY only after the third DWA."""
    wd = reopen()
    assert wd.state is S.REOPEN and wd.pending and not wd.usable
    assert wd.on_receive(3.0, True) == [] and wd.num_dwa == 1
    assert wd.on_receive(3.5, False) == []  # non-DWA thrown away
    assert wd.on_timer(wd.next_deadline()) == [A.SEND_WATCHDOG]
    assert wd.on_receive(40.0, True) == [] and wd.num_dwa == 2
    wd.on_timer(wd.next_deadline())
    assert wd.on_receive(70.0, True) == [A.FAILBACK]
    assert wd.state is S.OKAY and wd.usable


def test_reopen_missed_dwa_then_close():
    """REOPEN + timer with DWR pending: first NumDWA = -1, then CloseConnection, DOWN."""
    wd = reopen()
    assert wd.on_timer(wd.next_deadline()) == []
    assert wd.num_dwa == -1 and wd.state is S.REOPEN
    assert wd.on_timer(wd.next_deadline()) == [A.CLOSE_CONNECTION]
    assert wd.state is S.DOWN


def test_connection_up_ignored_when_open():
    """Connection up in OKAY is not a listed event and changes nothing."""
    wd = okay()
    assert wd.on_connection_up(1.0) == [] and wd.state is S.OKAY
