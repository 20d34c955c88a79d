# mypy: disable-error-code="union-attr,index"
"""DiameterService in virtual time: CER/CEA, watchdog, failover, Tx, DPR, listener, routing."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, ParamSpec, cast

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.python.failure import Failure

from b2bua.config import (
    ConfigError,
    DiameterSettings,
    PeerSettings,
    parse_config_text,
)
from b2bua.diameter.dictionary import (
    APP_CREDIT_CONTROL,
    CMD_ABORT_SESSION,
    CMD_CREDIT_CONTROL,
    CMD_RE_AUTH,
    DIAMETER_COMMAND_UNSUPPORTED,
    DIAMETER_MISSING_AVP,
    DIAMETER_SUCCESS,
    DIAMETER_UNABLE_TO_COMPLY,
    DIAMETER_UNKNOWN_PEER,
    DISCONNECT_REBOOTING,
)
from b2bua.diameter.errors import InvalidAnswer, NoPeerAvailable, PeerDown, RequestTimeout
from b2bua.diameter.message import Message, MessageFramer, make_answer
from b2bua.diameter.protocol import DiameterProtocol
from b2bua.diameter.service import DiameterService, make_diameter_service, validate_diameter
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerWheel
from tests.diameter import factories
from tests.support.freediameter import Pki, free_tcp_port, make_pki

LOCAL = factories.CLIENT_HOST
OCS1 = "ocs1.example.net"
OCS2 = "ocs2.example.net"
TW = 30.0
TC = 30.0
TX = 10.0


def peer(
    name: str,
    host: str,
    *,
    port: int = 3868,
    priority: int = 1,
    realm: str = "",
    accept_incoming: bool = False,
    tls: bool = False,
) -> PeerSettings:
    uri = parse_config_text(f"[peer:x]\nuri = {'aaas' if tls else 'aaa'}://{host}:{port}\n")
    return PeerSettings(
        name=name,
        uri=uri.peers[0].uri,
        priority=priority,
        realm=realm,
        host=host,
        accept_incoming=accept_incoming,
    )


def settings(**overrides: Any) -> DiameterSettings:
    base = DiameterSettings(
        origin_host=LOCAL,
        origin_realm=factories.CLIENT_REALM,
        destination_realm=factories.OCS_REALM,
        tx_timeout=TX,
        watchdog_interval=TW,
        reconnect_interval=TC,
    )
    return replace(base, **overrides)


class Remote:
    """The far end of one connection, played by the test."""

    def __init__(self, protocol: DiameterProtocol, local: str = "10.0.0.1") -> None:
        self.protocol = protocol
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", local, 40000),
            peerAddress=IPv4Address("TCP", "192.0.2.9", 3868),
        )
        self.framer = MessageFramer()
        protocol.makeConnection(self.transport)

    def received(self) -> list[Message]:
        """Messages the service wrote since the last call."""
        out = self.framer.feed(self.transport.value())
        self.transport.clear()
        assert all(isinstance(m, Message) for m in out), out
        return [m for m in out if isinstance(m, Message)]

    def one(self, name: str) -> Message:
        (msg,) = self.received()
        assert msg.name == name, msg
        return msg

    def send(self, msg: Message) -> None:
        self.protocol.dataReceived(msg.encode())

    def lose(self) -> None:
        """What the reactor does after loseConnection, or when the peer vanishes."""
        self.protocol.connectionLost(Failure(ConnectionDone()))

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)


def cea_from(cer: Message, host: str, code: int = DIAMETER_SUCCESS) -> Message:
    return make_answer(
        cer,
        code,
        [
            ("Host-IP-Address", "192.0.2.9"),
            ("Vendor-Id", 0),
            ("Product-Name", "test-ocs"),
            ("Auth-Application-Id", APP_CREDIT_CONTROL),
        ],
        origin_host=host,
        origin_realm=factories.OCS_REALM,
    )


def dwa_to(dwr: Message, host: str) -> Message:
    return make_answer(dwr, DIAMETER_SUCCESS, origin_host=host, origin_realm=factories.OCS_REALM)


def pump(remote: Remote, host: str) -> list[Message]:
    """Answer the DWRs the service sent on `remote`; return the other messages."""
    rest = []
    for msg in remote.received():
        if msg.name == "DWR":
            remote.send(dwa_to(msg, host))
        else:
            rest.append(msg)
    return rest


def ccr(session: str = factories.SESSION_ID) -> Message:
    request = factories.ccr_initial(session)
    request.hop_by_hop = request.end_to_end = 0
    return request


class Harness:
    """One service on a memory reactor whose clock drives the timer wheel."""

    def __init__(self, peers: list[PeerSettings], **overrides: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1000.0)
        self.driver = WheelDriver(TimerWheel(resolution=0.01), self.reactor)
        self.service = DiameterService(
            settings(**overrides), peers, self.reactor, self.driver, rand=lambda: 0.5
        )
        self.connects = 0

    def advance(self, seconds: float) -> None:
        self.reactor.advance(seconds)

    def accept_connect(self) -> Remote:
        """Complete the next outgoing connection attempt."""
        host, port, factory, _timeout, _bind = self.reactor.tcpClients[self.connects]
        self.connects += 1
        return Remote(cast(DiameterProtocol, factory.buildProtocol(IPv4Address("TCP", host, port))))

    def refuse_connect(self) -> None:
        """Fail the next outgoing connection attempt."""
        _host, _port, factory, _timeout, _bind = self.reactor.tcpClients[self.connects]
        connector = self.reactor.connectors[self.connects]
        self.connects += 1
        factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))

    def open(self, host: str) -> Remote:
        """Connect, answer the CER, return the open connection."""
        remote = self.accept_connect()
        cer = remote.one("CER")
        remote.send(cea_from(cer, host))
        return remote

    def incoming(self, local: str = "10.0.0.1") -> Remote:
        """A new connection to the listener."""
        _port, factory, _backlog, _interface = self.reactor.tcpServers[-1]
        protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.9", 50000))
        return Remote(cast(DiameterProtocol, protocol), local)

    def status(self, name: str) -> Any:
        return {s.name: s for s in self.service.peer_status()}[name]


_RESULTS: dict[int, tuple[Deferred[Any], Any]] = {}


def result_of(d: Deferred[Any]) -> Any:
    """The value or Failure a Deferred has already fired with (None if it has not).

    The result is taken out of the Deferred (so that a Failure is not reported as
    unhandled) and remembered for later calls.
    """
    if id(d) in _RESULTS:
        return _RESULTS[id(d)][1]
    if not d.called:
        return None
    box: list[Any] = []
    d.addBoth(box.append)
    _RESULTS[id(d)] = (d, box[0])
    return box[0]


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """Every twisted.logger event published during the test."""
    seen: list[dict[str, Any]] = []
    observer = cast(ILogObserver, seen.append)
    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


# -- capabilities exchange ---------------------------------------------------------------------


def test_cer_cea_opens_the_peer() -> None:
    """Start connects to the URI, sends a CER with our identity, and a CEA opens the peer."""
    h = Harness([peer("ocs1", OCS1, port=3870)])
    h.service.startService()
    host, port, _factory, timeout, _bind = h.reactor.tcpClients[0]
    assert (host, port, timeout) == (OCS1, 3870, 10.0)
    remote = h.accept_connect()
    cer = remote.one("CER")
    assert cer.origin_host == LOCAL and cer.origin_realm == factories.CLIENT_REALM
    assert [str(a.value) for a in cer.find_all("Host-IP-Address")] == ["10.0.0.1"]
    assert cer.get("Origin-State-Id") == 1000
    assert [a.value for a in cer.find_all("Auth-Application-Id")] == [APP_CREDIT_CONTROL]
    assert h.status("ocs1").state == "Wait-I-CEA" and not h.status("ocs1").usable
    remote.send(cea_from(cer, OCS1))
    status = h.status("ocs1")
    assert status.state == "I-Open" and status.usable and status.watchdog == "OKAY"
    assert status.origin_host == OCS1 and status.connected_since == 1000.0
    assert h.service.stats.peers_opened == 1
    assert h.service.has_usable_peer()


def test_cea_from_another_host_is_refused() -> None:
    """A CEA whose Origin-Host is not the configured host closes the connection."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    remote = h.accept_connect()
    remote.send(cea_from(remote.one("CER"), "impostor.example.net"))
    assert remote.closed and not h.status("ocs1").usable
    remote.lose()
    assert h.status("ocs1").state == "Closed"


