"""The Ro message mapping: INVITE to charging context, CCR building, CCA reading."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest

from b2bua.charging.messages import (
    AVP_NAMES,
    ChargingContext,
    ContextError,
    Direction,
    MalformedAnswer,
    RoSettings,
    SessionIdGenerator,
    SubscriptionIdType,
    Timestamps,
    build_ccr,
    context_from_invite,
    mark_retransmission,
    parse_cca,
    service_context_id,
    subscription_id,
)
from b2bua.charging.session import Ccfh, FinalUnitAction, RequestType, SendCcr
from b2bua.diameter.dictionary import AVPS_BY_NAME
from b2bua.diameter.message import Message, check_command, decode
from b2bua.sip.headers import parse_uri
from tests.charging.fakes import SDP_AUDIO, SDP_VIDEO, answer_for, invite

E164 = SubscriptionIdType.END_USER_E164
SIP_URI = SubscriptionIdType.END_USER_SIP_URI
NOW = 1_767_225_600.25  # 2026-01-01T00:00:00.25Z

PCV = (
    'P-Charging-Vector: icid-value="AyretyU0dm+6O2IrT5tAFrbHLso=023551024"; '
    "icid-generated-at=192.0.2.1; orig-ioi=home1.example; term-ioi=home2.example"
)


def context(
    direction: str = "orig", settings: RoSettings | None = None, **kwargs: Any
) -> ChargingContext:
    trunks = {k: kwargs.pop(k) for k in ("incoming_trunk_id", "outgoing_trunk_id") if k in kwargs}
    return context_from_invite(
        invite(**kwargs),
        direction=direction,
        settings=settings or RoSettings(),
        now=NOW,
        rng=random.Random(3),
        **trunks,
    )


def full_context() -> ChargingContext:
    """An orig context with every optional field set."""
    return context(
        settings=RoSettings(app_provided_party="X-Routed-To"),
        headers=(
            "P-Asserted-Identity: <sip:+15550100@ims.example;user=phone>, <tel:+15550100>",
            PCV,
            'Authorization: Digest username="alice@ims.example", realm="ims.example"',
            "X-Routed-To: <sip:+15550177@pstn.example;user=phone>",
        ),
        incoming_trunk_id="tg-sbc-1",
        outgoing_trunk_id="tg-pstn-2",
    )


def ccr(
    request_type: RequestType = RequestType.INITIAL,
    *,
    number: int = 0,
    requested: int | None = 30,
    used: int | None = None,
    learned: str | None = None,
    retry: bool = False,
    ctx: ChargingContext | None = None,
    **kwargs: Any,
) -> Message:
    send = SendCcr(
        request_type,
        number,
        requested,
        used,
        request_type is RequestType.TERMINATION,
        destination_host=learned,
        retry=retry,
    )
    message = build_ccr(
        ctx or full_context(),
        send,
        session_id="b2bua.lab.example;1767225600;0;0000abcd",
        origin_host="b2bua.lab.example",
        origin_realm="lab.example",
        destination_realm="ocs.lab.example",
        now=NOW,
        **kwargs,
    )
    wire = decode(message.encode())
    check_command(wire)  # the RFC 4006 CCR grammar, flags and values
    return wire


def ims(message: Message, *names: str) -> Any:
    return message.get_path("Service-Information", "IMS-Information", *names)


def mscc(message: Message, *names: str) -> Any:
    return message.get_path("Multiple-Services-Credit-Control", *names)


# -- dictionary ---------------------------------------------------------------------------


def test_every_avp_name_used_is_in_the_dictionary() -> None:
    """Each AVP this module writes or reads is defined in b2bua.diameter.dictionary."""
    assert [name for name in AVP_NAMES if name not in AVPS_BY_NAME] == []


# -- Service-Context-Id and Session-Id ----------------------------------------------------


def test_service_context_id_defaults() -> None:
    """The default Service-Context-Id is ext.01.001.8.32260@3gpp.org."""
    assert RoSettings().service_context_id == "ext.01.001.8.32260@3gpp.org"


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("32274@3gpp.org", "acme", "10", "262", "11"), "acme.10.262.11.32274@3gpp.org"),
        (("32260@3gpp.org", "", "01", "001", "8"), "01.001.8.32260@3gpp.org"),
        (("32260@3gpp.org", "", "", "", ""), "32260@3gpp.org"),
    ],
)
def test_service_context_id_is_built_from_its_parts(parts: tuple[str, ...], expected: str) -> None:
    """ext.mnc.mcc.release.root, empty parts left out (TS 32.299 §7.1.12)."""
    assert service_context_id(*parts) == expected


def test_session_ids_are_unique_and_well_formed() -> None:
    """Session-Ids are <host>;<high>;<low>;<tag> with a start-time high part (RFC 6733 §8.8)."""
    generator = SessionIdGenerator("b2bua.lab.example", NOW, random.Random(1))
    first, second = generator(), generator()
    host, high, low, tag = first.split(";")
    assert (host, int(high), int(low), len(tag)) == ("b2bua.lab.example", int(NOW), 0, 8)
    assert second.split(";")[2] == "1" and second != first
    restarted = SessionIdGenerator("b2bua.lab.example", NOW, random.Random(2))
    assert restarted() != first  # a restart in the same second differs by its tag


def test_session_id_low_part_carries_into_the_high_part() -> None:
    """When the low 32 bits wrap, the high part moves on."""
    generator = SessionIdGenerator("h", 5, random.Random(1))
    generator._low = 0xFFFFFFFF
    assert generator().split(";")[1:3] == ["5", str(0xFFFFFFFF)]
    assert generator().split(";")[1:3] == ["6", "0"]


@pytest.mark.parametrize("host", ["", "a;b"])
def test_session_id_needs_a_diameter_identity(host: str) -> None:
    """An empty host or one with ';' cannot start a Session-Id."""
    with pytest.raises(ValueError):
        SessionIdGenerator(host, NOW)


# -- the subscriber -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "kind", "data"),
    [
        ("tel:+1-555-0100", E164, "15550100"),
        ("tel:+1(555)0100;phone-context=example.com", E164, "15550100"),
        ("sip:+15550100@ims.example;user=phone", E164, "15550100"),
        ("sip:15550100@ims.example", E164, "15550100"),
        ("sip:+1555;npdi@ims.example;user=phone", E164, "1555"),
        ("sip:alice@Lab.Example:5060;transport=tcp", SIP_URI, "sip:alice@lab.example"),
        ("sips:bob@lab.example", SIP_URI, "sips:bob@lab.example"),
        ("sip:lab.example", SIP_URI, "sip:lab.example"),
        ("urn:service:sos", SIP_URI, "urn:service:sos"),
    ],
)
def test_subscription_id_type_and_data(uri: str, kind: SubscriptionIdType, data: str) -> None:
    """tel:, user=phone and all-digit users are E.164 digits; other URIs sip:user@host."""
    assert subscription_id(parse_uri(uri)) == (kind, data)


def test_orig_subscriber_is_the_asserted_identity() -> None:
    """orig: the first P-Asserted-Identity, not From."""
    ctx = context(
        from_="<sip:anonymous@anonymous.invalid>;tag=1",
        headers=("P-Asserted-Identity: <sip:alice@lab.example>, <tel:+15550101>",),
    )
    assert (ctx.subscriber_type, ctx.subscriber) == (SIP_URI, "sip:alice@lab.example")
    assert ctx.calling_party == ("sip:alice@lab.example", "tel:+15550101")
    assert ctx.role_of_node == 0


def test_orig_subscriber_falls_back_to_from() -> None:
    """orig without P-Asserted-Identity: the From URI."""
    ctx = context()
    assert (ctx.subscriber_type, ctx.subscriber) == (E164, "15550100")
    assert ctx.calling_party == ("sip:+15550100@sbc.lab.example;user=phone",)


def test_term_subscriber_is_the_request_uri() -> None:
    """term: the Request-URI, whatever P-Asserted-Identity says."""
    ctx = context("term", headers=("P-Asserted-Identity: <sip:alice@lab.example>",))
    assert (ctx.subscriber_type, ctx.subscriber) == (E164, "15550199")
    assert ctx.direction is Direction.TERM and ctx.role_of_node == 1


def test_term_subscriber_falls_back_to_p_called_party_id() -> None:
    """term with a Request-URI that names no user: P-Called-Party-ID."""
    ctx = context(
        "term",
        uri="sip:192.0.2.20:5060",
        headers=("P-Called-Party-ID: <sip:bob@lab.example>",),
    )
    assert ctx.subscriber == "sip:bob@lab.example"
    assert ctx.requested_party == "sip:bob@lab.example"


def test_custom_user_header_overrides_the_subscriber() -> None:
    """custom_user names a header whose value is the subscriber, for orig and term."""
    settings = RoSettings(custom_user="X-Charged-Party")
    for direction in ("orig", "term"):
        ctx = context(direction, settings, headers=("X-Charged-Party: +1 555 0102",))
        assert (ctx.subscriber_type, ctx.subscriber) == (E164, "15550102")
    ctx = context(settings=settings, headers=("X-Charged-Party: carol@lab.example",))
    assert ctx.subscriber == "sip:carol@lab.example"
    assert context(settings=settings).subscriber == "15550100"  # header absent: the default


def test_route_subscriber_wins() -> None:
    """A subscriber given by the charging route overrides the headers."""
    ctx = context_from_invite(
        invite(), direction="orig", settings=RoSettings(), now=NOW, subscriber="tel:+15550103"
    )
    assert ctx.subscriber == "15550103"


def test_no_subscriber_is_an_error() -> None:
    """An INVITE with no usable identity for the direction raises ContextError."""
    with pytest.raises(ContextError):
        context(from_="garbage <", headers=())


# -- the rest of the context --------------------------------------------------------------


def test_context_takes_icid_ioi_user_name_and_parties() -> None:
    """icid-value and IOIs from P-Charging-Vector, User-Name from Authorization."""
    ctx = full_context()
    assert ctx.icid == "AyretyU0dm+6O2IrT5tAFrbHLso=023551024"
    assert (ctx.orig_ioi, ctx.term_ioi) == ("home1.example", "home2.example")
    assert ctx.user_name == "alice@ims.example"
    assert ctx.call_id == "call-1@sbc.lab.example"
    assert ctx.called_party == "sip:+15550199@b2bua.lab.example;user=phone"
    assert ctx.requested_party == "sip:+15550199@lab.example;user=phone"
    assert ctx.app_provided_party == "sip:+15550177@pstn.example;user=phone"
    assert (ctx.incoming_trunk_id, ctx.outgoing_trunk_id) == ("tg-sbc-1", "tg-pstn-2")
    assert ctx.request_time == NOW


def test_icid_is_generated_when_the_sbc_sent_none() -> None:
    """Without P-Charging-Vector a new, distinct ICID is made for each call."""
    first = context_from_invite(invite(), direction="orig", settings=RoSettings(), now=NOW)
    second = context_from_invite(invite(), direction="orig", settings=RoSettings(), now=NOW)
    assert first.icid and second.icid and first.icid != second.icid
    assert first.orig_ioi is None and first.user_name is None


def test_unquoted_icid_and_token_username_are_read() -> None:
    """icid-value without quotes and a token username are read too."""
    ctx = context(
        headers=(
            "P-Charging-Vector: icid-value=abc123;orig-ioi=op.example",
            "Proxy-Authorization: Digest username=bob, realm=x",
        )
    )
    assert (ctx.icid, ctx.orig_ioi, ctx.user_name) == ("abc123", "op.example", "bob")


def test_requested_party_is_left_out_when_equal_to_the_called_party() -> None:
    """Requested-Party-Address only when it differs from Called-Party-Address."""
    uri = "sip:+15550199@lab.example;user=phone"
    assert context(uri=uri, to=f"<{uri}>").requested_party is None


@pytest.mark.parametrize(
    ("body", "content_type_video"),
    [
        (SDP_AUDIO, False),
        (SDP_VIDEO, True),
        (SDP_AUDIO + "m=video 0 RTP/AVP 96\r\n", False),
        (SDP_VIDEO + "a=inactive\r\n", False),
        ("", False),
    ],
)
def test_video_selects_the_video_service(body: str, content_type_video: bool) -> None:
    """Active video in the SDP selects the video Service-Identifier and Rating-Group."""
    ctx = context(body=body)
    assert ctx.video is content_type_video
    expected = (1001, 200) if content_type_video else (1000, 100)
    assert (ctx.service_identifier, ctx.rating_group) == expected


def test_video_in_a_non_sdp_body_is_ignored() -> None:
    """An m=video line in a body that is not SDP does not make a video call."""
    request = invite(body=SDP_VIDEO)
    request.headers.set("Content-Type", "text/plain")
    ctx = context_from_invite(request, direction="orig", settings=RoSettings(), now=NOW)
    assert not ctx.video


# -- CCRs ---------------------------------------------------------------------------------


def test_ccr_initial_carries_every_avp() -> None:
    """CCR-I: header AVPs, Subscription-Id, MSI, MSCC with RSU, and IMS-Information."""
    message = ccr()
    assert message.is_request and message.is_proxiable and not message.is_retransmit
    assert (message.command_code, message.app_id) == (272, 4)
    assert [avp.name for avp in message.avps] == [
        "Session-Id",
        "Origin-Host",
        "Origin-Realm",
        "Destination-Realm",
        "Auth-Application-Id",
        "Service-Context-Id",
        "CC-Request-Type",
        "CC-Request-Number",
        "User-Name",
        "Event-Timestamp",
        "Subscription-Id",
        "Multiple-Services-Indicator",
        "Multiple-Services-Credit-Control",
        "Service-Information",
    ]
    assert message.session_id == "b2bua.lab.example;1767225600;0;0000abcd"
    assert message.origin_host == "b2bua.lab.example"
    assert message.origin_realm == "lab.example"
    assert message.get("Destination-Realm") == "ocs.lab.example"
    assert message.get("Auth-Application-Id") == 4
    assert message.get("Service-Context-Id") == "ext.01.001.8.32260@3gpp.org"
    assert (message.get("CC-Request-Type"), message.get("CC-Request-Number")) == (1, 0)
    assert message.get("User-Name") == "alice@ims.example"
    assert message.get("Event-Timestamp") == datetime(2026, 1, 1, tzinfo=UTC)
    assert message.get_path("Subscription-Id", "Subscription-Id-Type") == 0
    assert message.get_path("Subscription-Id", "Subscription-Id-Data") == "15550100"
    assert message.get("Multiple-Services-Indicator") == 1
    assert mscc(message, "Requested-Service-Unit", "CC-Time") == 30
    assert mscc(message, "Used-Service-Unit") is None
    assert (mscc(message, "Service-Identifier"), mscc(message, "Rating-Group")) == (1000, 100)
    assert ims(message, "Event-Type", "SIP-Method") == "INVITE"
    assert ims(message, "Role-Of-Node") == 0
    assert ims(message, "Node-Functionality") == 6
    assert ims(message, "User-Session-Id") == "call-1@sbc.lab.example"
    info = message.find_path("Service-Information", "IMS-Information")
    assert info is not None
    assert [a.value for a in info.find_all("Calling-Party-Address")] == [
        "sip:+15550100@ims.example;user=phone",
        "tel:+15550100",
    ]
    assert ims(message, "Called-Party-Address") == "sip:+15550199@b2bua.lab.example;user=phone"
    assert ims(message, "Requested-Party-Address") == "sip:+15550199@lab.example;user=phone"
    assert ims(message, "Time-Stamps", "SIP-Request-Timestamp") == datetime(2026, 1, 1, tzinfo=UTC)
    assert ims(message, "Time-Stamps", "SIP-Request-Timestamp-Fraction") == 250
    assert ims(message, "Time-Stamps", "SIP-Response-Timestamp") is None
    assert (
        ims(
            message,
            "Application-Server-Information",
            "Application-Provided-Called-Party-Address",
        )
        == "sip:+15550177@pstn.example;user=phone"
    )
    assert ims(message, "Inter-Operator-Identifier", "Originating-IOI") == "home1.example"
    assert ims(message, "Inter-Operator-Identifier", "Terminating-IOI") == "home2.example"
    assert ims(message, "IMS-Charging-Identifier") == "AyretyU0dm+6O2IrT5tAFrbHLso=023551024"
    assert ims(message, "Trunk-Group-Id", "Incoming-Trunk-Group-Id") == "tg-sbc-1"
    assert ims(message, "Trunk-Group-Id", "Outgoing-Trunk-Group-Id") == "tg-pstn-2"
    assert ims(message, "Cause-Code") is None
    assert message.get("Termination-Cause") is None
    assert message.get("Destination-Host") is None


def test_3gpp_avps_carry_the_vendor_and_m_flags() -> None:
    """Service-Information and IMS-Information are 3GPP (vendor 10415) AVPs with V and M."""
    info = ccr().find("Service-Information")
    assert info is not None and info.vendor == 10415 and info.vendor_specific and info.mandatory


def test_ccr_update_reports_used_and_requests_more() -> None:
    """CCR-U: no MSI, RSU and USU, the learned Destination-Host, the 200 OK time."""
    message = ccr(
        RequestType.UPDATE,
        number=1,
        requested=30,
        used=22,
        learned="ocs1.lab.example",
        timestamps=Timestamps(NOW, NOW + 3.5),
    )
    assert (message.get("CC-Request-Type"), message.get("CC-Request-Number")) == (2, 1)
    assert message.get("Multiple-Services-Indicator") is None
    assert mscc(message, "Requested-Service-Unit", "CC-Time") == 30
    assert mscc(message, "Used-Service-Unit", "CC-Time") == 22
    assert mscc(message, "Used-Service-Unit", "Reporting-Reason") is None
    assert message.get("Destination-Host") == "ocs1.lab.example"
    assert ims(message, "Event-Type", "SIP-Method") == "INVITE"
    assert ims(message, "Time-Stamps", "SIP-Response-Timestamp").timestamp() == int(NOW + 3.5)
    assert ims(message, "Time-Stamps", "SIP-Response-Timestamp-Fraction") == 750


def test_ccr_termination_reports_used_with_cause() -> None:
    """CCR-T: USU with FINAL, no RSU, SIP-Method, Cause-Code and Termination-Cause."""
    message = ccr(
        RequestType.TERMINATION,
        number=2,
        requested=None,
        used=18,
        sip_method="BYE",
        cause_code=0,
        termination_cause=4,
    )
    assert message.get("CC-Request-Type") == 3
    assert mscc(message, "Requested-Service-Unit") is None
    assert mscc(message, "Used-Service-Unit", "CC-Time") == 18
    assert mscc(message, "Used-Service-Unit", "Reporting-Reason") == 2
    assert ims(message, "Event-Type", "SIP-Method") == "BYE"
    assert ims(message, "Cause-Code") == 0
    assert message.get("Termination-Cause") == 4


def test_ccr_termination_defaults_to_normal_end_and_logout() -> None:
    """Without causes given, a CCR-T says Cause-Code 0 and DIAMETER_LOGOUT."""
    message = ccr(RequestType.TERMINATION, requested=None, used=0)
    assert (ims(message, "Cause-Code"), message.get("Termination-Cause")) == (0, 1)


def test_configured_destination_host_is_used_until_one_is_learned() -> None:
    """The configured Destination-Host applies when no OCS answered yet."""
    assert ccr(destination_host="ocs9.lab.example").get("Destination-Host") == "ocs9.lab.example"
    learned = ccr(destination_host="ocs9.lab.example", learned="ocs1.lab.example")
    assert learned.get("Destination-Host") == "ocs1.lab.example"


def test_retry_sets_the_t_flag_and_drops_destination_host() -> None:
    """A retransmission to an alternate peer has the T flag and no Destination-Host."""
    message = ccr(retry=True, learned="ocs1.lab.example", destination_host="ocs9.lab.example")
    assert message.is_retransmit and message.get("Destination-Host") is None


def test_mark_retransmission_rewrites_a_built_request() -> None:
    """mark_retransmission sets T and removes Destination-Host from a built CCR."""
    message = mark_retransmission(ccr(learned="ocs1.lab.example"))
    assert message.is_retransmit and message.get("Destination-Host") is None
    check_command(decode(message.encode()))


def test_optional_avps_are_left_out_when_unknown() -> None:
    """No User-Name, IOI, trunk groups or application party when the INVITE had none."""
    message = ccr(ctx=context())
    assert message.get("User-Name") is None
    for name in (
        "Inter-Operator-Identifier",
        "Trunk-Group-Id",
        "Application-Server-Information",
    ):
        assert ims(message, name) is None, name
    assert ims(message, "IMS-Charging-Identifier")


def test_ccr_round_trips_through_the_codec() -> None:
    """encode -> decode gives back the same message, AVP for AVP."""
    for request_type in RequestType:
        send = SendCcr(request_type, 3, 30, 12, request_type is RequestType.TERMINATION)
        message = build_ccr(
            full_context(),
            send,
            session_id="s;1;2",
            origin_host="b2bua.lab.example",
            origin_realm="lab.example",
            destination_realm="ocs.lab.example",
            now=NOW,
        )
        again = decode(message.encode())
        assert again == message
        assert decode(again.encode()).encode() == message.encode()


def _pcap(payloads: list[bytes]) -> bytes:
    """A pcap file carrying each payload in one TCP segment to port 3868 on loopback."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    seq = 1
    for index, payload in enumerate(payloads):
        tcp = struct.pack("!HHIIBBHHH", 40000, 3868, seq, 0, 5 << 4, 0x18, 65535, 0, 0)
        seq += len(payload)
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), index, 0, 64, 6, 0, bytes(4), bytes(4)
        )
        frame = bytes(12) + b"\x08\x00" + ip + tcp + payload
        out += struct.pack("<IIII", index, 0, len(frame), len(frame)) + frame
    return bytes(out)


