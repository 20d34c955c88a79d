"""Builders for realistic Diameter test messages (base protocol, Ro / RFC 4006)."""

from __future__ import annotations

from typing import Any

from b2bua.diameter.dictionary import (
    APP_CREDIT_CONTROL,
    CC_INITIAL_REQUEST,
    CC_TERMINATION_REQUEST,
    CC_UPDATE_REQUEST,
    DIAMETER_SUCCESS,
    VENDOR_3GPP,
)
from b2bua.diameter.message import Message, make_answer

CLIENT_HOST = "b2bua.example.com"
CLIENT_REALM = "example.com"
OCS_HOST = "ocs.example.net"
OCS_REALM = "example.net"
SESSION_ID = "b2bua.example.com;1700000000;1;call-0001"
SERVICE_CONTEXT = "32260@3gpp.org"
EVENT_TIME = 1_700_000_000  # 2023-11-14T22:13:20Z


def cer(
    origin_host: str = CLIENT_HOST,
    origin_realm: str = CLIENT_REALM,
    *,
    hop_by_hop: int = 1,
    end_to_end: int = 1,
    apps: tuple[int, ...] = (APP_CREDIT_CONTROL,),
) -> Message:
    """Capabilities-Exchange-Request as b2bua sends it."""
    avps: list[Any] = [
        ("Origin-Host", origin_host),
        ("Origin-Realm", origin_realm),
        ("Host-IP-Address", "127.0.0.1"),
        ("Vendor-Id", 0),
        ("Product-Name", "b2bua"),
        ("Origin-State-Id", 1),
        ("Supported-Vendor-Id", VENDOR_3GPP),
    ]
    avps += [("Auth-Application-Id", app) for app in apps]
    avps.append(("Firmware-Revision", 1))
    return Message.request(
        "Capabilities-Exchange", avps=avps, hop_by_hop=hop_by_hop, end_to_end=end_to_end
    )


def cea(request: Message, result_code: int = DIAMETER_SUCCESS) -> Message:
    """Capabilities-Exchange-Answer from the OCS."""
    return make_answer(
        request,
        result_code,
        [
            ("Host-IP-Address", "127.0.0.2"),
            ("Vendor-Id", 0),
            ("Product-Name", "test-ocs"),
            ("Auth-Application-Id", APP_CREDIT_CONTROL),
        ],
        origin_host=OCS_HOST,
        origin_realm=OCS_REALM,
    )


def dwr(origin_host: str = CLIENT_HOST, *, hop_by_hop: int = 2) -> Message:
    """Device-Watchdog-Request."""
    return Message.request(
        "Device-Watchdog",
        avps=[("Origin-Host", origin_host), ("Origin-Realm", CLIENT_REALM), ("Origin-State-Id", 1)],
        hop_by_hop=hop_by_hop,
        end_to_end=hop_by_hop,
    )


def ims_information(call_id: str = "call-0001@192.0.2.1") -> list[Any]:
    """A full TS 32.299 IMS-Information group for an originating INVITE."""
    return [
        ("Event-Type", [("SIP-Method", "INVITE"), ("Expires", 3600)]),
        ("Role-Of-Node", "ORIGINATING_ROLE"),
        ("Node-Functionality", 6),
        ("User-Session-Id", call_id),
        ("Calling-Party-Address", "sip:+15551230001@example.com"),
        ("Called-Party-Address", "tel:+15551230002"),
        ("Requested-Party-Address", "tel:+15551230002"),
        (
            "Time-Stamps",
            [("SIP-Request-Timestamp", EVENT_TIME), ("SIP-Request-Timestamp-Fraction", 250)],
        ),
        (
            "Application-Server-Information",
            [
                ("Application-Server", "sip:b2bua.example.com"),
                ("Application-Provided-Called-Party-Address", "tel:+15551230002"),
            ],
        ),
        (
            "Inter-Operator-Identifier",
            [("Originating-IOI", "example.com"), ("Terminating-IOI", "example.net")],
        ),
        ("IMS-Charging-Identifier", "icid-value-0001"),
        ("SDP-Session-Description", "v=0"),
        ("SDP-Session-Description", "o=alice 2890844526 2890844526 IN IP4 192.0.2.1"),
        (
            "SDP-Media-Component",
            [
                ("SDP-Media-Name", "m=audio 49170 RTP/AVP 0 8"),
                ("SDP-Media-Description", "a=rtpmap:0 PCMU/8000"),
                ("Media-Initiator-Flag", 1),
            ],
        ),
        (
            "Trunk-Group-Id",
            [("Incoming-Trunk-Group-Id", "tg-in-1"), ("Outgoing-Trunk-Group-Id", "tg-out-7")],
        ),
        ("Access-Network-Information", b"3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=0010100011A2D101"),
        (
            "Message-Body",
            [("Content-Type", "application/sdp"), ("Content-Length", 142), ("Originator", 0)],
        ),
        ("Cause-Code", 0),
    ]


