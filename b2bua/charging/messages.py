"""Ro messages of one charged call: the A-leg INVITE in, CCRs out, CCAs read, sans-IO.

Implements the Diameter side of session charging of a call:

* RFC 4006 §3.1 (Credit-Control-Request): Session-Id, Origin-Host/-Realm,
  Destination-Realm (and Destination-Host once the serving OCS is known, §7), the
  top-level Auth-Application-Id 4 the command grammar requires, Service-Context-Id,
  CC-Request-Type and CC-Request-Number, Event-Timestamp, User-Name, Subscription-Id
  (§8.46-8.47), Termination-Cause on the final request, Multiple-Services-Indicator on the
  first request (§8.40) and one Multiple-Services-Credit-Control (§8.16) carrying
  Requested-Service-Unit (§8.18; not in the final request, §5.4), Used-Service-Unit
  (§8.19), Service-Identifier and Rating-Group, all in CC-Time seconds (§8.21);
* RFC 6733 §3 (T flag on a request retransmitted to an alternate peer) and §8.8
  (Session-Id: ``<DiameterIdentity>;<high 32 bits>;<low 32 bits>[;<optional>]``);
* 3GPP TS 32.299 §6.4.2 and §7.2 (Ro for IMS): Service-Context-Id built as
  ``<ext>.<MNC>.<MCC>.<release>.<root>`` (§7.1.12), Service-Information/IMS-Information with
  Event-Type/SIP-Method, Role-Of-Node, Node-Functionality, User-Session-Id,
  Calling-/Called-/Requested-Party-Address, Time-Stamps, Application-Server-Information/
  Application-Provided-Called-Party-Address, Inter-Operator-Identifier,
  IMS-Charging-Identifier, Trunk-Group-Id and Cause-Code (§7.2.35, final request only);
* RFC 4006 §8 (Credit-Control-Answer): Result-Code or Experimental-Result, and the
  Multiple-Services-Credit-Control fields a session acts on (Granted-Service-Unit,
  Result-Code, Validity-Time, Final-Unit-Indication, Time-Quota-Threshold), plus
  CC-Session-Failover and Credit-Control-Failure-Handling.

Where the call's data comes from (the A-leg INVITE, :func:`context_from_invite`):

* the served subscriber (Subscription-Id): for ``orig`` the first P-Asserted-Identity
  (RFC 3325), falling back to From; for ``term`` the Request-URI, falling back to
  P-Called-Party-ID (RFC 7315 §4.2) when the Request-URI names no user. The header named by
  ``custom_user`` overrides both. tel: URIs, ``user=phone`` SIP URIs and SIP URIs whose user
  part is a number are END_USER_E164 (digits only, RFC 4006 §8.47), the rest
  END_USER_SIP_URI (``sip:user@host``);
* IMS-Charging-Identifier: ``icid-value`` of P-Charging-Vector (RFC 7315 §4.6), or a new
  one when the SBC sent none; Originating-/Terminating-IOI: its ``orig-ioi``/``term-ioi``;
* the charging route's trunk group ids go into Trunk-Group-Id (TS 32.299 §7.2.211:
  the incoming and outgoing PSTN legs), not into Inter-Operator-Identifier, which holds the
  operator identities exchanged in SIP (§7.2.80);
* video or voice: an ``m=video`` stream with a non-zero port that is not inactive
  (:mod:`b2bua.charging.sdp`) selects the video Service-Identifier and Rating-Group;
  :func:`with_video` moves a context from one to the other after a media change, and the
  CCR-U of that switch (``previous``) reports the used seconds in an MSCC of the old
  Rating-Group (Reporting-Reason RATING_CONDITION_CHANGE, TS 32.299) and requests units in
  a second MSCC of the new one.

Events (a SIP MESSAGE, :func:`context_for_message`): the parties as for an INVITE, the SMS
Service-Identifier and Rating-Group; :func:`build_event_ccr` writes RFC 4006 §6.3's
CCR-EVENT (Requested-Action DIRECT_DEBITING, §8.41) or §6.2's CCR-I/CCR-T, with units in
CC-Service-Specific-Units (§8.26), Event-Type SIP-Method MESSAGE.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from enum import IntEnum, StrEnum
from typing import Any

from b2bua.charging.event import EventCcr, EventRequestType
from b2bua.charging.sdp import has_active_video
from b2bua.charging.session import Answer, Ccfh, FinalUnitAction, RequestType, SendCcr
from b2bua.diameter.avp import Avp
from b2bua.diameter.dictionary import APP_CREDIT_CONTROL
from b2bua.diameter.errors import DecodeError
from b2bua.diameter.message import FLAG_RETRANSMIT, Message
from b2bua.sip.errors import SipParseError
from b2bua.sip.headers import SipURI, TelURI, Uri, parse_name_addr, parse_uri
from b2bua.sip.message import Request

__all__ = [
    "AVP_NAMES",
    "CauseCode",
    "ChargingContext",
    "ContextError",
    "Direction",
    "MalformedAnswer",
    "RoSettings",
    "RoleOfNode",
    "SessionIdGenerator",
    "SubscriptionIdType",
    "TerminationCause",
    "Timestamps",
    "build_ccr",
    "build_event_ccr",
    "context_for_message",
    "context_from_invite",
    "mark_retransmission",
    "parse_cca",
    "parse_event_cca",
    "service_context_id",
    "subscription_id",
    "with_video",
]


class Direction(StrEnum):
    """Which party the charging route charges (Kamailio's ``Ro_CCR`` direction)."""

    ORIG = "orig"
    TERM = "term"


class SubscriptionIdType(IntEnum):
    """Subscription-Id-Type values used for calls (RFC 4006 §8.47)."""

    END_USER_E164 = 0
    END_USER_SIP_URI = 2


class RoleOfNode(IntEnum):
    """Role-Of-Node (TS 32.299 §7.2.183)."""

    ORIGINATING = 0
    TERMINATING = 1


class CauseCode(IntEnum):
    """Cause-Code values that are not SIP status codes (TS 32.299 §7.2.35)."""

    NORMAL_END = 0  # BYE after the ACK, from either side or the network
    UNSPECIFIED_ERROR = 1
    UNSUCCESSFUL_SESSION_SETUP = 2  # e.g. CANCEL before the 200 OK
    INTERNAL_ERROR = 3


class TerminationCause(IntEnum):
    """Termination-Cause values (RFC 6733 §8.15) a CCR-T carries."""

    LOGOUT = 1  # the user hung up
    SERVICE_NOT_PROVIDED = 2  # no credit: the service could not go on
    BAD_ANSWER = 3
    ADMINISTRATIVE = 4  # the OCS aborted the session
    LINK_BROKEN = 5  # the OCS could not be reached
    AUTH_EXPIRED = 6  # ro_auth_expiry


class ContextError(ValueError):
    """The INVITE names no subscriber that can be charged."""


class MalformedAnswer(ValueError):
    """A CCA without a readable Result-Code or Experimental-Result-Code."""


def service_context_id(
    root: str, ext: str = "", mnc: str = "", mcc: str = "", release: str = ""
) -> str:
    """``<ext>.<MNC>.<MCC>.<release>.<root>`` (TS 32.299 §7.1.12); empty parts are left out."""
    return ".".join([*(part for part in (ext, mnc, mcc, release) if part), root])


@dataclass(frozen=True, slots=True)
class RoSettings:
    """What the message mapping takes from ``[charging]`` (Kamailio ims_charging names)."""

    service_context_id_root: str = "32260@3gpp.org"
    service_context_id_ext: str = "ext"
    service_context_id_mnc: str = "01"
    service_context_id_mcc: str = "001"
    service_context_id_release: str = "8"
    voice_service_identifier: int = 1000
    voice_rating_group: int = 100
    video_service_identifier: int = 1001
    video_rating_group: int = 200
    sms_service_identifier: int = 1002  # SIP MESSAGE events (Kamailio has no SMS default)
    sms_rating_group: int = 300  # the lab OCS's event-priced rating group
    node_functionality: int = 6  # AS (TS 32.299 §7.2.107)
    custom_user: str = ""  # a SIP header naming the subscriber, overriding PAI/From/R-URI
    app_provided_party: str = ""  # a SIP header for Application-Provided-Called-Party-Address

    @property
    def service_context_id(self) -> str:
        """The Service-Context-Id every CCR carries."""
        return service_context_id(
            self.service_context_id_root,
            self.service_context_id_ext,
            self.service_context_id_mnc,
            self.service_context_id_mcc,
            self.service_context_id_release,
        )


@dataclass(frozen=True, slots=True)
class ChargingContext:
    """Everything about one charged call that its CCRs carry; built once from the INVITE."""

    call_id: str  # the A-leg Call-ID: User-Session-Id
    direction: Direction
    subscriber: str  # Subscription-Id-Data
    subscriber_type: SubscriptionIdType
    service_context_id: str
    service_identifier: int
    rating_group: int
    node_functionality: int
    request_time: float  # SIP-Request-Timestamp: when the INVITE arrived
    icid: str  # IMS-Charging-Identifier
    video: bool = False
    user_name: str | None = None  # User-Name: the private identity, when the SBC passed one
    calling_party: tuple[str, ...] = ()
    called_party: str | None = None
    requested_party: str | None = None
    orig_ioi: str | None = None
    term_ioi: str | None = None
    incoming_trunk_id: str | None = None
    outgoing_trunk_id: str | None = None
    app_provided_party: str | None = None

    @property
    def role_of_node(self) -> RoleOfNode:
        """ORIGINATING for ``orig``, TERMINATING for ``term``."""
        return (
            RoleOfNode.ORIGINATING if self.direction is Direction.ORIG else RoleOfNode.TERMINATING
        )


@dataclass(frozen=True, slots=True)
class Timestamps:
    """SIP-Request-Timestamp and SIP-Response-Timestamp (Unix seconds), when known."""

    request: float | None = None
    response: float | None = None


class SessionIdGenerator:
    """Session-Ids of one process (RFC 6733 §8.8).

    ``<origin_host>;<high>;<low>;<tag>``: the high 32 bits are the start time in seconds,
    the low 32 bits a counter from 0 (carrying into the high part when it wraps), and the
    optional part a random tag drawn at start, so two runs started within the same second
    still never hand out the same id.
    """

    __slots__ = ("_high", "_low", "_origin_host", "_tag")

    def __init__(self, origin_host: str, now: float, rng: random.Random | None = None) -> None:
        if not origin_host or ";" in origin_host:
            raise ValueError(f"not a DiameterIdentity: {origin_host!r}")
        self._origin_host = origin_host
        self._high = int(now) & 0xFFFFFFFF
        self._low = 0
        self._tag = f"{(rng or random.SystemRandom()).getrandbits(32):08x}"

    def __call__(self) -> str:
        """A new Session-Id."""
        value = f"{self._origin_host};{self._high};{self._low};{self._tag}"
        self._low += 1
        if self._low > 0xFFFFFFFF:
            self._low = 0
            self._high = (self._high + 1) & 0xFFFFFFFF
        return value


# -- the INVITE ----------------------------------------------------------------------------

_VISUAL_SEPARATORS = re.compile(r"[-.()\s]")
_NUMBER = re.compile(r"\+?[0-9]+")
_USERNAME = re.compile(r"""(?:^|[\s,])username\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))""", re.I)


def _number(text: str) -> str | None:
    """The digits of a telephone number with optional ``+`` and visual separators."""
    compact = _VISUAL_SEPARATORS.sub("", text)
    return compact.lstrip("+") if _NUMBER.fullmatch(compact) else None


def subscription_id(uri: Uri) -> tuple[SubscriptionIdType, str]:
    """Subscription-Id-Type and -Data for a served user's URI (RFC 4006 §8.47)."""
    if isinstance(uri, TelURI):
        digits = _number(uri.number)
        if digits:
            return SubscriptionIdType.END_USER_E164, digits
        return SubscriptionIdType.END_USER_SIP_URI, str(uri)
    if isinstance(uri, SipURI):
        user = uri.user or ""
        # A telephone-subscriber user part may carry its own ;params (RFC 3261 §19.1.6).
        digits = _number(user.partition(";")[0]) if user else None
        if digits:
            return SubscriptionIdType.END_USER_E164, digits
        host = uri.host.lower()
        text = f"{uri.scheme}:{user}@{host}" if user else f"{uri.scheme}:{host}"
        return SubscriptionIdType.END_USER_SIP_URI, text
    return SubscriptionIdType.END_USER_SIP_URI, str(uri)


def _uri_of(text: str | None) -> Uri | None:
    """A URI from a header value: name-addr, addr-spec, bare number or ``user@host``."""
    if not text:
        return None
    text = text.strip()
    if _number(text):
        return TelURI(text)
    try:
        return parse_name_addr(text).uri
    except SipParseError:
        pass
    if "@" in text and ":" not in text.partition("@")[0]:
        try:
            return parse_uri("sip:" + text)
        except SipParseError:
            return None
    return None


def _header_uris(request: Request, name: str) -> list[Uri]:
    found: list[Uri] = []
    for value in request.headers.get_all(name):
        uri = _uri_of(value)
        if uri is not None:
            found.append(uri)
    return found


def _first_uri(request: Request, name: str) -> Uri | None:
    uris = _header_uris(request, name)
    return uris[0] if uris else None


def _from_uri(request: Request) -> Uri | None:
    try:
        return request.from_.uri
    except SipParseError:
        return None


def _to_uri(request: Request) -> Uri | None:
    try:
        return request.to.uri
    except SipParseError:
        return None


def _request_uri(request: Request) -> Uri | None:
    try:
        return request.request_uri
    except SipParseError:
        return None


def _names_a_user(uri: Uri | None) -> bool:
    if isinstance(uri, SipURI):
        return bool(uri.user)
    return isinstance(uri, TelURI)


def _charging_vector(request: Request) -> dict[str, str]:
    """The parameters of P-Charging-Vector (RFC 7315 §4.6), names lower-cased."""
    value = request.headers.get("P-Charging-Vector")
    params: dict[str, str] = {}
    if not value:
        return params
    for part in value.split(";"):
        name, sep, raw = part.partition("=")
        if not sep:
            continue
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1]
        name = name.strip().lower()
        if name and raw and name not in params:
            params[name] = raw
    return params


