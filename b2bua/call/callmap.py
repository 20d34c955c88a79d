"""The call map: b2bua's transaction user, holding the live calls (glue).

The SIP endpoint hands every new request, every ACK for a 2xx, every CANCEL and every
stray response to :class:`CallMap`.  It decides what is refused without creating state
(403 for untrusted sources, 404 without a route, 503 over a limit or while draining,
482 for a merged request, the stateless refusals of
:func:`~b2bua.call.bridge.screen_invite`, OPTIONS and 405 out of dialog, 481 for unknown
dialogs), creates a :class:`~b2bua.call.bridge.Bridge` for each accepted INVITE, finds
the call of every in-dialog message by (Call-ID, our tag), and carries out what the
bridges return: responses, requests through the endpoint, ACKs, CANCELs, timers on the
process's timer wheel, and the observer hooks.

:meth:`CallMap.load_call` and :meth:`CallMap.install_call` put a confirmed call saved by
:meth:`CallMap.snapshot_of` back after a restart (``b2bua.store.recovery``); observers hear
``call_changed`` whenever such a snapshot would change, ``call_restored`` after a restore.

Every call leaves the map (and the wheel) when its bridge reports it finished.  Nothing
raised below reaches the reactor: failures are logged with ``log.failure``, a pending
server transaction is answered 500 and the call is ended.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from b2bua import logs
from b2bua.call.admission import PROBE_INTERVAL, AdmissionController
from b2bua.call.bridge import (
    Action,
    Answered,
    Bridge,
    BridgeConfig,
    Call,
    CancelRequest,
    Ended,
    Finished,
    MediaChanged,
    Respond,
    SendAck,
    SendRequest,
    StartTimer,
    StateChanged,
    StopTimer,
    answer_out_of_dialog,
    screen_invite,
)
from b2bua.call.events import CallObserver, EndReason, Side
from b2bua.call.policy import HeaderPolicy
from b2bua.call.relay import MessageRelays
from b2bua.call.routing import DEFAULT_ROUTE, Router, is_trusted, next_hop
from b2bua.call.session_timer import TimerSettings
from b2bua.config import CallSettings, Config, RouteSettings
from b2bua.sip.dialog import Hop, new_tag
from b2bua.sip.endpoint import ClientListener, Destination
from b2bua.sip.headers import SipURI
from b2bua.sip.message import Request, Response, make_response
from b2bua.sip.transport import Source
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerHandle

__all__ = [
    "CallControlById",
    "CallMap",
    "CallService",
    "CallStats",
    "bridge_config",
    "make_call_service",
]

log = logs.logger(__name__)


class IncomingServer(Protocol):
    """The endpoint's ServerHandle, as far as the call map uses it."""

    @property
    def request(self) -> Request: ...

    @property
    def source(self) -> Source: ...

    def respond(self, response: Response) -> None: ...


class OutgoingHandle(Protocol):
    """The endpoint's ClientHandle, as far as the call map uses it."""

    def cancel(self, reason: str | None = None) -> None: ...


class Endpoint(Protocol):
    """What the call map needs of :class:`b2bua.sip.endpoint.SipEndpoint`."""

    def send_request(
        self, request: Request, dest: Destination, listener: ClientListener
    ) -> OutgoingHandle: ...

    def send_ack(self, ack: Request, dest: Destination) -> None: ...

    def contact_uri(self, transport: str) -> SipURI: ...


@dataclass
class CallStats:
    """What the call layer did, for operations (counters since start)."""

    calls_received: int = 0
    calls_answered: int = 0
    refused_untrusted: int = 0
    refused_no_route: int = 0
    refused_limit: int = 0
    refused_draining: int = 0
    refused_overload: int = 0
    options_answered: int = 0
    internal_errors: int = 0
    ended: Counter[str] = field(default_factory=Counter)


def bridge_config(config: Config) -> BridgeConfig:
    """The bridge settings of a validated configuration."""
    calls = config.calls
    return BridgeConfig(
        t1=config.sip.t1,
        t2=config.sip.t2,
        timers=TimerSettings(calls.session_expires, calls.min_se),
        policy=HeaderPolicy.from_names(calls.pass_headers),
        max_call_duration=float(calls.max_call_duration),
        no_answer_timeout=float(calls.no_answer_timeout),
        admission_timeout=calls.admission_timeout,
    )