def test_failed_cea_and_refused_connection_retry_after_tc() -> None:
    """A CEA error closes; a refused connect waits; each retry comes Tc later."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    remote = h.accept_connect()
    remote.send(cea_from(remote.one("CER"), OCS1, 5010))
    assert remote.closed and h.status("ocs1").state == "Closed"
    remote.lose()
    h.advance(TC - 1)
    assert len(h.reactor.tcpClients) == 1
    h.advance(1)
    assert len(h.reactor.tcpClients) == 2
    h.refuse_connect()
    assert h.service.stats.connections_failed == 1
    h.advance(TC)
    assert len(h.reactor.tcpClients) == 3
    h.open(OCS1)
    assert h.status("ocs1").usable


def test_connect_timeout_stops_the_attempt() -> None:
    """A connection attempt that hangs is abandoned by the state machine's timer."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    h.advance(10.0)
    assert h.reactor.connectors[0].stoppedConnecting
    assert h.status("ocs1").state == "Closed"
    late = h.accept_connect()  # the abandoned attempt completes after all: closed
    assert late.closed and late.received() == []


# -- watchdog ----------------------------------------------------------------------------------


def test_dwr_from_peer_is_answered() -> None:
    """A DWR from the peer gets a DWA 2001 with our identity and Origin-State-Id."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    remote = h.open(OCS1)
    remote.send(factories.dwr(OCS1, hop_by_hop=77))
    dwa = remote.one("DWA")
    assert dwa.hop_by_hop == 77 and dwa.result_code == DIAMETER_SUCCESS
    assert dwa.origin_host == LOCAL and dwa.get("Origin-State-Id") == 1000


def test_idle_peer_gets_dwr_every_tw_and_stays_okay() -> None:
    """After Tw idle a DWR goes out; its DWA keeps the peer OKAY and is timestamped."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    remote = h.open(OCS1)
    h.advance(TW - 0.5)
    assert remote.received() == []
    h.advance(0.5)
    dwr = remote.one("DWR")
    h.advance(1)
    remote.send(dwa_to(dwr, OCS1))
    assert h.status("ocs1").last_dwa == 1000.0 + TW + 1
    h.advance(TW)
    remote.one("DWR")
    assert h.status("ocs1").watchdog == "OKAY"


