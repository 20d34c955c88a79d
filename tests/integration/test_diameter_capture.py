"""Wireshark's Diameter dissector finds nothing wrong with what b2bua puts on the wire.

Two of our DiameterServices talk over loopback (a client, and a server that accepts it
on its listener) while tshark captures the port: CER/CEA, a full CCR-I/CCA (TS 32.299
IMS-Information, MSCC), RAR/RAA, an ASR answered 3001 with the E bit, DWR/DWA, and
DPR/DPA on stop.  The capture is then dissected with the port decoded as
Diameter; any malformed packet or expert info of warning severity fails the test.
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
    CMD_ABORT_SESSION,
    CMD_CAPABILITIES_EXCHANGE,
    CMD_CREDIT_CONTROL,
    CMD_DEVICE_WATCHDOG,
    CMD_DISCONNECT_PEER,
    CMD_RE_AUTH,
    DIAMETER_COMMAND_UNSUPPORTED,
    DIAMETER_SUCCESS,
)
from b2bua.diameter.message import Message, make_answer
from b2bua.diameter.service import DiameterService
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerWheel
from tests.diameter import factories
from tests.support.freediameter import free_tcp_port
from tests.support.tshark import Capture

pytestmark = pytest.mark.integration

P = ParamSpec("P")
CLIENT = factories.CLIENT_HOST
SERVER = factories.OCS_HOST


def in_reactor(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, Deferred[None]]:
    """pytest_twisted.ensureDeferred, typed: the coroutine test runs in the reactor."""
    wrapped: Callable[P, Deferred[None]] = pytest_twisted.ensureDeferred(test)
    return wrapped


def the_reactor() -> Any:
    from twisted.internet import reactor  # noqa: TID251 - pytest-twisted's running reactor

    return reactor


async def eventually(check: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Poll `check` in the reactor until it is true, for at most `timeout` seconds."""
    reactor = the_reactor()
    deadline = reactor.seconds() + timeout
    while not check():
        if reactor.seconds() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await deferLater(reactor, 0.05, lambda: None)


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[Capture]:
    """tshark capturing a free loopback port."""
    cap = Capture(tmp_path, free_tcp_port())
    cap.start()
    yield cap
    cap.stop()


def service(text: str, settings: DiameterSettings) -> tuple[DiameterService, WheelDriver]:
    reactor = the_reactor()
    driver = WheelDriver(TimerWheel(resolution=0.01), reactor)
    peers = parse_config_text(text).peers
    node = DiameterService(settings, peers, reactor, driver, rand=lambda: 0.0)
    return node, driver


@in_reactor
async def test_wireshark_finds_no_malformed_or_wrong_length_message(capture: Capture) -> None:
    """Every message kind we send dissects cleanly: no malformed packet, no warning."""
    port = capture.port
    server, server_driver = service(
        f"[peer:b2bua]\nuri = aaa://127.0.0.1:1\nhost = {CLIENT}\naccept_incoming = yes\n",
        DiameterSettings(
            origin_host=SERVER,
            origin_realm=factories.OCS_REALM,
            destination_realm=factories.CLIENT_REALM,
            listen=parse_config_text(
                f"[diameter]\nlisten = aaa://127.0.0.1:{port}\n"
            ).diameter.listen,
        ),
    )
    client, client_driver = service(
        f"[peer:ocs]\nuri = aaa://127.0.0.1:{port}\nhost = {SERVER}\n",
        DiameterSettings(
            origin_host=CLIENT,
            origin_realm=factories.CLIENT_REALM,
            destination_realm=factories.OCS_REALM,
            watchdog_interval=6.0,
        ),
    )
    server.register_handler(
        APP_CREDIT_CONTROL, CMD_CREDIT_CONTROL, lambda r, p: factories.cca_grant(r)
    )
    client.register_handler(
        APP_CREDIT_CONTROL,
        CMD_RE_AUTH,
        lambda r, p: make_answer(r, DIAMETER_SUCCESS, [("Auth-Application-Id", 4)]),
    )
    server.startService()
    client.startService()
    try:
        await eventually(lambda: client.peer_status()[0].usable, "client open")
        await eventually(lambda: server.peer_status()[0].usable, "server open")
        request = factories.ccr_initial()
        request.hop_by_hop = request.end_to_end = 0
        cca = await client.send_request(request)
        assert cca.result_code == DIAMETER_SUCCESS
        raa = await server.send_request(factories.rar(hop_by_hop=0))
        assert raa.result_code == DIAMETER_SUCCESS
        asa: Message = await server.send_request(factories.asr(hop_by_hop=0))
        assert asa.result_code == DIAMETER_COMMAND_UNSUPPORTED and asa.is_error
        # rand=0: the client's DWR (its Tw 6 s, the server's 30 s) leaves 4 s after the CEA
        await eventually(lambda: client.peer_status()[0].last_dwa, "DWR/DWA", 8)
    finally:
        await client.stopService()
        await server.stopService()
        client_driver.stop()
        server_driver.stop()
    capture.stop()

    problems = capture.problems()
    assert problems == [], "\n".join(problems) + "\n" + capture.expert_summary()
    messages = capture.dissect()
    seen = {(code, request) for code, request, _error in messages}
    for code in (
        CMD_CAPABILITIES_EXCHANGE,
        CMD_CREDIT_CONTROL,
        CMD_RE_AUTH,
        CMD_ABORT_SESSION,
        CMD_DEVICE_WATCHDOG,
        CMD_DISCONNECT_PEER,
    ):
        assert (code, True) in seen and (code, False) in seen, (code, messages)
    assert (CMD_ABORT_SESSION, False, True) in messages  # the 3001 ASA has the E bit
    assert "2001" in capture.field_values("diameter.Result-Code")
    assert "IMS-Charging-Identifier" not in capture.field_values("_ws.expert.message")