class _Listener:
    """Hears the outcome of one request a bridge sent.

    The bridge is held weakly: a client transaction outlives its call by up to 32 s
    (RFC 6026 Accepted, Timer K), and a strong reference kept every ended call's whole
    state (messages, dialogs, charging context) that long, most of b2bua's memory under
    load.  Once the call map has forgotten the bridge there is nothing left to tell.
    """

    __slots__ = ("_bridge", "_key", "_map")

    def __init__(self, callmap: CallMap, bridge: Bridge, key: int) -> None:
        self._map = callmap
        self._bridge = weakref.ref(bridge)
        self._key = key

    def response_received(self, response: Response) -> None:
        bridge, key = self._bridge(), self._key
        if bridge is None:
            return
        self._map._drive(bridge, lambda now: bridge.on_response(key, response, now))
        if response.status >= 200:
            self._map._handle_done(bridge, key)

    def timed_out(self) -> None:
        bridge, key = self._bridge(), self._key
        if bridge is None:
            return
        self._map._drive(bridge, lambda now: bridge.on_timeout(key, now))
        self._map._handle_done(bridge, key)

    def transport_failed(self, reason: str) -> None:
        bridge, key = self._bridge(), self._key
        if bridge is None:
            return
        log.info("call {call}: transport failure: {reason}", call=bridge.call.id, reason=reason)
        self._map._drive(bridge, lambda now: bridge.on_transport_error(key, now))
        self._map._handle_done(bridge, key)


