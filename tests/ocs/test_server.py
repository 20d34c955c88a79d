"""The OCS's Diameter server in virtual time: clients over StringTransports, a task.Clock.

CER/CEA, CCR/CCA and DWR/DWA on one connection, RAR and ASR out with their answers back,
timeouts, lost connections, the stale-session sweeper, shutdown with DPR, the operator's
actions, and `OcsService` on a memory reactor.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec
from uuid import uuid4

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from b2bua.config import parse_config_text
from b2bua.diameter.dictionary import APP_CREDIT_CONTROL, CC_INITIAL_REQUEST, CC_UPDATE_REQUEST
from b2bua.diameter.message import Message, MessageFramer, check_command, make_answer
from b2bua.diameter.protocol import DiameterProtocol
from b2bua.ocs.accounts import Account, AccountExistsError, UnknownSubscriberError
from b2bua.ocs.backend_memory import MemoryBackend
from b2bua.ocs.handler import CreditControlHandler
from b2bua.ocs.ledger import Ledger, read_ledger
from b2bua.ocs.operator import Operator
from b2bua.ocs.rating import CreditPolicy
from b2bua.ocs.server import (
    AnswerTimeout,
    ConnectionClosed,
    OcsServer,
    OcsService,
    PeerUnavailable,
    SessionNotFound,
    make_ocs_service,
    peer_config,
)
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerWheel
from tests.diameter import factories
from tests.ocs.backend_contract import result_of
from tests.ocs.redis_fixture import RedisServer, redis_server
from tests.ocs.test_handler import ALICE, ALICE_KEY, CLIENT_HOST, OCS_HOST, OCS_REALM, ccr, mscc

P = ParamSpec("P")
__all__ = ["redis_server"]  # the session fixture, re-exported for pytest to find here


def failure_of(deferred: Deferred[Any]) -> Failure:
    """The Failure of a Deferred that has already failed."""
    outcome: list[Any] = []
    deferred.addBoth(outcome.append)
    assert outcome and isinstance(outcome[0], Failure), outcome
    return outcome[0]


def pending(deferred: Deferred[Any]) -> bool:
    """True while `deferred` has no result."""
    outcome: list[Any] = []

    def note(result: Any) -> Any:
        outcome.append(result)
        return result

    deferred.addBoth(note)
    return not outcome


class Client:
    """One client connection to the server: bytes in through the protocol, out from the
    transport."""

    def __init__(self, server: OcsServer, port: int = 40000) -> None:
        address = IPv4Address("TCP", "127.0.0.1", port)
        self.protocol = server.buildProtocol(address)
        self.transport = StringTransport(peerAddress=address)
        self.protocol.makeConnection(self.transport)
        self.framer = MessageFramer()

    def send(self, message: Message) -> None:
        self.protocol.dataReceived(message.encode())

    def received(self, *, check: bool = True) -> list[Message]:
        """What the server wrote; dictionary-checked unless `check` is False."""
        data = self.transport.value()
        self.transport.clear()
        messages = []
        for item in self.framer.feed(data):
            assert isinstance(item, Message), item
            if check:
                check_command(item)
            messages.append(item)
        return messages

    def exchange(self, message: Message, *, check: bool = True) -> Message:
        self.send(message)
        (reply,) = self.received(check=check)
        return reply

    def open(self, host: str = CLIENT_HOST) -> Message:
        cea = self.exchange(factories.cer(origin_host=host, origin_realm="lab.example"))
        assert cea.result_code == 2001
        return cea

    def lose(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)


class Ocs:
    """A server on a memory backend and a task.Clock, with the operator."""

    def __init__(self, seconds: int = 75, **options: Any) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.driver = WheelDriver(TimerWheel(), self.clock)
        self.ledger = Ledger(keep=True)
        self.backend = MemoryBackend(
            policy=CreditPolicy(default_validity=60, stale_grace=10), ledger=self.ledger
        )
        result_of(self.backend.provision([Account(ALICE, {"seconds": seconds})]))
        self.handler = CreditControlHandler(
            self.backend, origin_host=OCS_HOST, origin_realm=OCS_REALM
        )
        self.server = OcsServer(
            self.handler,
            self.clock,
            self.driver,
            peer_config(OCS_HOST, OCS_REALM, origin_state_id=7),
            **options,
        )
        self.operator = Operator(self.backend, self.handler.registry, self.server)

    def client(self, port: int = 40000) -> Client:
        return Client(self.server, port)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


def opened_call(ocs: Ocs, session: str = "call-1") -> Client:
    client = ocs.client()
    client.open()
    cca = client.exchange(ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30), session=session))
    assert cca.result_code == 2001
    return client


# -- the connection --


def test_cer_is_answered_with_the_ocs_capabilities() -> None:
    """CER -> CEA 2001: the OCS's identity, credit control (4), 3GPP as a vendor."""
    ocs = Ocs()
    client = ocs.client()
    cea = client.open()
    assert (cea.origin_host, cea.origin_realm) == (OCS_HOST, OCS_REALM)
    assert [a.value for a in cea.find_all("Auth-Application-Id")] == [APP_CREDIT_CONTROL]
    assert cea.get("Supported-Vendor-Id") == 10415
    assert cea.get("Product-Name") == "b2bua-ocs"
    assert cea.get("Origin-State-Id") == 7
    assert ocs.server.open_peers() == [CLIENT_HOST]


