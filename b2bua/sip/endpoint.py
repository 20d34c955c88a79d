"""The SIP endpoint: listeners, the transaction table, its one timer, and dispatch to the TU.

It joins the sans-IO cores (parser, RFC 3261 §17 transactions) to the transports and to
the transaction user (the B2BUA call layer):

* received requests are validated (§8.2: a request that fails gets its error response,
  e.g. 400 with a Warning saying why, when enough of it parsed to route a response;
  otherwise it is dropped and counted), stamped with ``received``/``rport`` (§18.2.1,
  RFC 3581), then matched: retransmissions go to their server transaction, an ACK for
  a 2xx and new requests go to the TU; a CANCEL is answered here (§9.2) and reported;
* received responses go to their client transaction, or to the TU when none matches
  (a retransmitted 2xx, §13.2.2.4);
* requests the TU sends get our Via (sent-by and a fresh branch) and a client
  transaction; responses go back on the connection the request came on, else to the
  address §18.2.2 names.

All transaction timers share one entry in the process's timer wheel, armed at the
table's earliest deadline.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.interfaces import IListeningPort, IReactorTime

from b2bua import logs
from b2bua.config import SipSettings
from b2bua.sip.errors import LocalProtocolError, SipParseError
from b2bua.sip.headers import SipURI, Via
from b2bua.sip.message import (
    Request,
    Response,
    make_response,
    validate_request,
    validate_response,
)
from b2bua.sip.transaction import (
    Action,
    ClientTransaction,
    Deliver,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Send,
    ServerTransaction,
    Terminated,
    Timeout,
    TimerConfig,
    Transaction,
    TransactionTable,
    TransportError,
    make_cancel,
    new_branch,
    response_address,
    stamp_via,
)
from b2bua.sip.transport import (
    ConnectionTable,
    SipDatagramProtocol,
    Source,
    StreamFactory,
    TransportStats,
)
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerHandle

log = logs.logger(__name__)

#: Methods the endpoint relays or answers; sent in Allow on 405 and OPTIONS.
ALLOWED_METHODS = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, NOTIFY, REFER, MESSAGE"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a request goes: transport name and an IP address and port."""

    transport: str
    host: str
    port: int


class ClientListener(Protocol):
    """Told what becomes of a request the TU sent."""

    def response_received(self, response: Response) -> None: ...

    def timed_out(self) -> None: ...

    def transport_failed(self, reason: str) -> None: ...


class TransactionUser(Protocol):
    """The layer above the transactions (the B2BUA call map)."""

    def request_received(self, request: Request, server: ServerHandle) -> None: ...

    def ack_received(self, ack: Request, source: Source) -> None: ...

    def cancel_received(self, server: ServerHandle, cancel: Request) -> None: ...

    def stray_response(self, response: Response, source: Source) -> None: ...


class ServerHandle:
    """A received request's server transaction, as the TU sees it."""

    __slots__ = ("_endpoint", "_txn", "request", "source")

    def __init__(
        self, endpoint: SipEndpoint, txn: ServerTransaction, request: Request, source: Source
    ) -> None:
        self._endpoint = endpoint
        self._txn = txn
        self.request = request
        self.source = source

    @property
    def answered(self) -> bool:
        """True once a final response was sent."""
        last = self._txn.last_response
        return last is not None and last.status >= 200

    def make_response(
        self, status: int, reason: str | None = None, to_tag: str | None = None
    ) -> Response:
        return make_response(self.request, status, reason, to_tag)

    def respond(self, response: Response) -> None:
        """Send `response` through the transaction (retransmitted as §17.2 says)."""
        self._endpoint._run(self._txn, self._txn.respond(response, self._endpoint.now()))