def test_traffic_postpones_the_watchdog() -> None:
    """Any message from the peer restarts Tw, so a busy peer gets no DWR."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    remote = h.open(OCS1)
    for _ in range(5):
        h.advance(TW / 2)
        remote.send(factories.dwr(OCS1))
        remote.one("DWA")
    assert remote.received() == []


def test_watchdog_failover_resends_with_t_flag_and_same_end_to_end() -> None:
    """A SUSPECT peer's pending CCR goes to the alternate with T set and the same e2e id."""
    h = Harness([peer("ocs1", OCS1, priority=1), peer("ocs2", OCS2, priority=2)], tx_timeout=300.0)
    h.service.startService()
    r1 = h.open(OCS1)
    r2 = h.open(OCS2)
    d = h.service.send_request(ccr())
    sent = r1.one("CCR")
    assert not sent.is_retransmit and r2.received() == []
    h.advance(TW)
    r1.one("DWR")  # never answered
    assert pump(r2, OCS2) == []  # ocs2 answers its DWR and stays OKAY
    assert result_of(d) is None
    h.advance(TW)
    assert h.status("ocs1").watchdog == "SUSPECT" and not h.status("ocs1").usable
    (again,) = pump(r2, OCS2)
    assert again.name == "CCR" and again.is_retransmit
    assert again.end_to_end == sent.end_to_end and again.hop_by_hop != sent.hop_by_hop
    assert again.session_id == sent.session_id
    assert h.service.stats.requests_retransmitted == 1
    r2.send(factories.cca_grant(again))
    answer = result_of(d)
    assert isinstance(answer, Message) and answer.origin_host == factories.OCS_HOST
    r1.send(factories.cca_grant(sent))  # the suspect peer answers late: a duplicate
    assert h.service.stats.answers_duplicate == 1
    assert h.status("ocs1").watchdog == "OKAY"  # and it is back in service


def test_suspect_peer_without_alternate_keeps_the_request() -> None:
    """With no alternate, a request on a SUSPECT peer waits and its late answer counts."""
    h = Harness([peer("ocs1", OCS1)], tx_timeout=300.0)
    h.service.startService()
    remote = h.open(OCS1)
    d = h.service.send_request(ccr())
    sent = remote.one("CCR")
    h.advance(TW)
    remote.one("DWR")
    h.advance(TW / 4)
    remote.send(factories.cca_grant(sent))
    assert isinstance(result_of(d), Message)


def test_watchdog_closes_a_dead_peer_and_reconnects_through_reopen() -> None:
    """SUSPECT then DOWN aborts the connection; after Tc it reconnects and needs 3 DWAs."""
    h = Harness([peer("ocs1", OCS1)], tx_timeout=300.0)
    h.service.startService()
    remote = h.open(OCS1)
    d = h.service.send_request(ccr())
    remote.one("CCR")
    h.advance(TW)
    remote.one("DWR")
    h.advance(TW)
    assert h.status("ocs1").watchdog == "SUSPECT"
    h.advance(TW)
    assert remote.transport.disconnected  # aborted
    remote.lose()
    failure = result_of(d)
    assert isinstance(failure, Failure) and failure.check(PeerDown)
    assert failure.value.peer == "ocs1" and failure.value.host == OCS1
    h.advance(TC)
    again = h.open(OCS1)
    status = h.status("ocs1")
    assert status.watchdog == "REOPEN" and not status.usable
    for _ in range(3):
        dwr = again.one("DWR")
        again.send(dwa_to(dwr, OCS1))
        h.advance(TW)
    assert h.status("ocs1").watchdog == "OKAY" and h.status("ocs1").usable