def _ccr(
    request_type: int,
    request_number: int,
    *,
    session_id: str,
    mscc: list[Any],
    hop_by_hop: int,
    extra: list[Any] | None = None,
) -> Message:
    avps: list[Any] = [
        ("Session-Id", session_id),
        ("Origin-Host", CLIENT_HOST),
        ("Origin-Realm", CLIENT_REALM),
        ("Destination-Realm", OCS_REALM),
        ("Auth-Application-Id", APP_CREDIT_CONTROL),
        ("Service-Context-Id", SERVICE_CONTEXT),
        ("CC-Request-Type", request_type),
        ("CC-Request-Number", request_number),
        ("Event-Timestamp", EVENT_TIME),
        ("Subscription-Id", [("Subscription-Id-Type", 0), ("Subscription-Id-Data", "15551230001")]),
        (
            "Subscription-Id",
            [("Subscription-Id-Type", 2), ("Subscription-Id-Data", "sip:alice@example.com")],
        ),
        ("Multiple-Services-Indicator", 1),
        ("Multiple-Services-Credit-Control", mscc),
        ("Service-Information", [("IMS-Information", ims_information())]),
    ]
    if extra:
        avps += extra
    return Message.request(
        "Credit-Control", avps=avps, hop_by_hop=hop_by_hop, end_to_end=hop_by_hop
    )


def ccr_initial(
    session_id: str = SESSION_ID, *, cc_time: int = 30, hop_by_hop: int = 0x100
) -> Message:
    """CCR-I requesting ``cc_time`` seconds for rating group 100."""
    mscc = [
        ("Requested-Service-Unit", [("CC-Time", cc_time)]),
        ("Service-Identifier", 1000),
        ("Rating-Group", 100),
    ]
    return _ccr(CC_INITIAL_REQUEST, 0, session_id=session_id, mscc=mscc, hop_by_hop=hop_by_hop)


def ccr_update(
    session_id: str = SESSION_ID, *, number: int = 1, used: int = 30, hop_by_hop: int = 0x101
) -> Message:
    """CCR-U reporting ``used`` seconds and asking for more."""
    mscc = [
        ("Requested-Service-Unit", [("CC-Time", 30)]),
        ("Used-Service-Unit", [("CC-Time", used)]),
        ("Service-Identifier", 1000),
        ("Rating-Group", 100),
        ("Reporting-Reason", "QUOTA_EXHAUSTED"),
    ]
    return _ccr(CC_UPDATE_REQUEST, number, session_id=session_id, mscc=mscc, hop_by_hop=hop_by_hop)


def ccr_terminate(
    session_id: str = SESSION_ID, *, number: int = 2, used: int = 12, hop_by_hop: int = 0x102
) -> Message:
    """CCR-T reporting the final usage."""
    mscc = [
        ("Used-Service-Unit", [("CC-Time", used)]),
        ("Service-Identifier", 1000),
        ("Rating-Group", 100),
        ("Reporting-Reason", "FINAL"),
    ]
    return _ccr(
        CC_TERMINATION_REQUEST,
        number,
        session_id=session_id,
        mscc=mscc,
        hop_by_hop=hop_by_hop,
        extra=[("Termination-Cause", "DIAMETER_LOGOUT")],
    )


def cca_grant(
    request: Message,
    *,
    cc_time: int = 30,
    validity: int = 600,
    result_code: int = DIAMETER_SUCCESS,
    final: bool = False,
) -> Message:
    """CCA granting ``cc_time`` seconds in an MSCC, optionally the final units."""
    mscc: list[Any] = [
        ("Granted-Service-Unit", [("CC-Time", cc_time)]),
        ("Service-Identifier", 1000),
        ("Rating-Group", 100),
        ("Validity-Time", validity),
        ("Result-Code", DIAMETER_SUCCESS),
        ("Time-Quota-Threshold", 5),
        ("Quota-Holding-Time", 0),
    ]
    if final:
        mscc.append(("Final-Unit-Indication", [("Final-Unit-Action", "TERMINATE")]))
    return make_answer(
        request,
        result_code,
        [
            ("Auth-Application-Id", APP_CREDIT_CONTROL),
            ("CC-Request-Type", request.get("CC-Request-Type")),
            ("CC-Request-Number", request.get("CC-Request-Number")),
            ("Multiple-Services-Credit-Control", mscc),
        ],
        origin_host=OCS_HOST,
        origin_realm=OCS_REALM,
    )


def rar(session_id: str = SESSION_ID, *, hop_by_hop: int = 0x200) -> Message:
    """Re-Auth-Request from the OCS (Ro: forces a CCR-U)."""
    return Message.request(
        "Re-Auth",
        APP_CREDIT_CONTROL,
        [
            ("Session-Id", session_id),
            ("Origin-Host", OCS_HOST),
            ("Origin-Realm", OCS_REALM),
            ("Destination-Realm", CLIENT_REALM),
            ("Destination-Host", CLIENT_HOST),
            ("Auth-Application-Id", APP_CREDIT_CONTROL),
            ("Re-Auth-Request-Type", "AUTHORIZE_ONLY"),
        ],
        hop_by_hop=hop_by_hop,
        end_to_end=hop_by_hop,
    )


def asr(session_id: str = SESSION_ID, *, hop_by_hop: int = 0x300) -> Message:
    """Abort-Session-Request from the OCS."""
    return Message.request(
        "Abort-Session",
        APP_CREDIT_CONTROL,
        [
            ("Session-Id", session_id),
            ("Origin-Host", OCS_HOST),
            ("Origin-Realm", OCS_REALM),
            ("Destination-Realm", CLIENT_REALM),
            ("Destination-Host", CLIENT_HOST),
            ("Auth-Application-Id", APP_CREDIT_CONTROL),
        ],
        hop_by_hop=hop_by_hop,
        end_to_end=hop_by_hop,
    )
