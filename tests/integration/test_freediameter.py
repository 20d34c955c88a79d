"""b2bua's Diameter layer against a real freeDiameter on loopback.

freeDiameter (Debian's ``freediameter``) runs with the RFC 4006 and 3GPP dictionaries
(dict_dcca, dict_dcca_3gpp) and dbg_msg_dumps, which parses every message it sends or
receives against those dictionaries and logs ``PARSING ERROR`` for anything it cannot
accept.  Our nodes are let in by acl_wl (cleartext, ``ALLOW_IPSEC``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, ParamSpec

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from b2bua.config import DiameterSettings, parse_config_text
from b2bua.diameter.dictionary import (
    APP_CREDIT_CONTROL,
    CMD_CREDIT_CONTROL,
    DIAMETER_SUCCESS,
    DIAMETER_UNABLE_TO_DELIVER,
)
from b2bua.diameter.message import Message
from b2bua.diameter.service import DiameterService, make_diameter_service
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerWheel
from tests.diameter import factories
from tests.support.freediameter import TLS_TEARDOWN, FreeDiameter

pytestmark = pytest.mark.integration

P = ParamSpec("P")
CLIENT = factories.CLIENT_HOST  # b2bua.example.com, realm example.com
SERVER = factories.OCS_HOST  # ocs.example.net, realm example.net
FD = "fd.localdomain"


def in_reactor(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, Deferred[None]]:
    """pytest_twisted.ensureDeferred, typed: the coroutine test runs in the reactor."""
    wrapped: Callable[P, Deferred[None]] = pytest_twisted.ensureDeferred(test)
    return wrapped


def the_reactor() -> Any:
    from twisted.internet import reactor  # noqa: TID251 - pytest-twisted's running reactor

    return reactor


def _run(tmp_path: Path, tw: int) -> Iterator[FreeDiameter]:
    fd = FreeDiameter(
        tmp_path / "fd", identity=FD, allowed=(CLIENT, SERVER), tw=tw, client_name=CLIENT
    )
    fd.workdir.mkdir()
    fd.start()
    yield fd
    fd.stop()


@pytest.fixture
def freediameter(tmp_path: Path) -> Iterator[FreeDiameter]:
    """A freeDiameter relay (Tw 6 s) that lets our client and our test server connect."""
    yield from _run(tmp_path, tw=6)


@pytest.fixture
def quiet_freediameter(tmp_path: Path) -> Iterator[FreeDiameter]:
    """The same with Tw 30 s, so that it leaves the watchdog to us."""
    yield from _run(tmp_path, tw=30)


class Node:
    """One of our DiameterServices on the real reactor, with its own timer wheel."""

    def __init__(
        self,
        origin_host: str,
        origin_realm: str,
        fd: FreeDiameter,
        *,
        jitter: float = 0.0,
        **extra: Any,
    ) -> None:
        reactor = the_reactor()
        config = parse_config_text(
            f"[peer:fd]\nuri = aaa://127.0.0.1:{fd.port}\nhost = {fd.identity}\n"
        )
        settings = DiameterSettings(
            origin_host=origin_host,
            origin_realm=origin_realm,
            destination_realm=factories.OCS_REALM,
            reconnect_interval=1.0,
            **extra,
        )
        self.driver = WheelDriver(TimerWheel(resolution=0.01), reactor)
        self.service = DiameterService(
            settings, config.peers, reactor, self.driver, rand=lambda: jitter
        )
        self.service.startService()

    def status(self) -> Any:
        (status,) = self.service.peer_status()
        return status

    async def stop(self) -> None:
        if self.service.running:
            await self.service.stopService()
        self.driver.stop()


async def eventually(check: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Poll `check` in the reactor until it is true, for at most `timeout` seconds."""
    reactor = the_reactor()
    deadline = reactor.seconds() + timeout
    while not check():
        if reactor.seconds() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await deferLater(reactor, 0.05, lambda: None)


def assert_no_parse_errors(fd: FreeDiameter, ignore: tuple[str, ...] = ()) -> None:
    errors = fd.parse_errors(ignore)
    assert errors == [], "\n".join(errors) + "\n--- log tail ---\n" + fd.log_text()[-4000:]


@in_reactor
async def test_capabilities_exchange_and_dpr(freediameter: FreeDiameter) -> None:
    """Our CER gets freeDiameter's CEA (relay application); our stop sends DPR REBOOTING."""
    node = Node(CLIENT, factories.CLIENT_REALM, freediameter)
    try:
        await eventually(lambda: node.status().usable, "peer open")
        status = node.status()
        assert status.state == "I-Open" and status.origin_host == FD
        assert f"'{CLIENT}'" in freediameter.log_text()
        assert "STATE_OPEN" in freediameter.log_text()
    finally:
        await node.stop()
    await eventually(lambda: "ZOMBIE" in freediameter.log_text(), "connection closed", 5)
    assert "sent a DPR with cause: REBOOTING" in freediameter.log_text()
    assert node.status().state == "Closed"
    assert_no_parse_errors(freediameter)