def test_wireshark_finds_nothing_wrong_with_the_ccrs(tmp_path: Any) -> None:
    """Wireshark's Diameter dissector reads CCR-I/U/T with no malformed or expert finding."""
    tshark = shutil.which("tshark")
    assert tshark, "tshark is installed by scripts/install-system-deps"
    requests = [
        ccr(),
        ccr(RequestType.UPDATE, number=1, used=22, learned="ocs1.lab.example"),
        ccr(RequestType.TERMINATION, number=2, requested=None, used=18, retry=True),
    ]
    capture = tmp_path / "ccr.pcap"
    capture.write_bytes(_pcap([message.encode() for message in requests]))
    fields = ["-e", "diameter.CC-Request-Type", "-e", "_ws.expert", "-e", "_ws.malformed"]
    result = subprocess.run(
        [
            tshark,
            "-n",
            "-r",
            str(capture),
            "-d",
            "tcp.port==3868,diameter",
            "-T",
            "fields",
            *fields,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["1\t\t", "2\t\t", "3\t\t"]


# -- CCAs ---------------------------------------------------------------------------------


def request(number: int = 0) -> Message:
    return ccr(number=number)


def test_parse_cca_reads_the_grant() -> None:
    """Result-Code, MSCC grant, origin host and CC-Request-Number."""
    answer = parse_cca(answer_for(request(), granted=30))
    assert answer.result_code == 2001
    assert answer.granted_seconds == 30
    assert answer.final_unit_action is None
    assert answer.origin_host == "ocs1.lab.example"
    assert answer.request_number == 0
    assert answer.validity_time is None and answer.time_quota_threshold is None


def test_parse_cca_reads_validity_threshold_and_final_units() -> None:
    """Validity-Time, Time-Quota-Threshold and Final-Unit-Indication inside the MSCC."""
    message = answer_for(
        request(),
        granted=10,
        final=True,
        mscc_extra=(("Validity-Time", 600), ("Time-Quota-Threshold", 5)),
    )
    answer = parse_cca(message)
    assert (answer.granted_seconds, answer.validity_time, answer.time_quota_threshold) == (
        10,
        600,
        5,
    )
    assert answer.final_unit_action is FinalUnitAction.TERMINATE


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, FinalUnitAction.REDIRECT),
        (2, FinalUnitAction.RESTRICT_ACCESS),
        (7, FinalUnitAction.TERMINATE),  # RFC 4006 §8.35: unknown means TERMINATE
    ],
)
def test_parse_cca_final_unit_action_values(value: int, expected: FinalUnitAction) -> None:
    """Final-Unit-Action is read as given, an unknown value as TERMINATE."""
    message = answer_for(
        request(),
        granted=5,
        mscc_extra=(("Final-Unit-Indication", [("Final-Unit-Action", value)]),),
    )
    assert parse_cca(message).final_unit_action is expected