def _user_name(request: Request) -> str | None:
    """The private user identity of Authorization/Proxy-Authorization (RFC 3261 §22.4)."""
    for header in ("Authorization", "Proxy-Authorization"):
        for value in request.headers.get_fields(header):
            match = _USERNAME.search(value)
            if match:
                name = match.group(1) if match.group(1) is not None else match.group(2)
                name = name.replace('\\"', '"').replace("\\\\", "\\")
                if name:
                    return name
    return None


def _new_icid(now: float, rng: random.Random | None) -> str:
    source = rng or random.SystemRandom()
    return f"b2bua-{int(now) & 0xFFFFFFFF:08x}-{source.getrandbits(64):016x}"


def _has_video(request: Request) -> bool:
    media_type = request.media_type
    if not request.body or media_type is None:
        return False
    if media_type != "application/sdp" and not media_type.startswith("multipart/"):
        return False
    return has_active_video(request.body)


def context_from_invite(
    request: Request,
    *,
    direction: Direction | str,
    settings: RoSettings,
    now: float,
    incoming_trunk_id: str | None = None,
    outgoing_trunk_id: str | None = None,
    subscriber: str | None = None,
    rng: random.Random | None = None,
) -> ChargingContext:
    """The charging context of the A-leg INVITE ``request`` arrived at ``now``.

    ``subscriber`` (a URI or number chosen by the charging route) overrides everything
    else. Raises :class:`ContextError` when no subscriber can be found.
    """
    direction = Direction(direction)
    served: Uri | None = _uri_of(subscriber)
    if served is None and settings.custom_user:
        served = _first_uri(request, settings.custom_user)
    asserted = _header_uris(request, "P-Asserted-Identity")
    from_uri = _from_uri(request)
    ruri = _request_uri(request)
    called_party_id = _first_uri(request, "P-Called-Party-ID")
    if served is None:
        if direction is Direction.ORIG:
            served = asserted[0] if asserted else from_uri
        else:
            served = ruri if _names_a_user(ruri) else (called_party_id or ruri)
    if served is None:
        raise ContextError(f"no {direction} subscriber in the INVITE")
    subscriber_type, subscriber_data = subscription_id(served)

    calling = tuple(str(uri) for uri in asserted) or (
        (str(from_uri),) if from_uri is not None else ()
    )
    called = request.uri or None
    requested_uri = called_party_id or _to_uri(request)
    requested = str(requested_uri) if requested_uri is not None else None
    if requested == called:
        requested = None  # TS 32.299 §7.2.179: only when it differs from the called party

    vector = _charging_vector(request)
    video = _has_video(request)
    app_party: str | None = None
    if settings.app_provided_party:
        uri = _first_uri(request, settings.app_provided_party)
        app_party = str(uri) if uri is not None else None
    return ChargingContext(
        call_id=request.call_id,
        direction=direction,
        subscriber=subscriber_data,
        subscriber_type=subscriber_type,
        service_context_id=settings.service_context_id,
        service_identifier=(
            settings.video_service_identifier if video else settings.voice_service_identifier
        ),
        rating_group=settings.video_rating_group if video else settings.voice_rating_group,
        node_functionality=settings.node_functionality,
        request_time=now,
        icid=vector.get("icid-value") or _new_icid(now, rng),
        video=video,
        user_name=_user_name(request),
        calling_party=calling,
        called_party=called,
        requested_party=requested,
        orig_ioi=vector.get("orig-ioi"),
        term_ioi=vector.get("term-ioi"),
        incoming_trunk_id=incoming_trunk_id or None,
        outgoing_trunk_id=outgoing_trunk_id or None,
        app_provided_party=app_party,
    )