def test_connection_loss_moves_pending_requests_to_the_alternate() -> None:
    """A lost connection's pending requests are retransmitted at once to the other peer."""
    h = Harness([peer("ocs1", OCS1), peer("ocs2", OCS2)])
    h.service.startService()
    r1 = h.open(OCS1)
    r2 = h.open(OCS2)
    requests = [h.service.send_request(ccr(f"s{i}")) for i in range(4)]
    on1 = r1.received()
    on2 = r2.received()
    assert len(on1) == 2 and len(on2) == 2  # equal priorities share the load
    r1.lose()
    moved = r2.received()
    assert sorted(m.end_to_end for m in moved) == sorted(m.end_to_end for m in on1)
    assert all(m.is_retransmit for m in moved)
    for msg in on2 + moved:
        r2.send(factories.cca_grant(msg))
    assert all(isinstance(result_of(d), Message) for d in requests)
    assert h.status("ocs1").state == "Closed" and h.status("ocs2").pending == 0


# -- pending requests --------------------------------------------------------------------------


def test_tx_timeout_fails_the_request_and_drops_the_late_answer() -> None:
    """Without an answer within Tx the request fails with RequestTimeout naming the peer."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    remote = h.open(OCS1)
    d = h.service.send_request(ccr())
    sent = remote.one("CCR")
    h.advance(TX - 0.5)
    assert result_of(d) is None
    h.advance(0.5)
    failure = result_of(d)
    assert isinstance(failure, Failure) and failure.check(RequestTimeout)
    assert failure.value.peer == "ocs1" and failure.value.host == OCS1
    assert h.status("ocs1").pending == 0 and h.service.pending_count == 0
    remote.send(factories.cca_grant(sent))
    assert h.service.stats.answers_duplicate == 1 and h.service.stats.requests_timed_out == 1


def test_answer_resolves_the_request_and_records_latency() -> None:
    """The CCA reaches the caller; latency and counters are updated."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    remote = h.open(OCS1)
    d = h.service.send_request(ccr())
    sent = remote.one("CCR")
    assert sent.hop_by_hop != 0 and sent.end_to_end != 0
    assert h.status("ocs1").pending == 1
    h.advance(0.25)
    remote.send(factories.cca_grant(sent))
    answer = result_of(d)
    assert isinstance(answer, Message) and answer.result_code == DIAMETER_SUCCESS
    status = h.status("ocs1")
    assert status.pending == 0 and status.last_latency == pytest.approx(0.25)
    assert status.requests_sent == 1 and status.answers_received == 1
    remote.send(factories.cca_grant(sent))
    assert h.service.stats.answers_duplicate == 1


def test_stray_answer_is_dropped() -> None:
    """An answer matching no request is counted and dropped."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    remote = h.open(OCS1)
    remote.send(factories.cca_grant(factories.ccr_initial(hop_by_hop=0xDEAD)))
    assert h.service.stats.answers_unexpected == 1


def test_slow_answer_is_logged_at_the_configured_level(events: list[dict[str, Any]]) -> None:
    """An answer slower than cdp_event_threshold is logged at cdp_event_latency_log's level."""
    h = Harness([peer("ocs1", OCS1)], cdp_event_threshold=500, cdp_event_latency_log=1)
    h.service.startService()
    remote = h.open(OCS1)
    for delay in (0.4, 0.6):
        d = h.service.send_request(ccr())
        sent = remote.one("CCR")
        h.advance(delay)
        remote.send(factories.cca_grant(sent))
        assert isinstance(result_of(d), Message)
    slow = [e for e in events if "cdp_event_threshold" in e.get("log_format", "")]
    assert len(slow) == 1 and slow[0]["log_level"] is LogLevel.info
    assert h.service.stats.slow_answers == 1


def test_invalid_answer_fails_the_request_at_once() -> None:
    """A CCA failing the dictionary fails its request with InvalidAnswer, no Tx wait."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    remote = h.open(OCS1)
    d = h.service.send_request(ccr())
    cca = factories.cca_grant(remote.one("CCR"))
    cca.avps = [a for a in cca.avps if a.name != "CC-Request-Number"]
    remote.send(cca)
    failure = result_of(d)
    assert isinstance(failure, Failure) and failure.check(InvalidAnswer)
    assert failure.value.error.result_code == DIAMETER_MISSING_AVP
    assert failure.value.answer.hop_by_hop == cca.hop_by_hop
    assert remote.received() == []  # answers are never answered


def test_cancelled_request_is_forgotten() -> None:
    """Cancelling the Deferred removes the request; its answer is then a duplicate."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    remote = h.open(OCS1)
    d = h.service.send_request(ccr())
    sent = remote.one("CCR")
    d.cancel()
    assert result_of(d).check(CancelledError)
    assert h.service.pending_count == 0
    remote.send(factories.cca_grant(sent))
    assert h.service.stats.answers_duplicate == 1