def test_cer_without_credit_control_is_refused() -> None:
    """A client offering no common application gets CEA 5010 and is closed."""
    ocs = Ocs()
    client = ocs.client()
    cea = client.exchange(factories.cer(apps=(3,)), check=False)
    assert cea.result_code == 5010
    assert client.closed
    assert ocs.server.open_peers() == []


def test_first_message_other_than_cer_closes_the_connection() -> None:
    """A connection that opens with a CCR is closed unanswered."""
    ocs = Ocs()
    client = ocs.client()
    client.send(ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30)))
    assert client.received() == []
    assert client.closed


def test_connection_without_cer_is_closed_after_the_timeout() -> None:
    """No CER within cer_timeout: the OCS hangs up."""
    ocs = Ocs(cer_timeout=5.0)
    client = ocs.client()
    ocs.advance(4.9)
    assert not client.closed
    ocs.advance(0.2)
    assert client.closed


def test_malformed_first_message_closes_after_its_error_answer() -> None:
    """A first request the dictionary refuses is answered (RFC 6733 7.2), then closed."""
    ocs = Ocs()
    client = ocs.client()
    cer = factories.cer()
    cer.avps = [a for a in cer.avps if a.name != "Origin-Realm"]
    client.send(cer)
    (error,) = client.received(check=False)
    assert error.result_code == 5005
    assert client.closed


def test_credit_control_and_watchdog_on_the_open_connection() -> None:
    """CCR -> CCA and DWR -> DWA on the same connection, hop-by-hop ids kept."""
    ocs = Ocs()
    client = ocs.client()
    client.open()
    cca = client.exchange(ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30), hop_by_hop=0x55))
    assert (cca.name, cca.hop_by_hop, cca.result_code) == ("CCA", 0x55, 2001)
    assert cca.get_path("Multiple-Services-Credit-Control", "Granted-Service-Unit", "CC-Time") == 30
    dwa = client.exchange(factories.dwr(CLIENT_HOST, hop_by_hop=0x56))
    assert (dwa.name, dwa.result_code, dwa.hop_by_hop) == ("DWA", 2001, 0x56)
    session = ocs.handler.registry.get("call-1")
    assert session is not None and session.peer_host == CLIENT_HOST


def test_malformed_request_gets_the_error_answer_and_the_connection_stays() -> None:
    """A CCR missing CC-Request-Type: 5005 with Failed-AVP; the peer stays open."""
    ocs = Ocs()
    client = ocs.client()
    client.open()
    request = ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30))
    request.avps = [a for a in request.avps if a.name != "CC-Request-Type"]
    client.send(request)
    data = client.transport.value()
    client.transport.clear()
    (error,) = client.framer.feed(data)
    assert isinstance(error, Message) and error.result_code == 5005
    assert error.find("Failed-AVP") is not None
    assert not client.closed and ocs.server.open_peers() == [CLIENT_HOST]