class ClientHandle:
    """A request the TU sent; `cancel()` sends a CANCEL when §9.1 allows it."""

    __slots__ = (
        "_cancel_reason",
        "_cancel_wanted",
        "_endpoint",
        "_txn",
        "dest",
        "listener",
        "provisional_seen",
        "request",
    )

    def __init__(
        self,
        endpoint: SipEndpoint,
        txn: ClientTransaction,
        request: Request,
        dest: Destination,
        listener: ClientListener,
    ) -> None:
        self._endpoint = endpoint
        self._txn = txn
        self.request = request
        self.dest = dest
        self.listener = listener
        self.provisional_seen = False
        self._cancel_wanted = False
        self._cancel_reason: str | None = None

    def cancel(self, reason: str | None = None) -> None:
        """CANCEL this INVITE: now if a provisional response arrived, else on the first one.

        §9.1: a CANCEL must not be sent before a provisional response; one that is never
        answered is ended by timer B and the listener hears `timed_out`.
        """
        if self.request.method != "INVITE" or self._cancel_wanted:
            return
        self._cancel_wanted = True
        self._cancel_reason = reason
        if self.provisional_seen and not self._txn.terminated:
            self._send_cancel()

    def _send_cancel(self) -> None:
        cancel = make_cancel(self.request, self._cancel_reason)
        self._endpoint._send_cancel(cancel, self.dest)

    def _on_response(self, response: Response) -> None:
        if 200 <= response.status < 300 and self.request.method == "INVITE":
            self.request = self._txn.request  # what the Accepted transaction kept of it
        if response.status < 200 and not self.provisional_seen:
            self.provisional_seen = True
            if self._cancel_wanted:
                self._send_cancel()
        self.listener.response_received(response)


class _CancelListener:
    """Our own CANCELs: their answers matter to nobody (the INVITE gets its 487)."""

    def response_received(self, response: Response) -> None:
        pass

    def timed_out(self) -> None:
        pass

    def transport_failed(self, reason: str) -> None:
        pass


#: Methods counted by name in EndpointStats.requests_by_method (a bounded label set).
_COUNTED_METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "UPDATE", "INFO"}
    | {"SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH"}
)


@dataclass(slots=True)
class EndpointStats:
    """What the endpoint received, answered and refused."""

    requests_received: int = 0
    responses_received: int = 0
    retransmissions_absorbed: int = 0
    rejected_requests: int = 0
    dropped_messages: int = 0
    stray_responses: int = 0
    transport: TransportStats = field(default_factory=TransportStats)
    # By method (unknown methods count as OTHER) and by status code; retransmissions included.
    requests_by_method: Counter[str] = field(default_factory=Counter)
    responses_received_by_status: Counter[int] = field(default_factory=Counter)
    responses_sent_by_status: Counter[int] = field(default_factory=Counter)

    def count_request(self, method: str) -> None:
        self.requests_by_method[method if method in _COUNTED_METHODS else "OTHER"] += 1