def test_no_usable_peer_fails_at_once() -> None:
    """With no open peer, or every one excluded, the request fails with NoPeerAvailable."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    first = result_of(h.service.send_request(ccr()))
    assert first.check(NoPeerAvailable)
    h.open(OCS1)
    assert result_of(h.service.send_request(ccr(), exclude={"ocs1"})).check(NoPeerAvailable)
    assert result_of(h.service.send_request(ccr(), exclude={OCS1.upper()})).check(NoPeerAvailable)
    assert h.service.stats.requests_no_peer == 3


def test_not_running_service_refuses_requests() -> None:
    """Before start, requests fail with NoPeerAvailable."""
    h = Harness([peer("ocs1", OCS1)])
    assert result_of(h.service.send_request(ccr())).check(NoPeerAvailable)


# -- routing -----------------------------------------------------------------------------------


def test_routing_by_realm_priority_and_destination_host() -> None:
    """Realm match beats the default route, lower priority wins, Destination-Host picks."""
    h = Harness(
        [
            peer("any", "relay.example.org", priority=0),
            peer("ocs1", OCS1, realm=factories.OCS_REALM, priority=2),
            peer("ocs2", OCS2, realm=factories.OCS_REALM, priority=1),
        ]
    )
    h.service.startService()
    relay = h.open("relay.example.org")
    r1 = h.open(OCS1)
    r2 = h.open(OCS2)
    h.service.send_request(ccr())
    assert len(r2.received()) == 1
    h.service.send_request(ccr(), destination_host=OCS1)
    assert len(r1.received()) == 1
    other = ccr()
    other.avps = [a for a in other.avps if a.name != "Destination-Realm"]
    other.append("Destination-Realm", "elsewhere.example")
    h.service.send_request(other)
    assert len(relay.received()) == 1
    h.service.send_request(ccr(), exclude={"ocs2"})
    assert len(r1.received()) == 1


def test_ro_forced_peer_bypasses_routing() -> None:
    """ro_forced_peer takes every request, and none when it is down."""
    h = Harness(
        [peer("ocs1", OCS1, realm=factories.OCS_REALM), peer("backup", OCS2, priority=9)],
        ro_forced_peer="backup",
    )
    h.service.startService()
    h.open(OCS1)
    assert result_of(h.service.send_request(ccr())).check(NoPeerAvailable)
    backup = h.open(OCS2)
    h.service.send_request(ccr(), destination_host=OCS1)
    assert len(backup.received()) == 1


# -- stopping ----------------------------------------------------------------------------------


def test_stop_sends_dpr_rebooting_and_waits_for_dpa() -> None:
    """stopService sends DPR with Disconnect-Cause REBOOTING and finishes on the DPA."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    remote = h.open(OCS1)
    done = h.service.stopService()
    dpr = remote.one("DPR")
    assert dpr.get("Disconnect-Cause") == DISCONNECT_REBOOTING and dpr.origin_host == LOCAL
    assert result_of(done) is None and not done.called
    remote.send(make_answer(dpr, DIAMETER_SUCCESS, origin_host=OCS1, origin_realm="x"))
    assert done.called and remote.closed
    remote.lose()
    h.advance(TC * 2)
    assert len(h.reactor.tcpClients) == 1  # no reconnection after stop


def test_stop_without_dpa_finishes_after_the_dpa_timer() -> None:
    """A peer that never sends the DPA is dropped when the DPA timer expires."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    remote = h.open(OCS1)
    d = h.service.send_request(ccr())
    done = h.service.stopService()
    assert [m.name for m in remote.received()] == ["CCR", "DPR"]
    assert not done.called
    h.advance(5.0)
    assert done.called and remote.closed
    assert result_of(d).check(PeerDown)


def test_stop_while_connecting_stops_the_attempt() -> None:
    """Stopping during a connection attempt stops it and finishes at once."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    done = h.service.stopService()
    assert h.reactor.connectors[0].stoppedConnecting
    h.refuse_connect()
    assert done.called


# -- incoming connections and requests ---------------------------------------------------------


def listening(**overrides: Any) -> Harness:
    listen = parse_config_text("[diameter]\nlisten = aaa://127.0.0.1:3868\n").diameter.listen
    h = Harness(
        [peer("ocs1", factories.OCS_HOST, accept_incoming=True, port=3999)],
        listen=listen,
        **overrides,
    )
    h.service.startService()
    h.refuse_connect()  # our own attempt fails; the OCS connects to us
    return h


