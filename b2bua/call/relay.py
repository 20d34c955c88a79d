"""Out-of-dialog SIP MESSAGE (RFC 3428) relayed statefully, with a hook for event charging.

A MESSAGE outside any dialog on a route whose ``event_charging`` is not ``off`` is relayed
as a B2BUA does: a new request (new Call-ID, From tag and CSeq, the Request-URI, From
and To kept, Max-Forwards decremented, the body and the headers the policy passes) goes to
the route's next hop in a non-INVITE client transaction (RFC 3261 §17.1.2), and its final
response is relayed back on the server transaction: same status, reason, body and the
response headers that cross. A next hop that does not answer gets the sender a 408
(Timer F, §17.1.2.2), one that cannot be reached a 503 (§8.1.3.1). Without a route, or
on a route with ``event_charging = off``, MESSAGE is not taken here and gets 405 as before.

Before the MESSAGE leaves, every :class:`MessageObserver` is asked (the charging hook): one
that returns True HOLDS it until :meth:`MessageRelays.forward` or
:meth:`MessageRelays.refuse`; when the relay is done the observers hear the final status
(None: no response) through ``message_done``, and then every observer hears
``message_ended`` once the sender has its final answer, whoever gave it (the CDR).

No reactor here: requests go out through the ``send`` function handed in, ``now`` comes
from the timer driver's clock, and nothing raised reaches the endpoint.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from b2bua import logs
from b2bua.call.policy import HeaderPolicy
from b2bua.call.routing import Router, next_hop
from b2bua.config import RouteSettings
from b2bua.sip.dialog import Hop, new_call_id, new_tag
from b2bua.sip.errors import SipParseError
from b2bua.sip.message import Headers, Request, Response, make_response
from b2bua.sip.transport import Source

__all__ = ["MessageObserver", "MessageRelays", "RelayedMessage", "build_relayed_message"]

log = logs.logger(__name__)

#: Header fields of a final response that cross with it (as for relayed in-dialog requests).
_RESPONSE_HEADERS = ("Retry-After", "Warning", "Reason", "Error-Info", "Min-Expires")


class _Server(Protocol):
    @property
    def request(self) -> Request: ...

    @property
    def source(self) -> Source: ...

    def respond(self, response: Response) -> None: ...


#: Sends a request to a hop in a new client transaction whose outcome the listener hears
#: (``response_received``, ``timed_out``, ``transport_failed``): the endpoint, in the glue.
Send = Callable[[Request, Hop, "_Listener"], object]


@dataclass(eq=False)
class RelayedMessage:
    """One out-of-dialog MESSAGE in flight; ``data`` is free for the observers."""

    id: str
    request: Request
    route: RouteSettings
    hop: Hop
    received_at: float
    server: _Server
    charged: bool = False  # the charging observer let it through charged
    status: int | None = None  # the final status relayed back (None: not yet)
    data: dict[str, object] = field(default_factory=dict)
    _holds: int = 0
    _collecting: bool = True  # the observers are being asked: no decision yet
    _sent: bool = False


class MessageObserver:
    """Hooks on every relayed MESSAGE; override what you need (the defaults do nothing)."""

    def message_received(self, message: RelayedMessage) -> bool:
        """A MESSAGE is about to be relayed; return True to HOLD it (charging)."""
        return False

    def message_done(self, message: RelayedMessage, status: int | None) -> None:
        """The next hop answered ``status`` (None: timeout or transport error)."""

    def message_ended(self, message: RelayedMessage) -> None:
        """The sender got its final answer, ``message.status`` (relayed, refused, or ours);
        after every ``message_done``."""


def build_relayed_message(incoming: Request, policy: HeaderPolicy) -> Request:
    """The MESSAGE b2bua sends for ``incoming``: a new transaction with its own identity."""
    frm = incoming.from_.copy()
    frm.params = {"tag": new_tag()}
    to = incoming.to.copy()
    to.params.pop("tag", None)
    max_forwards = incoming.max_forwards
    request = Request("MESSAGE", incoming.uri, Headers())
    headers = request.headers
    headers.add("Max-Forwards", 69 if max_forwards is None else max_forwards - 1)
    headers.add("From", frm)
    headers.add("To", to)
    headers.add("Call-ID", new_call_id())
    headers.add("CSeq", "1 MESSAGE")
    policy.copy_headers(incoming, request, extra=("Expires", "Subject", "Priority", "Date"))
    HeaderPolicy.copy_body(incoming, request)
    return request


def _relayed_response(incoming: Request, response: Response, policy: HeaderPolicy) -> Response:
    relayed = make_response(incoming, response.status, response.reason, to_tag=new_tag())
    policy.copy_headers(response, relayed, extra=_RESPONSE_HEADERS)
    HeaderPolicy.copy_body(response, relayed)
    return relayed


class _Listener:
    """The client transaction's outcome, back to :class:`MessageRelays`."""

    __slots__ = ("_message", "_relays")

    def __init__(self, relays: MessageRelays, message: RelayedMessage) -> None:
        self._relays = relays
        self._message = message

    def response_received(self, response: Response) -> None:
        self._relays.response_received(self._message, response)

    def timed_out(self) -> None:
        self._relays.no_response(self._message, 408, "Request Timeout")

    def transport_failed(self, reason: str) -> None:
        self._relays.no_response(self._message, 503, "Service Unavailable")


