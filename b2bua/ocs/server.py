"""The lab OCS on the network: a Diameter server for b2bua clients, on Twisted.

`OcsServer` is the protocol factory of the OCS's listening port. Each accepted connection
is a `DiameterProtocol` (framing, dictionary checks and RFC 6733 §7 error answers happen
there); its first message must be a CER, which binds it to the RFC 6733 §5.6 state
machine (`Peer`) of the client's Origin-Host. In R-Open, requests go to the
`CreditControlHandler` and its answers back on the same connection; DWR and DPR are
answered by the state machine. A client that connects again while its old connection
still looks open (it restarted, or the old connection died silently) replaces it: the
old connection is dropped, as the client evidently no longer uses it. A connection that
sends no CER within `cer_timeout` seconds is closed.

The OCS also sends requests (`send_rar`, `send_asr`, `reauth_subscriber`): to the client
that opened the session, over that client's connection, with a Tx timer (`tx_timeout`);
the Deferred fires with the answer's Result-Code or fails with `SessionNotFound`,
`PeerUnavailable`, `AnswerTimeout` or `ConnectionClosed`. An answer DIAMETER_UNKNOWN_SESSION_ID
(5002) tells the OCS the client no longer knows the session; it is dropped from the
registry (the backend releases it when it goes stale).

Session supervision (RFC 4006 §13, the server's Tcc): every `sweep_interval` seconds, on
the timer wheel, `OcsBackend.expire_stale` releases the reservations of sessions silent
past Validity-Time plus the grace, and those sessions leave the registry.

`OcsService` is the `twistd` service around it: builds the backend (memory, or Redis
with `connect_redis_backend`), provisions the accounts, opens the ledger, listens, runs
the sweeper, and on stop sends DPR to every client (bounded by `dpa_timeout`), stops
listening and closes the ledger. `make_ocs_service` builds it from a `Config`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    ensureDeferred,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IAddress, IListeningPort, IReactorTime
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from b2bua import logs
from b2bua.config import Config, OcsSettings
from b2bua.diameter.dictionary import (
    APP_CREDIT_CONTROL,
    DIAMETER_UNKNOWN_SESSION_ID,
    DISCONNECT_REBOOTING,
    VENDOR_3GPP,
)
from b2bua.diameter.errors import DecodeError, DiameterError
from b2bua.diameter.message import Message
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
    PeerNotOpen,
    PeerState,
    Send,
)
from b2bua.diameter.protocol import DiameterProtocol, LocalIdentity, ProtocolStats
from b2bua.ocs.accounts import Account, AccountExistsError, OcsBackend, load_accounts
from b2bua.ocs.backend_memory import MemoryBackend
from b2bua.ocs.backend_redis import RedisBackend, connect_redis_backend
from b2bua.ocs.handler import CreditControlHandler, OpenSession, build_asr, build_rar
from b2bua.ocs.ledger import Ledger
from b2bua.ocs.operator import Operator
from b2bua.ocs.rating import CreditPolicy, ExpiredReservation
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerHandle

__all__ = [
    "AnswerTimeout",
    "ConnectionClosed",
    "OcsServer",
    "OcsService",
    "PeerUnavailable",
    "SessionNotFound",
    "build_backend",
    "make_ocs_service",
    "peer_config",
]

log = logs.logger(__name__)


class SessionNotFound(DiameterError, LookupError):
    """No open session with that Session-Id."""


class PeerUnavailable(DiameterError):
    """The client that opened the session has no open connection to the OCS."""


class AnswerTimeout(DiameterError):
    """No answer within the Tx timer."""


class ConnectionClosed(DiameterError):
    """The connection closed before the answer arrived."""


def peer_config(
    origin_host: str,
    origin_realm: str,
    *,
    host_ip: str = "127.0.0.1",
    origin_state_id: int = 0,
    dpa_timeout: float = 5.0,
) -> PeerConfig:
    """What the OCS announces in its CEA: credit control (4), 3GPP as a supported vendor."""
    return PeerConfig(
        origin_host=origin_host,
        origin_realm=origin_realm,
        host_ip_addresses=(host_ip,),
        product_name="b2bua-ocs",
        origin_state_id=origin_state_id,
        auth_application_ids=(APP_CREDIT_CONTROL,),
        supported_vendor_ids=(VENDOR_3GPP,),
        dpa_timeout=dpa_timeout,
    )


@dataclass
class _Pending:
    """A request the OCS sent, waiting for its answer."""

    deferred: Deferred[Message]
    timer: TimerHandle
    session_id: str
    name: str


class OcsServer(Factory):
    """Accepts b2bua clients, answers their requests, sends them RAR and ASR."""

    noisy = False

    def __init__(
        self,
        handler: CreditControlHandler,
        clock: IReactorTime,
        driver: WheelDriver,
        config: PeerConfig,
        *,
        tx_timeout: float = 10.0,
        cer_timeout: float = 10.0,
        sweep_interval: float = 30.0,
        stale_after: float = 660.0,
    ) -> None:
        self.handler = handler
        self.backend = handler.backend
        self.registry = handler.registry
        self.clock = clock
        self.driver = driver
        self.config = config
        self.tx_timeout = tx_timeout
        self.cer_timeout = cer_timeout
        self.sweep_interval = sweep_interval
        #: Registry entries not heard of for this long are dropped even if the backend
        #: did not report them (another OCS process sharing Redis released them).
        self.stale_after = stale_after
        self.identity = LocalIdentity(config.origin_host, config.origin_realm)
        self.stats = ProtocolStats()
        self._peers: dict[str, Peer] = {}
        self._bound: dict[DiameterProtocol, Peer] = {}
        self._unbound: dict[DiameterProtocol, TimerHandle] = {}
        self._peer_timers: dict[Peer, TimerHandle] = {}
        self._pending: dict[tuple[DiameterProtocol, int], _Pending] = {}
        self._sweeper: TimerHandle | None = None
        self._sweeping = False
        self._closing_waiters: list[Deferred[None]] = []

    # -- Factory --

    def buildProtocol(self, addr: IAddress | None) -> DiameterProtocol:
        """A connection from a client, owned by this server until its CER binds it."""
        return DiameterProtocol(self, self.identity, self.stats, label="ocs")

    # -- ConnectionOwner --

    def connection_made(self, conn: DiameterProtocol) -> None:
        """Wait `cer_timeout` for the CER."""
        log.debug("OCS: connection from {address}", address=conn.peer_address)
        self._unbound[conn] = self.driver.call_later(self.cer_timeout, self._no_cer, conn)

    def message_received(self, conn: DiameterProtocol, message: Message) -> None:
        """Feed the peer state machine; the first message must be a CER."""
        now = self.clock.seconds()
        peer = self._bound.get(conn)
        if peer is not None:
            self._run(peer, peer.receive(now, conn, message))
            return
        timer = self._unbound.pop(conn, None)
        if timer is not None:
            timer.cancel()
        if message.name != "CER":
            log.warn(
                "OCS: {address} sent {name} before CER; closing",
                address=conn.peer_address,
                name=message.name,
            )
            conn.close("first message was not a CER")
            return
        host = (message.origin_host or "").lower()
        peer = self._peers.get(host)
        if peer is not None and peer.is_open:
            old = peer.active_conn
            log.warn(
                "OCS: {host} connected again from {address}; dropping its old connection",
                host=host,
                address=conn.peer_address,
            )
            if isinstance(old, DiameterProtocol):
                self._run(peer, peer.disconnected(now, old))
                self._forget_conn(old, "replaced by a new connection")
                old.abort("replaced by a new connection")
        if peer is None or peer.state is not PeerState.CLOSED:
            peer = Peer(self.config, now)
        self._peers[host] = peer
        self._run(peer, peer.incoming_cer(now, conn, message))
        if peer.state is PeerState.CLOSED and self._peers.get(host) is peer:
            del self._peers[host]  # refused (e.g. 5010): nothing to remember

    def message_rejected(
        self, conn: DiameterProtocol, error: DecodeError, message: Message | None, answered: bool
    ) -> None:
        """A malformed first message closes; a malformed answer fails its request."""
        timer = self._unbound.pop(conn, None)
        if timer is not None:
            timer.cancel()
            conn.close("malformed first message")
            return
        header = error.header
        if header is None or header.is_request:
            return
        pending = self._pending.pop((conn, header.hop_by_hop), None)
        if pending is not None:
            pending.timer.cancel()
            pending.deferred.errback(error)

    def connection_lost(self, conn: DiameterProtocol, reason: Failure) -> None:
        """Tell the state machine; fail what waited for an answer on this connection."""
        timer = self._unbound.pop(conn, None)
        if timer is not None:
            timer.cancel()
        peer = self._bound.get(conn)
        if peer is not None:
            self._run(peer, peer.disconnected(self.clock.seconds(), conn))
        self._forget_conn(conn, "connection lost")
        self._check_closed()

    # -- actions of the state machine --

    def _run(self, peer: Peer, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                conn = action.conn
                if isinstance(conn, DiameterProtocol):
                    conn.write(action.data)
            elif isinstance(action, Disconnect):
                if isinstance(action.conn, DiameterProtocol):
                    action.conn.close(action.reason)
            elif isinstance(action, Accept):
                if isinstance(action.conn, DiameterProtocol):
                    self._bound[action.conn] = peer
            elif isinstance(action, Opened):
                log.info(
                    "OCS: client {host} ({realm}) connected from {address}",
                    host=action.peer.origin_host,
                    realm=action.peer.origin_realm,
                    address=getattr(action.conn, "peer_address", "?"),
                )
            elif isinstance(action, Closed):
                log.info("OCS: client connection closed: {reason}", reason=action.reason)
                for host, known in list(self._peers.items()):
                    if known is peer:
                        del self._peers[host]
            elif isinstance(action, Deliver):
                self._deliver(action.conn, action.message)
            elif isinstance(action, DwaReceived | Connect):
                pass  # the OCS sends no DWR and never initiates a connection
        self._arm(peer)

    def _arm(self, peer: Peer) -> None:
        """Keep one wheel timer at the state machine's deadline (DPA wait, ...)."""
        old = self._peer_timers.pop(peer, None)
        if old is not None:
            old.cancel()
        deadline = peer.next_deadline()
        if deadline is not None:
            self._peer_timers[peer] = self.driver.schedule(deadline, self._peer_timeout, peer)

    def _peer_timeout(self, peer: Peer) -> None:
        self._peer_timers.pop(peer, None)
        self._run(peer, peer.on_timer(self.clock.seconds()))

    def _no_cer(self, conn: DiameterProtocol) -> None:
        if self._unbound.pop(conn, None) is not None:
            log.warn("OCS: {address} sent no CER; closing", address=conn.peer_address)
            conn.close("no CER")

    def _forget_conn(self, conn: DiameterProtocol, why: str) -> None:
        self._bound.pop(conn, None)
        for key in [key for key in self._pending if key[0] is conn]:
            pending = self._pending.pop(key)
            pending.timer.cancel()
            pending.deferred.errback(ConnectionClosed(f"{pending.name} to {why}"))

    def _deliver(self, conn: object, message: Message) -> None:
        if not isinstance(conn, DiameterProtocol):
            return
        if not message.is_request:
            pending = self._pending.pop((conn, message.hop_by_hop), None)
            if pending is None:
                log.warn(
                    "OCS: unexpected {name} hbh={hbh:#x} from {address}",
                    name=message.name,
                    hbh=message.hop_by_hop,
                    address=conn.peer_address,
                )
                return
            pending.timer.cancel()
            pending.deferred.callback(message)
            return
        log.debug("OCS: <- {request!r}", request=message)
        answered = self.handler.handle(message, self.clock.seconds())

        def send(answer: Message) -> None:
            log.debug("OCS: -> {answer!r}", answer=answer)
            if conn.closing:
                log.warn(
                    "OCS: {name} of {session} answered after its connection closed",
                    name=message.name,
                    session=message.session_id,
                )
                return
            conn.send_message(answer)

        answered.addCallback(send).addErrback(
            lambda failure: log.failure("OCS: answering {name}", failure, name=message.name)
        )

    # -- requests to clients --

    def open_peers(self) -> list[str]:
        """Origin-Hosts of the clients connected now."""
        return sorted(host for host, peer in self._peers.items() if peer.is_open)

    def send_rar(self, session_id: str) -> Deferred[int]:
        """Re-Auth-Request (AUTHORIZE_ONLY) to the session's client; the RAA's Result-Code."""
        return self._send_to_session(session_id, "RAR", build_rar)

    def send_asr(self, session_id: str) -> Deferred[int]:
        """Abort-Session-Request to the session's client; the ASA's Result-Code."""
        return self._send_to_session(session_id, "ASR", build_asr)

    def _send_to_session(
        self, session_id: str, name: str, build: Callable[..., Message]
    ) -> Deferred[int]:
        session = self.registry.get(session_id)
        if session is None:
            return fail(SessionNotFound(f"no open session {session_id!r}"))
        peer = self._peers.get(session.peer_host.lower())
        conn = peer.active_conn if peer is not None else None
        if peer is None or not isinstance(conn, DiameterProtocol) or conn.closing:
            return fail(PeerUnavailable(f"client {session.peer_host} is not connected"))
        hop_by_hop = peer.ids.next_hop_by_hop()
        while (conn, hop_by_hop) in self._pending:
            hop_by_hop = peer.ids.next_hop_by_hop()
        request = build(
            session,
            origin_host=self.config.origin_host,
            origin_realm=self.config.origin_realm,
            hop_by_hop=hop_by_hop,
            end_to_end=peer.ids.next_end_to_end(),
            origin_state_id=self.config.origin_state_id,
        )
        now = self.clock.seconds()
        try:
            actions = peer.send(now, request)
        except PeerNotOpen as error:
            return fail(PeerUnavailable(str(error)))
        key = (conn, hop_by_hop)
        deferred: Deferred[Message] = Deferred(lambda _: self._cancel(key))
        timer = self.driver.call_later(self.tx_timeout, self._answer_timeout, key)
        self._pending[key] = _Pending(deferred, timer, session_id, name)
        log.info(
            "OCS: {name} to {host} for {session}",
            name=name,
            host=session.peer_host,
            session=session_id,
        )
        self._run(peer, actions)
        return deferred.addCallback(self._answered, session)

    def _answered(self, answer: Message, session: OpenSession) -> int:
        code = int(answer.result_code or 0)
        if code == DIAMETER_UNKNOWN_SESSION_ID:
            self.registry.close(session.session_id)
        return code

    def _answer_timeout(self, key: tuple[DiameterProtocol, int]) -> None:
        pending = self._pending.pop(key, None)
        if pending is not None:
            pending.deferred.errback(
                AnswerTimeout(f"no answer to {pending.name} within {self.tx_timeout:g} s")
            )

    def _cancel(self, key: tuple[DiameterProtocol, int]) -> None:
        pending = self._pending.pop(key, None)
        if pending is not None:
            pending.timer.cancel()

    # -- session supervision --

    def start_sweeper(self) -> None:
        """Run `sweep` every `sweep_interval` seconds on the wheel."""
        if self._sweeper is None or not self._sweeper.active:
            self._sweeper = self.driver.call_later(self.sweep_interval, self._sweep_tick)

    def stop_sweeper(self) -> None:
        """Stop the periodic sweep."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _sweep_tick(self) -> None:
        self._sweeper = None
        if not self._sweeping:
            self._sweeping = True

            def done(result: object) -> object:
                self._sweeping = False
                return result

            self.sweep().addBoth(done).addErrback(
                lambda failure: log.failure("OCS: sweeping stale sessions", failure)
            )
        self.start_sweeper()

    def sweep(self) -> Deferred[list[ExpiredReservation]]:
        """Release stale sessions now; the reservations released."""
        now = self.clock.seconds()

        def forget(released: list[ExpiredReservation]) -> list[ExpiredReservation]:
            for item in released:
                if self.registry.close(item.session_id) is not None:
                    log.info(
                        "OCS: session {session} of {subscriber} expired; "
                        "{units} units of rating group {rg} released",
                        session=item.session_id,
                        subscriber=item.subscriber,
                        units=item.released_units,
                        rg=item.rating_group,
                    )
            self.registry.prune(now - self.stale_after)
            return released

        return self.backend.expire_stale(now).addCallback(forget)

    # -- shutdown --

    def disconnect_all(self, timeout: float = 5.0) -> Deferred[None]:
        """DPR to every connected client; fires when all are closed or `timeout` passed."""
        now = self.clock.seconds()
        for peer in list(self._peers.values()):
            if peer.is_open:
                self._run(peer, peer.stop(now, DISCONNECT_REBOOTING))
        for conn in list(self._unbound):
            conn.close("OCS stopping")
        if not self._bound and not self._unbound:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._closing_waiters.append(waiter)
        call = self.clock.callLater(timeout, self._give_up_closing)

        def closed(result: None) -> None:
            if call.active():
                call.cancel()
            return result

        return waiter.addCallback(closed)

    def _check_closed(self) -> None:
        if self._bound or self._unbound:
            return
        waiters, self._closing_waiters = self._closing_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _give_up_closing(self) -> None:
        for conn in list(self._bound) + list(self._unbound):
            conn.abort("OCS stopping: no DPA in time")
        self._bound.clear()
        self._unbound.clear()
        self._check_closed()


# -- the service --


def build_backend(settings: OcsSettings, ledger: Ledger | None) -> Deferred[OcsBackend]:
    """The backend `settings` ask for: memory now, or Redis once connected."""
    policy = CreditPolicy(
        final_unit_style="4012" if settings.final_unit_style == "4012" else "fui",
        default_validity=settings.validity_time,
        stale_grace=settings.stale_grace,
    )
    if settings.backend == "memory":
        memory: OcsBackend = MemoryBackend(settings.rates, policy, ledger)
        return succeed(memory)
    url = settings.redis_url
    connected: Deferred[RedisBackend] = connect_redis_backend(
        url.host,
        url.port,
        dbid=url.db,
        password=url.password,
        prefix=settings.key_prefix,
        rating=settings.rates,
        policy=policy,
        ledger=ledger,
    )

    def as_backend(backend: RedisBackend) -> OcsBackend:
        return backend

    return connected.addCallback(as_backend)


async def _provision(backend: OcsBackend, accounts: Sequence[Account], shared: bool) -> int:
    """Memory: provision every account. Shared (Redis): create only the missing ones."""
    if not shared:
        return await backend.provision(accounts)
    created = 0
    for account in accounts:
        try:
            await backend.create_account(account)
        except AccountExistsError:
            continue
        created += 1
    return created


class OcsService(Service):
    """The OCS as a twistd service (see the module doc).

    `ready` fires once the backend is built, the accounts provisioned and the port open
    (with the memory backend, within `startService`). `operator` is usable from then on.
    """

    name = "ocs"

    def __init__(
        self,
        settings: OcsSettings,
        reactor: Any,
        driver: WheelDriver,
        *,
        accounts: Sequence[Account] | None = None,
        sweep_interval: float | None = None,
        tx_timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self.reactor = reactor
        self.driver = driver
        self.accounts = accounts
        if sweep_interval is None:
            sweep_interval = float(min(60, max(1, settings.stale_grace)))
        self.sweep_interval = sweep_interval
        self.tx_timeout = tx_timeout
        self.ready: Deferred[OcsService] = Deferred()
        self.ledger: Ledger | None = None
        self.backend: OcsBackend | None = None
        self.handler: CreditControlHandler | None = None
        self.server: OcsServer | None = None
        self.operator: Operator | None = None
        self.port: IListeningPort | None = None
        self._starting: Deferred[None] | None = None

    def startService(self) -> None:
        """Build and listen; a synchronous failure (port in use) raises from here."""
        super().startService()
        outcome: list[object] = []

        def note(result: object) -> object:
            outcome.append(result)
            return result

        starting: Deferred[None] = ensureDeferred(self._start())
        self._starting = starting
        starting.addBoth(note)
        if outcome and isinstance(outcome[0], Failure):
            starting.addErrback(lambda _: None)
            outcome[0].raiseException()
        starting.addErrback(self._start_failed)

    def _start_failed(self, failure: Failure) -> None:
        if failure.check(CancelledError):
            return
        log.critical("OCS cannot start: {error}", error=str(failure.value) or failure.type)
        if not self.ready.called:
            self.ready.errback(failure)
        stop = getattr(self.reactor, "stop", None)
        if stop is not None and getattr(self.reactor, "running", False):
            stop()

    async def _start(self) -> None:
        settings = self.settings
        accounts = self.accounts
        if accounts is None:
            accounts = load_accounts(settings.accounts) if settings.accounts else []
        self.ledger = Ledger(settings.ledger) if settings.ledger else None
        backend = await build_backend(settings, self.ledger)
        self.backend = backend
        provisioned = await _provision(backend, accounts, settings.backend == "redis")
        origin_state_id = int(time.time()) & 0xFFFFFFFF
        handler = CreditControlHandler(
            backend,
            origin_host=settings.origin_host,
            origin_realm=settings.origin_realm,
            rating=settings.rates,
            default_rating_group=settings.default_rating_group,
            origin_state_id=origin_state_id,
        )
        host = settings.listen.host
        self.server = OcsServer(
            handler,
            self.reactor,
            self.driver,
            peer_config(
                settings.origin_host,
                settings.origin_realm,
                host_ip=host if host not in ("0.0.0.0", "::") else "127.0.0.1",
                origin_state_id=origin_state_id,
            ),
            tx_timeout=self.tx_timeout,
            sweep_interval=self.sweep_interval,
            stale_after=float(settings.validity_time + settings.stale_grace),
        )
        self.handler = handler
        self.operator = Operator(backend, handler.registry, self.server)
        self.port = self.reactor.listenTCP(settings.listen.port, self.server, interface=host)
        self.server.start_sweeper()
        log.info(
            "OCS listening on {listen} as {host} ({realm}); {count} accounts, "
            "{backend} backend, final units: {style}",
            listen=str(settings.listen),
            host=settings.origin_host,
            realm=settings.origin_realm,
            count=provisioned,
            backend=settings.backend,
            style=settings.final_unit_style,
        )
        self.ready.callback(self)

    def stopService(self) -> Deferred[None]:
        """DPR to the clients, stop listening, close the backend and the ledger."""
        super().stopService()
        if self._starting is not None and not self._starting.called:
            self._starting.cancel()
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        server = self.server
        if server is not None:
            server.stop_sweeper()
        if self.port is not None:
            port, self.port = self.port, None
            await maybeDeferred(port.stopListening)
        if server is not None:
            await server.disconnect_all(server.config.dpa_timeout)
        backend = self.backend
        if isinstance(backend, RedisBackend):
            try:
                await backend.disconnect()
            except Exception as error:  # shutting down: note it and go on
                log.warn("OCS: closing the Redis connection: {error}", error=error)
        if self.ledger is not None:
            self.ledger.close()
        log.info("OCS stopped")


def make_ocs_service(
    config: Config,
    reactor: Any,
    wheel_driver: WheelDriver,
    *,
    accounts: Sequence[Account] | None = None,
) -> OcsService:
    """The OCS service for ``config.ocs`` (what ``twistd b2bua`` adds when enabled).

    `accounts` replaces the accounts file of the configuration (already loaded, e.g. by
    ``twistd ocs --check``). The wheel driver is the process's; the OCS only adds timers.
    """
    return OcsService(config.ocs, reactor, wheel_driver, accounts=accounts)