def test_mscc_result_code_overrides_a_successful_top_level() -> None:
    """2001 at the top with 4012 in the MSCC is a 4012 for this service."""
    assert parse_cca(answer_for(request(), 2001, mscc_code=4012)).result_code == 4012


def test_mscc_result_code_does_not_hide_a_top_level_failure() -> None:
    """A failed top-level Result-Code stands whatever the MSCC says."""
    assert parse_cca(answer_for(request(), 5030, mscc_code=2001)).result_code == 5030


def test_experimental_result_code_is_read() -> None:
    """Experimental-Result/Experimental-Result-Code stands in for Result-Code."""
    assert parse_cca(answer_for(request(), 5030, experimental=True)).result_code == 5030


def test_top_level_grant_and_validity_are_read_without_mscc() -> None:
    """A single-service answer (GSU and Validity-Time at the top level) is understood."""
    message = answer_for(
        request(),
        extra=(
            ("Granted-Service-Unit", [("CC-Time", 40)]),
            ("Validity-Time", 120),
            ("Final-Unit-Indication", [("Final-Unit-Action", 0)]),
        ),
    )
    message.avps = [a for a in message.avps if a.name != "Multiple-Services-Credit-Control"]
    answer = parse_cca(message)
    assert (answer.granted_seconds, answer.validity_time) == (40, 120)
    assert answer.final_unit_action is FinalUnitAction.TERMINATE


