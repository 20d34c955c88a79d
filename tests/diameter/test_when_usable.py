"""DiameterService.when_usable: a notification, not a poll, for work that needs a peer."""

from __future__ import annotations

from tests.diameter.test_service import OCS1, TC, TW, Harness, dwa_to, peer


def test_when_usable_fires_once_a_peer_opens() -> None:
    """Waiting before the CEA: the Deferred fires when the peer opens, not before."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    fired: list[object] = []
    h.service.when_usable().addCallback(fired.append)
    h.advance(1.0)
    assert fired == []
    h.open(OCS1)
    assert fired == [None]
    already: list[object] = []
    h.service.when_usable().addCallback(already.append)
    assert already == [None]


def test_when_usable_fires_when_a_reopened_peer_is_okay_again() -> None:
    """After a reconnect the peer is usable only once the watchdog says OKAY (3 DWAs)."""
    h = Harness([peer("ocs1", OCS1)], tx_timeout=300.0)
    h.service.startService()
    remote = h.open(OCS1)
    for _ in range(3):  # no DWA: SUSPECT, then DOWN and the connection aborted
        h.advance(TW)
    remote.lose()
    fired: list[object] = []
    h.service.when_usable().addCallback(fired.append)
    h.advance(TC)
    again = h.open(OCS1)
    for _ in range(3):
        assert fired == []
        again.send(dwa_to(again.one("DWR"), OCS1))
        h.advance(TW)
    assert fired == [None]


def test_a_cancelled_wait_is_forgotten() -> None:
    """Cancelling the wait removes it: opening the peer later fires nothing."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    wait = h.service.when_usable()
    wait.addErrback(lambda _: None)
    wait.cancel()
    h.open(OCS1)
    assert h.service._usable_waiters == []
