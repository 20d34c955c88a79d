"""The Diameter node on Twisted: peers, routing, pending requests, incoming requests.

:class:`DiameterService` runs one RFC 6733 5.6 state machine (:class:`Peer`) and one
RFC 3539 watchdog (:class:`Watchdog`) per ``[peer:NAME]``, and executes what they ask:

* Client side: every configured peer is connected to at start (``aaa://`` TCP, ``aaas://``
  TLS), CER/CEA, and reconnected ``reconnect_interval`` (Tc) after a failure or a loss.
  The CEA's Origin-Host must be the peer's ``host`` (or the host of its URI when that is
  a name).  On stop, each open peer gets a DPR with Disconnect-Cause REBOOTING and the
  service waits for the DPA (bounded by the state machine's DPA timer).
* Listener (``[diameter] listen``): a connection must open with a CER whose Origin-Host
  belongs to a peer with ``accept_incoming``; anyone else gets CEA 3010
  DIAMETER_UNKNOWN_PEER and is closed.  Election (5.6.4) is the state machine's.
* Routing: ``ro_forced_peer`` wins outright; else a usable peer whose identity is the
  Destination-Host; else the peers serving the Destination-Realm (``realm``), or failing
  those the peers with no ``realm`` (default route); lowest ``priority`` first, ties in
  turn.  A peer is usable when it is open and its watchdog is OKAY; after a reconnection
  that takes three DWA (RFC 3539 REOPEN).  Reconnection itself is paced by Tc, not by
  the watchdog's AttemptOpen.
* Pending requests are keyed by hop-by-hop id.  When the peer carrying one becomes
  SUSPECT (watchdog Failover) or closes, the request is sent again to an alternate peer
  with the T flag and the same End-to-End id (RFC 6733 5.5.4); the first answer wins and
  later ones are dropped as duplicates.  Each request has one Tx timer (RFC 4006 13)
  that fails it with :class:`RequestTimeout` whatever the retransmissions.
* Incoming requests (RAR, ASR) go to the handler registered for (application id,
  command code); with none, the answer is 3001 DIAMETER_COMMAND_UNSUPPORTED.

Every timer (Tx, state machine, watchdog, Tc) lives on the process's timer wheel; the one
reactor call is the bound on ``stopService``, in case the wheel is stopped first.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IConnector, IListeningPort
from twisted.internet.protocol import ClientFactory, Factory
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from b2bua import logs
from b2bua.config import Config, ConfigError, DiameterSettings, PeerSettings
from b2bua.diameter.dictionary import (
    CMD_CAPABILITIES_EXCHANGE,
    CMD_CREDIT_CONTROL,
    CMD_DEVICE_WATCHDOG,
    DIAMETER_COMMAND_UNSUPPORTED,
    DIAMETER_UNABLE_TO_COMPLY,
    DISCONNECT_REBOOTING,
)
from b2bua.diameter.errors import (
    DecodeError,
    InvalidAnswer,
    NoPeerAvailable,
    PeerDown,
    RequestFailed,
    RequestTimeout,
)
from b2bua.diameter.message import (
    FLAG_RETRANSMIT,
    IdGenerator,
    Message,
    make_answer,
    make_error_answer,
)
from b2bua.diameter.peer import (
    Accept,
    Action,
    Closed,
    Connect,
    Deliver,
    Disconnect,
    DwaReceived,
    Opened,
    Peer,
    PeerConfig,
    PeerInfo,
    PeerState,
    Send,
    answer_cer,
)
from b2bua.diameter.protocol import DiameterProtocol, LocalIdentity, ProtocolStats
from b2bua.diameter.tls import TlsContexts, TlsSetupError, load_tls
from b2bua.diameter.watchdog import Watchdog, WatchdogAction
from b2bua.ops.exposition import Histogram
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerHandle

__all__ = [
    "DiameterService",
    "DiameterStats",
    "PeerStatus",
    "RequestHandler",
    "make_diameter_service",
    "validate_diameter",
]

log = logs.logger(__name__)

#: Handler of incoming requests: ``(request, peer name) -> answer`` or a Deferred of it.
RequestHandler = Callable[[Message, str], "Deferred[Message] | Message"]

_CONNECTING = (PeerState.WAIT_CONN_ACK, PeerState.WAIT_CONN_ACK_ELECT)
_RECENT_ANSWERS = 4096  # hop-by-hop ids remembered to tell duplicates from strays
_LATENCY_WEIGHT = 0.2  # exponentially weighted moving average of answer latency
#: Buckets (s) of the CCA latency histogram: an OCS on a LAN answers in ms, a sick one in s.
CCA_LATENCY_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Kamailio's log levels for cdp_event_latency_log.
_KAMAILIO_LEVELS = {
    -1: LogLevel.error,
    0: LogLevel.warn,
    1: LogLevel.info,
    2: LogLevel.info,
    3: LogLevel.debug,
}


@dataclass(slots=True)
class DiameterStats(ProtocolStats):
    """Counters of the whole Diameter node (the wire counters plus these)."""

    requests_sent: int = 0  # transmissions, retransmissions included
    requests_retransmitted: int = 0  # failover to an alternate peer (T flag)
    answers_received: int = 0  # matched to a pending request
    answers_duplicate: int = 0  # a second answer to a request already answered
    answers_unexpected: int = 0  # no pending request with that hop-by-hop id
    requests_timed_out: int = 0  # Tx expired
    requests_no_peer: int = 0  # no usable peer when sent
    requests_peer_down: int = 0  # carrying peer lost and no alternate
    requests_invalid_answer: int = 0  # the answer failed the checks
    slow_answers: int = 0  # above cdp_event_threshold
    requests_received: int = 0  # incoming requests delivered to the application
    requests_unsupported: int = 0  # answered 3001, no handler
    handler_failures: int = 0  # a handler raised; answered 5012
    answers_sent: int = 0  # answers to incoming requests
    answers_dropped: int = 0  # the peer closed before the answer was ready
    connection_attempts: int = 0
    connections_failed: int = 0
    connections_accepted: int = 0  # incoming transport connections
    connections_rejected: int = 0  # incoming: not a CER, unknown peer (3010)
    peers_opened: int = 0  # CER/CEA completed
    peers_closed: int = 0  # an open peer went back to Closed


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """One peer as an operator sees it (a snapshot)."""

    name: str
    uri: str
    state: str  # RFC 6733 5.6 state
    watchdog: str  # RFC 3539 state
    usable: bool  # takes new requests
    origin_host: str | None  # announced in CER/CEA, else the expected one
    realm: str  # configured realm ('' is any)
    priority: int
    connected_since: float | None
    last_dwa: float | None  # when the last DWA arrived
    pending: int  # requests waiting for an answer from this peer
    latency: float | None  # moving average of answer latency (s)
    last_latency: float | None
    requests_sent: int
    answers_received: int


class _Pending:
    """One request waiting for its answer, whichever peer it is on now."""

    __slots__ = (
        "deferred",
        "dest_host",
        "done",
        "end_to_end",
        "exclude",
        "hops",
        "link",
        "realm",
        "request",
        "tx",
    )

    def __init__(
        self,
        request: Message,
        realm: str,
        dest_host: str | None,
        exclude: frozenset[str],
    ) -> None:
        self.request = request
        self.realm = realm
        self.dest_host = dest_host
        self.exclude = exclude
        self.end_to_end = request.end_to_end
        self.deferred: Deferred[Message]
        self.hops: dict[int, tuple[_PeerLink, float]] = {}  # hop-by-hop -> (peer, sent at)
        self.link: _PeerLink | None = None
        self.tx: TimerHandle | None = None
        self.done = False


class _Attempt:
    """Owner of an outgoing connection until it is known to be the current attempt."""

    def __init__(self, link: _PeerLink, attempt: int) -> None:
        self.link = link
        self.attempt = attempt

    def connection_made(self, conn: DiameterProtocol) -> None:
        self.link.outgoing_made(conn, self.attempt)

    def message_received(self, conn: DiameterProtocol, message: Message) -> None:
        conn.close("message on a stale connection")

    def message_rejected(
        self, conn: DiameterProtocol, error: DecodeError, message: Message | None, answered: bool
    ) -> None:
        conn.close("message on a stale connection")

    def connection_lost(self, conn: DiameterProtocol, reason: Failure) -> None:
        """A stale attempt went away; nothing to do."""


class _ClientFactory(ClientFactory):
    noisy = False

    def __init__(self, link: _PeerLink, attempt: int) -> None:
        self.link = link
        self.attempt = attempt

    def buildProtocol(self, addr: IAddress | None) -> DiameterProtocol:
        service = self.link.service
        return DiameterProtocol(
            _Attempt(self.link, self.attempt),
            service.identity,
            service.stats,
            label=self.link.name,
        )

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self.link.connect_failed(self.attempt, reason)


class _ListenerFactory(Factory):
    noisy = False

    def __init__(self, acceptor: _Acceptor) -> None:
        self.acceptor = acceptor

    def buildProtocol(self, addr: IAddress | None) -> DiameterProtocol:
        service = self.acceptor.service
        return DiameterProtocol(self.acceptor, service.identity, service.stats, label="incoming")


class _Acceptor:
    """Owner of incoming connections until their CER names a known peer (RFC 6733 5.6.1)."""

    def __init__(self, service: DiameterService) -> None:
        self.service = service
        self.unbound: dict[DiameterProtocol, TimerHandle] = {}

    def connection_made(self, conn: DiameterProtocol) -> None:
        service = self.service
        service.stats.connections_accepted += 1
        if service.stopping:
            conn.close("the Diameter service is stopping")
            return
        timeout = service.base_config.cea_timeout
        self.unbound[conn] = service.driver.call_later(timeout, self._no_cer, conn)
        log.debug("Diameter connection from {conn}", conn=conn)

    def _no_cer(self, conn: DiameterProtocol) -> None:
        self.unbound.pop(conn, None)
        self.service.stats.connections_rejected += 1
        log.warn("Diameter connection from {conn}: no CER in time; closing", conn=conn)
        conn.abort("no CER")

    def _unbind(self, conn: DiameterProtocol) -> None:
        timer = self.unbound.pop(conn, None)
        if timer is not None:
            timer.cancel()

    def message_received(self, conn: DiameterProtocol, message: Message) -> None:
        self._unbind(conn)
        service = self.service
        if not (message.command_code == CMD_CAPABILITIES_EXCHANGE and message.is_request):
            service.stats.connections_rejected += 1
            log.warn(
                "Diameter connection from {conn}: first message is {name}, not a CER; closing",
                conn=conn,
                name=message.name,
            )
            conn.close("first message is not a CER")
            return
        if service.stopping:
            conn.close("the Diameter service is stopping")
            return
        host = (message.origin_host or "").lower()
        link = service.incoming_links.get(host)
        if link is None:
            allowed = frozenset(service.incoming_links)
            cea, _info = answer_cer(replace(service.base_config, allowed_peers=allowed), message)
            service.stats.connections_rejected += 1
            log.warn(
                "Diameter connection from {conn}: Origin-Host {host!r} is not a peer with "
                "accept_incoming; CEA {code}, closing",
                conn=conn,
                host=host,
                code=cea.result_code,
            )
            conn.send_message(cea)
            conn.close("unknown peer")
            return
        link.incoming_cer(conn, message)

    def message_rejected(
        self, conn: DiameterProtocol, error: DecodeError, message: Message | None, answered: bool
    ) -> None:
        self._unbind(conn)
        self.service.stats.connections_rejected += 1
        conn.close("malformed first message")

    def connection_lost(self, conn: DiameterProtocol, reason: Failure) -> None:
        self._unbind(conn)

    def close_all(self) -> None:
        for conn in list(self.unbound):
            self._unbind(conn)
            conn.abort("the Diameter service is stopping")


class _PeerLink:
    """One configured peer: its state machine, watchdog, connections and timers."""

    def __init__(
        self, service: DiameterService, settings: PeerSettings, config: PeerConfig, now: float
    ) -> None:
        self.service = service
        self.settings = settings
        self.name = settings.name
        uri = settings.uri
        self.expected_host = settings.host.lower() or ("" if uri.host_is_ip else uri.host.lower())
        self.realm = settings.realm.lower()
        if self.expected_host:
            config = replace(config, allowed_peers=frozenset({self.expected_host}))
        self.peer = Peer(config, now, ids=service.ids)
        self.watchdog = Watchdog(now, tw_init=service.settings.watchdog_interval, rand=service.rand)
        self.opened = False  # Opened accepted and the watchdog told
        self.pending: set[_Pending] = set()
        self.connector: IConnector | None = None
        self.attempt = 0
        self.connected_since: float | None = None
        self.last_dwa: float | None = None
        self.latency: float | None = None
        self.last_latency: float | None = None
        self.cca_latency = Histogram(CCA_LATENCY_BOUNDS)  # read by /metrics
        self.requests_sent = 0
        self.answers_received = 0
        self._peer_timer: TimerHandle | None = None
        self._watchdog_timer: TimerHandle | None = None
        self._reconnect_timer: TimerHandle | None = None
        self._closed_waiters: list[Deferred[None]] = []

    # -- views -----------------------------------------------------------------------------------
    @property
    def identity(self) -> str:
        """The peer's Origin-Host (announced, else expected; lower case)."""
        remote = self.peer.remote
        if remote is not None and self.opened:
            return remote.origin_host.lower()
        return self.expected_host

    @property
    def usable(self) -> bool:
        """Open, watchdog OKAY, and the service is not stopping."""
        return (
            self.opened and self.peer.is_open and self.watchdog.usable and not self.service.stopping
        )

    def status(self) -> PeerStatus:
        """Snapshot for operators."""
        remote = self.peer.remote
        return PeerStatus(
            name=self.name,
            uri=str(self.settings.uri),
            state=self.peer.state.value,
            watchdog=self.watchdog.state.value,
            usable=self.usable,
            origin_host=remote.origin_host if remote is not None else self.expected_host or None,
            realm=self.realm,
            priority=self.settings.priority,
            connected_since=self.connected_since,
            last_dwa=self.last_dwa,
            pending=len(self.pending),
            latency=self.latency,
            last_latency=self.last_latency,
            requests_sent=self.requests_sent,
            answers_received=self.answers_received,
        )

    def _now(self) -> float:
        return self.service.driver.seconds()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start: connect now (5.6 Start event)."""
        self._cancel_reconnect()
        self.run(self.peer.start(self._now()))

    def stop(self) -> Deferred[None]:
        """DPR if open, else drop what is in progress; fires once the peer is Closed."""
        self._cancel_reconnect()
        peer = self.peer
        if peer.is_open:
            self.run(peer.stop(self._now(), DISCONNECT_REBOOTING))  # DPA or its timer closes
        elif peer.state not in (PeerState.CLOSED, PeerState.CLOSING):
            self.force_close()  # connecting or exchanging capabilities: drop it
        if peer.state is PeerState.CLOSED:
            return defer.succeed(None)
        waiter: Deferred[None] = Deferred()
        self._closed_waiters.append(waiter)
        return waiter

    def force_close(self) -> None:
        """Stop took too long: drop every connection now."""
        for conn in (self.peer.i_conn, self.peer.r_conn):
            if isinstance(conn, DiameterProtocol):
                conn.abort("the Diameter service stopped")
        if self.connector is not None:
            self._stop_connecting()

    def _stop_connecting(self) -> None:
        connector, self.connector = self.connector, None
        if connector is None:
            return
        try:
            connector.stopConnecting()
        except Exception:  # not connecting any more (twisted raises a plain Error)
            log.debug("Diameter peer {name}: connector already done", name=self.name)

    def _schedule_reconnect(self) -> None:
        self._cancel_reconnect()
        delay = self.service.settings.reconnect_interval
        self._reconnect_timer = self.service.driver.call_later(delay, self._reconnect)

    def _cancel_reconnect(self) -> None:
        if self._reconnect_timer is not None:
            self._reconnect_timer.cancel()
            self._reconnect_timer = None

    def _reconnect(self) -> None:
        self._reconnect_timer = None
        service = self.service
        if service.running and not service.stopping and self.peer.state is PeerState.CLOSED:
            self.start()

    # -- transport events ------------------------------------------------------------------------
    def _connect(self) -> None:
        self.attempt += 1
        self.service.stats.connection_attempts += 1
        uri = self.settings.uri
        factory = _ClientFactory(self, self.attempt)
        reactor = self.service.reactor
        timeout = self.peer.config.connect_timeout
        log.debug("Diameter peer {name}: connecting to {uri}", name=self.name, uri=str(uri))
        try:
            if uri.tls:
                tls = self.service.tls
                assert tls is not None  # validated when the service was built
                self.connector = reactor.connectSSL(
                    uri.host, uri.port, factory, tls.client(uri.host), timeout=timeout
                )
            else:
                self.connector = reactor.connectTCP(uri.host, uri.port, factory, timeout=timeout)
        except Exception as err:  # e.g. a host name that cannot be used at all
            log.error(
                "Diameter peer {name}: cannot connect to {uri}: {error}",
                name=self.name,
                uri=str(uri),
                error=err,
            )
            self.connector = None
            self.service.driver.call_later(0, self.connect_failed, self.attempt, Failure(err))

    def outgoing_made(self, conn: DiameterProtocol, attempt: int) -> None:
        if attempt != self.attempt or self.peer.state not in _CONNECTING:
            conn.close("stale connection attempt")
            return
        self.connector = None
        conn.owner = self
        self._use_local_address(conn)
        log.debug("Diameter peer {name}: connected {conn}", name=self.name, conn=conn)
        self.run(self.peer.connected(self._now(), conn))

    def connect_failed(self, attempt: int, reason: Failure) -> None:
        if attempt != self.attempt or self.peer.state not in _CONNECTING:
            return
        self.connector = None
        self.service.stats.connections_failed += 1
        log.warn(
            "Diameter peer {name}: cannot connect to {uri}: {reason}",
            name=self.name,
            uri=str(self.settings.uri),
            reason=reason.getErrorMessage(),
        )
        self.run(self.peer.connect_failed(self._now()))

    def incoming_cer(self, conn: DiameterProtocol, cer: Message) -> None:
        """R-Conn-CER: an incoming connection whose CER names this peer."""
        self._use_local_address(conn)
        conn.label = self.name
        self.run(self.peer.incoming_cer(self._now(), conn, cer))

    def _use_local_address(self, conn: DiameterProtocol) -> None:
        """Advertise the address this connection really uses as Host-IP-Address."""
        host = conn.local_host
        if host and host not in ("0.0.0.0", "::"):
            self.peer.config = replace(self.peer.config, host_ip_addresses=(host,))

    # ConnectionOwner, for connections bound to this peer
    def connection_made(self, conn: DiameterProtocol) -> None:
        """Bound connections are already made."""

    def message_received(self, conn: DiameterProtocol, message: Message) -> None:
        now = self._now()
        is_dwa = message.command_code == CMD_DEVICE_WATCHDOG and not message.is_request
        if self.opened:
            self._watchdog_actions(self.watchdog.on_receive(now, is_dwa))
        self.run(self.peer.receive(now, conn, message))
        self._arm_watchdog()

    def message_rejected(
        self, conn: DiameterProtocol, error: DecodeError, message: Message | None, answered: bool
    ) -> None:
        now = self._now()
        if self.opened:
            self._watchdog_actions(self.watchdog.on_receive(now, False))
        if not self.peer.is_open:
            conn.close("malformed message during the capabilities exchange")
            return
        header = error.header
        if not answered and header is not None and not header.is_request:
            self.service.answer_invalid(self, header.hop_by_hop, error, message)

    def connection_lost(self, conn: DiameterProtocol, reason: Failure) -> None:
        log.debug(
            "Diameter peer {name}: connection {conn} lost: {reason}",
            name=self.name,
            conn=conn,
            reason=reason.getErrorMessage(),
        )
        self.run(self.peer.disconnected(self._now(), conn))

    # -- actions ---------------------------------------------------------------------------------
    def run(self, actions: Iterable[Action]) -> None:
        """Execute the state machine's actions in order, then follow its timer.

        The list is copied first: ``Peer.send_dwr`` also appends its Send to the list of
        the event being executed, which would send that DWR twice.
        """
        for action in list(actions):
            if isinstance(action, Send):
                conn = cast(DiameterProtocol, action.conn)
                log.debug(
                    "Diameter peer {name}: send {msg}",
                    name=self.name,
                    msg=_Brief(action.message),
                )
                conn.write(action.data)
            elif isinstance(action, Deliver):
                self.service.deliver(self, action.message)
            elif isinstance(action, DwaReceived):
                self.last_dwa = self._now()
            elif isinstance(action, Connect):
                self._connect()
            elif isinstance(action, Accept):
                conn = cast(DiameterProtocol, action.conn)
                conn.owner = self
                conn.label = self.name
            elif isinstance(action, Disconnect):
                cast(DiameterProtocol, action.conn).close(action.reason)
            elif isinstance(action, Opened):
                self._opened(cast(DiameterProtocol, action.conn), action.peer)
            elif isinstance(action, Closed):
                self._closed(action.reason, action.disconnect_cause)
        self._sync_peer_timer()

    def _opened(self, conn: DiameterProtocol, info: PeerInfo) -> None:
        host = info.origin_host.lower()
        if self.expected_host and host != self.expected_host:
            log.error(
                "Diameter peer {name}: Origin-Host is {host!r}, expected {expected!r} "
                "(set host in [peer:{name}]); closing",
                name=self.name,
                host=info.origin_host,
                expected=self.expected_host,
            )
            conn.close("unexpected Origin-Host")
            return
        now = self._now()
        self.opened = True
        self.connected_since = now
        self._cancel_reconnect()
        self.service.stats.peers_opened += 1
        log.info(
            "Diameter peer {name} open: {host} (realm {realm}, {product}) on {conn}",
            name=self.name,
            host=info.origin_host,
            realm=info.origin_realm,
            product=info.product_name or "?",
            conn=conn,
        )
        self._watchdog_actions(self.watchdog.on_connection_up(now))
        self._arm_watchdog()
        self.service.peer_usable()

    def _closed(self, reason: str, cause: int | None) -> None:
        now = self._now()
        was_open = self.opened
        self.opened = False
        self.connected_since = None
        if self.connector is not None:
            self._stop_connecting()
        self.attempt += 1  # a late connect of the old attempt is stale
        if was_open:
            self.service.stats.peers_closed += 1
            log.info(
                "Diameter peer {name} closed: {reason}",
                name=self.name,
                reason=reason if cause is None else f"{reason} (Disconnect-Cause {cause})",
            )
            self._watchdog_actions(self.watchdog.on_connection_down(now), failover=False)
        if self._watchdog_timer is not None:
            self._watchdog_timer.cancel()
            self._watchdog_timer = None
        self.service.failover(self, down=True)
        if self.service.running and not self.service.stopping:
            self._schedule_reconnect()
        waiters, self._closed_waiters = self._closed_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def send_answer(self, answer: Message) -> None:
        """Send an answer to an incoming request, if the peer is still open."""
        if not self.peer.is_open:
            self.service.stats.answers_dropped += 1
            log.warn(
                "Diameter peer {name}: {msg} dropped, the peer is {state}",
                name=self.name,
                msg=_brief(answer),
                state=self.peer.state.value,
            )
            return
        self.service.stats.answers_sent += 1
        self.run(self.peer.send(self._now(), answer))

    def send_request(self, request: Message) -> None:
        self.requests_sent += 1
        self.run(self.peer.send(self._now(), request))

    def record_latency(self, seconds: float) -> None:
        self.answers_received += 1
        self.last_latency = seconds
        if self.latency is None:
            self.latency = seconds
        else:
            self.latency += _LATENCY_WEIGHT * (seconds - self.latency)

    # -- timers ----------------------------------------------------------------------------------
    def _sync_peer_timer(self) -> None:
        deadline = self.peer.next_deadline()
        timer = self._peer_timer
        if timer is not None and timer.active and timer.deadline == deadline:
            return
        if timer is not None:
            timer.cancel()
            self._peer_timer = None
        if deadline is not None:
            self._peer_timer = self.service.driver.schedule(deadline, self._peer_timeout)

    def _peer_timeout(self) -> None:
        self._peer_timer = None
        self.run(self.peer.on_timer(self._now()))

    def _arm_watchdog(self) -> None:
        """Keep a wheel timer at or before the watchdog's deadline while open."""
        if not self.opened:
            return
        deadline = self.watchdog.next_deadline()
        timer = self._watchdog_timer
        if timer is not None and timer.active and timer.deadline <= deadline:
            return  # fires early, finds nothing due, re-arms: cheaper than moving it
        if timer is not None:
            timer.cancel()
        self._watchdog_timer = self.service.driver.schedule(deadline, self._watchdog_timeout)

    def _watchdog_timeout(self) -> None:
        self._watchdog_timer = None
        if not self.opened:
            return
        self._watchdog_actions(self.watchdog.on_timer(self._now()))
        self._arm_watchdog()

    def _watchdog_actions(self, actions: Sequence[WatchdogAction], failover: bool = True) -> None:
        for action in actions:
            if action is WatchdogAction.SEND_WATCHDOG:
                self.run(self.peer.send_dwr(self._now()))
            elif action is WatchdogAction.FAILOVER and failover:
                log.warn(
                    "Diameter peer {name}: no answer to DWR, peer is SUSPECT; failing over",
                    name=self.name,
                )
                self.service.failover(self, down=False)
            elif action is WatchdogAction.FAILBACK:
                log.info("Diameter peer {name}: watchdog OKAY again", name=self.name)
                self.service.peer_usable()
            elif action is WatchdogAction.CLOSE_CONNECTION:
                conn = self.peer.active_conn
                if isinstance(conn, DiameterProtocol):
                    log.warn(
                        "Diameter peer {name}: watchdog gave up, closing {conn}",
                        name=self.name,
                        conn=conn,
                    )
                    conn.abort("watchdog: peer DOWN")
            # ATTEMPT_OPEN: reconnection is driven by Tc (reconnect_interval)