class CallMap:
    """The live calls, by Call-ID and our tag on each leg; the endpoint's TU."""

    def __init__(
        self,
        settings: CallSettings,
        routes: Sequence[RouteSettings],
        endpoint: Endpoint,
        timers: WheelDriver,
        config: BridgeConfig | None = None,
    ) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.timers = timers
        self.config = config or BridgeConfig(
            timers=TimerSettings(settings.session_expires, settings.min_se),
            policy=HeaderPolicy.from_names(settings.pass_headers),
            max_call_duration=float(settings.max_call_duration),
            no_answer_timeout=float(settings.no_answer_timeout),
            admission_timeout=settings.admission_timeout,
        )
        self.router = Router(routes, settings.trunk_header)
        #: Out-of-dialog MESSAGEs on routes with event_charging (b2bua.call.relay).
        self.messages = MessageRelays(
            lambda request, hop, listener: endpoint.send_request(
                request, Destination(hop.transport, hop.host, hop.port), listener
            ),
            lambda: self.router,
            self.config.policy,
            timers.seconds,
        )
        self.observers: list[CallObserver] = []
        self.stats = CallStats()
        self.admission = AdmissionController(settings.max_call_rate, settings.overload_lag)
        self._bridges: dict[str, Bridge] = {}
        self._by_dialog: dict[tuple[str, str], tuple[Bridge, Side]] = {}
        self._by_initial: dict[tuple[str, str], Bridge] = {}
        self._by_call_id: dict[str, Bridge] = {}
        self._handles: dict[Bridge, dict[int, OutgoingHandle]] = {}
        self._call_timers: dict[Bridge, dict[str, TimerHandle]] = {}
        self._holds: dict[Bridge, int] = {}
        self._collecting: set[Bridge] = set()
        self._live: set[Bridge] = set()
        self._per_route: Counter[str] = Counter()
        self._draining = False
        self._drained: list[Deferred[None]] = []

    # ------------------------------------------------------------ operations

    def __len__(self) -> int:
        """Calls in the map, ending ones included."""
        return len(self._bridges)

    @property
    def active(self) -> int:
        """Calls not ended yet (what the limits count)."""
        return len(self._live)

    def calls(self) -> list[Call]:
        """Every call in the map."""
        return [bridge.call for bridge in self._bridges.values()]

    def get(self, call_id: str) -> Call | None:
        """A call by its id, or by the Call-ID of either leg."""
        bridge = self._bridges.get(call_id) or self._by_call_id.get(call_id)
        return bridge.call if bridge is not None else None

    def add_observer(self, observer: CallObserver) -> None:
        self.observers.append(observer)

    def reload_routes(self, routes: Sequence[RouteSettings]) -> None:
        """Use ``routes`` for new calls (SIGHUP); calls in progress keep theirs."""
        self.router = Router(routes, self.settings.trunk_header)
        log.info("routes reloaded: {count} route(s)", count=len(self.router.routes))

    def admit(self, call: Call) -> None:
        """An observer that held ``call`` lets it go on; the B-leg leaves once all have."""
        bridge = self._bridges.get(call.id)
        if bridge is None or bridge not in self._holds:
            return
        self._holds[bridge] -= 1
        if self._holds[bridge] <= 0 and bridge not in self._collecting:
            del self._holds[bridge]
            self._drive(bridge, bridge.admit)

    def reject(
        self,
        call: Call,
        status: int,
        reason: str | None = None,
        reason_header: str | None = None,
    ) -> None:
        """Refuse a held call: the caller gets ``status reason`` (with a Reason header)."""
        bridge = self._bridges.get(call.id)
        if bridge is None:
            return
        self._holds.pop(bridge, None)
        self._drive(bridge, lambda now: bridge.reject(status, now, reason, reason_header))

    def end_all(self, reason: EndReason = EndReason.SHUTDOWN) -> None:
        """End every call (shutdown, operator)."""
        for bridge in list(self._bridges.values()):
            self._drive(bridge, lambda now, b=bridge: b.end(reason, now))  # type: ignore[misc]

    def drain(self) -> Deferred[None]:
        """Refuse new calls (503); the Deferred fires when the last call has left."""
        if not self._draining:
            log.info("draining: new calls are refused, {count} in progress", count=len(self))
        self._draining = True
        if not self._bridges:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._drained.append(waiter)
        return waiter

    def resume(self) -> None:
        """Accept new calls again after :meth:`drain`."""
        self._draining = False

    # ------------------------------------------------- transaction user (TU)

    def request_received(self, request: Request, server: IncomingServer) -> None:
        """A new request (not ACK, not CANCEL), in a dialog or not."""
        try:
            self._request_received(request, server)
        except Exception:  # glue boundary: log it and answer what is pending
            self.stats.internal_errors += 1
            log.failure("error handling {method} {call_id}", method=request.method,
                        call_id=request.call_id)  # fmt: skip
            _answer_quietly(server, make_response(request, 500, to_tag=new_tag()))

    def ack_received(self, ack: Request, source: Source) -> None:
        """An ACK for a 2xx."""
        entry = self._by_dialog.get((ack.call_id, ack.to_tag or ""))
        if entry is None:
            log.debug("ACK for no call: {call_id}", call_id=ack.call_id)
            return
        bridge, side = entry
        self._drive(bridge, lambda now: bridge.on_ack(side, ack, now))

    def cancel_received(self, server: IncomingServer, cancel: Request) -> None:
        """The endpoint answered a CANCEL; the INVITE it cancels must get its 487."""
        invite = server.request
        bridge: Bridge | None = None
        try:
            if invite.to_tag:
                entry = self._by_dialog.get((invite.call_id, invite.to_tag))
                bridge = entry[0] if entry is not None else None
            else:
                bridge = self._by_initial.get((invite.call_id, invite.from_tag or ""))
        except Exception:
            log.failure("error matching a CANCEL")
        if bridge is None:
            _answer_quietly(server, make_response(invite, 487, to_tag=new_tag()))
            return
        found = bridge
        self._drive(found, lambda now: found.on_cancel(server, cancel, now))

    def stray_response(self, response: Response, source: Source) -> None:
        """A response no transaction matches: a 2xx retransmitted after its transaction."""
        try:
            entry = self._by_dialog.get((response.call_id, response.from_tag or ""))
        except Exception:
            return
        if entry is None:
            log.debug("stray response {status} dropped", status=response.status)
            return
        bridge, side = entry
        self._drive(bridge, lambda now: bridge.on_stray_response(side, response, now))

    # ---------------------------------------------------------------- requests

    def _request_received(self, request: Request, server: IncomingServer) -> None:
        source = server.source
        to_tag = request.to_tag
        if to_tag:
            entry = self._by_dialog.get((request.call_id, to_tag))
            if entry is not None:
                bridge, side = entry
                self._drive(
                    bridge, lambda now: bridge.on_request(side, request, server, now), server
                )
                return
        if not is_trusted(source.host, self.settings.trusted):
            self.stats.refused_untrusted += 1
            # Per packet (scanners, retransmissions): debug; the counter is in stats().
            log.debug(
                "refused {method} from untrusted {host}:{port}",
                method=request.method,
                host=source.host,
                port=source.port,
            )
            server.respond(make_response(request, 403, to_tag=new_tag()))
            return
        if to_tag:
            server.respond(make_response(request, 481))
        elif request.method == "INVITE":
            self._new_call(request, server)
        elif request.method == "MESSAGE" and self.messages.offer(request, server):
            return
        else:
            if request.method == "OPTIONS":
                self.stats.options_answered += 1
            relayed = self.messages.relays(request, source.host) is not None
            server.respond(answer_out_of_dialog(request, self.config, message=relayed))

    def _new_call(self, invite: Request, server: IncomingServer) -> None:
        source = server.source
        self.stats.calls_received += 1
        key = (invite.call_id, invite.from_tag or "")
        earlier = self._by_initial.get(key)
        if earlier is not None and earlier.call.invite.cseq.seq == invite.cseq.seq:
            # §8.2.2.2: the same request by another path (a new CSeq is a retry, e.g. after
            # a 401/407/422, and makes a new call).
            server.respond(make_response(invite, 482, to_tag=new_tag()))
            return
        refusal = screen_invite(invite, self.config)
        if refusal is not None:
            log.info(
                "refused INVITE {call_id}: {status}", call_id=invite.call_id, status=refusal.status
            )
            server.respond(refusal)
            return
        if self._draining:
            self.stats.refused_draining += 1
            server.respond(self._unavailable(invite, "Draining"))
            return
        overload = self.admission.admit(self.timers.seconds())
        if overload is not None:
            self.stats.refused_overload += 1
            log.debug("refused INVITE {call_id}: {why}", call_id=invite.call_id, why=overload)
            server.respond(self._unavailable(invite, overload))
            return
        limit = self.settings.max_calls
        if limit and len(self._live) >= limit:
            self.stats.refused_limit += 1
            log.info("refused INVITE {call_id}: max_calls reached", call_id=invite.call_id)
            server.respond(self._unavailable(invite, "Too Many Calls"))
            return
        route = self.router.select(invite, source.host)
        if route is None:
            self.stats.refused_no_route += 1
            log.info("refused INVITE {call_id}: no route", call_id=invite.call_id)
            server.respond(make_response(invite, 404, "No Route", to_tag=new_tag()))
            return
        if route.max_calls and self._per_route[route.name] >= route.max_calls:
            self.stats.refused_limit += 1
            log.info(
                "refused INVITE {call_id}: route {route} is full",
                call_id=invite.call_id,
                route=route.name,
            )
            server.respond(self._unavailable(invite, "Route Full"))
            return
        source_hop = Hop(source.transport, source.host, source.port)
        b_hop = next_hop(route, source_hop)
        now = self.timers.seconds()
        bridge = Bridge(
            invite,
            server,
            route=route,
            source=source_hop,
            b_hop=b_hop,
            a_contact=self.endpoint.contact_uri(source.transport),
            b_contact=self.endpoint.contact_uri(b_hop.transport),
            config=self.config,
            now=now,
        )
        call = bridge.call
        self._register(bridge)
        log.info(
            "call {call}: {caller} -> {callee} from {source} via route {route} to {hop}",
            call=call.id,
            caller=call.caller,
            callee=call.callee,
            source=f"{source.host}:{source.port}",
            route=route.name,
            hop=str(b_hop),
        )
        self._execute(bridge, bridge.start(now))
        # An observer may admit (or reject) from inside its hook: count those admits
        # against the holds and decide once every observer has been asked.
        self._holds[bridge] = 0
        self._collecting.add(bridge)
        try:
            for observer in list(self.observers):
                try:
                    if observer.call_received(call):
                        self._holds[bridge] = self._holds.get(bridge, 0) + 1
                except Exception:
                    log.failure("observer {observer!r} failed on a new call", observer=observer)
        finally:
            self._collecting.discard(bridge)
        if bridge.finished or call.end_reason is not None or bridge not in self._holds:
            return
        if self._holds[bridge] <= 0:
            del self._holds[bridge]
            self._drive(bridge, bridge.admit)

    def _register(self, bridge: Bridge) -> None:
        """Index a new (or restored) call by its id and both dialogs; count it."""
        call = bridge.call
        call._control = self._end_from_outside
        self._bridges[call.id] = bridge
        self._by_dialog[(bridge.a.call_id, bridge.a.local_tag)] = (bridge, Side.A)
        self._by_dialog[(bridge.b.call_id, bridge.b.local_tag)] = (bridge, Side.B)
        self._by_initial[(call.invite.call_id, call.invite.from_tag or "")] = bridge
        self._by_call_id[bridge.a.call_id] = bridge
        self._by_call_id[bridge.b.call_id] = bridge
        self._handles[bridge] = {}
        self._call_timers[bridge] = {}
        self._live.add(bridge)
        self._per_route[call.route.name] += 1

    def snapshot_of(self, call_id: str) -> dict[str, Any] | None:
        """The snapshot of a confirmed call (by id or either leg's Call-ID), else None."""
        bridge = self._bridges.get(call_id) or self._by_call_id.get(call_id)
        if bridge is None or not bridge.restorable:
            return None
        return bridge.snapshot()

    def load_call(self, data: dict[str, Any], *, cseq_margin: int = 0) -> Bridge:
        """The bridge of a :meth:`snapshot_of`, not in the map yet (errors leave no state).

        Its route is looked up by name (a route removed since keeps the call on the
        default settings). Raises KeyError, TypeError, ValueError or SipParseError when
        ``data`` is bad or the call (or one of its dialogs) is already in the map.
        """
        name = str(data["route"])
        route = next((r for r in self.router.routes if r.name == name), None)
        if route is None:
            route = replace(DEFAULT_ROUTE, name=name)
        bridge = Bridge.restore(
            data,
            route=route,
            a_contact=self.endpoint.contact_uri(str(data["a"]["transport"])),
            b_contact=self.endpoint.contact_uri(str(data["b"]["transport"])),
            config=self.config,
            cseq_margin=cseq_margin,
        )
        call = bridge.call
        if (
            call.id in self._bridges
            or (bridge.a.call_id, bridge.a.local_tag) in self._by_dialog
            or (bridge.b.call_id, bridge.b.local_tag) in self._by_dialog
        ):
            raise ValueError(f"call {call.id} is already in the call map")
        return bridge

    def install_call(self, bridge: Bridge) -> None:
        """Add a :meth:`load_call` bridge to the map, re-arm its timers, tell the observers."""
        call = bridge.call
        self._register(bridge)
        log.info("call {call}: restored ({caller} -> {callee})", call=call.id,
                 caller=call.caller, callee=call.callee)  # fmt: skip
        self._execute(bridge, bridge.resume(self.timers.seconds()))
        self._notify("call_restored", call)

    def forget_call(self, call_id: str) -> bool:
        """Drop a call (by id or either leg's Call-ID) without a word to either leg.

        For a call another instance adopted (``b2bua.store``): the survivor ends or goes on
        with it now. No BYE, no CANCEL, no observer hears of it (no CDR); client
        transactions still running find no call when they finish.
        """
        bridge = self._bridges.get(call_id) or self._by_call_id.get(call_id)
        if bridge is None:
            return False
        log.warn("call {call}: adopted by another instance; forgotten here", call=bridge.call.id)
        self._forget(bridge)
        return True

    def _unavailable(self, request: Request, reason: str) -> Response:
        response = make_response(request, 503, reason, to_tag=new_tag())
        if self.settings.retry_after:
            response.headers.add("Retry-After", self.settings.retry_after)
        return response

    def _end_from_outside(self, call: Call, reason: EndReason, reason_header: str | None) -> None:
        bridge = self._bridges.get(call.id)
        if bridge is None:
            return
        self._holds.pop(bridge, None)
        self._drive(bridge, lambda now: bridge.end(reason, now, reason_header=reason_header))

    # ------------------------------------------------------------ execution

    def _drive(
        self,
        bridge: Bridge,
        step: Callable[[float], list[Action]],
        server: IncomingServer | None = None,
    ) -> None:
        """Run one bridge step and its actions; nothing raised gets past here."""
        if bridge.finished:
            return
        try:
            actions = step(self.timers.seconds())
        except Exception:
            self.stats.internal_errors += 1
            log.failure("call {call}: internal error", call=bridge.call.id)
            if server is not None:
                _answer_quietly(server, make_response(server.request, 500))
            self._abort(bridge)
            return
        self._execute(bridge, actions)

    def _abort(self, bridge: Bridge) -> None:
        """After an internal error: end the call as well as we still can, or drop it."""
        try:
            actions = bridge.end(EndReason.ERROR, self.timers.seconds())
        except Exception:
            log.failure("call {call}: cannot end it; dropping it", call=bridge.call.id)
            actions = [Ended(), Finished()] if bridge.call.end_reason is None else [Finished()]
        self._execute(bridge, actions)

    def _execute(self, bridge: Bridge, actions: list[Action]) -> None:
        for action in actions:
            try:
                self._do(bridge, action)
            except Exception:
                self.stats.internal_errors += 1
                log.failure(
                    "call {call}: cannot carry out {action!r}", call=bridge.call.id, action=action
                )

    def _do(self, bridge: Bridge, action: Action) -> None:
        if isinstance(action, Respond):
            action.server.respond(action.response)
        elif isinstance(action, SendRequest):
            hop = action.hop
            try:
                handle = self.endpoint.send_request(
                    action.request,
                    Destination(hop.transport, hop.host, hop.port),
                    _Listener(self, bridge, action.key),
                )
            except Exception as err:  # e.g. no listener for that transport: like a 503
                log.warn(
                    "call {call}: cannot send {method} to {hop}: {error}",
                    call=bridge.call.id,
                    method=action.request.method,
                    hop=str(hop),
                    error=err,
                )
                key = action.key
                self._drive(bridge, lambda now: bridge.on_transport_error(key, now))
                return
            handles = self._handles.get(bridge)
            if handles is not None:
                handles[action.key] = handle
            log.debug(
                "call {call}: {method} to {side}-leg {hop}",
                call=bridge.call.id,
                method=action.request.method,
                side=action.side.value,
                hop=hop,  # formatted only if debug lines are written
            )
        elif isinstance(action, SendAck):
            hop = action.hop
            self.endpoint.send_ack(action.ack, Destination(hop.transport, hop.host, hop.port))
        elif isinstance(action, CancelRequest):
            outgoing = self._handles.get(bridge, {}).get(action.key)
            if outgoing is not None:
                outgoing.cancel(action.reason)
        elif isinstance(action, StartTimer):
            timers = self._call_timers.get(bridge)
            if timers is None:
                return
            old = timers.pop(action.name, None)
            if old is not None:
                old.cancel()
            timers[action.name] = self.timers.schedule(
                action.deadline, self._timer_fired, bridge, action.name
            )
        elif isinstance(action, StopTimer):
            timer = self._call_timers.get(bridge, {}).pop(action.name, None)
            if timer is not None:
                timer.cancel()
        elif isinstance(action, Answered):
            self._answered(bridge)
        elif isinstance(action, MediaChanged):
            self._notify("media_changed", bridge.call, action.side, action.body)
        elif isinstance(action, Ended):
            self._ended(bridge)
        elif isinstance(action, StateChanged):
            self._notify("call_changed", bridge.call)
        elif isinstance(action, Finished):
            self._forget(bridge)

    def _handle_done(self, bridge: Bridge, key: int) -> None:
        """The client transaction ``key`` has its final outcome: nothing left to cancel."""
        handles = self._handles.get(bridge)
        if handles is not None:
            handles.pop(key, None)

    def _timer_fired(self, bridge: Bridge, name: str) -> None:
        timers = self._call_timers.get(bridge)
        if timers is not None:
            timers.pop(name, None)
        self._drive(bridge, lambda now: bridge.on_timer(name, now))

    def _answered(self, bridge: Bridge) -> None:
        self.stats.calls_answered += 1
        log.info("call {call}: answered", call=bridge.call.id)
        self._notify("call_answered", bridge.call)

    def _ended(self, bridge: Bridge) -> None:
        call = bridge.call
        self._release(bridge)
        self._holds.pop(bridge, None)
        reason = call.end_reason.value if call.end_reason is not None else "?"
        self.stats.ended[reason] += 1
        log.info(
            "call {call}: ended: {reason}{status} after {duration:.1f}s",
            call=call.id,
            reason=reason,
            status=f" ({call.end_status})" if call.end_status is not None else "",
            duration=call.duration,
        )
        self._notify("call_ended", call)

    def _release(self, bridge: Bridge) -> None:
        """The call no longer counts against the limits."""
        if bridge in self._live:
            self._live.discard(bridge)
            name = bridge.call.route.name
            self._per_route[name] -= 1
            if self._per_route[name] <= 0:
                del self._per_route[name]

    def _forget(self, bridge: Bridge) -> None:
        call = bridge.call
        self._release(bridge)
        self._holds.pop(bridge, None)
        self._bridges.pop(call.id, None)
        for key in ((bridge.a.call_id, bridge.a.local_tag), (bridge.b.call_id, bridge.b.local_tag)):
            if self._by_dialog.get(key, (None,))[0] is bridge:
                del self._by_dialog[key]
        initial = (call.invite.call_id, call.invite.from_tag or "")
        if self._by_initial.get(initial) is bridge:
            del self._by_initial[initial]
        for call_id in (bridge.a.call_id, bridge.b.call_id):
            if self._by_call_id.get(call_id) is bridge:
                del self._by_call_id[call_id]
        self._handles.pop(bridge, None)
        for handle in self._call_timers.pop(bridge, {}).values():
            handle.cancel()
        log.debug("call {call}: finished", call=call.id)
        if not self._bridges and self._drained:
            waiters, self._drained = self._drained, []
            for waiter in waiters:
                waiter.callback(None)

    def _notify(self, hook: str, *args: Any) -> None:
        for observer in list(self.observers):
            try:
                getattr(observer, hook)(*args)
            except Exception:
                log.failure("observer {observer!r} failed in {hook}", observer=observer, hook=hook)


