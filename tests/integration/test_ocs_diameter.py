"""The real ``twistd ocs`` on loopback, driven by a Diameter client over a plain socket.

The worked example of the charging reference, message by message: a subscriber with 75 s,
30 s reservations, two overlapping calls. Grants, Final-Unit-Indication (or 4012) and the
ledger the process writes are checked; 75 s are billed and nothing stays reserved. The
OCS does not care about wall-clock time between requests (it only rates what is reported),
so the example runs as fast as the messages go.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from b2bua.diameter.dictionary import (
    APP_CREDIT_CONTROL,
    CC_INITIAL_REQUEST,
    CC_TERMINATION_REQUEST,
    CC_UPDATE_REQUEST,
)
from b2bua.diameter.message import Message, MessageFramer, check_command
from b2bua.ocs.ledger import billed, read_ledger
from tests.diameter import factories
from tests.support.daemon import Daemon, start_plugin
from tests.support.ports import free_port
from tests.support.tshark import Capture

pytestmark = pytest.mark.integration

SUBSCRIBER = "+15550100"
CLIENT_HOST, CLIENT_REALM = "b2bua.lab.example", "lab.example"
WAIT = 10.0  # bound on every wait for the OCS


class DiameterClient:
    """A minimal synchronous Diameter client: one TCP connection, one request at a time."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.framer = MessageFramer()
        self.hop_by_hop = 0x1000

    def request(self, message: Message) -> Message:
        """Send `message` and return the answer with its hop-by-hop id, checked."""
        self.hop_by_hop += 1
        message.hop_by_hop = message.end_to_end = self.hop_by_hop
        self.sock.sendall(message.encode())
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            data = self.sock.recv(65536)
            assert data, "the OCS closed the connection"
            for item in self.framer.feed(data):
                assert isinstance(item, Message), item
                if not item.is_request and item.hop_by_hop == self.hop_by_hop:
                    check_command(item)
                    return item
        raise AssertionError(f"no answer to {message.name} within {WAIT}s")

    def close(self) -> None:
        self.sock.close()


def ccr(
    request_type: int,
    number: int,
    session: str,
    *,
    requested: int | None = None,
    used: int | None = None,
) -> Message:
    service: list[Any] = []
    if requested is not None:
        service.append(("Requested-Service-Unit", [("CC-Time", requested)]))
    if used is not None:
        service.append(("Used-Service-Unit", [("CC-Time", used)]))
    service += [("Service-Identifier", 1000), ("Rating-Group", 100)]
    return Message.request(
        "Credit-Control",
        avps=[
            ("Session-Id", session),
            ("Origin-Host", CLIENT_HOST),
            ("Origin-Realm", CLIENT_REALM),
            ("Destination-Realm", "lab.example"),
            ("Auth-Application-Id", APP_CREDIT_CONTROL),
            ("Service-Context-Id", "32260@3gpp.org"),
            ("CC-Request-Type", request_type),
            ("CC-Request-Number", number),
            (
                "Subscription-Id",
                [("Subscription-Id-Type", 0), ("Subscription-Id-Data", "15550100")],
            ),
            ("Multiple-Services-Indicator", 1),
            ("Multiple-Services-Credit-Control", service),
        ],
    )


def grant_of(cca: Message) -> tuple[int | None, int | None, bool]:
    """(command Result-Code, CC-Time granted, final) of a CCA."""
    granted = cca.get_path("Multiple-Services-Credit-Control", "Granted-Service-Unit", "CC-Time")
    final = cca.find_path("Multiple-Services-Credit-Control", "Final-Unit-Indication")
    return cca.result_code, granted, final is not None


class Ocs:
    """A running ``twistd ocs`` with its files."""

    def __init__(self, tmp_path: Path, style: str) -> None:
        self.style = style
        self.port = free_port()
        self.ledger = tmp_path / "ledger.jsonl"
        accounts = tmp_path / "accounts.json"
        accounts.write_text(
            json.dumps({"accounts": [{"subscriber": SUBSCRIBER, "seconds": 75, "events": 1}]})
        )
        config = tmp_path / "ocs.conf"
        config.write_text(
            "[ocs]\n"
            f"listen = aaa://127.0.0.1:{self.port}\n"
            f"accounts = {accounts}\n"
            f"ledger = {self.ledger}\n"
            f"final_unit_style = {style}\n"
        )
        self.daemon: Daemon = start_plugin("ocs", config, log_path=tmp_path / "ocs.log")
        self.daemon.wait_for_log("ocs started", timeout=WAIT * 3)

    def connect(self) -> DiameterClient:
        client = DiameterClient(self.port)
        cea = client.request(factories.cer(origin_host=CLIENT_HOST, origin_realm=CLIENT_REALM))
        assert cea.result_code == 2001
        assert cea.origin_host == "ocs.lab.example"
        return client


@pytest.fixture(params=["fui", "4012"])
def ocs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ocs]:
    """The OCS process, in each final-unit style; stopped (and its log checked) after."""
    running = Ocs(tmp_path, request.param)
    try:
        yield running
    finally:
        running.daemon.stop()
    assert "Traceback" not in running.daemon.log_text()