def test_a_client_connecting_again_replaces_its_old_connection() -> None:
    """A second CER from the same Origin-Host wins; the old connection is dropped."""
    ocs = Ocs()
    old = ocs.client(40000)
    old.open()
    new = ocs.client(40001)
    new.open()
    assert old.closed and not new.closed
    old.lose()
    assert ocs.server.open_peers() == [CLIENT_HOST]
    cca = new.exchange(ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30)))
    assert cca.result_code == 2001


# -- RAR and ASR --


def test_top_up_sends_rar_and_collects_the_raa() -> None:
    """A top-up RARs the subscriber's open session; the RAA's 2002 is reported."""
    ocs = Ocs()
    client = opened_call(ocs)
    change = ocs.operator.top_up("tel:+1-555-0100", 60)
    assert pending(change)
    (rar,) = client.received()
    assert (rar.name, rar.session_id) == ("RAR", "call-1")
    assert rar.get("Re-Auth-Request-Type") == 0
    assert rar.get("Auth-Application-Id") == APP_CREDIT_CONTROL
    assert (rar.get("Destination-Host"), rar.origin_host) == (CLIENT_HOST, OCS_HOST)
    client.send(make_answer(rar, 2002, origin_host=CLIENT_HOST, origin_realm="lab.example"))
    result = result_of(change)
    assert (result.subscriber, result.kind, result.balance) == (ALICE_KEY, "seconds", 135)
    assert dict(result.reauthorized) == {"call-1": 2002}
    assert "RAR call-1: 2002" in str(result)
    # The client's CCR-U after the RAR gets the new credit.
    cca = client.exchange(ccr(CC_UPDATE_REQUEST, 1, mscc(requested=200, used=5)))
    assert (
        cca.get_path("Multiple-Services-Credit-Control", "Granted-Service-Unit", "CC-Time") == 130
    )


def test_asr_is_sent_to_the_session_and_its_answer_returned() -> None:
    """Operator abort: ASR to the client that opened the session; ASA 2001 comes back."""
    ocs = Ocs()
    client = opened_call(ocs)
    aborted = ocs.operator.abort("call-1")
    (asr,) = client.received()
    assert (asr.name, asr.session_id, asr.get("Destination-Host")) == ("ASR", "call-1", CLIENT_HOST)
    client.send(make_answer(asr, 2001, origin_host=CLIENT_HOST, origin_realm="lab.example"))
    assert result_of(aborted) == 2001
    assert "call-1" in ocs.handler.registry  # until the client's CCR-T


def test_rar_answered_unknown_session_forgets_the_session() -> None:
    """RAA 5002: the client no longer has the session; the OCS stops listing it."""
    ocs = Ocs()
    client = opened_call(ocs)
    reauth = ocs.operator.reauth("call-1")
    (rar,) = client.received()
    client.send(make_answer(rar, 5002, origin_host=CLIENT_HOST, origin_realm="lab.example"))
    assert result_of(reauth) == 5002
    assert "call-1" not in ocs.handler.registry


def test_rar_without_answer_times_out() -> None:
    """No RAA within tx_timeout fails the request with AnswerTimeout."""
    ocs = Ocs(tx_timeout=4.0)
    client = opened_call(ocs)
    reauth = ocs.server.send_rar("call-1")
    assert len(client.received()) == 1
    ocs.advance(3.9)
    assert pending(reauth)
    ocs.advance(0.2)
    assert failure_of(reauth).check(AnswerTimeout)


def test_rar_pending_when_the_connection_drops_fails() -> None:
    """The connection closes before the RAA: ConnectionClosed; later RARs: PeerUnavailable."""
    ocs = Ocs()
    client = opened_call(ocs)
    reauth = ocs.server.send_rar("call-1")
    client.lose()
    assert failure_of(reauth).check(ConnectionClosed)
    assert ocs.server.open_peers() == []
    assert failure_of(ocs.server.send_asr("call-1")).check(PeerUnavailable)
    change = result_of(ocs.operator.top_up(ALICE, 5))
    assert str(change.reauthorized["call-1"]).startswith("PeerUnavailable")


def test_rar_to_an_unknown_session_fails_at_once() -> None:
    """A Session-Id the OCS does not hold open: SessionNotFound."""
    ocs = Ocs()
    assert failure_of(ocs.server.send_rar("nobody")).check(SessionNotFound)