class SipEndpoint:
    """Listeners, transactions and dispatch for one process."""

    def __init__(
        self,
        settings: SipSettings,
        reactor: Any,
        timers: WheelDriver,
        tu: TransactionUser | None = None,
    ) -> None:
        self.settings = settings
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.timers = timers
        self.tu = tu
        self.stats = EndpointStats()
        self.table = TransactionTable()
        self.timer_config = TimerConfig(t1=settings.t1, t2=settings.t2, t4=settings.t4)
        self._timer: TimerHandle | None = None
        self._armed_at: float | None = None
        self._udp: SipDatagramProtocol | None = None
        self._ports: list[IListeningPort] = []
        self._local: dict[str, tuple[str, int]] = {}
        self._contacts: dict[tuple[str, str, int], SipURI] = {}
        self.streams = ConnectionTable(
            sink=self,
            stats=self.stats.transport,
            max_message_size=settings.max_message_size,
            idle_timeout=settings.tcp_idle_timeout,
            clock=reactor,
            connect=self._connect,
        )
        self._tls_server: Any = None
        self._tls_client: Callable[[str], Any] | None = None

    # -- lifecycle --

    def now(self) -> float:
        return self.clock.seconds()

    def listen(self) -> None:
        """Bind every configured listener; raise (e.g. CannotListenError) if one fails."""
        for address in self.settings.listen:
            if address.transport == "udp":
                protocol = SipDatagramProtocol(
                    self, self.stats.transport, self.settings.max_message_size
                )
                # Twisted reads 8192 bytes by default and truncates silently: read one byte
                # more than the bound (UDP carries at most 64 KiB) so oversize is seen as such.
                port = self.reactor.listenUDP(
                    address.port,
                    protocol,
                    interface=address.host,
                    maxPacketSize=min(self.settings.max_message_size + 1, 65536),
                )
                self._udp = self._udp or protocol
            elif address.transport == "tcp":
                port = self.reactor.listenTCP(
                    address.port, StreamFactory(self.streams, "tcp"), interface=address.host
                )
            else:
                port = self.reactor.listenSSL(
                    address.port,
                    StreamFactory(self.streams, "tls"),
                    self._server_tls(),
                    interface=address.host,
                )
            self._ports.append(port)
            self._local.setdefault(address.transport, (address.host, port.getHost().port))
            log.info(
                "SIP listening on {address}",
                address=f"{address.transport}:{address.host}:{port.getHost().port}",
            )

    def stop(self) -> list[Any]:
        """Close listeners and connections; returns the Deferreds of the closing ports."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.streams.close_all()
        closing = [port.stopListening() for port in self._ports]
        self._ports.clear()
        return closing

    def local_address(self, transport: str) -> tuple[str, int]:
        """Our address for `transport` (sent-by and Contact); falls back to any listener."""
        address = self._local.get(transport)
        if address is None:
            address = next(iter(self._local.values()), ("127.0.0.1", 5060))
        return address

    def contact_uri(self, transport: str) -> SipURI:
        """A SIP URI that reaches this endpoint over `transport`.

        One object per address, shared by every call (each leg keeps one): do not mutate it.
        """
        host, port = self.local_address(transport)
        key = (transport, host, port)
        uri = self._contacts.get(key)
        if uri is None:
            host = f"[{host}]" if ":" in host else host
            params: dict[str, str | None] = {} if transport == "udp" else {"transport": transport}
            uri = self._contacts[key] = SipURI(
                host,
                user="b2bua",
                port=port,
                scheme="sips" if transport == "tls" else "sip",
                params=params,
            )
        return uri

    # -- from the transports --

    def message_received(self, message: Request | Response, source: Source) -> None:
        try:
            if isinstance(message, Request):
                self._request_received(message, source)
            else:
                self._response_received(message, source)
        except Exception:  # glue boundary: nothing escapes to the reactor
            log.failure(
                "error handling a SIP message from {host}:{port}",
                host=source.host,
                port=source.port,
            )
        self._rearm()

    def parse_failed(self, error: SipParseError, source: Source) -> None:
        """A message that did not parse: answer it when enough of it did, else drop it."""
        request = error.message
        if isinstance(request, Request) and request.method != "ACK":
            try:
                self._reject(request, source, error)
                return
            except SipParseError:
                pass  # too broken to answer (no usable Via, CSeq...): drop it
        self.stats.dropped_messages += 1
        log.debug(
            "dropped unparsable message from {host}:{port}: {reason}",
            host=source.host,
            port=source.port,
            reason=error.reason,
        )

    # -- requests --

    def _request_received(self, request: Request, source: Source) -> None:
        self.stats.requests_received += 1
        self.stats.count_request(request.method)
        try:
            validate_request(request)
            stamp_via(request, source.host, source.port)
        except SipParseError as err:
            if request.method == "ACK":
                self.stats.dropped_messages += 1
                return  # §17.2.1: an ACK is never answered
            self._reject(request, source, err)
            return
        now = self.now()
        if request.method == "CANCEL":
            self._cancel_received(request, source, now)
            return
        existing = self.table.match_request(request)
        if existing is not None:
            self.stats.retransmissions_absorbed += request.method != "ACK"
            self._run(existing, existing.receive(request, now))
            return
        if request.method == "ACK":
            if self.tu is not None:
                self.tu.ack_received(request, source)
            return
        txn: ServerTransaction
        if request.method == "INVITE":
            txn = InviteServerTransaction(
                request, config=self.timer_config, reliable=source.reliable, dest=source
            )
        else:
            txn = NonInviteServerTransaction(
                request, config=self.timer_config, reliable=source.reliable, dest=source
            )
        self.table.add(txn)
        txn.user_data = ServerHandle(self, txn, request, source)
        self._run(txn, txn.start(now))

    def _cancel_received(self, cancel: Request, source: Source, now: float) -> None:
        """§9.2: answer the CANCEL itself here; tell the TU so it answers the INVITE 487."""
        retransmitted = self.table.match_request(cancel)
        if retransmitted is not None:
            self._run(retransmitted, retransmitted.receive(cancel, now))
            return
        invite = self.table.match_cancel(cancel)
        txn = NonInviteServerTransaction(
            cancel, config=self.timer_config, reliable=source.reliable, dest=source
        )
        self.table.add(txn)
        txn.start(now)
        if invite is None or (
            invite.last_response is not None and invite.last_response.status >= 200
        ):
            self._run(txn, txn.respond(make_response(cancel, 481 if invite is None else 200), now))
            return
        self._run(txn, txn.respond(make_response(cancel, 200), now))
        handle = invite.user_data
        if self.tu is not None and isinstance(handle, ServerHandle):
            self.tu.cancel_received(handle, cancel)

    def _reject(self, request: Request, source: Source, error: SipParseError) -> None:
        """Answer a request we refuse, statelessly (§8.2: 400 with a Warning saying why).

        Like any request, its top Via is stamped first (§18.2.1, RFC 3581), so the answer
        goes where the packet came from; one whose top Via does not parse is answered to
        the packet's source address, and one without any Via is dropped.
        """
        fallback: tuple[str, int] | None = None
        try:
            stamp_via(request, source.host, source.port)
        except SipParseError:
            if request.headers.get("via") is None:
                self.stats.dropped_messages += 1
                log.debug("dropped {method} without Via", method=request.method)
                return
            fallback = (source.host, source.port)
        response = make_response(request, error.status_hint)
        warning = error.reason.replace('"', "'")
        response.headers.add("Warning", f'399 b2bua "{warning}"')
        for name, value in error.headers:
            response.headers.add(name, value)
        self.stats.rejected_requests += 1
        self._send_response(response, source, fallback)
        log.debug(
            "rejected {method} from {host}: {status} {reason}",
            method=request.method,
            host=source.host,
            status=error.status_hint,
            reason=error.reason,
        )

    # -- responses --

    def _response_received(self, response: Response, source: Source) -> None:
        self.stats.responses_received += 1
        self.stats.responses_received_by_status[response.status] += 1
        try:
            validate_response(response)
        except SipParseError as err:
            self.stats.dropped_messages += 1
            log.debug(
                "dropped bad response from {host}: {reason}", host=source.host, reason=err.reason
            )
            return
        txn = self.table.match_response(response)
        if txn is None:
            self.stats.stray_responses += 1
            if self.tu is not None:
                self.tu.stray_response(response, source)
            return
        self._run(txn, txn.receive(response, self.now()))

    # -- sending --

    def send_request(
        self, request: Request, dest: Destination, listener: ClientListener
    ) -> ClientHandle:
        """Send `request` to `dest` in a new client transaction; `listener` hears the outcome."""
        self._push_via(request, dest.transport)
        txn: ClientTransaction
        reliable = dest.transport != "udp"
        if request.method == "INVITE":
            txn = InviteClientTransaction(
                request, config=self.timer_config, reliable=reliable, dest=dest
            )
        elif request.method == "ACK":
            raise LocalProtocolError("an ACK for a 2xx is sent with send_ack")
        else:
            txn = NonInviteClientTransaction(
                request, config=self.timer_config, reliable=reliable, dest=dest
            )
        handle = ClientHandle(self, txn, request, dest, listener)
        txn.user_data = handle
        self.table.add(txn)
        self._run(txn, txn.start(self.now()))
        self._rearm()
        return handle

    def send_ack(self, ack: Request, dest: Destination) -> None:
        """Send the ACK for a 2xx (§13.2.2.4): no transaction, its own branch."""
        self._push_via(ack, dest.transport)
        self._send_to(ack.serialize(), dest.transport, dest.host, dest.port)

    def _send_cancel(self, cancel: Request, dest: Destination) -> None:
        txn = NonInviteClientTransaction(
            cancel, config=self.timer_config, reliable=dest.transport != "udp", dest=dest
        )
        txn.user_data = None
        self.table.add(txn)
        self._run(txn, txn.start(self.now()))
        self._rearm()

    def _push_via(self, request: Request, transport: str) -> None:
        host, port = self.local_address(transport)
        host = f"[{host}]" if ":" in host else host
        via = Via(transport.upper(), host, port, {"branch": new_branch(), "rport": None})
        request.headers.insert_top("Via", via)

    def _send_response(
        self, response: Response, source: Source, address: tuple[str, int] | None = None
    ) -> None:
        data = response.serialize()
        self.stats.responses_sent_by_status[response.status] += 1
        connection = source.connection
        if connection is not None and connection.transport is not None and connection.connected:
            connection.write(data)
            return
        host, port = address or response_address(response.top_via, None)
        self._send_to(data, source.transport, host, port)

    def _send_to(self, data: bytes, transport: str, host: str, port: int) -> None:
        if transport == "udp":
            if self._udp is None:
                raise LocalProtocolError("no UDP listener to send from")
            self._udp.send(data, host, port)
        else:
            self.streams.send(transport, host, port, data)

    def _connect(self, transport: str, host: str, port: int, factory: StreamFactory) -> None:
        if transport == "tls":
            self.reactor.connectSSL(host, port, factory, self._client_tls(host))
        else:
            self.reactor.connectTCP(host, port, factory, timeout=self.settings.t1 * 64)

    # -- actions and timers --

    def _run(self, txn: Transaction, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._send_action(txn, action)
            elif isinstance(action, Deliver):
                self._deliver(txn, action)
            elif isinstance(action, Timeout):
                self._client_event(txn, "timed_out")
            elif isinstance(action, TransportError):
                self._client_event(txn, "transport_failed", action.reason)
            elif isinstance(action, Terminated):
                pass  # the table forgets terminated transactions itself

    def _send_action(self, txn: Transaction, action: Send) -> None:
        message, dest = action.message, action.dest
        if isinstance(dest, Source):
            assert isinstance(message, Response)
            self._send_response(message, dest)
        elif isinstance(dest, Destination):
            self._send_to(message.serialize(), dest.transport, dest.host, dest.port)

    def _deliver(self, txn: Transaction, action: Deliver) -> None:
        message = action.message
        handle = txn.user_data
        if isinstance(message, Response):
            if isinstance(handle, ClientHandle):
                handle._on_response(message)
        elif isinstance(handle, ServerHandle) and self.tu is not None:
            self.tu.request_received(handle.request, handle)
        elif isinstance(handle, ServerHandle):
            handle.respond(handle.make_response(503))

    def _client_event(self, txn: Transaction, event: str, *args: str) -> None:
        handle = txn.user_data
        if isinstance(handle, ClientHandle):
            getattr(handle.listener, event)(*args)

    def _rearm(self) -> None:
        """Keep one wheel timer at the table's earliest deadline."""
        due = self.table.next_deadline()
        if due == self._armed_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed_at = due
        if due is not None:
            self._timer = self.timers.schedule(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._armed_at = None
        try:
            for txn, action in self.table.expire(self.now()):
                self._run(txn, [action])
        except Exception:  # glue boundary
            log.failure("error running SIP transaction timers")
        self._rearm()

    # -- TLS --

    def _server_tls(self) -> Any:
        if self._tls_server is None:
            from b2bua.sip.tls import server_context

            self._tls_server = server_context(self.settings)
        return self._tls_server

    def _client_tls(self, host: str) -> Any:
        from b2bua.sip.tls import client_context

        return client_context(self.settings, host)
