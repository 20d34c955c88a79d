# mypy: disable-error-code="union-attr,arg-type,comparison-overlap,unreachable,index,misc"
# (tests poke Optional results and state attributes mypy narrows too eagerly)
"""Error detection and RFC 6733 7.1/7.2/7.5 error answers from crafted bad messages."""

from __future__ import annotations

import pytest

from b2bua.diameter.avp import Avp, decode_avps
from b2bua.diameter.errors import DecodeError
from b2bua.diameter.message import (
    FLAG_ERROR,
    Header,
    Message,
    check_command,
    decode,
    make_error_answer,
)
from tests.diameter import factories

HOST = "b2bua.example.com"
REALM = "example.com"


def reject(raw: bytes) -> DecodeError:
    """Decode and validate; return the DecodeError that must be raised."""
    with pytest.raises(DecodeError) as exc:
        check_command(decode(raw))
    return exc.value


def answer_for(raw: bytes, err: DecodeError) -> Message:
    """Build the error answer the way a server would, then decode it back."""
    try:
        request: Message | Header = decode(raw)
    except DecodeError:
        assert err.header is not None
        request = err.header
    ans = make_error_answer(request, err, HOST, REALM, error_message="rejected")
    return decode(ans.encode())


def failed_avp(ans: Message) -> bytes | None:
    avp = ans.find("Failed-AVP")
    return None if avp is None else avp.data


def ccr_without(name: str) -> Message:
    msg = factories.ccr_initial()
    msg.avps = [a for a in msg.avps if a.name != name]
    return msg


def test_3001_command_unsupported():
    """Unknown command code -> 3001 with the E bit, no Failed-AVP."""
    raw = Message(999, 4, 0x80, [("Origin-Host", "o")], hop_by_hop=5, end_to_end=6).encode()
    err = reject(raw)
    assert err.result_code == 3001 and err.is_protocol_error
    ans = answer_for(raw, err)
    assert ans.is_error and not ans.is_request and ans.command_code == 999
    assert (ans.hop_by_hop, ans.end_to_end) == (5, 6)
    assert ans.result_code == 3001 and failed_avp(ans) is None
    assert ans.get("Error-Message") == "rejected"


def test_3007_application_unsupported():
    """A CCR sent for application 16777238 -> 3007 with the E bit."""
    msg = factories.ccr_initial()
    msg.app_id = 16777238
    err = reject(msg.encode())
    assert err.result_code == 3007
    assert answer_for(msg.encode(), err).is_error


def test_3008_invalid_hdr_bits_request_with_e():
    """A request with the E bit set -> 3008 at decode time, header kept for the answer."""
    raw = bytearray(factories.ccr_initial().encode())
    raw[4] |= FLAG_ERROR
    with pytest.raises(DecodeError) as exc:
        decode(bytes(raw))
    err = exc.value
    assert err.result_code == 3008 and err.answerable
    ans = answer_for(bytes(raw), err)
    assert ans.is_error and ans.hop_by_hop == factories.ccr_initial().hop_by_hop


def test_3008_p_bit_on_cer():
    """A proxiable CER contradicts its definition -> 3008."""
    cer = factories.cer()
    cer.flags |= 0x40
    assert reject(cer.encode()).result_code == 3008


def test_3009_m_bit_missing():
    """Origin-Host without the M bit -> 3009 with that AVP in Failed-AVP."""
    msg = factories.ccr_initial()
    bad = Avp.new("Origin-Host", "h", flags=0)
    msg.avps[1] = bad
    err = reject(msg.encode())
    assert err.result_code == 3009
    ans = answer_for(msg.encode(), err)
    assert ans.is_error and failed_avp(ans) == bad.encode()


def test_3009_m_bit_forbidden():
    """Product-Name with the M bit -> 3009."""
    cer = factories.cer()
    cer.avps[4] = Avp.new("Product-Name", "b2bua", flags=0x40)
    assert reject(cer.encode()).result_code == 3009


def test_3009_vendor_zero_with_v_bit():
    """V bit with a zero Vendor-ID (forbidden by 4.1.1) -> 3009."""
    msg = factories.ccr_initial()
    msg.avps.append(Avp(415, data=b"\0\0\0\1", flags=0xC0))
    err = reject(msg.encode())
    assert err.result_code == 3009


