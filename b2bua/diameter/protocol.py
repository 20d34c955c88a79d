"""One Diameter transport connection (TCP, or TLS underneath) on Twisted.

:class:`DiameterProtocol` frames the byte stream with :class:`MessageFramer`, decodes and
dictionary-checks every message (:func:`check_command`) and hands good messages to its
*owner*: the acceptor while an incoming connection has not yet sent its CER, then the
peer link that runs the RFC 6733 5.6 state machine for it.  The owner can be swapped
(R-Accept binds an incoming connection to its peer).

What the wire gets wrong is answered here, per RFC 6733 7.1-7.2: a request that fails to
decode or to pass the dictionary gets an error answer (E bit for 3xxx, Failed-AVP) built
by :func:`make_error_answer`; an answer that fails is reported to the owner (it can fail
the pending request) and never answered; a stream that lost framing (bad version or
length) is answered when the header allows it and then closed.

No exception escapes to the reactor: a failure in the owner is logged and the connection
is aborted, since its state is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from b2bua import logs
from b2bua.diameter.errors import DecodeError
from b2bua.diameter.message import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_SUPPORTED_APPS,
    Message,
    MessageFramer,
    check_command,
    make_error_answer,
)

__all__ = ["ConnectionOwner", "DiameterProtocol", "LocalIdentity", "ProtocolStats"]

log = logs.logger(__name__)


@dataclass(frozen=True, slots=True)
class LocalIdentity:
    """Origin-Host and Origin-Realm put in the error answers this connection sends."""

    origin_host: str
    origin_realm: str


@dataclass(slots=True)
class ProtocolStats:
    """Wire counters, shared by every connection of one service."""

    messages_received: int = 0
    messages_sent: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    requests_rejected: int = 0  # answered with an error answer (7.1)
    answers_rejected: int = 0  # failed decoding or the dictionary; never answered
    framing_errors: int = 0  # the stream was closed
    owner_failures: int = 0  # a bug: the owner raised, the connection was aborted


class ConnectionOwner(TypingProtocol):
    """Who a :class:`DiameterProtocol` reports to (the acceptor or a peer link)."""

    def connection_made(self, conn: DiameterProtocol) -> None:
        """The transport is up (for TLS: the handshake may still be running)."""

    def message_received(self, conn: DiameterProtocol, message: Message) -> None:
        """A message that decoded and passed the dictionary check."""

    def message_rejected(
        self,
        conn: DiameterProtocol,
        error: DecodeError,
        message: Message | None,
        answered: bool,
    ) -> None:
        """One that did not (``message`` if it decoded); ``answered`` if an error answer went."""

    def connection_lost(self, conn: DiameterProtocol, reason: Failure) -> None:
        """The transport is gone."""


class DiameterProtocol(Protocol):
    """Frames, checks and answers what the wire gets wrong; the owner does the rest."""

    def __init__(
        self,
        owner: ConnectionOwner,
        identity: LocalIdentity,
        stats: ProtocolStats,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        supported_apps: frozenset[int] = DEFAULT_SUPPORTED_APPS,
        label: str = "",
    ) -> None:
        self.owner = owner
        self.identity = identity
        self.stats = stats
        self.supported_apps = supported_apps
        self.label = label
        self.framer = MessageFramer(max_message_size)
        self._closing = False
        self._lost = False

    # -- what the owner uses ---------------------------------------------------------
    @property
    def closing(self) -> bool:
        """True once close/abort was asked for or the transport is gone."""
        return self._closing or self._lost

    @property
    def peer_address(self) -> str:
        """``host:port`` of the remote end, for logs."""
        address: IAddress | None = self.transport.getPeer() if self.transport else None
        host = getattr(address, "host", None)
        port = getattr(address, "port", None)
        return f"{host}:{port}" if host is not None else "?"

    @property
    def local_host(self) -> str | None:
        """The local IP address of the connection, if known."""
        address = self.transport.getHost() if self.transport else None
        host = getattr(address, "host", None)
        return host if isinstance(host, str) else None

    def write(self, data: bytes) -> None:
        """Write encoded bytes (dropped once the connection is going away)."""
        if self.transport is None or self._lost:
            return
        self.stats.messages_sent += 1
        self.stats.bytes_sent += len(data)
        self.transport.write(data)

    def send_message(self, message: Message) -> None:
        """Encode and write one message."""
        self.write(message.encode())

    def close(self, reason: str) -> None:
        """Close after the pending writes (a DPA, an error CEA) are flushed."""
        if self.closing or self.transport is None:
            return
        self._closing = True
        log.debug("closing Diameter connection {conn}: {reason}", conn=self, reason=reason)
        self.transport.loseConnection()

    def abort(self, reason: str) -> None:
        """Drop the connection now, discarding unsent data (a dead or broken peer)."""
        if self._lost or self.transport is None:
            return
        self._closing = True
        log.debug("aborting Diameter connection {conn}: {reason}", conn=self, reason=reason)
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()

    # -- Twisted callbacks -------------------------------------------------------------
    def connectionMade(self) -> None:
        try:
            self.owner.connection_made(self)
        except Exception:  # the reactor boundary: log, drop the connection
            self._owner_failed("connection_made")

    def dataReceived(self, data: bytes) -> None:
        if self._closing or self._lost:
            return
        self.stats.bytes_received += len(data)
        try:
            items = self.framer.feed(data)
        except Exception:  # the framer never raises; guard the reactor anyway
            self._owner_failed("framing")
            return
        for item in items:
            if self.closing:
                return
            try:
                if isinstance(item, DecodeError):
                    self._rejected(item, None)
                else:
                    self._received(item)
            except Exception:  # the reactor boundary: log, drop the connection
                self._owner_failed("message handling")
                return

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._lost:
            return
        self._lost = True
        try:
            self.owner.connection_lost(self, reason)
        except Exception:
            self.stats.owner_failures += 1
            log.failure("Diameter connection {conn}: connection_lost failed", conn=self)

    # -- internals ---------------------------------------------------------------------
    def _received(self, message: Message) -> None:
        self.stats.messages_received += 1
        try:
            check_command(message, supported_apps=self.supported_apps)
        except DecodeError as err:
            self._rejected(err, message)
            return
        self.owner.message_received(self, message)

    def _rejected(self, error: DecodeError, message: Message | None) -> None:
        """Answer a bad request (7.2), report it, close the stream if framing is lost."""
        answered = False
        if error.answerable:
            request = message if message is not None else error.header
            assert request is not None  # answerable: the header is known
            answer = make_error_answer(
                request,
                error,
                self.identity.origin_host,
                self.identity.origin_realm,
                error_message=str(error)[:200] or None,
            )
            self.send_message(answer)
            answered = True
            self.stats.requests_rejected += 1
        else:
            self.stats.answers_rejected += 1
        log.warn(
            "Diameter {conn}: rejected {what} ({code}): {error}",
            conn=self,
            what=_describe(error, message),
            code=error.result_code,
            error=str(error),
        )
        self.owner.message_rejected(self, error, message, answered)
        if error.fatal:
            self.stats.framing_errors += 1
            self.close(f"framing lost: {error}")

    def _owner_failed(self, where: str) -> None:
        self.stats.owner_failures += 1
        log.failure("Diameter connection {conn}: {where} failed; aborting", conn=self, where=where)
        self.abort(f"internal error in {where}")

    def __repr__(self) -> str:
        label = f"{self.label} " if self.label else ""
        return f"<Diameter {label}{self.peer_address}>"


def _describe(error: DecodeError, message: Message | None) -> str:
    if message is not None:
        return f"{message.name} hbh={message.hop_by_hop:#x}"
    header = error.header
    if header is None:
        return "message"
    kind = "request" if header.is_request else "answer"
    return f"{kind} {header.command_code} hbh={header.hop_by_hop:#x}"
