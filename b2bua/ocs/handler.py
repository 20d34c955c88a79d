"""The lab OCS's Diameter application, sans-IO: a decoded request in, its answer out.

`CreditControlHandler.handle` takes one decoded request from a b2bua client and returns a
Deferred firing with the answer `Message` (it never fails: an internal error becomes an
answer too). It validates the request against the dictionary first (RFC 6733 §7: a
malformed request gets the codec's error answer, `make_error_answer`, with Failed-AVP),
then turns the Credit-Control-Request into `OcsBackend` calls and the results into a
Credit-Control-Answer (RFC 4006 §3.2):

- CC-Request-Type INITIAL / UPDATE / TERMINATION (SCUR and ECUR, §5): one backend call per
  service, with the same CC-Request-Number. A service is one Multiple-Services-Credit-Control
  AVP (§8.16), identified by Rating-Group (absent: ``default_rating_group``); a request
  without MSCC is one service on ``default_rating_group`` with the top-level
  Requested-/Used-Service-Unit, answered with a top-level Granted-Service-Unit,
  Validity-Time and Final-Unit-Indication. Units are CC-Time (seconds) or
  CC-Service-Specific-Units (events); several Used-Service-Unit AVPs of one service are
  added up. A grant is answered in the unit the request asked in, else in the unit of its
  tariff's balance (seconds: CC-Time, events: CC-Service-Specific-Units). Requested units:
  a Requested-Service-Unit with a value asks for that; an empty one, or none on INITIAL,
  lets the tariff decide (§8.18); none on UPDATE asks for nothing more.
- TERMINATION terminates every rating group the request names and every other one the
  session holds a reservation for (used 0), so the backend can close the session; none at
  all terminates ``default_rating_group``.
- EVENT (§6) by Requested-Action: DIRECT_DEBITING (IEC: units from Requested-Service-Unit,
  else the tariff's default), REFUND_ACCOUNT (units from Requested- else Used-Service-Unit),
  CHECK_BALANCE (top-level Check-Balance-Result) and PRICE_ENQUIRY (top-level
  Cost-Information: Unit-Value is the cost in credit units of the balance the tariff draws
  on, Currency-Code 999 (ISO 4217 "no currency involved"), Cost-Unit names the balance).
- The subscriber is the Subscription-Id (§8.46) of the first type in the order E.164, SIP
  URI, NAI, IMSI, private, other; when the request carries several identities, the first of
  them that has an account. INITIAL and EVENT requests without one get
  DIAMETER_MISSING_AVP (5005), EVENT requests without Requested-Action too.

Result codes. Each answered MSCC carries its own Result-Code; the command-level Result-Code
is DIAMETER_SUCCESS when any service succeeded, else the first service's code (so a
client that only reads the command level sees 4012 on a refused CCR-U). Codes about the
whole session (5002 unknown session, 5012 out-of-window request number, 5030 user unknown)
are answered at command level without MSCCs. DIAMETER_RATING_FAILED (5031) answers carry
a Failed-AVP naming what could not be rated (RFC 4006 §9.1): the MSCC with its
Rating-Group, or an example Rating-Group when the request named none. A grant that
leaves no more credit (``final_unit_style`` fui) carries Final-Unit-Indication with
Final-Unit-Action TERMINATE (§5.6). Retransmissions (T flag, or the same
CC-Request-Number again) are answered from the backend's stored answers, nothing debited
twice. A backend failure (e.g. Redis unreachable) is answered DIAMETER_TOO_BUSY (3004),
which tells the client to try another OCS (RFC 6733 §7.1.3) without any debit having been
made. Any other command is DIAMETER_COMMAND_UNSUPPORTED (3001).

`SessionRegistry` records the credit-control sessions the handler saw open: subscriber,
the client (Origin-Host/-Realm) that opened it, the rating groups holding a reservation.
The server sends Re-Auth-Request and Abort-Session-Request to that client (`build_rar`,
`build_asr`); the operator finds a subscriber's sessions there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.python.failure import Failure

from b2bua import logs
from b2bua.diameter.avp import FLAG_M, Avp, example_avp
from b2bua.diameter.dictionary import (
    APP_CREDIT_CONTROL,
    AVPS_BY_NAME,
    CC_EVENT_REQUEST,
    CC_INITIAL_REQUEST,
    CC_TERMINATION_REQUEST,
    CC_UPDATE_REQUEST,
    CMD_ABORT_SESSION,
    CMD_CREDIT_CONTROL,
    CMD_RE_AUTH,
    DIAMETER_COMMAND_UNSUPPORTED,
    DIAMETER_MISSING_AVP,
    DIAMETER_TOO_BUSY,
)
from b2bua.diameter.errors import DecodeError
from b2bua.diameter.message import (
    Message,
    check_command,
    make_answer,
    make_error_answer,
)
from b2bua.ocs.accounts import OcsBackend, normalise_subscriber
from b2bua.ocs.rating import (
    BalanceResult,
    CreditResult,
    PriceResult,
    Rating,
    ResultCode,
    UnitKind,
)

__all__ = [
    "CURRENCY_NONE",
    "CreditControlHandler",
    "OpenSession",
    "SessionRegistry",
    "build_asr",
    "build_rar",
    "subscription_ids",
]

log = logs.logger(__name__)

#: ISO 4217 code 999 (XXX): "transactions where no currency is involved". Costs of the lab
#: OCS are credit units of a balance, not money.
CURRENCY_NONE: Final = 999

#: Re-Auth-Request-Type AUTHORIZE_ONLY (RFC 6733 §8.12), what RFC 4006 §5.5 asks for.
AUTHORIZE_ONLY: Final = 0

#: Subscription-Id-Type preference (RFC 4006 §8.47): E.164, SIP URI, NAI, IMSI, private.
_TYPE_ORDER: Final = {0: 0, 2: 1, 3: 2, 1: 3, 4: 4}

#: Result codes about the whole session rather than one service.
_SESSION_LEVEL: Final = frozenset(
    {ResultCode.UNKNOWN_SESSION_ID, ResultCode.UNABLE_TO_COMPLY, ResultCode.USER_UNKNOWN}
)

_DIRECT_DEBITING, _REFUND_ACCOUNT, _CHECK_BALANCE, _PRICE_ENQUIRY = 0, 1, 2, 3

_UNIT_AVP: Final = {
    UnitKind.SECONDS.value: "CC-Time",
    UnitKind.EVENTS.value: "CC-Service-Specific-Units",
}
_COST_UNIT: Final = {
    UnitKind.SECONDS.value: "credit seconds",
    UnitKind.EVENTS.value: "credit events",
}


# -- open sessions --


@dataclass
class OpenSession:
    """A credit-control session the OCS holds open, and the client that opened it."""

    session_id: str
    subscriber: str
    #: Origin-Host / Origin-Realm of the client: where RAR and ASR go.
    peer_host: str
    peer_realm: str
    opened_at: float
    last_seen: float
    #: Rating groups holding a reservation.
    rating_groups: set[int] = field(default_factory=set)


class SessionRegistry:
    """Open sessions by Session-Id, and by subscriber for RAR after a top-up."""

    def __init__(self) -> None:
        self._sessions: dict[str, OpenSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[OpenSession]:
        return iter(list(self._sessions.values()))

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def get(self, session_id: str) -> OpenSession | None:
        """The open session `session_id`, or None."""
        return self._sessions.get(session_id)

    def of_subscriber(self, subscriber: str) -> list[OpenSession]:
        """The subscriber's open sessions (any spelling of the identity), oldest first."""
        try:
            key = normalise_subscriber(subscriber)
        except ValueError:
            return []
        found = [s for s in self._sessions.values() if s.subscriber == key]
        return sorted(found, key=lambda s: (s.opened_at, s.session_id))

    def of_peer(self, peer_host: str) -> list[OpenSession]:
        """Sessions opened by the client `peer_host` (case-insensitive)."""
        host = peer_host.lower()
        return [s for s in self._sessions.values() if s.peer_host.lower() == host]

    def open(
        self, session_id: str, subscriber: str, peer_host: str, peer_realm: str, now: float
    ) -> OpenSession:
        """Record a session (or return the one recorded under that id)."""
        session = self._sessions.get(session_id)
        if session is None:
            session = OpenSession(session_id, subscriber, peer_host, peer_realm, now, now)
            self._sessions[session_id] = session
        session.last_seen = now
        return session

    def close(self, session_id: str) -> OpenSession | None:
        """Forget a session; the one forgotten, or None."""
        return self._sessions.pop(session_id, None)

    def prune(self, older_than: float) -> list[OpenSession]:
        """Forget sessions not heard of since `older_than` (the backend expired them)."""
        stale = [s for s in self._sessions.values() if s.last_seen < older_than]
        for session in stale:
            del self._sessions[session.session_id]
        return stale