def test_cancelling_a_rar_forgets_it() -> None:
    """A cancelled RAR leaves nothing pending; its late answer is ignored."""
    ocs = Ocs()
    client = opened_call(ocs)
    reauth = ocs.server.send_rar("call-1")
    (rar,) = client.received()
    reauth.cancel()
    failure_of(reauth)
    client.send(make_answer(rar, 2002, origin_host=CLIENT_HOST, origin_realm="lab.example"))
    assert not client.closed


# -- supervision and shutdown --


def test_sweeper_releases_a_silent_session() -> None:
    """A client that vanished: after validity + grace the reservation is back, logged EXPIRE."""
    ocs = Ocs(sweep_interval=5.0)
    opened_call(ocs)
    ocs.server.start_sweeper()
    ocs.advance(60 + 10 - 1)
    assert "call-1" in ocs.handler.registry
    ocs.advance(10)
    assert "call-1" not in ocs.handler.registry
    snapshot = result_of(ocs.backend.get_account(ALICE))
    assert snapshot is not None and snapshot.reserved["seconds"] == 0
    assert ocs.ledger.read()[-1].request_type == "EXPIRE"
    ocs.server.stop_sweeper()
    assert len(ocs.driver.wheel) == 0


def test_disconnect_all_sends_dpr_and_waits_for_the_close() -> None:
    """Shutdown: DPR (REBOOTING) to each client; done once its connection is gone."""
    ocs = Ocs()
    client = ocs.client()
    client.open()
    done = ocs.server.disconnect_all(timeout=5)
    (dpr,) = client.received()
    assert (dpr.name, dpr.get("Disconnect-Cause")) == ("DPR", 0)
    assert pending(done)
    client.send(make_answer(dpr, 2001, origin_host=CLIENT_HOST, origin_realm="lab.example"))
    assert client.closed
    client.lose()
    assert result_of(done) is None


def test_disconnect_all_gives_up_after_the_timeout() -> None:
    """A client that never answers the DPR is dropped after the timeout."""
    ocs = Ocs()
    client = ocs.client()
    client.open()
    done = ocs.server.disconnect_all(timeout=2)
    ocs.advance(2.1)
    assert result_of(done) is None
    assert client.closed


def test_disconnect_all_without_clients_is_immediate() -> None:
    """Nothing connected: shutdown needs no wait."""
    assert result_of(Ocs().server.disconnect_all()) is None


# -- the operator --


def test_operator_shows_the_account_and_its_sessions() -> None:
    """show: balances, what is reserved and available, the open sessions."""
    ocs = Ocs()
    opened_call(ocs)
    view = result_of(ocs.operator.show("tel:+1-555-0100"))
    assert view.account.balances["seconds"] == 75
    assert [s.session_id for s in view.sessions] == ["call-1"]
    text = str(view)
    assert "seconds: balance 75, reserved 30, available 45" in text
    assert "session call-1 from b2bua.lab.example" in text
    assert [s.session_id for s in ocs.operator.sessions()] == ["call-1"]
    assert ocs.operator.sessions("+19") == []


def test_operator_balance_changes_and_accounts() -> None:
    """set_balance sends no RAR by default; unknown subscribers and kinds are refused."""
    ocs = Ocs()
    client = opened_call(ocs)
    change = result_of(ocs.operator.set_balance(ALICE, 10))
    assert (change.balance, dict(change.reauthorized)) == (10, {})
    assert client.received() == []
    assert failure_of(ocs.operator.top_up("+1999", 5)).check(UnknownSubscriberError)
    assert failure_of(ocs.operator.top_up(ALICE, 5, "euros")).check(ValueError)
    assert failure_of(ocs.operator.show("+1999")).check(UnknownSubscriberError)
    result_of(ocs.operator.create_account("sip:carol@lab.example", events=3))
    assert failure_of(ocs.operator.create_account("sip:carol@lab.example")).check(
        AccountExistsError
    )
    assert result_of(ocs.operator.subscribers()) == [ALICE_KEY, "sip:carol@lab.example"]
    assert set(ocs.operator.namespace()) >= {"ocs", "top_up", "show", "reauth", "abort"}


