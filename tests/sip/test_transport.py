"""SIP transports: datagrams and streams reach the sink; bad bytes never reach the reactor."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from b2bua.sip.errors import SipParseError
from b2bua.sip.message import Request, Response
from b2bua.sip.transport import (
    ConnectionTable,
    SipDatagramProtocol,
    Source,
    StreamConnection,
    StreamFactory,
    TransportStats,
)

OPTIONS = (
    b"OPTIONS sip:b2bua@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n"
    b"From: <sip:sbc@127.0.0.1>;tag=a\r\n"
    b"To: <sip:b2bua@127.0.0.1>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)


@dataclass
class Sink:
    messages: list[tuple[Request | Response, Source]] = field(default_factory=list)
    errors: list[tuple[SipParseError, Source]] = field(default_factory=list)

    def message_received(self, message: Request | Response, source: Source) -> None:
        self.messages.append((message, source))

    def parse_failed(self, error: SipParseError, source: Source) -> None:
        self.errors.append((error, source))


class FakeDatagramTransport:
    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append((data, addr))

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "127.0.0.1", 5060)


def datagram_protocol(max_size: int = 65536) -> tuple[SipDatagramProtocol, Sink, TransportStats]:
    sink, stats = Sink(), TransportStats()
    protocol = SipDatagramProtocol(sink, stats, max_size)
    protocol.transport = FakeDatagramTransport()  # type: ignore[assignment]
    protocol.startProtocol()
    return protocol, sink, stats


def test_datagram_is_parsed_and_delivered_with_its_source() -> None:
    """A valid datagram reaches the sink with transport, address and local port."""
    protocol, sink, _ = datagram_protocol()
    protocol.datagramReceived(OPTIONS, ("127.0.0.1", 5070))
    ((message, source),) = sink.messages
    assert isinstance(message, Request) and message.method == "OPTIONS"
    assert source == Source("udp", "127.0.0.1", 5070, local_port=5060)
    assert not source.reliable


def test_garbage_datagram_goes_to_parse_failed_and_is_counted() -> None:
    """Bytes that are not SIP are reported to the sink as a parse error and counted."""
    protocol, sink, stats = datagram_protocol()
    protocol.datagramReceived(b"\x00\xffnot sip at all", ("127.0.0.1", 5070))
    assert sink.messages == [] and len(sink.errors) == 1
    assert stats.datagrams_unparsable == 1


def test_oversized_datagram_is_refused() -> None:
    """A datagram over max_message_size is refused with status hint 513 and counted."""
    protocol, sink, stats = datagram_protocol(max_size=1024)
    protocol.datagramReceived(OPTIONS + b"x" * 2000, ("127.0.0.1", 5070))
    assert sink.errors[0][0].status_hint == 513
    assert stats.datagrams_oversized == 1


def test_crlf_keepalive_datagram_is_ignored() -> None:
    """Bare CRLF datagrams (keep-alive padding) are neither delivered nor errors."""
    protocol, sink, _ = datagram_protocol()
    protocol.datagramReceived(b"\r\n\r\n", ("127.0.0.1", 5070))
    assert sink.messages == [] and sink.errors == []


def stream_table(clock: Clock) -> tuple[ConnectionTable, Sink, list[tuple[str, str, int]]]:
    sink = Sink()
    connects: list[tuple[str, str, int]] = []
    table = ConnectionTable(
        sink=sink,
        stats=TransportStats(),
        max_message_size=4096,
        idle_timeout=30.0,
        clock=clock,
        connect=lambda transport, host, port, factory: connects.append((transport, host, port)),
    )
    return table, sink, connects


def connected(
    table: ConnectionTable, peer: tuple[str, int] = ("127.0.0.1", 40000)
) -> tuple[StreamConnection, StringTransport]:
    connection = StreamFactory(table, "tcp").buildProtocol(None)
    transport = StringTransport(
        peerAddress=IPv4Address("TCP", *peer), hostAddress=IPv4Address("TCP", "127.0.0.1", 5060)
    )
    connection.makeConnection(transport)
    return connection, transport


def test_stream_messages_split_across_reads_are_reassembled() -> None:
    """Two messages arriving in arbitrary chunks are delivered whole, in order."""
    table, sink, _ = stream_table(Clock())
    connection, _ = connected(table)
    data = OPTIONS + OPTIONS.replace(b"c1", b"c2")
    for index in range(0, len(data), 7):
        connection.dataReceived(data[index : index + 7])
    assert [message.call_id for message, _ in sink.messages] == ["c1", "c2"]
    assert sink.messages[0][1].connection is connection and sink.messages[0][1].reliable


def test_keepalive_ping_gets_a_pong() -> None:
    """A CRLFCRLF ping on a stream is answered with CRLF (RFC 5626 §3.5.1)."""
    table, _, _ = stream_table(Clock())
    connection, transport = connected(table)
    connection.dataReceived(b"\r\n\r\n")
    assert transport.value() == b"\r\n"


def test_framing_error_is_reported_then_the_connection_closes() -> None:
    """A stream message without Content-Length is reported and the connection is closed."""
    table, sink, _ = stream_table(Clock())
    connection, transport = connected(table)
    connection.dataReceived(OPTIONS.replace(b"Content-Length: 0\r\n", b""))
    assert len(sink.errors) == 1
    assert transport.disconnecting
    assert table.stats.streams_closed_on_error == 1


def test_idle_connection_is_closed_after_the_timeout() -> None:
    """A connection without traffic for idle_timeout seconds is closed; traffic resets it."""
    clock = Clock()
    table, _, _ = stream_table(clock)
    connection, transport = connected(table)
    clock.advance(20)
    connection.dataReceived(b"\r\n")
    clock.advance(20)
    assert not transport.disconnecting
    clock.advance(11)
    assert transport.disconnecting


def test_send_reuses_an_inbound_connection() -> None:
    """A message to an address with an open connection is written on it, without connecting."""
    table, _, connects = stream_table(Clock())
    _, transport = connected(table)
    table.send("tcp", "127.0.0.1", 40000, b"hello")
    assert transport.value() == b"hello" and connects == []


def test_send_without_connection_connects_and_flushes_on_connect() -> None:
    """A message to a new address opens one connection; queued data is written once connected."""
    table, _, connects = stream_table(Clock())
    first = table.send("tcp", "127.0.0.1", 5080, b"one")
    second = table.send("tcp", "127.0.0.1", 5080, b"two")
    assert first is second and connects == [("tcp", "127.0.0.1", 5080)]
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5080))
    first.makeConnection(transport)
    assert transport.value() == b"onetwo"


def test_lost_connection_is_forgotten() -> None:
    """A closed connection leaves the table, so the next send connects again."""
    table, _, connects = stream_table(Clock())
    connection, _ = connected(table)
    connection.connectionLost()
    table.send("tcp", "127.0.0.1", 40000, b"x")
    assert connects == [("tcp", "127.0.0.1", 40000)]


def test_udp_send_to_a_host_name_is_counted_not_raised() -> None:
    """Twisted's UDP write refuses host names (a Via maddr) with ValueError: counted, not raised."""
    from twisted.internet import udp
    from twisted.internet.protocol import DatagramProtocol

    protocol, _, stats = datagram_protocol()
    protocol.transport = udp.Port(0, DatagramProtocol(), reactor=Clock())  # never bound
    protocol.send(b"SIP/2.0 200 OK\r\n\r\n", "sbc.example.com", 5060)
    protocol.send(b"SIP/2.0 200 OK\r\n\r\n", "2001:db8::1", 5060)
    assert stats.send_failures == 2


def test_send_opens_the_connection_through_a_real_connector() -> None:
    """Twisted's connectors call startedConnecting on the factory: the first send survives it."""
    from twisted.internet.base import BaseConnector

    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5080))

    class Connector(BaseConnector):
        def _makeTransport(self) -> StringTransport:  # type: ignore[override]
            return transport

        def getDestination(self) -> IPv4Address:
            return IPv4Address("TCP", "127.0.0.1", 5080)

    clock = Clock()
    connectors: list[Connector] = []

    def connect(transport_name: str, host: str, port: int, factory: StreamFactory) -> None:
        connector = Connector(factory, None, clock)  # type: ignore[arg-type]
        connectors.append(connector)
        connector.connect()

    table, _, _ = stream_table(clock)
    table.connect = connect
    connection = table.send("tcp", "127.0.0.1", 5080, b"INVITE")
    connection.makeConnection(transport)
    assert transport.value() == b"INVITE"
    assert table.connections[("tcp", "127.0.0.1", 5080)] is connection