class DiameterService(Service):
    """The Diameter node: give it requests, register handlers, read its peers' status."""

    name = "diameter"

    def __init__(
        self,
        settings: DiameterSettings,
        peers: Sequence[PeerSettings],
        reactor: Any,
        driver: WheelDriver,
        *,
        tls: TlsContexts | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.reactor = reactor
        self.driver = driver
        self.rand = rand
        now = driver.seconds()
        self.origin_host = settings.origin_host or socket.getfqdn()
        self.origin_realm = settings.origin_realm or (
            self.origin_host.partition(".")[2] or self.origin_host
        )
        self.destination_realm = settings.destination_realm or self.origin_realm
        self.destination_host = settings.destination_host or None
        self.identity = LocalIdentity(self.origin_host, self.origin_realm)
        self.ids = IdGenerator(now)
        self.stats = DiameterStats()
        self.tls = tls
        self.base_config = PeerConfig(
            self.origin_host,
            self.origin_realm,
            origin_state_id=int(now) & 0xFFFFFFFF,  # RFC 6733 8.16: grows at each start
        )
        self.links: dict[str, _PeerLink] = {}
        self.incoming_links: dict[str, _PeerLink] = {}
        for peer in peers:
            link = _PeerLink(self, peer, self.base_config, now)
            self.links[peer.name] = link
            if peer.accept_incoming and link.expected_host:
                self.incoming_links[link.expected_host] = link
        self._forced = self._find_link(settings.ro_forced_peer) if settings.ro_forced_peer else None
        self._handlers: dict[tuple[int, int], RequestHandler] = {}
        self._pending: dict[int, _Pending] = {}
        self._recent: dict[int, None] = {}
        self._round_robin = 0
        self._acceptor = _Acceptor(self)
        self._ports: list[IListeningPort] = []
        self.stopping = False
        self._usable_waiters: list[Deferred[None]] = []

    # -- public API ---------------------------------------------------------------------------
    def register_handler(self, app_id: int, command_code: int, handler: RequestHandler) -> None:
        """Route incoming requests of (application, command) to `handler`.

        The handler gets the request and the peer's name and returns the answer (or a
        Deferred firing with it); Origin-Host/-Realm are added when missing.  An exception
        or a failed Deferred is answered 5012 DIAMETER_UNABLE_TO_COMPLY.
        """
        self._handlers[(app_id, command_code)] = handler

    def send_request(
        self,
        message: Message,
        *,
        destination_host: str | None = None,
        exclude: Iterable[str] = frozenset(),
    ) -> Deferred[Message]:
        """Send a request; the Deferred fires with its answer, or fails.

        The peer is chosen from the message's Destination-Realm (default
        ``destination_realm``) and `destination_host` (default the message's
        Destination-Host), never one named in `exclude` (peer names or hosts).  The
        hop-by-hop id is set here, and the end-to-end id when it is 0; keep the same one
        to retransmit.  Failures: :class:`NoPeerAvailable` (at once), :class:`RequestTimeout`
        (Tx), :class:`PeerDown` (lost, no alternate), :class:`InvalidAnswer`.  Cancelling
        the Deferred forgets the request.
        """
        if not message.is_request:
            raise ValueError("send_request needs a request (R bit set)")
        realm = str(message.get("Destination-Realm") or self.destination_realm).lower()
        host = destination_host if destination_host is not None else message.get("Destination-Host")
        excluded = frozenset(item.lower() for item in exclude)
        if not self.running or self.stopping:
            self.stats.requests_no_peer += 1
            return defer.fail(NoPeerAvailable("the Diameter service is not running"))
        link = self._select(realm, host.lower() if host else None, excluded)
        if link is None:
            self.stats.requests_no_peer += 1
            return defer.fail(NoPeerAvailable(self._no_peer_reason(realm, host, excluded)))
        if message.end_to_end == 0:
            message.end_to_end = self.ids.next_end_to_end()
        entry = _Pending(message, realm, host.lower() if host else None, excluded)
        entry.deferred = Deferred(lambda _d: self._forget(entry))
        deadline = self.driver.seconds() + self.settings.tx_timeout
        entry.tx = self.driver.schedule(deadline, self._tx_expired, entry)
        self._transmit(entry, link)
        return entry.deferred

    def peer_status(self) -> list[PeerStatus]:
        """Every configured peer, in configuration order."""
        return [link.status() for link in self.links.values()]

    def cca_latency(self) -> list[tuple[str, Histogram]]:
        """Each peer's CCA latency histogram (live, not a copy), in configuration order."""
        return [(name, link.cca_latency) for name, link in self.links.items()]

    def has_usable_peer(self, realm: str | None = None) -> bool:
        """True when a request to `realm` (default destination_realm) could leave now."""
        return (
            self._select((realm or self.destination_realm).lower(), None, frozenset()) is not None
        )

    def when_usable(self) -> Deferred[None]:
        """Fires once :meth:`has_usable_peer` is true (at once if it is now).

        For work that must not fail as NO_PEER just because the peers are still
        connecting (the store's restored CCRs). Cancelling it forgets the wait.
        """
        if self.has_usable_peer():
            return defer.succeed(None)
        waiter: Deferred[None] = Deferred(self._usable_waiters.remove)
        self._usable_waiters.append(waiter)
        return waiter

    def peer_usable(self) -> None:
        """A peer became usable (opened, or its watchdog OKAY again): wake the waiters."""
        if self._usable_waiters and self.has_usable_peer():
            waiters, self._usable_waiters = self._usable_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    @property
    def pending_count(self) -> int:
        """Requests waiting for an answer."""
        return len({id(entry) for entry in self._pending.values()})

    # -- service ---------------------------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        self.stopping = False
        factory = _ListenerFactory(self._acceptor)
        for uri in self.settings.listen:
            if uri.tls:
                assert self.tls is not None  # validated when the service was built
                port = self.reactor.listenSSL(
                    uri.port, factory, self.tls.server(), interface=uri.host
                )
            else:
                port = self.reactor.listenTCP(uri.port, factory, interface=uri.host)
            self._ports.append(port)
            log.info("Diameter listening on {uri}", uri=str(uri))
        for link in self.links.values():
            link.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.stopping = True
        waits: list[Deferred[Any]] = [
            defer.maybeDeferred(port.stopListening) for port in self._ports
        ]
        self._ports = []
        self._acceptor.close_all()
        waits += [link.stop() for link in self.links.values()]
        done: Deferred[Any] = defer.DeferredList(waits, consumeErrors=True)
        bound = self.base_config.dpa_timeout + 1.0
        guard = self.reactor.callLater(bound, self._stop_overdue)

        def finished(_: object) -> None:
            if guard.active():
                guard.cancel()
            for entry in list({id(e): e for e in self._pending.values()}.values()):
                self._fail(entry, PeerDown("the Diameter service stopped"))
            log.info("Diameter stopped")

        done.addBoth(finished)
        return done

    def _stop_overdue(self) -> None:
        log.warn("Diameter peers did not close in time; dropping their connections")
        for link in self.links.values():
            link.force_close()

    # -- routing ---------------------------------------------------------------------------------
    def _find_link(self, name_or_host: str) -> _PeerLink | None:
        wanted = name_or_host.lower()
        for link in self.links.values():
            names = (link.name.lower(), link.expected_host, link.settings.uri.host.lower())
            if wanted in names:
                return link
        return None

    def _select(self, realm: str, host: str | None, exclude: frozenset[str]) -> _PeerLink | None:
        def allowed(link: _PeerLink) -> bool:
            return link.usable and link.name.lower() not in exclude and link.identity not in exclude

        forced = self._forced
        if forced is not None:
            return forced if allowed(forced) else None
        usable = [link for link in self.links.values() if allowed(link)]
        if not usable:
            return None
        if host:
            for link in usable:
                if link.identity == host:
                    return link
        candidates = [link for link in usable if link.realm == realm]
        if not candidates:
            candidates = [link for link in usable if not link.realm]
        if not candidates:
            return None
        best = min(link.settings.priority for link in candidates)
        tier = [link for link in candidates if link.settings.priority == best]
        self._round_robin += 1
        return tier[self._round_robin % len(tier)]

    def _no_peer_reason(self, realm: str, host: str | None, exclude: frozenset[str]) -> str:
        if self._forced is not None:
            return f"ro_forced_peer {self._forced.name} is not usable"
        text = f"no usable Diameter peer for realm {realm}"
        if host:
            text += f" (Destination-Host {host})"
        if exclude:
            text += f" excluding {', '.join(sorted(exclude))}"
        return text

    # -- pending requests ------------------------------------------------------------------------
    def _transmit(self, entry: _Pending, link: _PeerLink) -> None:
        hop = self.ids.next_hop_by_hop()
        entry.request.hop_by_hop = hop
        entry.hops[hop] = (link, self.driver.seconds())
        entry.link = link
        self._pending[hop] = entry
        link.pending.add(entry)
        self.stats.requests_sent += 1
        link.send_request(entry.request)

    def failover(self, link: _PeerLink, *, down: bool) -> None:
        """Move the requests pending on `link` to alternates (RFC 6733 5.5.4).

        ``down``: the connection is gone, so a request with no alternate fails with
        :class:`PeerDown`; otherwise (SUSPECT) it stays, as the peer may still answer.
        """
        for entry in list(link.pending):
            if entry.done:
                link.pending.discard(entry)
                continue
            exclude = entry.exclude | {link.name.lower()}
            if link.identity:
                exclude |= {link.identity}
            alternate = self._select(entry.realm, entry.dest_host, exclude)
            if alternate is None:
                if down:
                    self.stats.requests_peer_down += 1
                    self._fail(
                        entry,
                        PeerDown(
                            f"Diameter peer {link.name} went down with {entry.request.name} "
                            "pending and no alternate peer is usable",
                            peer=link.name,
                            host=link.identity or None,
                        ),
                    )
                continue
            link.pending.discard(entry)
            entry.request.flags |= FLAG_RETRANSMIT
            self.stats.requests_retransmitted += 1
            log.info(
                "Diameter {msg} e2e={e2e:#x}: peer {old} failed, retransmitting to {new}",
                msg=entry.request.name,
                e2e=entry.end_to_end,
                old=link.name,
                new=alternate.name,
            )
            self._transmit(entry, alternate)

    def _finish(self, entry: _Pending) -> None:
        entry.done = True
        if entry.tx is not None:
            entry.tx.cancel()
            entry.tx = None
        for hop in entry.hops:
            self._pending.pop(hop, None)
            self._recent[hop] = None
        while len(self._recent) > _RECENT_ANSWERS:
            del self._recent[next(iter(self._recent))]
        if entry.link is not None:
            entry.link.pending.discard(entry)

    def _fail(self, entry: _Pending, error: RequestFailed) -> None:
        if entry.done:
            return
        self._finish(entry)
        entry.deferred.errback(Failure(error))

    def _forget(self, entry: _Pending) -> None:
        """The caller cancelled the Deferred."""
        if not entry.done:
            self._finish(entry)

    def _tx_expired(self, entry: _Pending) -> None:
        entry.tx = None
        if entry.done:
            return
        self.stats.requests_timed_out += 1
        link = entry.link
        log.warn(
            "Diameter {msg} e2e={e2e:#x}: no answer from {peer} within Tx ({tx} s)",
            msg=entry.request.name,
            e2e=entry.end_to_end,
            peer=link.name if link else "?",
            tx=self.settings.tx_timeout,
        )
        self._fail(
            entry,
            RequestTimeout(
                f"no answer to {entry.request.name} within Tx ({self.settings.tx_timeout} s)",
                peer=link.name if link else None,
                host=(link.identity or None) if link else None,
            ),
        )

    def _match(self, link: _PeerLink, hop_by_hop: int) -> _Pending | None:
        entry = self._pending.get(hop_by_hop)
        if entry is None or entry.hops.get(hop_by_hop, (None, 0.0))[0] is not link:
            return None
        return entry

    def deliver(self, link: _PeerLink, message: Message) -> None:
        """An application message from `link` (the state machine's Deliver)."""
        if message.is_request:
            self._dispatch(link, message)
        else:
            self._answer(link, message)

    def _answer(self, link: _PeerLink, answer: Message) -> None:
        hop = answer.hop_by_hop
        entry = self._match(link, hop)
        if entry is None or answer.end_to_end != entry.end_to_end:
            if hop in self._recent:
                self.stats.answers_duplicate += 1
                log.debug(
                    "Diameter peer {name}: duplicate {msg} dropped",
                    name=link.name,
                    msg=_brief(answer),
                )
            else:
                self.stats.answers_unexpected += 1
                log.warn(
                    "Diameter peer {name}: {msg} matches no pending request; dropped",
                    name=link.name,
                    msg=_brief(answer),
                )
            return
        latency = self.driver.seconds() - entry.hops[hop][1]
        self._finish(entry)
        self.stats.answers_received += 1
        link.record_latency(latency)
        if answer.command_code == CMD_CREDIT_CONTROL:
            link.cca_latency.observe(latency)
        self._log_latency(link, answer, latency)
        entry.deferred.callback(answer)

    def _log_latency(self, link: _PeerLink, answer: Message, latency: float) -> None:
        settings = self.settings
        millis = latency * 1000.0
        if not settings.cdp_event_latency or millis <= settings.cdp_event_threshold:
            return
        self.stats.slow_answers += 1
        log.emit(
            _KAMAILIO_LEVELS.get(settings.cdp_event_latency_log, LogLevel.warn),
            "Diameter {msg} from {peer} took {millis:.0f} ms (cdp_event_threshold {limit} ms)",
            msg=answer.name,
            peer=link.name,
            millis=millis,
            limit=settings.cdp_event_threshold,
        )

    def answer_invalid(
        self, link: _PeerLink, hop_by_hop: int, error: DecodeError, answer: Message | None
    ) -> None:
        """An answer failed decoding or the dictionary: fail its request at once."""
        entry = self._match(link, hop_by_hop)
        if entry is None:
            return
        self.stats.requests_invalid_answer += 1
        self._fail(
            entry,
            InvalidAnswer(
                f"invalid answer to {entry.request.name} from {link.name}: "
                f"{error.result_code} {error}",
                error=error,
                answer=answer,
                peer=link.name,
                host=link.identity or None,
            ),
        )

    # -- incoming requests -----------------------------------------------------------------------
    def _dispatch(self, link: _PeerLink, request: Message) -> None:
        self.stats.requests_received += 1
        log.debug("Diameter peer {name}: received {msg}", name=link.name, msg=_Brief(request))
        handler = self._handlers.get((request.app_id, request.command_code))
        if handler is None:
            self.stats.requests_unsupported += 1
            error = DecodeError(
                DIAMETER_COMMAND_UNSUPPORTED,
                f"no handler for {request.name} in application {request.app_id}",
            )
            link.send_answer(make_error_answer(request, error, self.origin_host, self.origin_realm))
            return
        call = cast(Callable[[Message, str], Any], handler)
        result: Deferred[Any] = defer.maybeDeferred(call, request, link.name)
        result.addCallbacks(
            self._handled,
            self._handler_failed,
            callbackArgs=(link, request),
            errbackArgs=(link, request),
        )
        result.addErrback(
            lambda failure: log.failure(
                "Diameter answer to {msg} not sent", failure, msg=_brief(request)
            )
        )

    def _handled(self, answer: Message, link: _PeerLink, request: Message) -> None:
        if not isinstance(answer, Message) or answer.is_request:
            raise TypeError(f"handler for {request.name} returned {answer!r}, not an answer")
        answer.hop_by_hop = request.hop_by_hop
        answer.end_to_end = request.end_to_end
        if answer.find("Origin-Host") is None:
            answer.append("Origin-Host", self.origin_host)
        if answer.find("Origin-Realm") is None:
            answer.append("Origin-Realm", self.origin_realm)
        link.send_answer(answer)

    def _handler_failed(self, failure: Failure, link: _PeerLink, request: Message) -> None:
        self.stats.handler_failures += 1
        log.failure(
            "Diameter handler for {msg} from {peer} failed; answering 5012",
            failure,
            msg=_brief(request),
            peer=link.name,
        )
        link.send_answer(
            make_answer(
                request,
                DIAMETER_UNABLE_TO_COMPLY,
                origin_host=self.origin_host,
                origin_realm=self.origin_realm,
            )
        )


class _Brief:
    """`_brief` of a message, computed only if a debug line is actually written."""

    __slots__ = ("message",)

    def __init__(self, message: Message) -> None:
        self.message = message

    def __str__(self) -> str:
        return _brief(self.message)


def _brief(message: Message) -> str:
    code = ""
    if not message.is_request:
        try:
            code = f" {message.result_code}"
        except DecodeError:
            code = " ?"
    return f"{message.name}{code} hbh={message.hop_by_hop:#x} e2e={message.end_to_end:#x}"


# -- building ------------------------------------------------------------------------------------


def validate_diameter(config: Config) -> list[str]:
    """Problems the per-key validator cannot see, one line each (empty: all good)."""
    problems: list[str] = []
    settings = config.diameter
    where = config.path
    hosts: dict[str, str] = {}
    for peer in config.peers:
        section = f"[peer:{peer.name}]"
        expected = peer.host.lower() or ("" if peer.uri.host_is_ip else peer.uri.host.lower())
        if peer.accept_incoming and not expected:
            problems.append(
                f"{where}: {section} host: needed with accept_incoming when uri is an IP "
                "address (the Origin-Host its CER must carry)"
            )
        if expected:
            other = hosts.setdefault(expected, peer.name)
            if other != peer.name:
                problems.append(
                    f"{where}: {section} host: {expected} is also [peer:{other}]'s Origin-Host"
                )
        if peer.accept_incoming and not settings.listen:
            problems.append(
                f"{where}: {section} accept_incoming: needs [diameter] listen to be set"
            )
    forced = settings.ro_forced_peer.lower()
    if forced and not any(
        forced in (peer.name.lower(), peer.host.lower(), peer.uri.host.lower())
        for peer in config.peers
    ):
        problems.append(
            f"{where}: [diameter] ro_forced_peer = {settings.ro_forced_peer}: "
            "expected the name or host of a [peer:NAME] section"
        )
    uses_tls = any(peer.uri.tls for peer in config.peers) or any(uri.tls for uri in settings.listen)
    if uses_tls or settings.tls_certificate:
        try:
            tls = load_tls(settings)
            if any(uri.tls for uri in settings.listen):
                tls.server()
        except TlsSetupError as err:
            problems.append(f"{where}: [diameter] {err}")
    return problems


def make_diameter_service(
    config: Config, reactor: Any, wheel_driver: WheelDriver
) -> DiameterService:
    """The Diameter service for `config`; raises ConfigError for cross-key problems."""
    problems = validate_diameter(config)
    if problems:
        raise ConfigError(problems)
    settings = config.diameter
    tls = None
    if (
        settings.tls_certificate
        or any(peer.uri.tls for peer in config.peers)
        or any(uri.tls for uri in settings.listen)
    ):
        tls = load_tls(settings)
    return DiameterService(settings, config.peers, reactor, wheel_driver, tls=tls)