def test_operator_without_a_server_only_changes_balances() -> None:
    """An Operator with no signaller tops up without RARs and refuses to signal."""
    ocs = Ocs()
    operator = Operator(ocs.backend, ocs.handler.registry)
    assert result_of(operator.top_up(ALICE, 5)).balance == 80
    assert failure_of(operator.reauth("call-1")).check(RuntimeError)
    assert failure_of(operator.abort("call-1")).check(RuntimeError)


# -- the service --


def service_config(tmp_path: Path, extra: str = "") -> Any:
    accounts = tmp_path / "accounts.json"
    accounts.write_text('{"accounts": [{"subscriber": "+15550100", "seconds": 75}]}')
    text = (
        f"[ocs]\nlisten = aaa://127.0.0.1:3999\naccounts = {accounts}\n"
        f"ledger = {tmp_path / 'ledger.jsonl'}\n{extra}"
    )
    return parse_config_text(text, str(tmp_path / "ocs.conf"))


def test_service_provisions_listens_answers_and_stops(tmp_path: Path) -> None:
    """OcsService: accounts loaded, port 3999 on 127.0.0.1, CCAs, ledger written, DPR."""
    reactor = MemoryReactorClock()
    driver = WheelDriver(TimerWheel(), reactor)
    service = make_ocs_service(service_config(tmp_path), reactor, driver)
    service.startService()
    assert result_of(service.ready) is service
    ((port, factory, _backlog, interface),) = reactor.tcpServers
    assert (port, interface) == (3999, "127.0.0.1")
    assert isinstance(factory, OcsServer)
    client = Client(factory)
    client.open()
    cca = client.exchange(ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30)))
    assert cca.result_code == 2001 and cca.origin_host == "ocs.lab.example"
    assert service.operator is not None
    stopped = service.stopService()
    (dpr,) = client.received()
    assert dpr.name == "DPR"
    client.lose()
    assert result_of(stopped) is None
    (entry,) = read_ledger(tmp_path / "ledger.jsonl")
    assert (entry.subscriber, entry.granted) == (ALICE_KEY, 30)


def test_service_start_failure_is_raised(tmp_path: Path) -> None:
    """A port that cannot be bound fails startService itself (twistd exits 1)."""

    class Busy(MemoryReactorClock):
        def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
            raise CannotListenError(interface, port, OSError("in use"))

    reactor = Busy()
    service = OcsService(service_config(tmp_path).ocs, reactor, WheelDriver(TimerWheel(), reactor))
    with pytest.raises(CannotListenError):
        service.startService()


def test_protocol_is_the_diameter_protocol() -> None:
    """The factory builds the shared DiameterProtocol, owned by the server until its CER."""
    ocs = Ocs()
    protocol = ocs.server.buildProtocol(None)
    assert isinstance(protocol, DiameterProtocol) and protocol.owner is ocs.server


def in_reactor(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, Deferred[None]]:
    """pytest_twisted.ensureDeferred, typed: the coroutine test runs in the reactor."""
    wrapped: Callable[P, Deferred[None]] = pytest_twisted.ensureDeferred(test)
    return wrapped


@in_reactor
@pytest.mark.integration
async def test_service_on_redis_keeps_the_balances_it_finds(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """backend = redis: a restarted OCS creates missing accounts only; balances survive."""
    url = f"redis://{redis_server.host}:{redis_server.port}/0"
    extra = f"backend = redis\nredis_url = {url}\nkey_prefix = test:{uuid4().hex[:8]}:\n"
    config = service_config(tmp_path, extra)
    reactor = MemoryReactorClock()
    first = make_ocs_service(config, reactor, WheelDriver(TimerWheel(), reactor))
    first.startService()
    await first.ready
    assert first.operator is not None
    change = await first.operator.top_up(ALICE, 25)
    assert change.balance == 100
    await first.stopService()
    second = make_ocs_service(config, reactor, WheelDriver(TimerWheel(), reactor))
    second.startService()
    await second.ready
    assert second.operator is not None
    view = await second.operator.show(ALICE)
    assert view.account.balances["seconds"] == 100
    await second.stopService()