def test_listener_accepts_a_configured_peer() -> None:
    """A CER from a peer with accept_incoming gets CEA 2001 and opens it (R-Open)."""
    h = listening()
    port, _factory, _backlog, interface = h.reactor.tcpServers[0]
    assert (port, interface) == (3868, "127.0.0.1")
    remote = h.incoming(local="127.0.0.1")
    remote.send(factories.cer(factories.OCS_HOST, factories.OCS_REALM))
    cea = remote.one("CEA")
    assert cea.result_code == DIAMETER_SUCCESS and cea.origin_host == LOCAL
    assert [str(a.value) for a in cea.find_all("Host-IP-Address")] == ["127.0.0.1"]
    assert h.status("ocs1").state == "R-Open" and h.status("ocs1").usable
    d = h.service.send_request(ccr())
    remote.send(factories.cca_grant(remote.one("CCR")))
    assert isinstance(result_of(d), Message)


def test_listener_refuses_unknown_peer_with_3010() -> None:
    """A CER from an unknown Origin-Host gets CEA 3010 with the E bit, then close."""
    h = listening()
    remote = h.incoming()
    remote.send(factories.cer("intruder.example.org", "example.org"))
    cea = remote.one("CEA")
    assert cea.result_code == DIAMETER_UNKNOWN_PEER and cea.is_error
    assert remote.closed
    assert h.service.stats.connections_rejected == 1
    assert h.status("ocs1").state == "Closed"


def test_listener_closes_when_first_message_is_not_a_cer() -> None:
    """A connection that starts with anything but a CER is closed unanswered."""
    h = listening()
    remote = h.incoming()
    remote.send(factories.dwr(factories.OCS_HOST))
    assert remote.received() == [] and remote.closed


def test_listener_closes_silent_connections() -> None:
    """A connection that sends no CER within the CEA timer is aborted."""
    h = listening()
    remote = h.incoming()
    h.advance(10.0)
    assert remote.transport.disconnected


def test_incoming_rar_goes_to_its_handler_and_asr_without_one_gets_3001() -> None:
    """RAR reaches the registered handler (answer sent back); ASR with no handler gets 3001."""
    h = listening()
    seen: list[tuple[str, str]] = []

    def on_rar(request: Message, peer_name: str) -> Message:
        seen.append((request.name, peer_name))
        return make_answer(request, DIAMETER_SUCCESS)

    h.service.register_handler(APP_CREDIT_CONTROL, CMD_RE_AUTH, on_rar)
    remote = h.incoming()
    remote.send(factories.cer(factories.OCS_HOST, factories.OCS_REALM))
    remote.one("CEA")
    remote.send(factories.rar(hop_by_hop=0x42))
    raa = remote.one("RAA")
    assert seen == [("RAR", "ocs1")]
    assert raa.hop_by_hop == 0x42 and raa.result_code == DIAMETER_SUCCESS
    assert raa.origin_host == LOCAL and raa.origin_realm == factories.CLIENT_REALM
    remote.send(factories.asr(hop_by_hop=0x43))
    asa = remote.one("ASA")
    assert asa.result_code == DIAMETER_COMMAND_UNSUPPORTED and asa.is_error
    assert h.service.stats.requests_unsupported == 1


def test_handler_deferred_and_failure() -> None:
    """A handler may answer later through a Deferred; a failing one gets 5012."""
    h = listening()
    later: Deferred[Message] = Deferred()
    h.service.register_handler(APP_CREDIT_CONTROL, CMD_RE_AUTH, lambda r, p: later)

    def broken(request: Message, peer_name: str) -> Message:
        raise RuntimeError("handler bug")

    h.service.register_handler(APP_CREDIT_CONTROL, CMD_ABORT_SESSION, broken)
    remote = h.incoming()
    remote.send(factories.cer(factories.OCS_HOST, factories.OCS_REALM))
    remote.one("CEA")
    rar = factories.rar()
    remote.send(rar)
    assert remote.received() == []
    later.callback(make_answer(rar, DIAMETER_SUCCESS))
    assert remote.one("RAA").result_code == DIAMETER_SUCCESS
    remote.send(factories.asr())
    assert remote.one("ASA").result_code == DIAMETER_UNABLE_TO_COMPLY
    assert h.service.stats.handler_failures == 1


def test_malformed_request_from_open_peer_is_answered_and_peer_stays_open() -> None:
    """A RAR missing Session-Id gets 5005 from the protocol; the peer stays open."""
    h = listening()
    remote = h.incoming()
    remote.send(factories.cer(factories.OCS_HOST, factories.OCS_REALM))
    remote.one("CEA")
    rar = factories.rar()
    rar.avps = [a for a in rar.avps if a.name != "Session-Id"]
    remote.send(rar)
    raa = remote.one("RAA")
    assert raa.result_code == DIAMETER_MISSING_AVP and raa.find("Failed-AVP") is not None
    assert h.status("ocs1").usable and not remote.closed


