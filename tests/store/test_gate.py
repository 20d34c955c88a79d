"""The CCR gate: restored sessions wait for a usable peer; fenced CCRs wait for a renewal."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from b2bua.diameter.message import Message
from b2bua.store.gate import CcrGate
from tests.diameter.factories import cca_grant, ccr_initial, ccr_terminate, ccr_update


class FakePeers:
    """A Diameter service whose peers come up when the test says so."""

    def __init__(self, usable: bool = False) -> None:
        self.usable = usable
        self.sent: list[tuple[str | None, int]] = []
        self.waiters: list[Deferred[None]] = []

    def send_request(
        self, message: Message, *, destination_host: str | None = None
    ) -> Deferred[Message]:
        self.sent.append((message.session_id, int(message.get("CC-Request-Type"))))
        return succeed(cca_grant(message))

    def has_usable_peer(self, realm: str | None = None) -> bool:
        return self.usable

    def when_usable(self) -> Deferred[None]:
        waiter: Deferred[None] = Deferred(self.waiters.remove)
        self.waiters.append(waiter)
        return waiter

    def come_up(self) -> None:
        self.usable = True
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.callback(None)


def gate(usable: bool = False) -> tuple[CcrGate, FakePeers, Clock]:
    clock = Clock()
    peers = FakePeers(usable)
    return CcrGate(peers, clock), peers, clock


def test_restored_sessions_wait_for_a_usable_peer_then_go_in_order() -> None:
    """A restored session's CCRs are held until a peer is up; then sent, answers delivered."""
    ccrs, peers, clock = gate()
    ccrs.hold_restored(["s1"], 10.0)
    first = ccrs.send_request(ccr_update("s1", number=3))
    second = ccrs.send_request(ccr_terminate("s1", number=4))
    clock.advance(5.0)
    assert peers.sent == [] and ccrs.held == 2
    peers.come_up()
    assert peers.sent == [("s1", 2), ("s1", 3)]
    answers: list[Message] = []
    first.addCallback(answers.append)
    second.addCallback(answers.append)
    assert len(answers) == 2 and ccrs.held == 0
    assert clock.getDelayedCalls() == []


def test_other_sessions_pass_while_restored_ones_wait() -> None:
    """A new call's CCRs are not held by a restore that waits for a peer."""
    ccrs, peers, _ = gate()
    ccrs.hold_restored(["s1"], 10.0)
    ccrs.send_request(ccr_initial("new"))
    ccrs.send_request(ccr_update("new"))
    assert peers.sent == [("new", 1), ("new", 2)]


def test_no_peer_within_diameter_wait_sends_anyway() -> None:
    """Past diameter_wait the held CCRs go anyway (and fail as NO_PEER there, as before)."""
    ccrs, peers, clock = gate()
    ccrs.hold_restored(["s1"], 10.0)
    ccrs.send_request(ccr_terminate("s1"))
    clock.advance(9.9)
    assert peers.sent == []
    clock.advance(0.1)
    assert peers.sent == [("s1", 3)]
    assert peers.waiters == [] and ccrs.held == 0
    ccrs.send_request(ccr_update("s1"))
    assert peers.sent[-1] == ("s1", 2)


def test_a_usable_peer_means_no_hold() -> None:
    """When a peer is already usable the restored sessions' CCRs go at once."""
    ccrs, peers, clock = gate(usable=True)
    ccrs.hold_restored(["s1"], 10.0)
    ccrs.send_request(ccr_update("s1"))
    assert peers.sent == [("s1", 2)]
    assert clock.getDelayedCalls() == []


def test_fenced_holds_all_but_a_new_calls_ccr_initial() -> None:
    """Fenced: CCR-U and CCR-T wait for the renewal, a CCR-I goes; release sends the rest."""
    ccrs, peers, _ = gate(usable=True)
    fenced = [True]
    ccrs.fenced = lambda: fenced[0]
    ccrs.send_request(ccr_initial("new"))
    ccrs.send_request(ccr_update("s1"))
    ccrs.send_request(ccr_terminate("s2"))
    assert peers.sent == [("new", 1)]
    ccrs.release()
    assert ccrs.held == 2  # still fenced: nothing leaves
    fenced[0] = False
    ccrs.release()
    assert peers.sent == [("new", 1), ("s1", 2), ("s2", 3)]
    assert ccrs.released == 2


def test_dropped_sessions_never_send_what_was_held() -> None:
    """The CCRs of calls a survivor took are dropped unsent; the others go."""
    ccrs, peers, _ = gate(usable=True)
    fenced = [True]
    ccrs.fenced = lambda: fenced[0]
    gone = ccrs.send_request(ccr_terminate("s1"))
    ccrs.send_request(ccr_terminate("s2"))
    ccrs.drop(["s1"])
    fenced[0] = False
    ccrs.release()
    assert peers.sent == [("s2", 3)]
    assert ccrs.dropped == 1
    assert not gone.called


def test_stop_cancels_the_wait_and_sends_nothing() -> None:
    """At stop the wait ends; held CCRs stay unsent (their records resend them next start)."""
    ccrs, peers, clock = gate()
    ccrs.hold_restored(["s1"], 10.0)
    ccrs.send_request(ccr_update("s1"))
    ccrs.stop()
    assert peers.waiters == [] and clock.getDelayedCalls() == []
    assert peers.sent == []


def test_a_cancelled_held_request_is_forgotten() -> None:
    """Cancelling the answer Deferred of a held request removes it from the gate."""
    ccrs, peers, _ = gate()
    ccrs.hold_restored(["s1"], 10.0)
    held = ccrs.send_request(ccr_update("s1"))
    held.addErrback(lambda _: None)
    held.cancel()
    peers.come_up()
    assert peers.sent == [] and ccrs.held == 0