#: The charging engine's end reasons (its EndReason values) as call end reasons.
_CHARGING_REASONS: dict[str, EndReason] = {
    "credit exhausted": EndReason.CREDIT_EXHAUSTED,
    "aborted by OCS": EndReason.OCS_ABORT,
    "ro_auth_expiry": EndReason.OCS_ABORT,
    "charging failure": EndReason.OCS_ABORT,
}


class CallControlById:
    """The call side as the charging engine sees it: calls named by their A-leg Call-ID.

    Implements ``b2bua.charging.engine.CallControl`` on a :class:`CallMap`.
    """

    def __init__(self, callmap: CallMap) -> None:
        self.callmap = callmap

    def admit(self, call_id: str) -> None:
        call = self.callmap.get(call_id)
        if call is not None:
            self.callmap.admit(call)

    def reject(self, call_id: str, status: int, reason: str, reason_header: str) -> None:
        call = self.callmap.get(call_id)
        if call is not None:
            self.callmap.reject(call, status, reason, reason_header)

    def end(self, call_id: str, reason: str, reason_header: str) -> None:
        call = self.callmap.get(call_id)
        if call is not None:
            call.end(_CHARGING_REASONS.get(reason, EndReason.OCS_ABORT), reason_header)


def _answer_quietly(server: IncomingServer, response: Response) -> None:
    """Answer ``server`` unless that is no longer possible (already answered)."""
    try:
        server.respond(response)
    except Exception:
        log.debug("could not answer {status}", status=response.status)