def test_election_lost_keeps_our_connection_and_drops_theirs() -> None:
    """A CER from the peer while we connect: the higher Origin-Host wins (RFC 6733 5.6.4)."""
    listen = parse_config_text("[diameter]\nlisten = aaa://127.0.0.1:3868\n").diameter.listen
    h = Harness([peer("ocs1", factories.OCS_HOST, accept_incoming=True)], listen=listen)
    h.service.startService()  # connecting
    theirs = h.incoming()
    theirs.send(factories.cer(factories.OCS_HOST, factories.OCS_REALM))
    assert theirs.received() == [] and h.status("ocs1").state == "Wait-Conn-Ack/Elect"
    ours = h.accept_connect()
    cer = ours.one("CER")
    assert h.status("ocs1").state == "Wait-Returns"  # ocs.example.net > b2bua.example.com
    ours.send(cea_from(cer, factories.OCS_HOST))
    assert theirs.closed and not ours.closed
    assert h.status("ocs1").state == "I-Open" and h.status("ocs1").usable


def test_second_cer_from_an_open_peer_is_rejected() -> None:
    """A CER from a peer that is already open is closed (R-Reject); the peer stays open."""
    listen = parse_config_text("[diameter]\nlisten = aaa://127.0.0.1:3868\n").diameter.listen
    h = Harness([peer("ocs1", factories.OCS_HOST, accept_incoming=True)], listen=listen)
    h.service.startService()
    h.open(factories.OCS_HOST)
    extra = h.incoming()
    extra.send(factories.cer(factories.OCS_HOST, factories.OCS_REALM))
    assert extra.closed and extra.received() == []
    extra.lose()
    assert h.status("ocs1").state == "I-Open" and h.status("ocs1").usable


def test_peer_dpr_closes_and_reconnects_later() -> None:
    """A DPR from the peer is answered with a DPA and the peer goes Closed."""
    h = Harness([peer("ocs1", OCS1)])
    h.service.startService()
    remote = h.open(OCS1)
    remote.send(
        Message.request(
            "Disconnect-Peer",
            avps=[("Origin-Host", OCS1), ("Origin-Realm", "x"), ("Disconnect-Cause", 1)],
            hop_by_hop=5,
            end_to_end=5,
        )
    )
    dpa = remote.one("DPA")
    assert dpa.hop_by_hop == 5 and dpa.result_code == DIAMETER_SUCCESS
    assert not h.status("ocs1").usable
    remote.lose()
    assert h.status("ocs1").state == "Closed"
    h.advance(TC)
    assert len(h.reactor.tcpClients) == 2


# -- configuration -----------------------------------------------------------------------------


def test_cross_key_problems_are_reported() -> None:
    """accept_incoming needs a host and a listener; ro_forced_peer must name a peer."""
    config = parse_config_text(
        "[diameter]\nro_forced_peer = nobody\n"
        "[peer:a]\nuri = aaa://10.0.0.1\naccept_incoming = yes\n"
        "[peer:b]\nuri = aaa://ocs.example.net\n"
        "[peer:c]\nuri = aaa://10.0.0.3\nhost = ocs.example.net\n",
        "t.conf",
    )
    problems = validate_diameter(config)
    assert len(problems) == 4, problems
    assert any("[peer:a] host" in p for p in problems)
    assert any("[peer:a] accept_incoming" in p for p in problems)
    assert any("[peer:c] host" in p and "[peer:b]" in p for p in problems)
    assert any("ro_forced_peer" in p for p in problems)
    with pytest.raises(ConfigError):
        make_diameter_service(config, MemoryReactorClock(), WheelDriver(TimerWheel(), Clock()))


def test_tls_peer_without_readable_ca_is_a_problem() -> None:
    """An aaas:// peer needs usable TLS files; a missing key with a certificate is reported."""
    config = parse_config_text("[peer:a]\nuri = aaas://ocs.example.net\n", "t.conf")
    assert validate_diameter(config) == []  # system CAs, no client certificate
    listener = parse_config_text("[diameter]\nlisten = aaas://127.0.0.1:5658\n", "t.conf")
    (problem,) = validate_diameter(listener)
    assert "tls_certificate" in problem


def test_identity_defaults_derive_from_origin_host() -> None:
    """origin_realm defaults to origin_host minus its first label; destination_realm to it."""
    reactor = MemoryReactorClock()
    config = parse_config_text("[diameter]\norigin_host = b2bua1.ims.example.com\n")
    service = make_diameter_service(config, reactor, WheelDriver(TimerWheel(), reactor))
    assert service.origin_realm == "ims.example.com"
    assert service.destination_realm == "ims.example.com"
    assert service.destination_host is None