def test_mscc_of_the_calls_rating_group_is_chosen() -> None:
    """With several MSCCs, the one of the requested rating group is read."""
    message = answer_for(request(), granted=10)
    message.append(
        "Multiple-Services-Credit-Control",
        [("Granted-Service-Unit", [("CC-Time", 99)]), ("Rating-Group", 200)],
    )
    assert parse_cca(message, rating_group=200).granted_seconds == 99
    assert parse_cca(message, rating_group=100).granted_seconds == 10
    assert parse_cca(message).granted_seconds == 10


def test_failover_and_failure_handling_are_read() -> None:
    """CC-Session-Failover and Credit-Control-Failure-Handling from the top level."""
    message = answer_for(
        request(),
        granted=30,
        extra=(
            ("CC-Session-Failover", "FAILOVER_NOT_SUPPORTED"),
            ("Credit-Control-Failure-Handling", "CONTINUE"),
        ),
    )
    answer = parse_cca(message)
    assert answer.cc_session_failover is False
    assert answer.credit_control_failure_handling is Ccfh.CONTINUE
    supported = answer_for(request(), granted=1, extra=(("CC-Session-Failover", 1),))
    assert parse_cca(supported).cc_session_failover is True


def test_unknown_failure_handling_value_is_ignored() -> None:
    """A CCFH value outside the RFC's three counts as absent."""
    message = answer_for(request(), granted=1)
    message.append("Credit-Control-Failure-Handling", 9)
    assert parse_cca(message).credit_control_failure_handling is None


def test_answer_without_result_code_is_malformed() -> None:
    """No Result-Code and no Experimental-Result: MalformedAnswer."""
    message = answer_for(request(), granted=30)
    message.avps = [a for a in message.avps if a.name != "Result-Code"]
    with pytest.raises(MalformedAnswer):
        parse_cca(message)


def test_unreadable_optional_avp_counts_as_absent() -> None:
    """A Validity-Time of the wrong length is ignored, the rest of the answer read."""
    message = answer_for(request(), granted=30)
    mscc_avp = message.find("Multiple-Services-Credit-Control")
    assert mscc_avp is not None
    from b2bua.diameter.avp import Avp

    mscc_avp.children.append(Avp(448, data=b"\x00\x01"))
    answer = parse_cca(decode(message.encode()))
    assert answer.validity_time is None and answer.granted_seconds == 30