def context_for_message(
    request: Request,
    *,
    direction: Direction | str,
    settings: RoSettings,
    now: float,
    incoming_trunk_id: str | None = None,
    outgoing_trunk_id: str | None = None,
) -> ChargingContext:
    """The charging context of an out-of-dialog MESSAGE: the parties as for an INVITE, the
    SMS Service-Identifier and Rating-Group (``sms_service_identifier``/``sms_rating_group``).
    """
    context = context_from_invite(
        request,
        direction=direction,
        settings=settings,
        now=now,
        incoming_trunk_id=incoming_trunk_id,
        outgoing_trunk_id=outgoing_trunk_id,
    )
    return replace(
        context,
        service_identifier=settings.sms_service_identifier,
        rating_group=settings.sms_rating_group,
        video=False,
    )


def with_video(context: ChargingContext, settings: RoSettings, video: bool) -> ChargingContext:
    """``context`` charged as a video call (or as a voice call): Service-Identifier and
    Rating-Group of that media, everything else kept."""
    if video:
        return replace(
            context,
            video=True,
            service_identifier=settings.video_service_identifier,
            rating_group=settings.video_rating_group,
        )
    return replace(
        context,
        video=False,
        service_identifier=settings.voice_service_identifier,
        rating_group=settings.voice_rating_group,
    )