class Clock(MemoryReactorClock):
    """A bare clock for the wheel driver."""


# -- TLS on loopback (real reactor, throwaway CA) ----------------------------------------------

P = ParamSpec("P")


def in_reactor(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, Deferred[None]]:
    """pytest_twisted.ensureDeferred, typed: the coroutine test runs in the reactor."""
    wrapped: Callable[P, Deferred[None]] = pytest_twisted.ensureDeferred(test)
    return wrapped


def the_reactor() -> Any:
    from twisted.internet import reactor  # noqa: TID251 - pytest-twisted's running reactor

    return reactor


async def eventually(check: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    reactor = the_reactor()
    deadline = reactor.seconds() + timeout
    while not check():
        if reactor.seconds() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await deferLater(reactor, 0.02, lambda: None)


class TlsPair:
    """A TLS server (listener) and a TLS client, each a DiameterService on the reactor."""

    def __init__(self, pki: Pki, *, client_cert: bool = True) -> None:
        reactor = the_reactor()
        port = free_tcp_port()
        server_config = parse_config_text(
            f"[diameter]\norigin_host = {factories.OCS_HOST}\nlisten = aaas://127.0.0.1:{port}\n"
            f"tls_certificate = {pki.server_cert}\ntls_private_key = {pki.server_key}\n"
            f"tls_ca_certificates = {pki.ca}\n"
            f"[peer:b2bua]\nuri = aaas://127.0.0.1:1\nhost = {LOCAL}\naccept_incoming = yes\n"
        )
        own = (
            f"tls_certificate = {pki.client_cert}\ntls_private_key = {pki.client_key}\n"
            if client_cert
            else ""
        )
        client_config = parse_config_text(
            f"[diameter]\norigin_host = {LOCAL}\ntls_ca_certificates = {pki.ca}\n{own}"
            f"reconnect_interval = 60\n"
            f"[peer:ocs]\nuri = aaas://127.0.0.1:{port}\nhost = {factories.OCS_HOST}\n"
        )
        self.drivers = [WheelDriver(TimerWheel(0.01), reactor) for _ in range(2)]
        self.server = make_diameter_service(server_config, reactor, self.drivers[0])
        self.client = make_diameter_service(client_config, reactor, self.drivers[1])
        self.server.register_handler(
            APP_CREDIT_CONTROL, CMD_CREDIT_CONTROL, lambda r, p: factories.cca_grant(r)
        )
        self.server.startService()
        self.client.startService()

    async def stop(self) -> None:
        await self.client.stopService()
        await self.server.stopService()
        for driver in self.drivers:
            driver.stop()


@in_reactor
async def test_tls_mutual_authentication_carries_a_ccr(tmp_path: Path) -> None:
    """aaas:// with a CA-signed client and server certificate opens and carries CCR/CCA."""
    pair = TlsPair(make_pki(tmp_path, server_names=(factories.OCS_HOST,), client_name=LOCAL))
    try:
        await eventually(lambda: pair.client.peer_status()[0].usable, "TLS peer open")
        assert pair.server.peer_status()[0].state == "R-Open"
        cca = await pair.client.send_request(ccr())
        assert cca.result_code == DIAMETER_SUCCESS
        (link,) = pair.client.links.values()
        transport = link.peer.active_conn.transport  # type: ignore[attr-defined]
        assert transport.getPeerCertificate() is not None  # TLS, verified
    finally:
        await pair.stop()


@in_reactor
async def test_tls_refuses_a_client_without_certificate(tmp_path: Path) -> None:
    """The listener asks for a client certificate (RFC 6733 13.1) and refuses to go on."""
    pair = TlsPair(make_pki(tmp_path, client_name=LOCAL), client_cert=False)
    try:
        await eventually(
            lambda: pair.client.peer_status()[0].state == "Closed", "handshake refused"
        )
        assert pair.client.stats.peers_opened == 0 and pair.server.stats.peers_opened == 0
    finally:
        await pair.stop()


@in_reactor
async def test_tls_checks_the_server_name(tmp_path: Path) -> None:
    """A server certificate that does not name 127.0.0.1 is refused by the client."""
    pki = make_pki(tmp_path, server_names=("elsewhere.example.org",), server_ips=())
    pair = TlsPair(pki)
    try:
        await eventually(
            lambda: pair.client.peer_status()[0].state == "Closed", "server name refused"
        )
        assert pair.client.stats.peers_opened == 0 and pair.client.stats.messages_received == 0
    finally:
        await pair.stop()