@in_reactor
async def test_our_dwr_is_answered(quiet_freediameter: FreeDiameter) -> None:
    """With our Tw at its 6 s minimum (jitter -2 s), our DWR gets freeDiameter's DWA."""
    node = Node(CLIENT, factories.CLIENT_REALM, quiet_freediameter, watchdog_interval=6.0)
    try:
        await eventually(lambda: node.status().usable, "peer open")
        await eventually(lambda: node.status().last_dwa is not None, "our DWR answered", 7)
        assert ("RCV", "Device-Watchdog-Request") in quiet_freediameter.exchanged(CLIENT)
        assert ("SND", "Device-Watchdog-Answer") in quiet_freediameter.exchanged(CLIENT)
        assert node.status().watchdog == "OKAY" and node.status().usable
    finally:
        await node.stop()
    assert_no_parse_errors(quiet_freediameter)


@in_reactor
async def test_freediameters_dwr_is_answered(freediameter: FreeDiameter) -> None:
    """freeDiameter's DWR (its Tw 6 s) gets our DWA, and the peer stays OKAY."""
    node = Node(CLIENT, factories.CLIENT_REALM, freediameter)  # our Tw: 30 s
    try:
        await eventually(lambda: node.status().usable, "peer open")
        await eventually(
            lambda: ("RCV", "Device-Watchdog-Answer") in freediameter.exchanged(CLIENT),
            "freeDiameter's DWR answered",
            10,
        )
        assert ("SND", "Device-Watchdog-Request") in freediameter.exchanged(CLIENT)
        assert node.status().last_dwa is None  # traffic from the peer: no need to ask
        assert node.status().watchdog == "OKAY" and node.status().usable
    finally:
        await node.stop()
    assert_no_parse_errors(freediameter)


@in_reactor
async def test_ccr_cca_through_freediameter_relay(freediameter: FreeDiameter) -> None:
    """A full CCR-I goes client -> freeDiameter -> our server and its CCA comes back."""
    server = Node(SERVER, factories.OCS_REALM, freediameter)
    seen: list[Message] = []

    def answer(request: Message, peer: str) -> Message:
        seen.append(request)
        return factories.cca_grant(request, cc_time=60)

    server.service.register_handler(APP_CREDIT_CONTROL, CMD_CREDIT_CONTROL, answer)
    client = Node(CLIENT, factories.CLIENT_REALM, freediameter)
    try:
        await eventually(lambda: server.status().usable and client.status().usable, "both open")
        request = factories.ccr_initial()
        request.hop_by_hop = request.end_to_end = 0
        cca = await client.service.send_request(request)
        assert cca.result_code == DIAMETER_SUCCESS
        assert cca.origin_host == SERVER and cca.session_id == factories.SESSION_ID
        assert (
            cca.get_path("Multiple-Services-Credit-Control", "Granted-Service-Unit", "CC-Time")
            == 60
        )
        assert cca.end_to_end == request.end_to_end
        (relayed,) = seen
        assert relayed.session_id == factories.SESSION_ID
        # RFC 6733 6.1.9: the relay records the peer it received the request from
        assert [a.value for a in relayed.find_all("Route-Record")] == [CLIENT]
        log = freediameter.log_text()
        assert "Credit-Control-Request" in log and "Credit-Control-Answer" in log
        assert "Multiple-Services-Credit-Control" in log and "IMS-Information" in log
    finally:
        await client.stop()
        await server.stop()
    assert_no_parse_errors(freediameter)


@in_reactor
async def test_unroutable_ccr_gets_freediameters_error_answer(freediameter: FreeDiameter) -> None:
    """A CCR for a realm nobody serves comes back as freeDiameter's 3002 with the E bit."""
    client = Node(CLIENT, factories.CLIENT_REALM, freediameter)
    try:
        await eventually(lambda: client.status().usable, "peer open")
        request = factories.ccr_initial()
        request.hop_by_hop = request.end_to_end = 0
        request.avps = [a for a in request.avps if a.name != "Destination-Realm"]
        request.append("Destination-Realm", "nowhere.example")
        answer = await client.service.send_request(request)
        assert answer.is_error and answer.result_code == DIAMETER_UNABLE_TO_DELIVER
        assert answer.origin_host == FD and answer.session_id == factories.SESSION_ID
        assert client.service.stats.answers_rejected == 0  # it passed our dictionary
        assert client.status().usable
    finally:
        await client.stop()


@in_reactor
async def test_tls_with_freediameter(freediameter: FreeDiameter) -> None:
    """aaas:// to freeDiameter's TLS port: both certificates verified, CER/CEA, DPR."""
    pki = freediameter.pki
    assert pki is not None
    reactor = the_reactor()
    config = parse_config_text(
        f"[diameter]\norigin_host = {CLIENT}\ntls_certificate = {pki.client_cert}\n"
        f"tls_private_key = {pki.client_key}\ntls_ca_certificates = {pki.ca}\n"
        f"[peer:fd]\nuri = aaas://127.0.0.1:{freediameter.tls_port}\nhost = {FD}\n"
    )
    driver = WheelDriver(TimerWheel(resolution=0.01), reactor)
    service = make_diameter_service(config, reactor, driver)
    service.startService()
    try:
        await eventually(lambda: service.peer_status()[0].usable, "TLS peer open")
        (link,) = service.links.values()
        transport = link.peer.active_conn.transport  # type: ignore[attr-defined]
        assert transport.getPeerCertificate() is not None
        assert "TLS" in freediameter.log_text()
    finally:
        await service.stopService()
        driver.stop()
    await eventually(lambda: "ZOMBIE" in freediameter.log_text(), "connection closed", 5)
    assert "sent a DPR with cause: REBOOTING" in freediameter.log_text()
    assert_no_parse_errors(freediameter, ignore=TLS_TEARDOWN)