def test_5001_unknown_mandatory_avp():
    """Unknown AVP with M set -> 5001, Failed-AVP is the AVP byte for byte, no E bit."""
    msg = factories.ccr_initial()
    unknown = Avp(99999, vendor=12345, flags=0xC0, data=b"xyz")
    msg.avps.append(unknown)
    err = reject(msg.encode())
    assert err.result_code == 5001
    ans = answer_for(msg.encode(), err)
    assert not ans.is_error and failed_avp(ans) == unknown.encode()
    assert ans.name == "CCA" and ans.session_id == factories.SESSION_ID
    assert ans.avps[0].name == "Session-Id"
    assert ans.get("CC-Request-Type") == 1 and ans.get("CC-Request-Number") == 0


def test_unknown_optional_avp_accepted():
    """Unknown AVPs without the M bit are ignored."""
    msg = factories.ccr_initial()
    msg.avps.append(Avp(99999, flags=0, data=b"xyz"))
    check_command(decode(msg.encode()))


def test_5001_inside_group_reports_hierarchy():
    """Unknown mandatory AVP inside MSCC -> Failed-AVP holds MSCC wrapping only that AVP."""
    msg = factories.ccr_initial()
    mscc = msg.find("Multiple-Services-Credit-Control")
    bogus = Avp(77777, flags=0x40, data=b"\x01")
    mscc.children.append(bogus)
    err = reject(msg.encode())
    assert err.result_code == 5001
    (outer,) = decode_avps(err.failed_avp, 0, len(err.failed_avp), (0, [10]))
    assert outer.name == "Multiple-Services-Credit-Control"
    assert [c.code for c in outer.children] == [77777]


@pytest.mark.parametrize("value", [0, 5, -1])
def test_5004_invalid_enumerated(value):
    """CC-Request-Type outside 1..4 -> 5004 with the AVP."""
    msg = factories.ccr_initial()
    msg.find("CC-Request-Type").value = value
    err = reject(msg.encode())
    assert err.result_code == 5004
    assert answer_for(msg.encode(), err).find("Failed-AVP").children[0].value == value


def test_open_enumerated_accepted():
    """Unknown values of extensible enums (Subscription-Id-Type) are accepted."""
    msg = factories.ccr_initial()
    msg.find("Subscription-Id").find("Subscription-Id-Type").value = 42
    check_command(decode(msg.encode()))


def test_5004_bad_utf8():
    """Invalid UTF-8 in Service-Context-Id -> 5004."""
    msg = factories.ccr_initial()
    msg.avps[5] = Avp(461, data=b"\xc3\x28")
    assert reject(msg.encode()).result_code == 5004


@pytest.mark.parametrize(
    ("name", "payload_len"),
    [("Service-Context-Id", 0), ("CC-Request-Number", 4), ("Destination-Realm", 0)],
)
def test_5005_missing_avp(name, payload_len):
    """Missing required AVP -> 5005, Failed-AVP is a zero-filled example of minimum size."""
    raw = ccr_without(name).encode()
    err = reject(raw)
    assert err.result_code == 5005
    ans = answer_for(raw, err)
    assert not ans.is_error
    (example,) = ans.find("Failed-AVP").children
    assert example.name == name and example.data == b"\0" * payload_len


def test_5005_missing_in_group():
    """Subscription-Id without Subscription-Id-Data -> 5005 nested in Subscription-Id."""
    msg = factories.ccr_initial()
    sub = msg.find("Subscription-Id")
    sub.value = [("Subscription-Id-Type", 0)]
    err = reject(msg.encode())
    assert err.result_code == 5005
    (outer,) = decode_avps(err.failed_avp, 0, len(err.failed_avp), (0, [10]))
    assert outer.name == "Subscription-Id"
    assert outer.children[0].name == "Subscription-Id-Data"


def test_5005_missing_3gpp_avp_keeps_vendor():
    """The example of a missing vendor AVP carries the V bit and Vendor-ID (7.5)."""
    msg = factories.ccr_initial()
    ims = msg.find_path("Service-Information", "IMS-Information")
    ims.value = [c for c in ims.children if c.name != "Node-Functionality"]
    err = reject(msg.encode())
    assert err.result_code == 5005
    (si,) = decode_avps(err.failed_avp, 0, len(err.failed_avp), (0, [10]))
    node = si.children[0].children[0]
    assert (node.code, node.vendor, node.data) == (862, 10415, b"\0\0\0\0")