# ---------------------------------------------------------------------- service


class CallService(Service):
    """Runs the call map in the service tree: TU of the endpoint; on stop, ends the calls.

    Start it after the SIP service (so it stops first, while BYEs can still be sent).
    """

    name = "calls"

    def __init__(
        self,
        callmap: CallMap,
        endpoint: Any,
        clock: IReactorTime,
        *,
        stop_timeout: float = 5.0,
        grace: float = 0.0,
        admission: AdmissionController | None = None,
    ) -> None:
        self.callmap = callmap
        #: Fed the event loop's lag by a probe on the wheel while the service runs.
        self.admission = admission
        self.endpoint = endpoint
        self.clock = clock
        self.stop_timeout = stop_timeout
        self.grace = grace
        #: Set by a persistent store ([store] mode realtime/shutdown): calls it accepts
        #: stay up at stop, for the next start to take over; the others end as usual.
        self.keep_on_stop: Callable[[Call], bool] | None = None
        self._probe: TimerHandle | None = None
        endpoint.tu = callmap

    def startService(self) -> None:
        self.endpoint.tu = self.callmap
        self.callmap.resume()
        super().startService()
        if self.admission is not None and self.admission.overload_lag:
            self._arm_probe()

    def stopService(self) -> Deferred[None]:
        """Refuse new calls, let calls run for the grace period, end the rest, wait (bounded)."""
        super().stopService()
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        return ensureDeferred(self._shut_down())

    def _arm_probe(self) -> None:
        """Measure the event loop's lag: how late a wheel timer due now + interval runs."""
        timers = self.callmap.timers
        due = timers.seconds() + PROBE_INTERVAL
        self._probe = timers.schedule(due, self._lag_probe, due)

    def _lag_probe(self, due: float) -> None:
        if self.admission is not None:
            self.admission.observe_lag(self.callmap.timers.seconds() - due)
        if self.running:
            self._arm_probe()

    async def _shut_down(self) -> None:
        callmap = self.callmap
        done = callmap.drain()  # from now on new INVITEs get 503 with Retry-After
        if self.keep_on_stop is not None:
            await self._leave_up(self.keep_on_stop)
            return
        if self.grace > 0 and len(callmap):
            log.info(
                "shutdown: {count} call(s) may go on for up to {grace:g}s",
                count=len(callmap),
                grace=self.grace,
            )
            await self._within(done, self.grace)
        if len(callmap):
            log.info("ending {count} call(s) for shutdown", count=len(callmap))
            callmap.end_all(EndReason.SHUTDOWN)
            await self._within(done, self.stop_timeout)
        if len(callmap):
            log.warn("{count} call(s) not finished at shutdown", count=len(callmap))

    async def _leave_up(self, keep: Callable[[Call], bool]) -> None:
        """Leave the calls ``keep`` accepts up (no BYE, no CCR-T); end the others (bounded).

        An upgrade restart must not cut calls: their state is in the store, and the next
        start of this instance (or a survivor) carries on with them.
        """
        calls = self.callmap.calls()
        ending = [call for call in calls if not keep(call)]
        if len(calls) > len(ending):
            log.info(
                "shutdown: leaving {count} call(s) up for the next start (store)",
                count=len(calls) - len(ending),
            )
        if not ending:
            return
        log.info("ending {count} call(s) that cannot be stored", count=len(ending))
        for call in ending:
            call.end(EndReason.SHUTDOWN)
        deadline = self.clock.seconds() + self.stop_timeout
        while self.clock.seconds() < deadline and any(
            self.callmap.get(call.id) is not None for call in ending
        ):
            await deferLater(self.clock, 0.05, lambda: None)

    async def _within(self, done: Deferred[None], seconds: float) -> None:
        """Wait until `done` fires, or `seconds` on the reactor clock, whichever is first.

        The reactor clock, not the wheel: the root service stops the wheel after its
        children, and a child must not wait on a wheel that is gone.
        """
        if done.called:
            return
        waiter: Deferred[None] = Deferred()

        def finish(_: object = None) -> object:
            if not waiter.called:
                waiter.callback(None)
            return _

        guard = self.clock.callLater(seconds, finish)
        done.addBoth(finish)
        await waiter
        if guard.active():
            guard.cancel()


def make_call_service(config: Config, endpoint: Any, timers: WheelDriver) -> CallService:
    """The call layer for ``config`` on ``endpoint``: a CallService whose ``callmap`` is its TU."""
    callmap = CallMap(config.calls, config.routes, endpoint, timers, bridge_config(config))
    return CallService(
        callmap,
        endpoint,
        endpoint.clock,
        grace=config.calls.shutdown_grace,
        admission=callmap.admission,
    )