def test_worked_example_over_diameter(ocs: Ocs) -> None:
    """75 s, 30 s slices, two calls: the grants of the reference's table; 75 s billed."""
    run_worked_example(ocs)
    entries = read_ledger(ocs.ledger)
    assert billed(entries, "15550100", "seconds") == 75
    assert (entries[-1].balance_after, entries[-1].reserved_after) == (0, 0)
    assert sum(entry.duplicate for entry in entries) == 1
    assert {entry.session_id for entry in entries} == {"call-1", "call-2"}


def test_wireshark_finds_nothing_wrong(tmp_path: Path) -> None:
    """Wireshark's dissector, on a capture of the worked example, flags no message."""
    ocs = Ocs(tmp_path, "fui")
    capture = Capture(tmp_path, ocs.port)
    try:
        capture.start()
        try:
            run_worked_example(ocs)
        finally:
            capture.stop()
    finally:
        ocs.daemon.stop()
    messages = capture.dissect()
    assert len(messages) == 2 * 9, messages  # CER, 7 CCRs, DPR and their answers
    answers = [message[0] for message in messages if not message[1]]
    assert answers == [257, 272, 272, 272, 272, 272, 272, 272, 282]
    assert capture.problems() == [], capture.expert_summary()


def run_worked_example(ocs: Ocs) -> None:
    """The table of the reference, message by message, over one connection."""
    style_4012 = ocs.style == "4012"
    client = ocs.connect()
    try:
        # t = 0: call 1 answered.
        cca = client.request(ccr(CC_INITIAL_REQUEST, 0, "call-1", requested=30))
        assert grant_of(cca) == (2001, 30, False)
        # t = 30: call 1's slice used up.
        cca = client.request(ccr(CC_UPDATE_REQUEST, 1, "call-1", requested=30, used=30))
        assert grant_of(cca) == (2001, 30, False)
        # t = 40: call 2 answered; only 45 - 30 = 15 s are free.
        cca = client.request(ccr(CC_INITIAL_REQUEST, 0, "call-2", requested=30))
        assert grant_of(cca) == (2001, 15, False)
        # t = 50: call 1 hangs up after 20 s of its second slice.
        cca = client.request(ccr(CC_TERMINATION_REQUEST, 2, "call-1", used=20))
        assert grant_of(cca) == (2001, None, False)
        # t = 55: call 2's 15 s used up; 10 s left in all.
        cca = client.request(ccr(CC_UPDATE_REQUEST, 1, "call-2", requested=30, used=15))
        assert grant_of(cca) == (2001, 10, not style_4012)
        # A retransmission (T flag) of that CCR-U is answered alike, nothing debited twice.
        again = ccr(CC_UPDATE_REQUEST, 1, "call-2", requested=30, used=15)
        again.flags |= 0x10
        assert grant_of(client.request(again)) == (2001, 10, not style_4012)
        # t = 65: call 2 has used its last 10 s and is ended.
        number = 2
        if style_4012:
            cca = client.request(ccr(CC_UPDATE_REQUEST, 2, "call-2", requested=30, used=10))
            assert grant_of(cca) == (4012, None, False)
            number, last_used = 3, 0
        else:
            last_used = 10
        cca = client.request(ccr(CC_TERMINATION_REQUEST, number, "call-2", used=last_used))
        assert grant_of(cca) == (2001, None, False)
        dpa = client.request(
            Message.request(
                "Disconnect-Peer",
                avps=[
                    ("Origin-Host", CLIENT_HOST),
                    ("Origin-Realm", CLIENT_REALM),
                    ("Disconnect-Cause", 0),
                ],
            )
        )
        assert dpa.result_code == 2001
    finally:
        client.close()


def test_refusals_over_diameter(ocs: Ocs) -> None:
    """Unknown subscriber 5030, unknown session 5002, and a malformed CCR's 5005."""
    client = ocs.connect()
    try:
        nobody = ccr(CC_INITIAL_REQUEST, 0, "x-1", requested=30)
        for avp in nobody.avps:
            if avp.name == "Subscription-Id":
                avp.value = [("Subscription-Id-Type", 0), ("Subscription-Id-Data", "+19999")]
        assert client.request(nobody).result_code == 5030
        assert client.request(ccr(CC_UPDATE_REQUEST, 1, "x-2", used=1)).result_code == 5002
        broken = ccr(CC_INITIAL_REQUEST, 0, "x-3", requested=30)
        broken.avps = [a for a in broken.avps if a.name != "Service-Context-Id"]
        client.sock.sendall(broken.encode())
        framer = client.framer
        deadline = time.monotonic() + WAIT
        answers: list[Any] = []
        while not answers and time.monotonic() < deadline:
            answers = framer.feed(client.sock.recv(65536))
        (error,) = answers
        assert isinstance(error, Message)
        assert error.result_code == 5005 and error.find("Failed-AVP") is not None
    finally:
        client.close()