class MessageRelays:
    """Every out-of-dialog MESSAGE being relayed, by id."""

    def __init__(
        self,
        send: Send,
        router: Callable[[], Router],
        policy: HeaderPolicy,
        clock: Callable[[], float],
    ) -> None:
        self._send_request = send
        self._router = router
        self._policy = policy
        self._clock = clock
        self.observers: list[MessageObserver] = []
        self._messages: dict[str, RelayedMessage] = {}
        self.relayed = 0  # MESSAGEs sent on to a next hop
        self.refused = 0  # MESSAGEs refused by an observer (charging)

    def __len__(self) -> int:
        return len(self._messages)

    def get(self, message_id: str) -> RelayedMessage | None:
        return self._messages.get(message_id)

    def relays(self, request: Request, host: str) -> RouteSettings | None:
        """The route that relays an out-of-dialog MESSAGE like ``request`` from ``host``
        (one with event charging), or None: MESSAGE is not allowed there (Allow, 405)."""
        try:
            route = self._router().select(request, host)
        except SipParseError:  # a Request-URI that does not parse matches no route
            return None
        if route is None or route.event_charging == "off":
            return None
        return route

    def offer(self, request: Request, server: _Server) -> bool:
        """Take an out-of-dialog MESSAGE if a route relays it; False: not ours (405)."""
        source = server.source
        route = self.relays(request, source.host)
        if route is None:
            return False
        if request.max_forwards == 0:
            server.respond(make_response(request, 483, to_tag=new_tag()))
            return True
        try:  # From and To are copied into the relayed request: they must parse (400)
            request.from_.copy()
            request.to.copy()
        except SipParseError as err:
            server.respond(make_response(request, err.status_hint, to_tag=new_tag()))
            return True
        hop = next_hop(route, Hop(source.transport, source.host, source.port))
        message = RelayedMessage(secrets.token_hex(6), request, route, hop, self._clock(), server)
        self._messages[message.id] = message
        log.info(
            "message {id}: {caller} -> {callee} via route {route} to {hop}",
            id=message.id,
            caller=_uri(request),
            callee=request.uri,
            route=route.name,
            hop=str(hop),
        )
        try:
            for observer in list(self.observers):
                try:
                    if observer.message_received(message):
                        message._holds += 1
                except Exception:  # charging could not look at it: it must not go free
                    log.failure("observer {observer!r} failed on a MESSAGE", observer=observer)
                    self.refuse(message.id, 500, "Server Internal Error", "")
        finally:
            message._collecting = False
        if message._holds <= 0 and message.status is None and not message._sent:
            self._send(message)
        return True

    def forward(self, message_id: str, charged: bool = False) -> None:
        """An observer that held the MESSAGE lets it go; it leaves once all have."""
        message = self._messages.get(message_id)
        if message is None or message._sent:
            return
        message.charged = message.charged or charged
        message._holds -= 1
        if message._holds <= 0 and not message._collecting:
            self._send(message)

    def refuse(self, message_id: str, status: int, reason: str, reason_header: str) -> None:
        """Answer a held MESSAGE ``status reason`` with a Reason header; it never leaves."""
        message = self._messages.get(message_id)
        if message is None or message._sent:
            return
        self.refused += 1
        response = make_response(message.request, status, reason, to_tag=new_tag())
        if reason_header:
            response.headers.add("Reason", reason_header)
        self._answer(message, response)
        self._done(message, None, notify=False)

    # -- the client transaction -----------------------------------------------------------

    def _send(self, message: RelayedMessage) -> None:
        message._sent = True
        hop = message.hop
        try:
            request = build_relayed_message(message.request, self._policy)
            self._send_request(request, hop, _Listener(self, message))
        except Exception as err:  # no listener for that transport, a bad header...
            log.warn("message {id}: cannot send to {hop}: {error}", id=message.id, hop=str(hop),
                     error=err)  # fmt: skip
            self.no_response(message, 503, "Service Unavailable")
            return
        self.relayed += 1

    def response_received(self, message: RelayedMessage, response: Response) -> None:
        """A response from the next hop: final ones are relayed back."""
        if response.status < 200 or self._messages.get(message.id) is not message:
            return
        try:
            relayed = _relayed_response(message.request, response, self._policy)
        except Exception:
            log.failure("message {id}: response not relayed", id=message.id)
            relayed = make_response(message.request, 500, to_tag=new_tag())
        self._answer(message, relayed)
        self._done(message, response.status)

    def no_response(self, message: RelayedMessage, status: int, reason: str) -> None:
        """No final response from the next hop: answer ``status`` ourselves."""
        if self._messages.get(message.id) is not message:
            return
        self._answer(message, make_response(message.request, status, reason, to_tag=new_tag()))
        self._done(message, None)

    def _answer(self, message: RelayedMessage, response: Response) -> None:
        message.status = response.status
        try:
            message.server.respond(response)
        except Exception:
            log.failure("message {id}: answer not sent", id=message.id)

    def _done(self, message: RelayedMessage, status: int | None, *, notify: bool = True) -> None:
        self._messages.pop(message.id, None)
        log.info("message {id}: answered {status}", id=message.id, status=message.status)
        if notify:
            self._tell(lambda observer: observer.message_done(message, status))
        self._tell(lambda observer: observer.message_ended(message))

    def _tell(self, hook: Callable[[MessageObserver], None]) -> None:
        """Run ``hook`` on every observer; what one raises is logged, never passed on."""
        for observer in list(self.observers):
            try:
                hook(observer)
            except Exception:
                log.failure("observer {observer!r} failed on a MESSAGE", observer=observer)


def _uri(request: Request) -> str:
    try:
        return str(request.from_.uri)
    except SipParseError:
        return ""