# -- requests as data --


@dataclass(frozen=True)
class _Units:
    """Units of one Requested- or Used-Service-Unit: value and the AVP that carried it."""

    value: int | None
    avp: str | None


@dataclass(frozen=True)
class _Service:
    """One service of a request: an MSCC, or the top level of a single-service request."""

    rating_group: int
    #: The MSCC AVP it came from (None: top level).
    mscc: Avp | None
    #: Whether the request named the rating group.
    named: bool
    #: None: no Requested-Service-Unit; else its units (value None: empty).
    requested: _Units | None
    #: Used-Service-Unit total, None when absent.
    used: int | None
    service_identifiers: tuple[Avp, ...] = ()


def _units(avp: Avp) -> _Units:
    for name in ("CC-Time", "CC-Service-Specific-Units"):
        value = avp.get(name)
        if value is not None:
            return _Units(int(value), name)
    return _Units(None, None)


def _used(avps: Sequence[Avp]) -> int | None:
    if not avps:
        return None
    return sum(_units(avp).value or 0 for avp in avps)


def _requested(avp: Avp | None) -> _Units | None:
    return None if avp is None else _units(avp)


def subscription_ids(request: Message) -> list[str]:
    """Subscription-Id-Data values in preference order (see the module doc)."""
    found: list[tuple[int, int, str]] = []
    for index, avp in enumerate(request.find_all("Subscription-Id")):
        kind = avp.get("Subscription-Id-Type")
        data = avp.get("Subscription-Id-Data")
        if isinstance(data, str) and data.strip():
            found.append((_TYPE_ORDER.get(kind, len(_TYPE_ORDER)), index, data))
    return [data for _, _, data in sorted(found)]


