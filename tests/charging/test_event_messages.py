"""CCRs of charged events (IEC, ECUR) and of a mid-call rating-group switch."""

from __future__ import annotations

from typing import Any

from b2bua.charging.event import EventCcr, EventRequestType
from b2bua.charging.messages import (
    ChargingContext,
    RoSettings,
    build_ccr,
    build_event_ccr,
    context_for_message,
    parse_event_cca,
    with_video,
)
from b2bua.charging.session import RequestType, SendCcr
from b2bua.diameter.message import Message, check_command, decode
from b2bua.sip.message import Request, parse_message
from tests.charging.fakes import make_context

NOW = 1767225600.0
SESSION = "b2bua.lab.example;1767225600;0;0000abcd"


def message_request() -> Request:
    """An out-of-dialog MESSAGE from the SBC, the sender asserted as tel:+15550100."""
    body = "hello"
    raw = (
        "MESSAGE sip:+15550199@b2bua.lab.example;user=phone SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-m1\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@sbc.lab.example>;tag=m1\r\n"
        "To: <sip:+15550199@lab.example;user=phone>\r\n"
        "Call-ID: sms-1@sbc.lab.example\r\n"
        "CSeq: 1 MESSAGE\r\n"
        "P-Asserted-Identity: <tel:+15550100>\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()
    request = parse_message(raw)
    assert isinstance(request, Request)
    return request


def sms_context() -> ChargingContext:
    return context_for_message(message_request(), direction="orig", settings=RoSettings(), now=NOW)


def event_ccr(send: EventCcr) -> Message:
    message = build_event_ccr(
        sms_context(),
        send,
        session_id=SESSION,
        origin_host="b2bua.lab.example",
        origin_realm="lab.example",
        destination_realm="lab.example",
        now=NOW,
    )
    wire = decode(message.encode())
    check_command(wire)  # the RFC 4006 CCR grammar, flags and values
    return wire


def mscc(message: Message, *names: str) -> Any:
    return message.get_path("Multiple-Services-Credit-Control", *names)


def test_message_context_charges_the_sms_service() -> None:
    """A MESSAGE is charged to its asserted sender on the SMS Service-Identifier/Rating-Group."""
    context = sms_context()
    assert (context.subscriber, context.service_identifier, context.rating_group) == (
        "15550100",
        1002,
        300,
    )
    assert context.called_party == "sip:+15550199@b2bua.lab.example;user=phone"
    assert not context.video


def test_iec_ccr_is_an_event_request_with_direct_debiting() -> None:
    """CCR-EVENT: type 4, Requested-Action DIRECT_DEBITING, 1 CC-Service-Specific-Unit on 300,
    Event-Type SIP-Method MESSAGE and the parties in IMS-Information."""
    wire = event_ccr(EventCcr(EventRequestType.EVENT, 0, 1, None))
    assert wire.get("CC-Request-Type") == 4
    assert wire.get("Requested-Action") == 0
    assert mscc(wire, "Requested-Service-Unit", "CC-Service-Specific-Units") == 1
    assert (mscc(wire, "Service-Identifier"), mscc(wire, "Rating-Group")) == (1002, 300)
    ims = ("Service-Information", "IMS-Information")
    assert wire.get_path(*ims, "Event-Type", "SIP-Method") == "MESSAGE"
    assert wire.get_path(*ims, "Calling-Party-Address") == "tel:+15550100"
    assert wire.get_path(*ims, "Called-Party-Address") == (
        "sip:+15550199@b2bua.lab.example;user=phone"
    )
    assert wire.get_path(*ims, "User-Session-Id") == "sms-1@sbc.lab.example"
    assert wire.get("Multiple-Services-Indicator") == 1


def test_ecur_termination_reports_used_units_final() -> None:
    """ECUR CCR-T: Used-Service-Unit in CC-Service-Specific-Units with Reporting-Reason FINAL,
    no Requested-Service-Unit, no Requested-Action, the next hop's status as Cause-Code."""
    wire = event_ccr(EventCcr(EventRequestType.TERMINATION, 1, None, 0, cause_code=480))
    assert wire.get("CC-Request-Type") == 3
    assert wire.get("Requested-Action") is None
    assert mscc(wire, "Used-Service-Unit", "CC-Service-Specific-Units") == 0
    assert mscc(wire, "Used-Service-Unit", "Reporting-Reason") == 2
    assert mscc(wire, "Requested-Service-Unit") is None
    assert wire.get_path("Service-Information", "IMS-Information", "Cause-Code") == 480


def test_event_retry_carries_the_t_flag_and_no_destination_host() -> None:
    """A retransmitted event CCR goes to any peer with the T flag (RFC 6733 §3)."""
    send = EventCcr(EventRequestType.EVENT, 0, 1, None, destination_host="ocs", retry=True)
    wire = event_ccr(send)
    assert wire.is_retransmit
    assert wire.get("Destination-Host") is None


def test_event_cca_grant_is_read_in_service_specific_units() -> None:
    """The grant of an event CCA is its CC-Service-Specific-Units, in the MSCC of 300."""
    answer = Message.answer_to(
        event_ccr(EventCcr(EventRequestType.INITIAL, 0, 1, None)),
        [
            ("Result-Code", 2001),
            ("Origin-Host", "ocs.lab.example"),
            ("CC-Request-Number", 0),
            (
                "Multiple-Services-Credit-Control",
                [
                    ("Granted-Service-Unit", [("CC-Service-Specific-Units", 1)]),
                    ("Rating-Group", 300),
                    ("Result-Code", 2001),
                ],
            ),
        ],
    )
    parsed = parse_event_cca(decode(answer.encode()), rating_group=300)
    assert (parsed.result_code, parsed.granted_seconds, parsed.origin_host) == (
        2001,
        1,
        "ocs.lab.example",
    )


def test_switch_update_reports_the_old_group_and_asks_on_the_new() -> None:
    """A CCR-U after a media change: two MSCCs, used seconds on 100 (RATING_CONDITION_CHANGE)
    and the request on 200 with the video Service-Identifier."""
    voice = make_context()
    video = with_video(voice, RoSettings(), True)
    message = build_ccr(
        video,
        SendCcr(RequestType.UPDATE, 1, 30, 12, False),
        session_id=SESSION,
        origin_host="b2bua.lab.example",
        origin_realm="lab.example",
        destination_realm="lab.example",
        now=NOW,
        previous=voice,
    )
    wire = decode(message.encode())
    check_command(wire)
    first, second = wire.find_all("Multiple-Services-Credit-Control")
    assert first.get("Rating-Group") == 100 and first.get("Service-Identifier") == 1000
    assert first.find("Used-Service-Unit").get("CC-Time") == 12
    assert first.find("Used-Service-Unit").get("Reporting-Reason") == 6
    assert first.find("Requested-Service-Unit") is None
    assert second.get("Rating-Group") == 200 and second.get("Service-Identifier") == 1001
    assert second.find("Requested-Service-Unit").get("CC-Time") == 30
    assert second.find("Used-Service-Unit") is None


def test_with_video_switches_both_ways() -> None:
    """with_video picks the video or the voice identifiers and keeps the rest."""
    voice = make_context()
    video = with_video(voice, RoSettings(), True)
    assert (video.video, video.rating_group, video.service_identifier) == (True, 200, 1001)
    back = with_video(video, RoSettings(), False)
    assert back == voice
