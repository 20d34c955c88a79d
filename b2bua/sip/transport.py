"""SIP transports on Twisted: UDP, TCP and TLS listeners and outbound connections.

RFC 3261 §18: a datagram is one message; a stream is framed by Content-Length
(`StreamFramer`). Both hand what they read to one `MessageSink` (the endpoint), with a
`Source` that says where it came from and how to answer (§18.2.2: on the connection the
request arrived on). Connections to a remote address are reused in both directions
(RFC 5923 spirit; §18.1.1 "the client SHOULD reuse the connection") and closed after
`idle_timeout` seconds without traffic.

Bad bytes never raise into the reactor: a datagram that does not parse is given to the
sink as a `SipParseError` (which answers 400 when it can, RFC 3261 §8.2, or drops it);
a stream that cannot be framed any more gets its error reported, then is closed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import (
    ClientFactory,
    DatagramProtocol,
    Factory,
    Protocol,
    connectionDone,
)
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from b2bua import logs
from b2bua.sip.errors import SipParseError
from b2bua.sip.framing import KeepAlivePing, StreamFramer
from b2bua.sip.message import Request, Response, parse_message

log = logs.logger(__name__)

STREAM_TRANSPORTS = ("tcp", "tls")


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from: transport name, remote address, and the way back."""

    transport: str
    host: str
    port: int
    connection: StreamConnection | None = None
    local_port: int = 0

    @property
    def reliable(self) -> bool:
        """Stream transports retransmit for us (RFC 3261 §17.1.1.2: no timer A on TCP)."""
        return self.transport in STREAM_TRANSPORTS


@dataclass(slots=True)
class TransportStats:
    """Counters an operator reads to see what the transports refused."""

    datagrams_received: int = 0
    datagrams_unparsable: int = 0
    datagrams_oversized: int = 0
    streams_opened: int = 0
    streams_closed_on_error: int = 0
    send_failures: int = 0


class MessageSink(TypingProtocol):
    """What the transports deliver to (the SIP endpoint)."""

    def message_received(self, message: Request | Response, source: Source) -> None: ...

    def parse_failed(self, error: SipParseError, source: Source) -> None: ...


class SipDatagramProtocol(DatagramProtocol):
    """One UDP socket: each datagram is parsed alone (§18.3: no framing on datagrams)."""

    def __init__(self, sink: MessageSink, stats: TransportStats, max_message_size: int) -> None:
        self._sink = sink
        self._stats = stats
        self._max = max_message_size
        self.local_port = 0

    def startProtocol(self) -> None:
        assert self.transport is not None
        self.local_port = self.transport.getHost().port

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self._stats.datagrams_received += 1
        source = Source("udp", addr[0], addr[1], local_port=self.local_port)
        if datagram.strip(b"\r\n") == b"":
            return  # RFC 5626 keep-alive on UDP is STUN; bare CRLFs are padding, ignore them
        try:
            message = parse_message(datagram, max_size=self._max)
        except SipParseError as err:
            if err.status_hint == 513:
                self._stats.datagrams_oversized += 1
            self._stats.datagrams_unparsable += 1
            self._sink.parse_failed(err, source)
            return
        self._sink.message_received(message, source)

    def send(self, data: bytes, host: str, port: int) -> None:
        assert self.transport is not None
        try:
            self.transport.write(data, (host, port))
        # OSError: e.g. EHOSTUNREACH or EMSGSIZE; ValueError (InvalidAddressError): a host
        # name (a Via maddr) or an address of the other IP family. The transaction times out.
        except (OSError, ValueError) as err:
            self._stats.send_failures += 1
            log.warn("UDP send to {host}:{port} failed: {error}", host=host, port=port, error=err)