def test_5009_too_many():
    """A second Origin-Host -> 5009 with the second instance in Failed-AVP."""
    msg = factories.ccr_initial()
    extra = Avp.new("Origin-Host", "second.example.com")
    msg.avps.append(extra)
    err = reject(msg.encode())
    assert err.result_code == 5009
    assert failed_avp(answer_for(msg.encode(), err)) == extra.encode()


def test_5011_unsupported_version():
    """Version 2 -> 5011 with the header available for the answer."""
    raw = b"\x02" + factories.ccr_initial().encode()[1:]
    with pytest.raises(DecodeError) as exc:
        decode(raw)
    err = exc.value
    assert err.result_code == 5011 and err.header.version == 2
    assert answer_for(raw, err).result_code == 5011


def test_5013_reserved_header_bit():
    """A reserved command flag bit -> 5013."""
    raw = bytearray(factories.dwr().encode())
    raw[4] |= 0x08
    with pytest.raises(DecodeError) as exc:
        decode(bytes(raw))
    assert exc.value.result_code == 5013


def test_5014_fixed_size_length():
    """CC-Request-Number with 2 octets -> 5014 with the AVP in Failed-AVP."""
    msg = factories.ccr_initial()
    short = Avp(415, data=b"\0\1")
    msg.avps[7] = short
    err = reject(msg.encode())
    assert err.result_code == 5014
    ans = answer_for(msg.encode(), err)
    assert failed_avp(ans) == short.encode()
    assert ans.find("CC-Request-Number") is None  # the broken AVP is not echoed


def test_5014_avp_length_past_message():
    """An AVP length running past the message -> 5014 at decode, header + zero payload."""
    raw = bytearray(factories.dwr().encode())
    raw[20 + 5 : 20 + 8] = (200).to_bytes(3, "big")  # first AVP claims 200 octets
    with pytest.raises(DecodeError) as exc:
        decode(bytes(raw))
    err = exc.value
    assert err.result_code == 5014 and err.answerable
    ans = answer_for(bytes(raw), err)
    (example,) = ans.find("Failed-AVP").children
    assert example.code == 264 and example.data == b""


def test_5014_inside_group_found_lazily():
    """A bad child length inside a group is reported when the group is read."""
    inner = bytes.fromhex("000001a4400000400000001e")
    msg = factories.ccr_initial()
    msg.avps.append(Avp(437, data=inner))
    decoded = decode(msg.encode())
    with pytest.raises(DecodeError) as exc:
        check_command(decoded)
    assert exc.value.result_code == 5014
    assert exc.value.header is not None


@pytest.mark.parametrize("length", [19, 21, 400])
def test_5015_invalid_message_length(length):
    """Message length field disagreeing with the data -> 5015."""
    raw = bytearray(factories.dwr().encode())
    raw[1:4] = length.to_bytes(3, "big")
    with pytest.raises(DecodeError) as exc:
        decode(bytes(raw))
    assert exc.value.result_code == 5015


def test_short_buffer_is_fatal_5015():
    """Fewer than 20 octets cannot even carry a header."""
    with pytest.raises(DecodeError) as exc:
        decode(b"\x01\x00\x00")
    assert exc.value.result_code == 5015 and exc.value.fatal and not exc.value.answerable


def test_no_answer_to_answer():
    """make_error_answer refuses to answer an answer (7.2)."""
    cca = factories.cca_grant(factories.ccr_initial())
    with pytest.raises(ValueError):
        make_error_answer(cca, DecodeError(5004), HOST, REALM)


def test_error_answer_grammar_checks():
    """An E-bit answer validates against the RFC 6733 7.2 grammar."""
    err = DecodeError(3004)
    ans = make_error_answer(factories.ccr_initial(), err, HOST, REALM, origin_state_id=9)
    check_command(decode(ans.encode()))
    assert ans.get("Origin-State-Id") == 9


def test_valid_messages_pass():
    """All factory messages pass validation."""
    req = factories.ccr_initial()
    for msg in (
        factories.cer(),
        factories.cea(factories.cer()),
        factories.dwr(),
        req,
        factories.ccr_update(),
        factories.ccr_terminate(),
        factories.cca_grant(req),
        factories.rar(),
        factories.asr(),
    ):
        check_command(decode(msg.encode()))


def test_decode_error_repr():
    """DecodeError exposes its code in repr and defaults a message."""
    err = DecodeError(5012)
    assert "5012" in repr(err) and "5012" in str(err)
    assert not err.answerable and not err.is_protocol_error