# -- outgoing requests --


def build_rar(
    session: OpenSession,
    *,
    origin_host: str,
    origin_realm: str,
    hop_by_hop: int,
    end_to_end: int,
    origin_state_id: int | None = None,
) -> Message:
    """Re-Auth-Request (RFC 6733 §8.3.1, RFC 4006 §5.5) to the client of `session`.

    Re-Auth-Request-Type AUTHORIZE_ONLY: the client answers 2002 and sends a CCR-UPDATE.
    """
    avps: list[Any] = [
        ("Session-Id", session.session_id),
        ("Origin-Host", origin_host),
        ("Origin-Realm", origin_realm),
        ("Destination-Realm", session.peer_realm),
        ("Destination-Host", session.peer_host),
        ("Auth-Application-Id", APP_CREDIT_CONTROL),
        ("Re-Auth-Request-Type", AUTHORIZE_ONLY),
    ]
    if origin_state_id is not None:
        avps.append(("Origin-State-Id", origin_state_id))
    return Message.request(
        CMD_RE_AUTH, APP_CREDIT_CONTROL, avps, hop_by_hop=hop_by_hop, end_to_end=end_to_end
    )


def build_asr(
    session: OpenSession,
    *,
    origin_host: str,
    origin_realm: str,
    hop_by_hop: int,
    end_to_end: int,
    origin_state_id: int | None = None,
) -> Message:
    """Abort-Session-Request (RFC 6733 §8.5.1) to the client of `session`."""
    avps: list[Any] = [
        ("Session-Id", session.session_id),
        ("Origin-Host", origin_host),
        ("Origin-Realm", origin_realm),
        ("Destination-Realm", session.peer_realm),
        ("Destination-Host", session.peer_host),
        ("Auth-Application-Id", APP_CREDIT_CONTROL),
    ]
    if origin_state_id is not None:
        avps.append(("Origin-State-Id", origin_state_id))
    return Message.request(
        CMD_ABORT_SESSION, APP_CREDIT_CONTROL, avps, hop_by_hop=hop_by_hop, end_to_end=end_to_end
    )


# -- the handler --


class _Refusal(Exception):
    """A request the handler answers with an error answer (e.g. a missing AVP)."""

    def __init__(self, error: DecodeError) -> None:
        super().__init__(str(error))
        self.error = error


def _missing(name: str, example: Any = None) -> _Refusal:
    """DIAMETER_MISSING_AVP; Failed-AVP holds `example` (builder spec) or a zero-filled one."""
    failed = Avp.new(name, example).encode() if example is not None else None
    return _Refusal(
        DecodeError(
            DIAMETER_MISSING_AVP,
            f"missing {name}",
            failed_avp=failed or example_avp(AVPS_BY_NAME[name]),
        )
    )