class StreamConnection(Protocol, TimeoutMixin):
    """A TCP or TLS connection carrying SIP in either direction."""

    def __init__(self, table: ConnectionTable, transport_name: str) -> None:
        self._table = table
        self.transport_name = transport_name
        self._framer = StreamFramer(table.max_message_size)
        self.remote: tuple[str, int] = ("", 0)
        self.local_port = 0
        self.connected_at_all = False
        self._pending: list[bytes] = []

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        """TimeoutMixin's idle timer, on the injected clock."""
        return self._table.clock.callLater(period, func)

    def connectionMade(self) -> None:
        assert self.transport is not None
        peer = self.transport.getPeer()
        self.remote = (getattr(peer, "host", ""), getattr(peer, "port", 0))
        self.local_port = getattr(self.transport.getHost(), "port", 0)
        self.connected_at_all = True
        self.setTimeout(self._table.idle_timeout)
        self._table.connection_made(self)
        for data in self._pending:
            self.transport.write(data)
        self._pending.clear()

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        source = Source(self.transport_name, self.remote[0], self.remote[1], self, self.local_port)
        for event in self._framer.feed(data):
            if isinstance(event, KeepAlivePing):
                self.write(b"\r\n")  # RFC 5626 §3.5.1 pong
            elif isinstance(event, SipParseError):
                self._table.stats.streams_closed_on_error += 1
                self._table.sink.parse_failed(event, source)
            else:
                self._table.sink.message_received(event, source)
        if self._framer.failed:
            assert self.transport is not None
            self.transport.loseConnection()

    def write(self, data: bytes) -> None:
        if self.transport is None or not self.connected_at_all:
            self._pending.append(data)
            return
        self.resetTimeout()
        self.transport.write(data)

    def timeoutConnection(self) -> None:
        log.debug(
            "closing idle {transport} connection to {remote}",
            transport=self.transport_name,
            remote=self.remote,
        )
        super().timeoutConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.setTimeout(None)
        self._table.connection_lost(self)


class StreamFactory(Factory):
    """Builds StreamConnections for a listener or an outbound connector."""

    def __init__(self, table: ConnectionTable, transport_name: str) -> None:
        self._table = table
        self._transport_name = transport_name

    def buildProtocol(self, addr: IAddress | None) -> StreamConnection:
        return StreamConnection(self._table, self._transport_name)


@dataclass
class ConnectionTable:
    """Open stream connections by (transport, host, port), for reuse in both directions."""

    sink: MessageSink
    stats: TransportStats
    max_message_size: int
    idle_timeout: float
    clock: IReactorTime
    connect: Callable[[str, str, int, StreamFactory], None]
    connections: dict[tuple[str, str, int], StreamConnection] = field(default_factory=dict)

    def connection_made(self, connection: StreamConnection) -> None:
        self.stats.streams_opened += 1
        key = (connection.transport_name, *connection.remote)
        self.connections[key] = connection

    def connection_lost(self, connection: StreamConnection) -> None:
        for key, known in list(self.connections.items()):
            if known is connection:
                del self.connections[key]

    def send(self, transport: str, host: str, port: int, data: bytes) -> StreamConnection:
        """Write `data` on the open connection to host:port, opening one if there is none."""
        key = (transport, host, port)
        connection = self.connections.get(key)
        if connection is None:
            factory = StreamFactory(self, transport)
            connection = factory.buildProtocol(None)
            self.connections[key] = connection
            self.connect(transport, host, port, _OneShotFactory(connection, self, key))
        connection.write(data)
        return connection

    def close_all(self) -> None:
        for connection in list(self.connections.values()):
            if connection.transport is not None:
                connection.transport.loseConnection()


class _OneShotFactory(StreamFactory, ClientFactory):
    """Hands a pre-built connection to one connector, and forgets it if connecting fails.

    A client factory: the reactor's connectors call ``startedConnecting`` on it.
    """

    def __init__(
        self, connection: StreamConnection, table: ConnectionTable, key: tuple[str, str, int]
    ) -> None:
        super().__init__(table, connection.transport_name)
        self._connection = connection
        self._key = key

    def buildProtocol(self, addr: IAddress | None) -> StreamConnection:
        return self._connection

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self._table.stats.send_failures += 1
        log.warn(
            "cannot connect to {transport}:{host}:{port}: {error}",
            transport=self._key[0],
            host=self._key[1],
            port=self._key[2],
            error=reason.getErrorMessage(),
        )
        if self._table.connections.get(self._key) is self._connection:
            del self._table.connections[self._key]

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        pass
