"""DiameterProtocol: framing, dictionary checks, RFC 6733 7.2 error answers, no escapes."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure

from b2bua.diameter.avp import Avp
from b2bua.diameter.dictionary import (
    DIAMETER_COMMAND_UNSUPPORTED,
    DIAMETER_INVALID_AVP_LENGTH,
    DIAMETER_MISSING_AVP,
    DIAMETER_UNSUPPORTED_VERSION,
)
from b2bua.diameter.errors import DecodeError
from b2bua.diameter.message import FLAG_ERROR, Message, MessageFramer, decode
from b2bua.diameter.protocol import DiameterProtocol, LocalIdentity, ProtocolStats
from tests.diameter import factories

IDENTITY = LocalIdentity("b2bua.example.com", "example.com")


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """Every twisted.logger event published during the test."""
    seen: list[dict[str, Any]] = []
    observer = cast(ILogObserver, seen.append)
    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


@dataclass
class Owner:
    """Records what the protocol reports."""

    made: int = 0
    messages: list[Message] = field(default_factory=list)
    rejected: list[tuple[DecodeError, Message | None, bool]] = field(default_factory=list)
    lost: list[Failure] = field(default_factory=list)
    explode: bool = False

    def connection_made(self, conn: DiameterProtocol) -> None:
        self.made += 1

    def message_received(self, conn: DiameterProtocol, message: Message) -> None:
        if self.explode:
            raise RuntimeError("owner bug")
        self.messages.append(message)

    def message_rejected(
        self, conn: DiameterProtocol, error: DecodeError, message: Message | None, answered: bool
    ) -> None:
        self.rejected.append((error, message, answered))

    def connection_lost(self, conn: DiameterProtocol, reason: Failure) -> None:
        self.lost.append(reason)


def connected(owner: Owner | None = None) -> tuple[DiameterProtocol, StringTransport, Owner]:
    owner = owner or Owner()
    protocol = DiameterProtocol(owner, IDENTITY, ProtocolStats(), label="test")
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, owner


def written(transport: StringTransport) -> list[Message]:
    """Decode everything the protocol wrote, and clear it."""
    out = MessageFramer().feed(transport.value())
    transport.clear()
    assert all(isinstance(item, Message) for item in out)
    return [item for item in out if isinstance(item, Message)]


def test_good_message_reaches_owner_in_pieces() -> None:
    """A CCR split over several reads is framed, checked and delivered once."""
    protocol, transport, owner = connected()
    data = factories.ccr_initial().encode()
    for start in range(0, len(data), 7):
        protocol.dataReceived(data[start : start + 7])
    assert owner.made == 1
    assert [m.name for m in owner.messages] == ["CCR"]
    assert owner.messages[0].session_id == factories.SESSION_ID
    assert transport.value() == b""
    assert protocol.stats.messages_received == 1


def test_two_messages_in_one_read_are_both_delivered() -> None:
    """Back-to-back messages in one segment are delivered in order."""
    protocol, _transport, owner = connected()
    protocol.dataReceived(factories.dwr().encode() + factories.ccr_initial().encode())
    assert [m.name for m in owner.messages] == ["DWR", "CCR"]


def test_request_missing_avp_gets_5005_with_failed_avp() -> None:
    """A CCR without Service-Context-Id is answered 5005 with Failed-AVP, never delivered."""
    protocol, transport, owner = connected()
    ccr = factories.ccr_initial()
    ccr.avps = [a for a in ccr.avps if a.name != "Service-Context-Id"]
    protocol.dataReceived(ccr.encode())
    (answer,) = written(transport)
    assert answer.name == "CCA" and not answer.is_request
    assert answer.hop_by_hop == ccr.hop_by_hop and answer.end_to_end == ccr.end_to_end
    assert answer.result_code == DIAMETER_MISSING_AVP
    assert not answer.flags & FLAG_ERROR  # 5xxx: no E bit (7.1.5)
    assert answer.origin_host == IDENTITY.origin_host
    assert answer.session_id == factories.SESSION_ID
    failed = answer.find("Failed-AVP")
    assert failed is not None and failed.find("Service-Context-Id") is not None
    assert owner.messages == []
    ((error, message, answered),) = owner.rejected
    assert answered and error.result_code == DIAMETER_MISSING_AVP and message is not None
    assert not transport.disconnecting


def test_unknown_command_gets_3001_with_e_bit() -> None:
    """A request for a command the dictionary does not know gets 3001 with the E bit."""
    protocol, transport, _owner = connected()
    unknown = Message(9999, 4, 0x80, [("Origin-Host", "x.example.net")], hop_by_hop=5)
    protocol.dataReceived(unknown.encode())
    (answer,) = written(transport)
    assert answer.result_code == DIAMETER_COMMAND_UNSUPPORTED
    assert answer.is_error and answer.hop_by_hop == 5


def test_bad_avp_length_is_answered_from_the_header() -> None:
    """A request whose AVP cannot be decoded is answered 5014 using only its header."""
    protocol, transport, owner = connected()
    good = factories.dwr(hop_by_hop=9).encode()
    # Origin-State-Id (Unsigned32) is the last AVP: make its length 10 (padded to 12).
    bad = bytearray(good[:-12])
    bad += struct.pack(">IBBH", 278, 0x40, 0, 10) + b"\x00\x00\x00\x01"
    bad[1:4] = len(bad).to_bytes(3, "big")
    protocol.dataReceived(bytes(bad))
    (answer,) = written(transport)
    assert answer.hop_by_hop == 9 and answer.result_code == DIAMETER_INVALID_AVP_LENGTH
    assert owner.rejected[0][2] is True


def test_malformed_answer_is_reported_not_answered() -> None:
    """An answer failing the dictionary is never answered (7.2) but reported to the owner."""
    protocol, transport, owner = connected()
    cca = factories.cca_grant(factories.ccr_initial())
    cca.avps = [a for a in cca.avps if a.name != "CC-Request-Number"]
    protocol.dataReceived(cca.encode())
    assert transport.value() == b""
    ((error, message, answered),) = owner.rejected
    assert not answered and error.result_code == DIAMETER_MISSING_AVP
    assert message is not None and message.hop_by_hop == cca.hop_by_hop
    assert protocol.stats.answers_rejected == 1


def test_bad_version_closes_the_connection_after_answering() -> None:
    """A header with version 2 loses framing: answered 5011 from the header, then closed."""
    protocol, transport, owner = connected()
    data = bytearray(factories.dwr(hop_by_hop=3).encode())
    data[0] = 2
    protocol.dataReceived(bytes(data))
    (answer,) = written(transport)
    assert answer.result_code == DIAMETER_UNSUPPORTED_VERSION and answer.hop_by_hop == 3
    assert transport.disconnecting
    assert owner.rejected[0][0].fatal
    protocol.dataReceived(factories.dwr().encode())  # ignored once closing
    assert owner.messages == [] and transport.value() == b""


def test_garbage_shorter_than_a_header_closes_without_answer() -> None:
    """Bytes that are not Diameter at all close the connection without an answer."""
    protocol, transport, owner = connected()
    protocol.dataReceived(b"GET / HTTP/1.1\r\n")
    assert transport.value() == b""
    assert transport.disconnecting
    assert owner.rejected and not owner.rejected[0][2]
    assert protocol.stats.framing_errors == 1


def test_owner_exception_aborts_and_never_reaches_the_reactor(events: list[dict[str, Any]]) -> None:
    """An exception in the owner is logged with its traceback, counted, and aborts."""
    protocol, transport, _owner = connected(Owner(explode=True))
    protocol.dataReceived(factories.ccr_initial().encode())  # must not raise
    assert transport.disconnected
    assert protocol.stats.owner_failures == 1
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(RuntimeError)


def test_connection_lost_reported_once() -> None:
    """connectionLost reaches the owner once; later writes are dropped."""
    protocol, transport, owner = connected()
    protocol.connectionLost(Failure(ConnectionError("gone")))
    protocol.connectionLost(Failure(ConnectionError("again")))
    assert len(owner.lost) == 1
    protocol.send_message(factories.dwr())
    assert transport.value() == b""
    assert protocol.closing


def test_error_answer_echoes_the_required_answer_avps() -> None:
    """A 5xxx CCA echoes CC-Request-Type/-Number so that it is itself a valid CCA."""
    protocol, transport, _owner = connected()
    ccr = factories.ccr_initial()
    ccr.avps = [a for a in ccr.avps if a.name != "Service-Context-Id"] + [
        Avp.new("Origin-State-Id", 1)
    ]
    protocol.dataReceived(ccr.encode())
    (answer,) = written(transport)
    assert answer.get("CC-Request-Type") == 1 and answer.get("CC-Request-Number") == 0
    decode(answer.encode())  # it is well formed on the wire