# -- CCR -----------------------------------------------------------------------------------

_REQUEST_TYPE_NAMES = {
    RequestType.INITIAL: "INITIAL_REQUEST",
    RequestType.UPDATE: "UPDATE_REQUEST",
    RequestType.TERMINATION: "TERMINATION_REQUEST",
}


def _time_avps(prefix: str, at: float) -> list[tuple[str, Any]]:
    """SIP-*-Timestamp (whole seconds) and its -Fraction in milliseconds (TS 32.299)."""
    seconds = int(at // 1)
    millis = min(999, round((at - seconds) * 1000))
    return [(f"{prefix}-Timestamp", seconds), (f"{prefix}-Timestamp-Fraction", millis)]


def _ims_information(
    context: ChargingContext,
    request_type: RequestType,
    *,
    sip_method: str,
    cause_code: int | None,
    timestamps: Timestamps,
) -> list[tuple[str, Any]]:
    """IMS-Information (TS 32.299 §7.2.77), children in the grammar's order."""
    ims: list[tuple[str, Any]] = [
        ("Event-Type", [("SIP-Method", sip_method)]),
        ("Role-Of-Node", int(context.role_of_node)),
        ("Node-Functionality", context.node_functionality),
        ("User-Session-Id", context.call_id),
    ]
    ims.extend(("Calling-Party-Address", address) for address in context.calling_party)
    if context.called_party:
        ims.append(("Called-Party-Address", context.called_party))
    if context.requested_party:
        ims.append(("Requested-Party-Address", context.requested_party))
    stamps: list[tuple[str, Any]] = []
    if timestamps.request is not None:
        stamps.extend(_time_avps("SIP-Request", timestamps.request))
    if timestamps.response is not None:
        stamps.extend(_time_avps("SIP-Response", timestamps.response))
    if stamps:
        ims.append(("Time-Stamps", stamps))
    if context.app_provided_party:
        ims.append(
            (
                "Application-Server-Information",
                [("Application-Provided-Called-Party-Address", context.app_provided_party)],
            )
        )
    ioi: list[tuple[str, Any]] = []
    if context.orig_ioi:
        ioi.append(("Originating-IOI", context.orig_ioi))
    if context.term_ioi:
        ioi.append(("Terminating-IOI", context.term_ioi))
    if ioi:
        ims.append(("Inter-Operator-Identifier", ioi))
    ims.append(("IMS-Charging-Identifier", context.icid))
    trunks: list[tuple[str, Any]] = []
    if context.incoming_trunk_id:
        trunks.append(("Incoming-Trunk-Group-Id", context.incoming_trunk_id))
    if context.outgoing_trunk_id:
        trunks.append(("Outgoing-Trunk-Group-Id", context.outgoing_trunk_id))
    if trunks:
        ims.append(("Trunk-Group-Id", trunks))
    if request_type is RequestType.TERMINATION:
        ims.append(("Cause-Code", CauseCode.NORMAL_END if cause_code is None else cause_code))
    return ims


def _ccr_head(
    context: ChargingContext,
    *,
    request_type_name: str,
    request_number: int,
    session_id: str,
    origin_host: str,
    origin_realm: str,
    destination_host: str | None,
    destination_realm: str,
    now: float,
) -> list[tuple[str, Any]]:
    """The AVPs every CCR starts with, up to Subscription-Id (RFC 4006 §3.1 order)."""
    avps: list[tuple[str, Any]] = [
        ("Session-Id", session_id),
        ("Origin-Host", origin_host),
        ("Origin-Realm", origin_realm),
        ("Destination-Realm", destination_realm),
        ("Auth-Application-Id", APP_CREDIT_CONTROL),
        ("Service-Context-Id", context.service_context_id),
        ("CC-Request-Type", request_type_name),
        ("CC-Request-Number", request_number),
    ]
    if destination_host:
        avps.append(("Destination-Host", destination_host))
    if context.user_name:
        avps.append(("User-Name", context.user_name))
    avps.append(("Event-Timestamp", int(now)))
    avps.append(
        (
            "Subscription-Id",
            [
                ("Subscription-Id-Type", int(context.subscriber_type)),
                ("Subscription-Id-Data", context.subscriber),
            ],
        )
    )
    return avps


def build_ccr(
    context: ChargingContext,
    send: SendCcr,
    *,
    session_id: str,
    origin_host: str,
    origin_realm: str,
    destination_realm: str,
    destination_host: str | None = None,
    now: float,
    sip_method: str = "INVITE",
    cause_code: int | None = None,
    termination_cause: int | None = None,
    timestamps: Timestamps | None = None,
    previous: ChargingContext | None = None,
) -> Message:
    """The Credit-Control-Request for ``send`` (see the module docstring for its AVPs).

    ``destination_host`` is the configured OCS; the one learned from earlier answers
    (``send.destination_host``) wins, and a retransmission to an alternate peer
    (``send.retry``) names none and carries the T flag. ``now`` is the Event-Timestamp
    (Unix seconds). ``previous`` is the context the call was charged under until a media
    change: the used seconds are then reported in an MSCC of its Rating-Group and the
    units requested in a second MSCC of ``context``'s (RFC 4006 §5.1.2, one request).
    """
    request_type = send.request_type
    avps = _ccr_head(
        context,
        request_type_name=_REQUEST_TYPE_NAMES[request_type],
        request_number=send.request_number,
        session_id=session_id,
        origin_host=origin_host,
        origin_realm=origin_realm,
        destination_host=None if send.retry else (send.destination_host or destination_host),
        destination_realm=destination_realm,
        now=now,
    )
    if request_type is RequestType.TERMINATION:
        avps.append(
            (
                "Termination-Cause",
                TerminationCause.LOGOUT if termination_cause is None else termination_cause,
            )
        )
    if request_type is RequestType.INITIAL:
        avps.append(("Multiple-Services-Indicator", "MULTIPLE_SERVICES_SUPPORTED"))
    mscc: list[tuple[str, Any]] = []
    if send.requested_seconds is not None and request_type is not RequestType.TERMINATION:
        mscc.append(("Requested-Service-Unit", [("CC-Time", send.requested_seconds)]))
    if send.used_seconds is not None:
        used: list[tuple[str, Any]] = [("CC-Time", send.used_seconds)]
        if request_type is RequestType.TERMINATION:
            used.append(("Reporting-Reason", "FINAL"))
        elif previous is not None:
            used.append(("Reporting-Reason", "RATING_CONDITION_CHANGE"))
        usage = ("Used-Service-Unit", used)
        if previous is not None and previous.rating_group != context.rating_group:
            avps.append(
                (
                    "Multiple-Services-Credit-Control",
                    [
                        usage,
                        ("Service-Identifier", previous.service_identifier),
                        ("Rating-Group", previous.rating_group),
                    ],
                )
            )
        else:
            mscc.append(usage)
    mscc.append(("Service-Identifier", context.service_identifier))
    mscc.append(("Rating-Group", context.rating_group))
    avps.append(("Multiple-Services-Credit-Control", mscc))
    ims = _ims_information(
        context,
        request_type,
        sip_method=sip_method,
        cause_code=cause_code,
        timestamps=timestamps or Timestamps(request=context.request_time),
    )
    avps.append(("Service-Information", [("IMS-Information", ims)]))
    return Message.request("Credit-Control", APP_CREDIT_CONTROL, avps, retransmit=send.retry)


_EVENT_REQUEST_TYPE_NAMES = {
    EventRequestType.INITIAL: "INITIAL_REQUEST",
    EventRequestType.TERMINATION: "TERMINATION_REQUEST",
    EventRequestType.EVENT: "EVENT_REQUEST",
}


def build_event_ccr(
    context: ChargingContext,
    send: EventCcr,
    *,
    session_id: str,
    origin_host: str,
    origin_realm: str,
    destination_realm: str,
    destination_host: str | None = None,
    now: float,
    sip_method: str = "MESSAGE",
) -> Message:
    """The CCR of a charged event: IEC's CCR-EVENT with Requested-Action DIRECT_DEBITING
    (RFC 4006 §6.3), or ECUR's CCR-I/CCR-T (§6.2); units are CC-Service-Specific-Units
    (§8.26) of the SMS Rating-Group; Service-Information as for a call, Event-Type MESSAGE.
    """
    request_type = send.request_type
    avps = _ccr_head(
        context,
        request_type_name=_EVENT_REQUEST_TYPE_NAMES[request_type],
        request_number=send.request_number,
        session_id=session_id,
        origin_host=origin_host,
        origin_realm=origin_realm,
        destination_host=None if send.retry else (send.destination_host or destination_host),
        destination_realm=destination_realm,
        now=now,
    )
    final = request_type is EventRequestType.TERMINATION
    if final:
        avps.append(("Termination-Cause", TerminationCause.LOGOUT))
    if request_type is EventRequestType.EVENT:
        avps.append(("Requested-Action", "DIRECT_DEBITING"))
    if not final:
        avps.append(("Multiple-Services-Indicator", "MULTIPLE_SERVICES_SUPPORTED"))
    mscc: list[tuple[str, Any]] = []
    if send.requested_units is not None and not final:
        mscc.append(
            ("Requested-Service-Unit", [("CC-Service-Specific-Units", send.requested_units)])
        )
    if send.used_units is not None:
        used: list[tuple[str, Any]] = [("CC-Service-Specific-Units", send.used_units)]
        if final:
            used.append(("Reporting-Reason", "FINAL"))
        mscc.append(("Used-Service-Unit", used))
    mscc.append(("Service-Identifier", context.service_identifier))
    mscc.append(("Rating-Group", context.rating_group))
    avps.append(("Multiple-Services-Credit-Control", mscc))
    ims = _ims_information(
        context,
        RequestType.TERMINATION if final else RequestType.INITIAL,
        sip_method=sip_method,
        cause_code=send.cause_code,
        timestamps=Timestamps(request=context.request_time),
    )
    avps.append(("Service-Information", [("IMS-Information", ims)]))
    return Message.request("Credit-Control", APP_CREDIT_CONTROL, avps, retransmit=send.retry)


def mark_retransmission(message: Message) -> Message:
    """``message`` with the T flag and without Destination-Host, for an alternate peer."""
    message.flags |= FLAG_RETRANSMIT
    message.avps = [a for a in message.avps if a.name != "Destination-Host"]
    return message


# -- CCA -----------------------------------------------------------------------------------


def _value(avp: Avp | None) -> Any:
    """The value of ``avp``, or None when absent or unreadable."""
    if avp is None:
        return None
    try:
        return avp.value
    except DecodeError:
        return None


def _child(avp: Avp | None, *names: str) -> Avp | None:
    """Follow ``names`` down from a Grouped ``avp``; None when absent or unreadable."""
    for name in names:
        if avp is None:
            return None
        try:
            avp = avp.find(name) if avp.is_grouped else None
        except (DecodeError, ValueError):
            return None
    return avp


def _int(avp: Avp | None) -> int | None:
    value = _value(avp)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _top(message: Message, name: str) -> Avp | None:
    try:
        return message.find(name)
    except DecodeError:
        return None


def _result_code(holder: Message | Avp) -> int | None:
    """Result-Code, else Experimental-Result/Experimental-Result-Code (RFC 6733 §7.6)."""
    try:
        code = _int(holder.find("Result-Code"))
        if code is not None:
            return code
        return _int(_child(holder.find("Experimental-Result"), "Experimental-Result-Code"))
    except (DecodeError, ValueError):
        return None


def _pick_mscc(message: Message, rating_group: int | None) -> Avp | None:
    """The Multiple-Services-Credit-Control for ``rating_group``, else the first one."""
    try:
        found = message.find_all("Multiple-Services-Credit-Control")
    except DecodeError:
        return None
    if rating_group is not None:
        for mscc in found:
            if _int(_child(mscc, "Rating-Group")) == rating_group:
                return mscc
    return found[0] if found else None


def _final_unit_action(fui: Avp | None) -> FinalUnitAction | None:
    if fui is None:
        return None
    action = _int(_child(fui, "Final-Unit-Action"))
    try:
        return FinalUnitAction(action if action is not None else 0)
    except ValueError:  # RFC 4006 §8.35: an unknown action is TERMINATE
        return FinalUnitAction.TERMINATE


def _first(*values: int | None) -> int | None:
    for value in values:
        if value is not None:
            return value
    return None


def parse_cca(message: Message, *, rating_group: int | None = None) -> Answer:
    """The fields of a Credit-Control-Answer a :class:`RoSession` acts on.

    Values are read from the Multiple-Services-Credit-Control for ``rating_group`` (or the
    first one), falling back to the top level for servers that answer in the single-service
    form. A success Result-Code at the top with a failure inside that MSCC (e.g. 4012 for
    this rating group) gives the MSCC's code. Validity-Time stays relative: the session
    measures it from the moment it is given the answer. Unreadable optional AVPs count as
    absent; a missing Result-Code raises :class:`MalformedAnswer`.
    """
    code = _result_code(message)
    if code is None:
        raise MalformedAnswer("CCA without Result-Code or Experimental-Result-Code")
    mscc = _pick_mscc(message, rating_group)
    if mscc is not None and 2000 <= code < 3000:
        inner = _result_code(mscc)
        if inner is not None:
            code = inner
    granted = _first(
        _int(_child(mscc, "Granted-Service-Unit", "CC-Time")),
        _int(_child(_top(message, "Granted-Service-Unit"), "CC-Time")),
    )
    validity = _first(_int(_child(mscc, "Validity-Time")), _int(_top(message, "Validity-Time")))
    fui = _child(mscc, "Final-Unit-Indication") or _top(message, "Final-Unit-Indication")
    threshold = _int(_child(mscc, "Time-Quota-Threshold"))
    failover = _int(_top(message, "CC-Session-Failover"))
    ccfh_value = _int(_top(message, "Credit-Control-Failure-Handling"))
    try:
        ccfh = Ccfh(ccfh_value) if ccfh_value is not None else None
    except ValueError:
        ccfh = None
    origin = _value(_top(message, "Origin-Host"))
    return Answer(
        result_code=code,
        granted_seconds=granted,
        validity_time=validity,
        final_unit_action=_final_unit_action(fui),
        time_quota_threshold=threshold,
        cc_session_failover=None if failover is None else failover == 1,
        credit_control_failure_handling=ccfh,
        origin_host=origin if isinstance(origin, str) else None,
        request_number=_int(_top(message, "CC-Request-Number")),
    )


def parse_event_cca(message: Message, *, rating_group: int | None = None) -> Answer:
    """:func:`parse_cca` for an event: the grant is in CC-Service-Specific-Units."""
    answer = parse_cca(message, rating_group=rating_group)
    mscc = _pick_mscc(message, rating_group)
    granted = _first(
        _int(_child(mscc, "Granted-Service-Unit", "CC-Service-Specific-Units")),
        _int(_child(_top(message, "Granted-Service-Unit"), "CC-Service-Specific-Units")),
    )
    return replace(answer, granted_seconds=granted)


#: Every AVP name this module writes or reads, checked against the dictionary in the tests.
AVP_NAMES: tuple[str, ...] = (
    "Session-Id", "Origin-Host", "Origin-Realm", "Destination-Realm", "Destination-Host",
    "Auth-Application-Id", "Service-Context-Id", "CC-Request-Type", "CC-Request-Number",
    "User-Name", "Event-Timestamp", "Subscription-Id", "Subscription-Id-Type",
    "Subscription-Id-Data", "Termination-Cause", "Multiple-Services-Indicator",
    "Multiple-Services-Credit-Control", "Requested-Service-Unit", "Used-Service-Unit",
    "CC-Time", "Reporting-Reason", "Service-Identifier", "Rating-Group",
    "Service-Information", "IMS-Information", "Event-Type", "SIP-Method", "Role-Of-Node",
    "Node-Functionality", "User-Session-Id", "Calling-Party-Address", "Called-Party-Address",
    "Requested-Party-Address", "Time-Stamps", "SIP-Request-Timestamp",
    "SIP-Request-Timestamp-Fraction", "SIP-Response-Timestamp",
    "SIP-Response-Timestamp-Fraction", "Application-Server-Information",
    "Application-Provided-Called-Party-Address", "Inter-Operator-Identifier",
    "Originating-IOI", "Terminating-IOI", "IMS-Charging-Identifier", "Trunk-Group-Id",
    "Incoming-Trunk-Group-Id", "Outgoing-Trunk-Group-Id", "Cause-Code", "Result-Code",
    "Experimental-Result", "Experimental-Result-Code", "Granted-Service-Unit",
    "Validity-Time", "Final-Unit-Indication", "Final-Unit-Action", "Time-Quota-Threshold",
    "CC-Session-Failover", "Credit-Control-Failure-Handling", "Requested-Action",
    "CC-Service-Specific-Units",
)  # fmt: skip
