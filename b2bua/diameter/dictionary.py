"""Diameter dictionary: AVP and command definitions as plain data tables.

Covers the RFC 6733 base protocol (section 4.5 table), the RFC 4006
credit-control application (section 8 table, section 3 commands) and the
3GPP TS 32.299 Ro AVPs (vendor 10415) that an IMS online-charging client
sends or reads.  Every lookup (by name, by ``(code, vendor)``, by command
code) is a single dict access so the codec can use it on the hot path.

Flag rules follow the "AVP Flag rules" columns of the source tables: the
'M' rule is MUST, MAY or MUST_NOT; the 'V' bit is implied by the vendor id
(RFC 6733 section 4.1: set iff a Vendor-ID field is present).  For 3GPP
AVPs, TS 32.299 table 7.2 lists V as MUST and the M bit as set by
senders of the Ro AVPs used here; receivers do not reject either value
(rule MAY), since later releases relaxed M for some AVPs.

Not included: Vendor-Specific-Termination-Clause / -Reason.  They are not
defined in RFC 6733, RFC 4006 or TS 32.299, and no code for them could be
verified against a specification, so they are left out deliberately.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

# ---------------------------------------------------------------------------
# Identifiers
# ---------------------------------------------------------------------------

VENDOR_NONE = 0
VENDOR_3GPP = 10415  # IANA enterprise number of 3GPP (TS 29.230)

APP_BASE = 0  # RFC 6733 section 2.4: Diameter common messages
APP_BASE_ACCOUNTING = 3
APP_CREDIT_CONTROL = 4  # RFC 4006 section 1.3 / TS 32.299 Ro
APP_RELAY = 0xFFFFFFFF

CMD_CAPABILITIES_EXCHANGE = 257
CMD_RE_AUTH = 258
CMD_ACCOUNTING = 271
CMD_CREDIT_CONTROL = 272
CMD_ABORT_SESSION = 274
CMD_SESSION_TERMINATION = 275
CMD_DEVICE_WATCHDOG = 280
CMD_DISCONNECT_PEER = 282

# RFC 6733 section 7.1 Result-Code values -----------------------------------
DIAMETER_MULTI_ROUND_AUTH = 1001
DIAMETER_SUCCESS = 2001
DIAMETER_LIMITED_SUCCESS = 2002
DIAMETER_COMMAND_UNSUPPORTED = 3001
DIAMETER_UNABLE_TO_DELIVER = 3002
DIAMETER_REALM_NOT_SERVED = 3003
DIAMETER_TOO_BUSY = 3004
DIAMETER_LOOP_DETECTED = 3005
DIAMETER_REDIRECT_INDICATION = 3006
DIAMETER_APPLICATION_UNSUPPORTED = 3007
DIAMETER_INVALID_HDR_BITS = 3008
DIAMETER_INVALID_AVP_BITS = 3009
DIAMETER_UNKNOWN_PEER = 3010
DIAMETER_AUTHENTICATION_REJECTED = 4001
DIAMETER_OUT_OF_SPACE = 4002
ELECTION_LOST = 4003
DIAMETER_AVP_UNSUPPORTED = 5001
DIAMETER_UNKNOWN_SESSION_ID = 5002
DIAMETER_AUTHORIZATION_REJECTED = 5003
DIAMETER_INVALID_AVP_VALUE = 5004
DIAMETER_MISSING_AVP = 5005
DIAMETER_RESOURCES_EXCEEDED = 5006
DIAMETER_CONTRADICTING_AVPS = 5007
DIAMETER_AVP_NOT_ALLOWED = 5008
DIAMETER_AVP_OCCURS_TOO_MANY_TIMES = 5009
DIAMETER_NO_COMMON_APPLICATION = 5010
DIAMETER_UNSUPPORTED_VERSION = 5011
DIAMETER_UNABLE_TO_COMPLY = 5012
DIAMETER_INVALID_BIT_IN_HEADER = 5013
DIAMETER_INVALID_AVP_LENGTH = 5014
DIAMETER_INVALID_MESSAGE_LENGTH = 5015
DIAMETER_INVALID_AVP_BIT_COMBO = 5016
DIAMETER_NO_COMMON_SECURITY = 5017
# RFC 4006 section 9 ---------------------------------------------------------
DIAMETER_END_USER_SERVICE_DENIED = 4010
DIAMETER_CREDIT_CONTROL_NOT_APPLICABLE = 4011
DIAMETER_CREDIT_LIMIT_REACHED = 4012
DIAMETER_USER_UNKNOWN = 5030
DIAMETER_RATING_FAILED = 5031

RESULT_CODE_NAMES: dict[int, str] = {
    value: name
    for name, value in dict(globals()).items()
    if (name.startswith("DIAMETER_") or name == "ELECTION_LOST") and isinstance(value, int)
}


def result_code_name(code: int) -> str:
    """Symbolic name of a Result-Code, or ``"RESULT_<n>"`` when unknown."""
    return RESULT_CODE_NAMES.get(code, f"RESULT_{code}")


def is_protocol_error(code: int) -> bool:
    """True for 3xxx codes, which travel in answers with the E bit (RFC 6733 7.1.3)."""
    return 3000 <= code < 4000


# RFC 6733 section 5.4.3 Disconnect-Cause values
DISCONNECT_REBOOTING = 0
DISCONNECT_BUSY = 1
DISCONNECT_DO_NOT_WANT_TO_TALK_TO_YOU = 2

# RFC 4006 section 8.3 CC-Request-Type values
CC_INITIAL_REQUEST = 1
CC_UPDATE_REQUEST = 2
CC_TERMINATION_REQUEST = 3
CC_EVENT_REQUEST = 4


class AvpType(enum.IntEnum):
    """RFC 6733 section 4.2 basic and 4.3 derived AVP data formats."""

    OCTET_STRING = 1
    INTEGER32 = 2
    INTEGER64 = 3
    UNSIGNED32 = 4
    UNSIGNED64 = 5
    FLOAT32 = 6
    FLOAT64 = 7
    GROUPED = 8
    ADDRESS = 9
    TIME = 10
    UTF8_STRING = 11
    DIAMETER_IDENTITY = 12
    DIAMETER_URI = 13
    ENUMERATED = 14
    IP_FILTER_RULE = 15


# Data length fixed by the type (RFC 6733 section 4.2); a mismatch is 5014.
FIXED_SIZE: dict[AvpType, int] = {
    AvpType.INTEGER32: 4,
    AvpType.INTEGER64: 8,
    AvpType.UNSIGNED32: 4,
    AvpType.UNSIGNED64: 8,
    AvpType.FLOAT32: 4,
    AvpType.FLOAT64: 8,
    AvpType.TIME: 4,
    AvpType.ENUMERATED: 4,
}

# Minimum payload for the zero-filled example AVP of a 5005 answer (7.5).
MIN_SIZE: dict[AvpType, int] = {**FIXED_SIZE, AvpType.ADDRESS: 6}


class FlagRule(enum.IntEnum):
    """Requirement on the 'M' bit from an AVP flag-rules table."""

    MUST = 1
    MAY = 2
    MUST_NOT = 3


FLAG_V = 0x80
FLAG_M = 0x40
FLAG_P = 0x20

Occurrence = tuple[int, int | None]  # (min, max); max None = unbounded


@dataclass(frozen=True, slots=True)
class AvpDef:
    """One dictionary entry; ``flags`` is what the builder puts on the wire."""

    name: str
    code: int
    type: AvpType
    vendor: int = VENDOR_NONE
    m_rule: FlagRule = FlagRule.MUST
    m_default: bool = True
    enum: Mapping[int, str] | None = None
    closed_enum: bool = True  # values outside ``enum`` are 5004
    rules: Mapping[str, Occurrence] | None = None  # grouped grammar
    flags: int = field(init=False)
    key: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        flags = FLAG_V if self.vendor else 0
        if self.m_rule is FlagRule.MUST or (self.m_rule is FlagRule.MAY and self.m_default):
            flags |= FLAG_M
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "key", (self.code, self.vendor))

    @property
    def fixed_size(self) -> int | None:
        """Data length mandated by the type, if any."""
        return FIXED_SIZE.get(self.type)

    def enum_value(self, label: str) -> int:
        """Numeric value of an enumerated label (KeyError when unknown)."""
        if self.enum is not None:
            for value, name in self.enum.items():
                if name == label:
                    return value
        raise KeyError(f"{self.name} has no value {label!r}")


@dataclass(frozen=True, slots=True)
class CommandDef:
    """A command pair with its CCF occurrence rules (request and answer)."""

    name: str
    abbrev_request: str
    abbrev_answer: str
    code: int
    app_ids: frozenset[int] | None  # None: any application the node supports
    proxiable: bool
    request_rules: Mapping[str, Occurrence]
    answer_rules: Mapping[str, Occurrence]


_T = AvpType
_MUST = FlagRule.MUST
_MAY = FlagRule.MAY
_MUST_NOT = FlagRule.MUST_NOT

ONE: Occurrence = (1, 1)
OPT: Occurrence = (0, 1)
ANY: Occurrence = (0, None)
SOME: Occurrence = (1, None)


def _base(name: str, code: int, typ: AvpType, **kw: object) -> AvpDef:
    return AvpDef(name, code, typ, **kw)  # type: ignore[arg-type]


def _tgpp(name: str, code: int, typ: AvpType, **kw: object) -> AvpDef:
    kw.setdefault("m_rule", _MAY)
    return AvpDef(name, code, typ, vendor=VENDOR_3GPP, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# RFC 6733 section 4.5 (base AVPs); flag rules: M MUST, V MUST NOT unless noted
# ---------------------------------------------------------------------------
_BASE_AVPS = [
    _base("Acct-Interim-Interval", 85, _T.UNSIGNED32),
    _base(
        "Accounting-Realtime-Required",
        483,
        _T.ENUMERATED,
        enum={1: "DELIVER_AND_GRANT", 2: "GRANT_AND_STORE", 3: "GRANT_AND_LOSE"},
    ),
    _base("Acct-Multi-Session-Id", 50, _T.UTF8_STRING),
    _base("Accounting-Record-Number", 485, _T.UNSIGNED32),
    _base(
        "Accounting-Record-Type",
        480,
        _T.ENUMERATED,
        enum={1: "EVENT_RECORD", 2: "START_RECORD", 3: "INTERIM_RECORD", 4: "STOP_RECORD"},
    ),
    _base("Acct-Session-Id", 44, _T.OCTET_STRING),
    _base("Accounting-Sub-Session-Id", 287, _T.UNSIGNED64),
    _base("Acct-Application-Id", 259, _T.UNSIGNED32),
    _base("Auth-Application-Id", 258, _T.UNSIGNED32),
    _base(
        "Auth-Request-Type",
        274,
        _T.ENUMERATED,
        enum={1: "AUTHENTICATE_ONLY", 2: "AUTHORIZE_ONLY", 3: "AUTHORIZE_AUTHENTICATE"},
    ),
    _base("Authorization-Lifetime", 291, _T.UNSIGNED32),
    _base("Auth-Grace-Period", 276, _T.UNSIGNED32),
    _base(
        "Auth-Session-State",
        277,
        _T.ENUMERATED,
        enum={0: "STATE_MAINTAINED", 1: "NO_STATE_MAINTAINED"},
    ),
    _base(
        "Re-Auth-Request-Type",
        285,
        _T.ENUMERATED,
        enum={0: "AUTHORIZE_ONLY", 1: "AUTHORIZE_AUTHENTICATE"},
    ),
    _base("Class", 25, _T.OCTET_STRING),
    _base("Destination-Host", 293, _T.DIAMETER_IDENTITY),
    _base("Destination-Realm", 283, _T.DIAMETER_IDENTITY),
    _base(
        "Disconnect-Cause",
        273,
        _T.ENUMERATED,
        enum={0: "REBOOTING", 1: "BUSY", 2: "DO_NOT_WANT_TO_TALK_TO_YOU"},
    ),
    _base("Error-Message", 281, _T.UTF8_STRING, m_rule=_MUST_NOT),
    _base("Error-Reporting-Host", 294, _T.DIAMETER_IDENTITY, m_rule=_MUST_NOT),
    _base("Event-Timestamp", 55, _T.TIME),
    _base(
        "Experimental-Result",
        297,
        _T.GROUPED,
        rules={"Vendor-Id": ONE, "Experimental-Result-Code": ONE},
    ),
    _base("Experimental-Result-Code", 298, _T.UNSIGNED32),
    _base("Failed-AVP", 279, _T.GROUPED),
    _base("Firmware-Revision", 267, _T.UNSIGNED32, m_rule=_MUST_NOT),
    _base("Host-IP-Address", 257, _T.ADDRESS),
    _base("Inband-Security-Id", 299, _T.UNSIGNED32),
    _base("Multi-Round-Time-Out", 272, _T.UNSIGNED32),
    _base("Origin-Host", 264, _T.DIAMETER_IDENTITY),
    _base("Origin-Realm", 296, _T.DIAMETER_IDENTITY),
    _base("Origin-State-Id", 278, _T.UNSIGNED32),
    _base("Product-Name", 269, _T.UTF8_STRING, m_rule=_MUST_NOT),
    _base("Proxy-Host", 280, _T.DIAMETER_IDENTITY),
    _base("Proxy-Info", 284, _T.GROUPED, rules={"Proxy-Host": ONE, "Proxy-State": ONE}),
    _base("Proxy-State", 33, _T.OCTET_STRING),
    _base("Redirect-Host", 292, _T.DIAMETER_URI),
    _base(
        "Redirect-Host-Usage",
        261,
        _T.ENUMERATED,
        enum={
            0: "DONT_CACHE",
            1: "ALL_SESSION",
            2: "ALL_REALM",
            3: "REALM_AND_APPLICATION",
            4: "ALL_APPLICATION",
            5: "ALL_HOST",
            6: "ALL_USER",
        },
    ),
    _base("Redirect-Max-Cache-Time", 262, _T.UNSIGNED32),
    _base("Result-Code", 268, _T.UNSIGNED32),
    _base("Route-Record", 282, _T.DIAMETER_IDENTITY),
    _base("Session-Id", 263, _T.UTF8_STRING),
    _base("Session-Timeout", 27, _T.UNSIGNED32),
    _base("Session-Binding", 270, _T.UNSIGNED32),
    _base(
        "Session-Server-Failover",
        271,
        _T.ENUMERATED,
        enum={
            0: "REFUSE_SERVICE",
            1: "TRY_AGAIN",
            2: "ALLOW_SERVICE",
            3: "TRY_AGAIN_ALLOW_SERVICE",
        },
    ),
    _base("Supported-Vendor-Id", 265, _T.UNSIGNED32),
    # Values live in the IANA Termination-Cause registry (RFC 6733 8.15); new
    # values may be registered, so unknown ones are accepted.
    _base(
        "Termination-Cause",
        295,
        _T.ENUMERATED,
        enum={
            1: "DIAMETER_LOGOUT",
            2: "DIAMETER_SERVICE_NOT_PROVIDED",
            3: "DIAMETER_BAD_ANSWER",
            4: "DIAMETER_ADMINISTRATIVE",
            5: "DIAMETER_LINK_BROKEN",
            6: "DIAMETER_AUTH_EXPIRED",
            7: "DIAMETER_USER_MOVED",
            8: "DIAMETER_SESSION_TIMEOUT",
        },
        closed_enum=False,
    ),
    _base("User-Name", 1, _T.UTF8_STRING),
    _base("Vendor-Id", 266, _T.UNSIGNED32),
    _base(
        "Vendor-Specific-Application-Id",
        260,
        _T.GROUPED,
        rules={"Vendor-Id": OPT, "Auth-Application-Id": OPT, "Acct-Application-Id": OPT},
    ),
]

# ---------------------------------------------------------------------------
# RFC 4006 section 8 table; flag rules: M MUST (or MAY where marked), V MUST NOT
# ---------------------------------------------------------------------------
_UNIT_RULES: dict[str, Occurrence] = {
    "Tariff-Time-Change": OPT,
    "CC-Time": OPT,
    "CC-Money": OPT,
    "CC-Total-Octets": OPT,
    "CC-Input-Octets": OPT,
    "CC-Output-Octets": OPT,
    "CC-Service-Specific-Units": OPT,
}

_CC_AVPS = [
    _base("CC-Correlation-Id", 411, _T.OCTET_STRING, m_rule=_MAY, m_default=False),
    _base("CC-Input-Octets", 412, _T.UNSIGNED64),
    _base("CC-Money", 413, _T.GROUPED, rules={"Unit-Value": ONE, "Currency-Code": OPT}),
    _base("CC-Output-Octets", 414, _T.UNSIGNED64),
    _base("CC-Request-Number", 415, _T.UNSIGNED32),
    _base(
        "CC-Request-Type",
        416,
        _T.ENUMERATED,
        enum={
            1: "INITIAL_REQUEST",
            2: "UPDATE_REQUEST",
            3: "TERMINATION_REQUEST",
            4: "EVENT_REQUEST",
        },
    ),
    _base("CC-Service-Specific-Units", 417, _T.UNSIGNED64),
    _base(
        "CC-Session-Failover",
        418,
        _T.ENUMERATED,
        enum={0: "FAILOVER_NOT_SUPPORTED", 1: "FAILOVER_SUPPORTED"},
    ),
    _base("CC-Sub-Session-Id", 419, _T.UNSIGNED64),
    _base("CC-Time", 420, _T.UNSIGNED32),
    _base("CC-Total-Octets", 421, _T.UNSIGNED64),
    _base(
        "CC-Unit-Type",
        454,
        _T.ENUMERATED,
        enum={
            0: "TIME",
            1: "MONEY",
            2: "TOTAL-OCTETS",
            3: "INPUT-OCTETS",
            4: "OUTPUT-OCTETS",
            5: "SERVICE-SPECIFIC-UNITS",
        },
    ),
    _base("Check-Balance-Result", 422, _T.ENUMERATED, enum={0: "ENOUGH_CREDIT", 1: "NO_CREDIT"}),
    _base(
        "Cost-Information",
        423,
        _T.GROUPED,
        rules={"Unit-Value": ONE, "Currency-Code": ONE, "Cost-Unit": OPT},
    ),
    _base("Cost-Unit", 424, _T.UTF8_STRING),
    _base(
        "Credit-Control",
        426,
        _T.ENUMERATED,
        enum={0: "CREDIT_AUTHORIZATION", 1: "RE_AUTHORIZATION"},
    ),
    _base(
        "Credit-Control-Failure-Handling",
        427,
        _T.ENUMERATED,
        enum={0: "TERMINATE", 1: "CONTINUE", 2: "RETRY_AND_TERMINATE"},
    ),
    _base("Currency-Code", 425, _T.UNSIGNED32),
    _base(
        "Direct-Debiting-Failure-Handling",
        428,
        _T.ENUMERATED,
        enum={0: "TERMINATE_OR_BUFFER", 1: "CONTINUE"},
    ),
    _base("Exponent", 429, _T.INTEGER32),
    # 8.35: an unsupported value falls back to TERMINATE, so do not reject it.
    _base(
        "Final-Unit-Action",
        449,
        _T.ENUMERATED,
        enum={0: "TERMINATE", 1: "REDIRECT", 2: "RESTRICT_ACCESS"},
        closed_enum=False,
    ),
    _base(
        "Final-Unit-Indication",
        430,
        _T.GROUPED,
        rules={
            "Final-Unit-Action": ONE,
            "Restriction-Filter-Rule": ANY,
            "Filter-Id": ANY,
            "Redirect-Server": OPT,
        },
    ),
    _base("Granted-Service-Unit", 431, _T.GROUPED, rules=_UNIT_RULES),
    _base("G-S-U-Pool-Identifier", 453, _T.UNSIGNED32),
    _base(
        "G-S-U-Pool-Reference",
        457,
        _T.GROUPED,
        rules={"G-S-U-Pool-Identifier": ONE, "CC-Unit-Type": ONE, "Unit-Value": ONE},
    ),
    _base("Multiple-Services-Credit-Control", 456, _T.GROUPED),
    _base(
        "Multiple-Services-Indicator",
        455,
        _T.ENUMERATED,
        enum={0: "MULTIPLE_SERVICES_NOT_SUPPORTED", 1: "MULTIPLE_SERVICES_SUPPORTED"},
    ),
    _base("Rating-Group", 432, _T.UNSIGNED32),
    _base(
        "Redirect-Address-Type",
        433,
        _T.ENUMERATED,
        enum={0: "IPv4 Address", 1: "IPv6 Address", 2: "URL", 3: "SIP URI"},
    ),
    _base(
        "Redirect-Server",
        434,
        _T.GROUPED,
        rules={"Redirect-Address-Type": ONE, "Redirect-Server-Address": ONE},
    ),
    _base("Redirect-Server-Address", 435, _T.UTF8_STRING),
    _base(
        "Requested-Action",
        436,
        _T.ENUMERATED,
        enum={0: "DIRECT_DEBITING", 1: "REFUND_ACCOUNT", 2: "CHECK_BALANCE", 3: "PRICE_ENQUIRY"},
    ),
    _base("Requested-Service-Unit", 437, _T.GROUPED, rules=_UNIT_RULES),
    _base("Restriction-Filter-Rule", 438, _T.IP_FILTER_RULE),
    _base("Service-Context-Id", 461, _T.UTF8_STRING),
    _base("Service-Identifier", 439, _T.UNSIGNED32),
    _base(
        "Service-Parameter-Info",
        440,
        _T.GROUPED,
        m_rule=_MAY,
        m_default=False,
        rules={"Service-Parameter-Type": ONE, "Service-Parameter-Value": ONE},
    ),
    _base("Service-Parameter-Type", 441, _T.UNSIGNED32, m_rule=_MAY, m_default=False),
    _base("Service-Parameter-Value", 442, _T.OCTET_STRING, m_rule=_MAY, m_default=False),
    _base(
        "Subscription-Id",
        443,
        _T.GROUPED,
        rules={"Subscription-Id-Type": ONE, "Subscription-Id-Data": ONE},
    ),
    _base("Subscription-Id-Data", 444, _T.UTF8_STRING),
    # 8.47: new types may be assigned by IANA; unknown values are not 5004 here.
    _base(
        "Subscription-Id-Type",
        450,
        _T.ENUMERATED,
        enum={
            0: "END_USER_E164",
            1: "END_USER_IMSI",
            2: "END_USER_SIP_URI",
            3: "END_USER_NAI",
            4: "END_USER_PRIVATE",
        },
        closed_enum=False,
    ),
    _base(
        "Tariff-Change-Usage",
        452,
        _T.ENUMERATED,
        enum={
            0: "UNIT_BEFORE_TARIFF_CHANGE",
            1: "UNIT_AFTER_TARIFF_CHANGE",
            2: "UNIT_INDETERMINATE",
        },
    ),
    _base("Tariff-Time-Change", 451, _T.TIME),
    _base("Unit-Value", 445, _T.GROUPED, rules={"Value-Digits": ONE, "Exponent": OPT}),
    _base(
        "Used-Service-Unit",
        446,
        _T.GROUPED,
        rules={**_UNIT_RULES, "Tariff-Change-Usage": OPT},
    ),
    _base(
        "User-Equipment-Info",
        458,
        _T.GROUPED,
        m_rule=_MAY,
        m_default=False,
        rules={"User-Equipment-Info-Type": ONE, "User-Equipment-Info-Value": ONE},
    ),
    _base(
        "User-Equipment-Info-Type",
        459,
        _T.ENUMERATED,
        m_rule=_MAY,
        m_default=False,
        enum={0: "IMEISV", 1: "MAC", 2: "EUI64", 3: "MODIFIED_EUI64"},
        closed_enum=False,
    ),
    _base("User-Equipment-Info-Value", 460, _T.OCTET_STRING, m_rule=_MAY, m_default=False),
    _base("Value-Digits", 447, _T.INTEGER64),
    _base("Validity-Time", 448, _T.UNSIGNED32),
    # RFC 4005 (NASREQ) AVP referenced by Final-Unit-Indication (RFC 4006 8.34).
    _base("Filter-Id", 11, _T.UTF8_STRING),
]

# ---------------------------------------------------------------------------
# 3GPP TS 32.299 section 7.2 (vendor 10415): V MUST, M set by the sender
#
# Checked against TS 32.299 clause 7.2 text (or vendor manuals quoting it): 823, 829-835, 838-843,
# 848, 850, 851, 853, 856, 861, 862, 868, 871-873, 876, 889, 1250, 1251,
# 1263-1265, 1270, 1271, 2301, 2302.  Not re-checked against the spec text
# yet (same table, from the TS 32.299 AVP list): 824-828, 836, 837, 844,
# 845, 852, 854, 855, 864, 869, 870, 881, 882, 888, 1226, 1281, 2000.
# ---------------------------------------------------------------------------
_TGPP_AVPS = [
    _tgpp("Service-Information", 873, _T.GROUPED),
    _tgpp("IMS-Information", 876, _T.GROUPED, rules={"Node-Functionality": ONE}),
    _tgpp("SMS-Information", 2000, _T.GROUPED),
    _tgpp("Event-Type", 823, _T.GROUPED, rules={"SIP-Method": OPT, "Event": OPT, "Expires": OPT}),
    _tgpp("SIP-Method", 824, _T.UTF8_STRING),
    _tgpp("Event", 825, _T.UTF8_STRING),
    _tgpp("Expires", 888, _T.UNSIGNED32),
    _tgpp("Content-Type", 826, _T.UTF8_STRING),
    _tgpp("Content-Length", 827, _T.UNSIGNED32),
    _tgpp("Content-Disposition", 828, _T.UTF8_STRING),
    _tgpp(
        "Role-Of-Node",
        829,
        _T.ENUMERATED,
        enum={0: "ORIGINATING_ROLE", 1: "TERMINATING_ROLE", 2: "FORWARDING_ROLE"},
        closed_enum=False,
    ),
    _tgpp("User-Session-Id", 830, _T.UTF8_STRING),
    _tgpp("Calling-Party-Address", 831, _T.UTF8_STRING),
    _tgpp("Called-Party-Address", 832, _T.UTF8_STRING),
    _tgpp("Time-Stamps", 833, _T.GROUPED),
    _tgpp("SIP-Request-Timestamp", 834, _T.TIME),
    _tgpp("SIP-Response-Timestamp", 835, _T.TIME),
    _tgpp("Application-Server", 836, _T.UTF8_STRING),
    _tgpp("Application-Provided-Called-Party-Address", 837, _T.UTF8_STRING),
    _tgpp("Inter-Operator-Identifier", 838, _T.GROUPED),
    _tgpp("Originating-IOI", 839, _T.UTF8_STRING),
    _tgpp("Terminating-IOI", 840, _T.UTF8_STRING),
    _tgpp("IMS-Charging-Identifier", 841, _T.UTF8_STRING),
    _tgpp("SDP-Session-Description", 842, _T.UTF8_STRING),
    _tgpp("SDP-Media-Component", 843, _T.GROUPED),
    _tgpp("SDP-Media-Name", 844, _T.UTF8_STRING),
    _tgpp("SDP-Media-Description", 845, _T.UTF8_STRING),
    _tgpp("Served-Party-IP-Address", 848, _T.ADDRESS),
    _tgpp("Application-Server-Information", 850, _T.GROUPED),
    _tgpp("Trunk-Group-Id", 851, _T.GROUPED),
    _tgpp("Incoming-Trunk-Group-Id", 852, _T.UTF8_STRING),
    _tgpp("Outgoing-Trunk-Group-Id", 853, _T.UTF8_STRING),
    _tgpp("Bearer-Service", 854, _T.OCTET_STRING),
    _tgpp("Service-Id", 855, _T.UTF8_STRING),
    _tgpp("Associated-URI", 856, _T.UTF8_STRING),
    _tgpp("Cause-Code", 861, _T.INTEGER32),
    # Later releases keep adding node types (IBCF, E-CSCF, ...), so values
    # beyond the original IMS list are accepted.
    _tgpp(
        "Node-Functionality",
        862,
        _T.ENUMERATED,
        enum={0: "S-CSCF", 1: "P-CSCF", 2: "I-CSCF", 3: "MRFC", 4: "MGCF", 5: "BGCF", 6: "AS"},
        closed_enum=False,
    ),
    _tgpp("Originator", 864, _T.ENUMERATED, enum={0: "Calling Party", 1: "Called Party"}),
    _tgpp("Time-Quota-Threshold", 868, _T.UNSIGNED32),
    _tgpp("Volume-Quota-Threshold", 869, _T.UNSIGNED32),
    _tgpp("Trigger-Type", 870, _T.ENUMERATED, closed_enum=False),
    _tgpp("Quota-Holding-Time", 871, _T.UNSIGNED32),
    _tgpp(
        "Reporting-Reason",
        872,
        _T.ENUMERATED,
        enum={
            0: "THRESHOLD",
            1: "QHT",
            2: "FINAL",
            3: "QUOTA_EXHAUSTED",
            4: "VALIDITY_TIME",
            5: "OTHER_QUOTA_TYPE",
            6: "RATING_CONDITION_CHANGE",
            7: "FORCED_REAUTHORISATION",
            8: "POOL_EXHAUSTED",
            9: "UNUSED_QUOTA_TIMER",
        },
        closed_enum=False,
    ),
    _tgpp("Quota-Consumption-Time", 881, _T.UNSIGNED32),
    _tgpp(
        "Media-Initiator-Flag",
        882,
        _T.ENUMERATED,
        enum={0: "called party", 1: "calling party", 2: "unknown"},
    ),
    _tgpp(
        "Message-Body",
        889,
        _T.GROUPED,
        rules={
            "Content-Type": ONE,
            "Content-Length": ONE,
            "Content-Disposition": OPT,
            "Originator": OPT,
        },
    ),
    _tgpp("Unit-Quota-Threshold", 1226, _T.UNSIGNED32),
    _tgpp("Called-Asserted-Identity", 1250, _T.UTF8_STRING),
    _tgpp("Requested-Party-Address", 1251, _T.UTF8_STRING),
    _tgpp("Access-Network-Information", 1263, _T.OCTET_STRING),
    _tgpp("Trigger", 1264, _T.GROUPED, rules={"Trigger-Type": ANY}),
    _tgpp("Base-Time-Interval", 1265, _T.UNSIGNED32),
    _tgpp(
        "Time-Quota-Mechanism",
        1270,
        _T.GROUPED,
        rules={"Time-Quota-Type": ONE, "Base-Time-Interval": ONE},
    ),
    _tgpp(
        "Time-Quota-Type",
        1271,
        _T.ENUMERATED,
        enum={0: "DISCRETE_TIME_PERIOD", 1: "CONTINUOUS_TIME_PERIOD"},
    ),
    _tgpp("IMS-Communication-Service-Identifier", 1281, _T.UTF8_STRING),
    _tgpp("SIP-Request-Timestamp-Fraction", 2301, _T.UNSIGNED32),
    _tgpp("SIP-Response-Timestamp-Fraction", 2302, _T.UNSIGNED32),
]

ALL_AVPS: tuple[AvpDef, ...] = tuple(_BASE_AVPS + _CC_AVPS + _TGPP_AVPS)

AVPS_BY_NAME: dict[str, AvpDef] = {d.name: d for d in ALL_AVPS}
AVPS_BY_CODE: dict[tuple[int, int], AvpDef] = {d.key: d for d in ALL_AVPS}
# Spellings seen in the wild for the same AVP.
for _alias, _target in (("Role-of-Node", "Role-Of-Node"), ("Trunk-Group-ID", "Trunk-Group-Id")):
    AVPS_BY_NAME[_alias] = AVPS_BY_NAME[_target]

if len(AVPS_BY_CODE) != len(ALL_AVPS):  # pragma: no cover - table self-check
    raise RuntimeError("duplicate (code, vendor) in Diameter dictionary")


def avp_by_name(name: str) -> AvpDef:
    """Definition of a named AVP; KeyError when the name is unknown."""
    return AVPS_BY_NAME[name]


def avp_by_code(code: int, vendor: int = VENDOR_NONE) -> AvpDef | None:
    """Definition for ``(code, vendor)``, or None for an unknown AVP."""
    return AVPS_BY_CODE.get((code, vendor))


# ---------------------------------------------------------------------------
# Commands: RFC 6733 sections 5.3, 5.4, 5.5, 8.3, 8.4, 8.5 and RFC 4006 3.1/3.2
# ---------------------------------------------------------------------------
_ANSWER_TAIL: dict[str, Occurrence] = {"Error-Message": OPT, "Failed-AVP": OPT}

_CAPABILITIES = {
    "Origin-Host": ONE,
    "Origin-Realm": ONE,
    "Host-IP-Address": SOME,
    "Vendor-Id": ONE,
    "Product-Name": ONE,
    "Origin-State-Id": OPT,
    "Supported-Vendor-Id": ANY,
    "Auth-Application-Id": ANY,
    "Inband-Security-Id": ANY,
    "Acct-Application-Id": ANY,
    "Vendor-Specific-Application-Id": ANY,
    "Firmware-Revision": OPT,
}

_SESSION_ANSWER = {
    "Session-Id": ONE,
    "Result-Code": ONE,
    "Origin-Host": ONE,
    "Origin-Realm": ONE,
    "User-Name": OPT,
    "Origin-State-Id": OPT,
    "Error-Message": OPT,
    "Error-Reporting-Host": OPT,
    "Failed-AVP": OPT,
    "Redirect-Host": ANY,
    "Redirect-Host-Usage": OPT,
    "Redirect-Max-Cache-Time": OPT,
    "Proxy-Info": ANY,
}

ALL_COMMANDS: tuple[CommandDef, ...] = (
    CommandDef(
        "Capabilities-Exchange",
        "CER",
        "CEA",
        CMD_CAPABILITIES_EXCHANGE,
        frozenset({APP_BASE}),
        False,
        _CAPABILITIES,
        {"Result-Code": ONE, **_CAPABILITIES, **_ANSWER_TAIL},
    ),
    CommandDef(
        "Device-Watchdog",
        "DWR",
        "DWA",
        CMD_DEVICE_WATCHDOG,
        frozenset({APP_BASE}),
        False,
        {"Origin-Host": ONE, "Origin-Realm": ONE, "Origin-State-Id": OPT},
        {
            "Result-Code": ONE,
            "Origin-Host": ONE,
            "Origin-Realm": ONE,
            "Origin-State-Id": OPT,
            **_ANSWER_TAIL,
        },
    ),
    CommandDef(
        "Disconnect-Peer",
        "DPR",
        "DPA",
        CMD_DISCONNECT_PEER,
        frozenset({APP_BASE}),
        False,
        {"Origin-Host": ONE, "Origin-Realm": ONE, "Disconnect-Cause": ONE},
        {"Result-Code": ONE, "Origin-Host": ONE, "Origin-Realm": ONE, **_ANSWER_TAIL},
    ),
    CommandDef(
        "Re-Auth",
        "RAR",
        "RAA",
        CMD_RE_AUTH,
        None,
        True,
        {
            "Session-Id": ONE,
            "Origin-Host": ONE,
            "Origin-Realm": ONE,
            "Destination-Realm": ONE,
            "Destination-Host": ONE,
            "Auth-Application-Id": ONE,
            "Re-Auth-Request-Type": ONE,
            "User-Name": OPT,
            "Origin-State-Id": OPT,
            "Proxy-Info": ANY,
            "Route-Record": ANY,
        },
        _SESSION_ANSWER,
    ),
    CommandDef(
        "Session-Termination",
        "STR",
        "STA",
        CMD_SESSION_TERMINATION,
        None,
        True,
        {
            "Session-Id": ONE,
            "Origin-Host": ONE,
            "Origin-Realm": ONE,
            "Destination-Realm": ONE,
            "Auth-Application-Id": ONE,
            "Termination-Cause": ONE,
            "User-Name": OPT,
            "Destination-Host": OPT,
            "Class": ANY,
            "Origin-State-Id": OPT,
            "Proxy-Info": ANY,
            "Route-Record": ANY,
        },
        {**_SESSION_ANSWER, "Class": ANY},
    ),
    CommandDef(
        "Abort-Session",
        "ASR",
        "ASA",
        CMD_ABORT_SESSION,
        None,
        True,
        {
            "Session-Id": ONE,
            "Origin-Host": ONE,
            "Origin-Realm": ONE,
            "Destination-Realm": ONE,
            "Destination-Host": ONE,
            "Auth-Application-Id": ONE,
            "User-Name": OPT,
            "Origin-State-Id": OPT,
            "Proxy-Info": ANY,
            "Route-Record": ANY,
        },
        _SESSION_ANSWER,
    ),
    CommandDef(
        "Credit-Control",
        "CCR",
        "CCA",
        CMD_CREDIT_CONTROL,
        frozenset({APP_CREDIT_CONTROL}),
        True,
        {
            "Session-Id": ONE,
            "Origin-Host": ONE,
            "Origin-Realm": ONE,
            "Destination-Realm": ONE,
            "Auth-Application-Id": ONE,
            "Service-Context-Id": ONE,
            "CC-Request-Type": ONE,
            "CC-Request-Number": ONE,
            "Destination-Host": OPT,
            "User-Name": OPT,
            "CC-Sub-Session-Id": OPT,
            "Acct-Multi-Session-Id": OPT,
            "Origin-State-Id": OPT,
            "Event-Timestamp": OPT,
            "Subscription-Id": ANY,
            "Service-Identifier": OPT,
            "Termination-Cause": OPT,
            "Requested-Service-Unit": OPT,
            "Requested-Action": OPT,
            "Used-Service-Unit": ANY,
            "Multiple-Services-Indicator": OPT,
            "Multiple-Services-Credit-Control": ANY,
            "Service-Parameter-Info": ANY,
            "CC-Correlation-Id": OPT,
            "User-Equipment-Info": OPT,
            "Proxy-Info": ANY,
            "Route-Record": ANY,
        },
        {
            "Session-Id": ONE,
            "Result-Code": ONE,
            "Origin-Host": ONE,
            "Origin-Realm": ONE,
            "Auth-Application-Id": ONE,
            "CC-Request-Type": ONE,
            "CC-Request-Number": ONE,
            "User-Name": OPT,
            "CC-Session-Failover": OPT,
            "CC-Sub-Session-Id": OPT,
            "Acct-Multi-Session-Id": OPT,
            "Origin-State-Id": OPT,
            "Event-Timestamp": OPT,
            "Granted-Service-Unit": OPT,
            "Multiple-Services-Credit-Control": ANY,
            "Cost-Information": OPT,
            "Final-Unit-Indication": OPT,
            "Check-Balance-Result": OPT,
            "Credit-Control-Failure-Handling": OPT,
            "Direct-Debiting-Failure-Handling": OPT,
            "Validity-Time": OPT,
            "Redirect-Host": ANY,
            "Redirect-Host-Usage": OPT,
            "Redirect-Max-Cache-Time": OPT,
            "Proxy-Info": ANY,
            "Route-Record": ANY,
            "Failed-AVP": ANY,
        },
    ),
)

# RFC 6733 section 7.2: grammar of any answer with the E bit set.
ERROR_ANSWER_RULES: dict[str, Occurrence] = {
    "Session-Id": OPT,
    "Origin-Host": ONE,
    "Origin-Realm": ONE,
    "Result-Code": ONE,
    "Origin-State-Id": OPT,
    "Error-Message": OPT,
    "Error-Reporting-Host": OPT,
    "Failed-AVP": OPT,
    "Experimental-Result": OPT,
    "Proxy-Info": ANY,
}

COMMANDS_BY_CODE: dict[int, CommandDef] = {c.code: c for c in ALL_COMMANDS}
COMMANDS_BY_NAME: dict[str, CommandDef] = {}
for _cmd in ALL_COMMANDS:
    COMMANDS_BY_NAME[_cmd.name] = _cmd
    COMMANDS_BY_NAME[_cmd.name + "-Request"] = _cmd
    COMMANDS_BY_NAME[_cmd.name + "-Answer"] = _cmd
    COMMANDS_BY_NAME[_cmd.abbrev_request] = _cmd
    COMMANDS_BY_NAME[_cmd.abbrev_answer] = _cmd


def command_by_code(code: int) -> CommandDef | None:
    """Command definition for a command code, or None when unsupported."""
    return COMMANDS_BY_CODE.get(code)


def command_by_name(name: str) -> CommandDef:
    """Command by name ("Credit-Control", "CCR", "Credit-Control-Answer"...)."""
    return COMMANDS_BY_NAME[name]


def enum_name(avp_name: str, value: int) -> str | None:
    """Label of an enumerated value, or None when not listed."""
    table = AVPS_BY_NAME[avp_name].enum
    return None if table is None else table.get(value)