class CreditControlHandler:
    """Answers the requests of b2bua clients from an `OcsBackend` (see the module doc)."""

    def __init__(
        self,
        backend: OcsBackend,
        *,
        origin_host: str,
        origin_realm: str,
        rating: Rating | None = None,
        default_rating_group: int = 100,
        origin_state_id: int | None = None,
        registry: SessionRegistry | None = None,
    ) -> None:
        self.backend = backend
        self.origin_host = origin_host
        self.origin_realm = origin_realm
        self.rating = rating if rating is not None else Rating.default()
        self.default_rating_group = default_rating_group
        self.origin_state_id = origin_state_id
        self.registry = registry if registry is not None else SessionRegistry()

    def handle(self, request: Message, now: float) -> Deferred[Message]:
        """The answer to `request` (a decoded request); the Deferred never fails."""
        if not request.is_request:
            raise ValueError("the handler answers requests; answers go to their sender")
        try:
            check_command(request)
        except DecodeError as malformed:
            return succeed(self._error_answer(request, malformed))
        if request.command_code != CMD_CREDIT_CONTROL:
            unsupported = DecodeError(
                DIAMETER_COMMAND_UNSUPPORTED, f"the OCS does not serve {request.name}"
            )
            return succeed(self._error_answer(request, unsupported))
        answered: Deferred[Message] = ensureDeferred(self._credit_control(request, now))

        def failed(failure: Failure) -> Message:
            log.failure(
                "OCS backend failed on {request} of {session}",
                failure,
                request=request.name,
                session=request.session_id,
            )
            busy = DecodeError(DIAMETER_TOO_BUSY, "the OCS backend failed")
            return self._error_answer(request, busy)

        return answered.addErrback(failed)

    # -- answers --

    def _error_answer(self, request: Message, error: DecodeError) -> Message:
        return make_error_answer(
            request,
            error,
            self.origin_host,
            self.origin_realm,
            error_message=str(error) or None,
            origin_state_id=self.origin_state_id,
        )

    def _cca(self, request: Message, result_code: int, avps: Iterable[Any]) -> Message:
        body: list[Any] = [
            ("Auth-Application-Id", APP_CREDIT_CONTROL),
            ("CC-Request-Type", request.get("CC-Request-Type")),
            ("CC-Request-Number", request.get("CC-Request-Number")),
        ]
        if self.origin_state_id is not None:
            body.append(("Origin-State-Id", self.origin_state_id))
        body.extend(avps)
        return make_answer(
            request,
            int(result_code),
            body,
            origin_host=self.origin_host,
            origin_realm=self.origin_realm,
        )

    # -- credit control --

    async def _credit_control(self, request: Message, now: float) -> Message:
        try:
            request_type = int(request.get("CC-Request-Type"))
            if request_type == CC_EVENT_REQUEST:
                return await self._event(request, now)
            return await self._session(request, request_type, now)
        except _Refusal as refusal:
            return self._error_answer(request, refusal.error)

    def _services(self, request: Message) -> tuple[list[_Service], bool]:
        """The services of `request`, and whether they came in MSCC AVPs."""
        msccs = request.find_all("Multiple-Services-Credit-Control")
        if not msccs:
            service = _Service(
                self.default_rating_group,
                None,
                False,
                _requested(request.find("Requested-Service-Unit")),
                _used(request.find_all("Used-Service-Unit")),
                tuple(request.find_all("Service-Identifier")),
            )
            return [service], False
        services = []
        for mscc in msccs:
            rating_group = mscc.get("Rating-Group")
            services.append(
                _Service(
                    self.default_rating_group if rating_group is None else int(rating_group),
                    mscc,
                    rating_group is not None,
                    _requested(mscc.find("Requested-Service-Unit")),
                    _used(mscc.find_all("Used-Service-Unit")),
                    tuple(mscc.find_all("Service-Identifier")),
                )
            )
        return services, True

    async def _subscriber(self, request: Message) -> str:
        """The subscriber a session or event request is charged to."""
        candidates = subscription_ids(request)
        if not candidates:
            raise _missing(
                "Subscription-Id",
                [("Subscription-Id-Type", 0), ("Subscription-Id-Data", "")],
            )
        keys: list[str] = []
        for raw in candidates:
            try:
                key = normalise_subscriber(raw)
            except ValueError:
                continue
            if key not in keys:
                keys.append(key)
        if len(keys) > 1:
            for key in keys:
                if await self.backend.get_account(key) is not None:
                    return key
        return keys[0] if keys else candidates[0]

    def _default_units(self, rating_group: int) -> int:
        tariff = self.rating.tariff(rating_group)
        return tariff.default_units if tariff is not None else 0

    async def _session(self, request: Message, request_type: int, now: float) -> Message:
        session_id = request.session_id or ""
        number = int(request.get("CC-Request-Number"))
        services, multiple = self._services(request)
        results: list[CreditResult] = []
        backend = self.backend
        if request_type == CC_INITIAL_REQUEST:
            subscriber = await self._subscriber(request)
            for service in services:
                requested = service.requested.value if service.requested is not None else None
                results.append(
                    await backend.reserve(
                        subscriber, session_id, number, service.rating_group,
                        requested=requested, now=now,
                    )
                )  # fmt: skip
        elif request_type == CC_UPDATE_REQUEST:
            for service in services:
                requested = service.requested.value if service.requested is not None else 0
                results.append(
                    await backend.update(
                        session_id, number, service.rating_group,
                        used=service.used or 0, requested=requested, now=now,
                    )
                )  # fmt: skip
        else:
            assert request_type == CC_TERMINATION_REQUEST
            named = {service.rating_group for service in services}
            known = self.registry.get(session_id)
            extra = sorted((known.rating_groups if known is not None else set()) - named)
            for service in services:
                results.append(
                    await backend.terminate(
                        session_id, number, service.rating_group,
                        used=service.used or 0, now=now,
                    )
                )  # fmt: skip
            for rating_group in extra:
                await backend.terminate(session_id, number, rating_group, used=0, now=now)
        self._track(request, request_type, results, now)
        return self._credit_answer(request, services, results, multiple)

    def _track(
        self, request: Message, request_type: int, results: list[CreditResult], now: float
    ) -> None:
        """Keep the registry of open sessions in step with the backend."""
        session_id = request.session_id or ""
        registry = self.registry
        if results and all(r.result_code == ResultCode.UNABLE_TO_COMPLY for r in results):
            return  # a refused request number: the session is as it was
        if request_type == CC_TERMINATION_REQUEST or any(
            r.result_code in (ResultCode.UNKNOWN_SESSION_ID, ResultCode.USER_UNKNOWN)
            for r in results
        ):
            registry.close(session_id)
            return
        session = registry.get(session_id)
        if session is None:
            if not any(r.success for r in results):
                return
            session = registry.open(
                session_id,
                results[0].subscriber,
                request.origin_host or "",
                request.origin_realm or "",
                now,
            )
        session.last_seen = now
        for result in results:
            if result.granted > 0:
                session.rating_groups.add(result.rating_group)
            else:
                session.rating_groups.discard(result.rating_group)

    def _credit_answer(
        self,
        request: Message,
        services: Sequence[_Service],
        results: Sequence[CreditResult],
        multiple: bool,
    ) -> Message:
        code = _command_code(results)
        if code in _SESSION_LEVEL:
            return self._cca(request, code, [])
        body: list[Any] = []
        failed: list[bytes] = []
        for service, result in zip(services, results, strict=True):
            grant = self._grant_avps(service, result)
            if result.result_code == ResultCode.RATING_FAILED:
                failed.append(_rating_failed(service))
            if not multiple:
                body.extend(grant)
                continue
            mscc: list[Any] = [a for a in grant if a[0] == "Granted-Service-Unit"]
            mscc.extend(service.service_identifiers)
            if service.named:
                mscc.append(("Rating-Group", service.rating_group))
            mscc.extend(a for a in grant if a[0] != "Granted-Service-Unit")
            mscc.append(("Result-Code", int(result.result_code)))
            body.append(("Multiple-Services-Credit-Control", mscc))
        if not multiple:
            # CCA grammar: [Granted-Service-Unit] ... [Final-Unit-Indication] ... [Validity-Time]
            order = {"Granted-Service-Unit": 0, "Final-Unit-Indication": 1, "Validity-Time": 2}
            body.sort(key=lambda a: order[a[0]])
        body.extend(_failed_avp(failed))
        return self._cca(request, code, body)

    def _grant_avps(self, service: _Service, result: CreditResult) -> list[tuple[str, Any]]:
        """Granted-Service-Unit, Validity-Time, Final-Unit-Indication of one result."""
        if result.granted <= 0 or not result.success:
            return []
        unit = None
        if service.requested is not None:
            unit = service.requested.avp
        if unit is None:
            unit = _UNIT_AVP.get(result.kind, "CC-Time")
        avps: list[tuple[str, Any]] = [("Granted-Service-Unit", [(unit, result.granted)])]
        if result.validity is not None:
            avps.append(("Validity-Time", result.validity))
        if result.final:
            avps.append(("Final-Unit-Indication", [("Final-Unit-Action", "TERMINATE")]))
        return avps

    # -- events --

    async def _event(self, request: Message, now: float) -> Message:
        action = request.get("Requested-Action")
        if action is None:
            raise _missing("Requested-Action")
        subscriber = await self._subscriber(request)
        services, multiple = self._services(request)
        session_id = request.session_id or ""
        number = int(request.get("CC-Request-Number"))
        backend = self.backend
        if action == _CHECK_BALANCE:
            service = services[0]
            units = _asked(service)
            balance = await backend.check_balance(
                subscriber, service.rating_group, now=now, units=1 if units is None else units
            )
            return self._balance_answer(request, service, balance)
        if action == _PRICE_ENQUIRY:
            service = services[0]
            units = _asked(service)
            price = await backend.price_enquiry(
                subscriber,
                service.rating_group,
                units=self._default_units(service.rating_group) if units is None else units,
                now=now,
            )
            return self._price_answer(request, service, price)
        results: list[CreditResult] = []
        for service in services:
            units = _asked(service)
            if action == _DIRECT_DEBITING:
                if units is None:
                    units = self._default_units(service.rating_group)
                call: Callable[..., Deferred[CreditResult]] = backend.direct_debit
            else:
                if units is None:
                    units = service.used
                if units is None:
                    raise _missing("Requested-Service-Unit")
                call = backend.refund
            results.append(
                await call(
                    subscriber, session_id, number, service.rating_group, units=units, now=now
                )
            )
        return self._credit_answer(request, services, results, multiple)

    def _balance_answer(
        self, request: Message, service: _Service, balance: BalanceResult
    ) -> Message:
        if balance.result_code != ResultCode.SUCCESS:
            return self._refused(request, service, balance.result_code)
        return self._cca(
            request,
            ResultCode.SUCCESS,
            [("Check-Balance-Result", int(balance.check_balance_result))],
        )

    def _price_answer(self, request: Message, service: _Service, price: PriceResult) -> Message:
        if price.result_code != ResultCode.SUCCESS:
            return self._refused(request, service, price.result_code)
        cost = [
            ("Unit-Value", [("Value-Digits", price.cost), ("Exponent", 0)]),
            ("Currency-Code", CURRENCY_NONE),
            ("Cost-Unit", _COST_UNIT.get(price.kind, price.kind)),
        ]
        return self._cca(request, ResultCode.SUCCESS, [("Cost-Information", cost)])

    def _refused(self, request: Message, service: _Service, code: int) -> Message:
        failed = [_rating_failed(service)] if code == ResultCode.RATING_FAILED else []
        return self._cca(request, code, _failed_avp(failed))


def _asked(service: _Service) -> int | None:
    """Units a request asked for: the Requested-Service-Unit value, None if absent or empty."""
    return service.requested.value if service.requested is not None else None


def _command_code(results: Sequence[CreditResult]) -> int:
    """Command-level Result-Code: success if any service succeeded, else the first code."""
    if not results or any(r.success for r in results):
        return ResultCode.SUCCESS
    return results[0].result_code


def _rating_failed(service: _Service) -> bytes:
    """What could not be rated: the MSCC with its Rating-Group, or an example Rating-Group."""
    if service.mscc is not None and service.named:
        rating_group = Avp.new("Rating-Group", service.rating_group)
        return Avp.new("Multiple-Services-Credit-Control", [rating_group]).encode()
    return example_avp(AVPS_BY_NAME["Rating-Group"])


def _failed_avp(failed: list[bytes]) -> list[Avp]:
    """One Failed-AVP holding every AVP that failed (RFC 6733 §7.5), or nothing."""
    if not failed:
        return []
    return [Avp(279, flags=FLAG_M, data=b"".join(failed))]
