"""RFC 4475 §3 and RFC 5118 §4 torture messages: what each RFC says an element does.

The messages live in tests/data/sip-torture (copied byte for byte from the RFCs'
archives).  "Accepted" means ``parse_message`` plus ``validate_request`` (or
``validate_response``) pass; "rejected" means one of them raises SipParseError with
the status code the RFC names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from b2bua.sip.errors import SipParseError
from b2bua.sip.headers import AbsoluteURI, SipURI
from b2bua.sip.message import (
    Message,
    Request,
    Response,
    accepts,
    parse_message,
    validate_request,
    validate_response,
)
from b2bua.sip.transaction import server_key

DATA = Path(__file__).resolve().parents[1] / "data" / "sip-torture"


def load(name: str) -> bytes:
    folder = "rfc5118" if (DATA / "rfc5118" / f"{name}.dat").exists() else "rfc4475"
    return (DATA / folder / f"{name}.dat").read_bytes()


def accept(name: str, **kwargs: object) -> Message:
    msg = parse_message(load(name))
    if isinstance(msg, Request):
        validate_request(msg, **kwargs)  # type: ignore[arg-type]
    else:
        validate_response(msg)
    return msg


def reject(name: str, **kwargs: object) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        accept(name, **kwargs)
    return info.value


def request(name: str) -> Request:
    msg = accept(name)
    assert isinstance(msg, Request)
    return msg


def sip_uri(uri: object) -> SipURI:
    assert isinstance(uri, SipURI)
    return uri


# ------------------------------------------------------------------ the data itself


def test_data_matches_the_published_checksums():
    """The copies are byte-exact (git must not touch their line ends)."""
    for folder in ("rfc4475", "rfc5118"):
        for line in (DATA / folder / "SHA256SUMS").read_text().splitlines():
            digest, name = line.split()
            data = (DATA / folder / name).read_bytes()
            assert hashlib.sha256(data).hexdigest() == digest, name


def test_every_message_is_covered():
    """Each .dat file has an expectation in this module."""
    names = {p.stem for p in DATA.glob("*/*.dat")}
    assert names == set(ACCEPTED) | set(REJECTED)


# ------------------------------------------------- RFC 4475 §3.1.1: valid messages


def test_wsinv_short_tortuous_invite():
    """§3.1.1.1: LWS, folding, compact and odd-case names all over; still valid."""
    msg = request("wsinv")
    assert msg.method == "INVITE"
    assert sip_uri(msg.request_uri).params == {"unknownparam": None}
    assert msg.to_tag == "1918181833n"
    assert msg.from_.display_name == 'J Rosenberg \\"'
    assert msg.from_tag == "98asjd8"
    assert msg.max_forwards == 68
    assert (msg.cseq.seq, msg.cseq.method) == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in msg.via] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.headers.get("subject") == ""
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    [contact] = msg.contact
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert sip_uri(msg.route[0].uri).params["unknownwith"] == "value"
    assert len(msg.body) == 150
    assert parse_message(msg.serialize()).serialize() == msg.serialize()


def test_intmeth_wide_range_of_valid_characters():
    """§3.1.1.2: an extension method and URI/params full of unusual legal characters."""
    msg = request("intmeth")
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = sip_uri(msg.request_uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert msg.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert sip_uri(msg.to.uri).user == uri.user
    assert msg.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert msg.from_tag == "_token~1'+`*%!-."
    assert (
        msg.from_.params["fromparam''~+*_!.-%"]
        == '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"'
    )
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"
    assert msg.serialize() == load("intmeth")


def test_esc01_valid_escaping():
    """§3.1.1.3: %-escapes in Request-URI, To, From and Contact decode correctly."""
    msg = request("esc01")
    ruri = sip_uri(msg.request_uri)
    assert ruri.user == "sips:user@example.com"
    assert ruri.host == "example.net"
    assert msg.to.uri == SipURI.parse("sip:user@example.com")
    assert sip_uri(msg.from_.uri).user == "I have spaces"
    contact = sip_uri(msg.contact[0].uri)
    assert contact.user == "caller"
    assert contact.params == {"lr": None, "name": "value%41"}


def test_escnull_escaped_nulls():
    """§3.1.1.4: %00 in user parts is legal and decodes to NUL."""
    msg = request("escnull")
    assert sip_uri(msg.to.uri).user == "null-\x00-null"
    assert [sip_uri(c.uri).user for c in msg.contact] == ["\x00", "\x00\x00"]


def test_esc02_percent_that_is_not_an_escape():
    """§3.1.1.5: % in method, header name and branch is literal; not REGISTER."""
    msg = request("esc02")
    assert msg.method == "RE%47IST%45R"
    assert msg.cseq.method == "RE%47IST%45R"
    assert msg.to.display_name == "%Z%45"
    assert msg.top_via.branch == "z9hG4bK209%fzsnel234"
    assert [sip_uri(c.uri).user for c in msg.contact] == ["alias1", "alias3"]
    assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_no_lws_between_display_name_and_laquot():
    """§3.1.1.6: 'caller<sip:...>' is a valid name-addr."""
    msg = request("lwsdisp")
    assert msg.from_.display_name == "caller"
    assert msg.from_tag == "323"


def test_longreq_long_values():
    """§3.1.1.7: very long values and 34 Via values in many spellings."""
    msg = request("longreq")
    assert len(msg.via) == 34
    assert msg.via[0].host == "sip33.example.com"
    assert msg.via[-1].received == "192.0.2.5"
    assert msg.via[-1].branch is not None
    assert msg.via[-1].branch.endswith("longbranchvalue")
    assert sip_uri(msg.to.uri).port == 6000
    assert msg.from_tag is not None
    assert msg.from_tag.endswith("2424")
    assert len(msg.body) == 150


def test_dblreq_extra_octets_after_the_message():
    """§3.1.1.8: a datagram's trailing INVITE is noise; only the REGISTER counts."""
    msg = request("dblreq")
    assert msg.method == "REGISTER"
    assert msg.body == b""
    assert msg.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"


def test_semiuri_semicolons_in_user_part():
    """§3.1.1.9: 'user;par=u@example.net' is the user; the URI has no parameters."""
    msg = request("semiuri")
    uri = sip_uri(msg.request_uri)
    assert uri.user == "user;par=u@example.net"
    assert uri.host == "example.com"
    assert uri.params == {}
    assert msg.headers.get_all("accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_transports_varied_and_unknown():
    """§3.1.1.10: UDP, SCTP, TLS, an unknown transport and TCP Vias."""
    msg = request("transports")
    assert [v.transport for v in msg.via] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_mpart01_multipart_body_untouched():
    """§3.1.1.11: a multipart body with binary content is kept byte for byte."""
    data = load("mpart01")
    msg = request("mpart01")
    assert len(msg.body) == 553
    assert data.endswith(msg.body)
    assert msg.media_type == "multipart/mixed"
    assert msg.top_via.rport_requested


def test_unreason_unusual_reason_phrase():
    """§3.1.1.12: a UTF-8 reason phrase."""
    msg = accept("unreason")
    assert isinstance(msg, Response)
    assert msg.status == 200
    assert msg.reason.startswith("= 2**3 * 5**2 ")
    assert "\u0441\u0442\u043e" in msg.reason
    assert msg.serialize() == load("unreason")


def test_noreason_empty_reason_phrase():
    """§3.1.1.13: a status line with an empty reason phrase."""
    msg = accept("noreason")
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (100, "")


# ------------------------------------------------ RFC 4475 §3.1.2: invalid messages


def test_badinv01_extraneous_separators():
    """§3.1.2.1: empty Via/Contact parameters: 400."""
    assert reject("badinv01").status_hint == 400


def test_clerr_content_length_larger_than_message():
    """§3.1.2.2: on UDP, 400; the partly parsed request is available for the reply."""
    err = reject("clerr")
    assert err.status_hint == 400
    assert isinstance(err.message, Request)
    assert err.message.call_id.startswith("clerr.")


def test_ncl_negative_content_length():
    """§3.1.2.3: 400."""
    assert reject("ncl").status_hint == 400


def test_scalar02_request_scalars_out_of_range():
    """§3.1.2.4: CSeq > 2**32-1 (and more): 400."""
    assert reject("scalar02").status_hint == 400


def test_scalarlg_response_scalars_out_of_range():
    """§3.1.2.5: a response with an oversized CSeq is discarded."""
    reject("scalarlg")


def test_quotbal_unterminated_quoted_string():
    """§3.1.2.6: 400."""
    assert reject("quotbal").status_hint == 400


def test_ltgtruri_request_uri_in_brackets():
    """§3.1.2.7: 400."""
    assert reject("ltgtruri").status_hint == 400


def test_lwsruri_lws_inside_request_uri():
    """§3.1.2.8: 400."""
    assert reject("lwsruri").status_hint == 400


def test_lwsstart_multiple_sp_in_request_line():
    """§3.1.2.9: rejected as malformed (the strict choice the RFC allows)."""
    assert reject("lwsstart").status_hint == 400


def test_trws_sp_at_end_of_request_line():
    """§3.1.2.10: rejected with 400 (the strict choice the RFC allows)."""
    assert reject("trws").status_hint == 400


def test_escruri_escaped_headers_in_request_uri():
    """§3.1.2.11: a Request-URI may not carry headers: 400."""
    assert reject("escruri").status_hint == 400


def test_baddate_non_gmt_date():
    """§3.1.2.12: an element not using Date need not reject it; we accept it as-is."""
    msg = request("baddate")
    assert msg.headers.get("date") == "Fri, 01 Jan 2010 16:00:00 EST"


def test_regbadct_addr_spec_with_escaped_header():
    """§3.1.2.13: a Contact addr-spec with ?headers needs <>: 400."""
    assert reject("regbadct").status_hint == 400


def test_badaspec_spaces_within_addr_spec():
    """§3.1.2.14: 400."""
    assert reject("badaspec").status_hint == 400


def test_baddn_unquoted_non_token_display_name():
    """§3.1.2.15: 400 (and the missing empty line does not break the parser)."""
    assert reject("baddn").status_hint == 400


def test_badvers_unknown_protocol_version():
    """§3.1.2.16: 505 Version Not Supported."""
    err = reject("badvers")
    assert err.status_hint == 505
    assert isinstance(err.message, Request)


def test_mismatch01_cseq_method_mismatch():
    """§3.1.2.17: 400."""
    assert reject("mismatch01").status_hint == 400


def test_mismatch02_unknown_method_with_mismatch():
    """§3.1.2.18: 400, not 501."""
    assert reject("mismatch02").status_hint == 400


def test_bigcode_overlarge_response_code():
    """§3.1.2.19: a response with a code over 699 is dropped."""
    reject("bigcode")


# -------------------------------------------- RFC 4475 §3.2: transaction semantics


def test_badbranch_magic_cookie_only():
    """§3.2.1: a branch of just the cookie falls back to the RFC 2543 key."""
    msg = request("badbranch")
    assert msg.top_via.branch == "z9hG4bK"
    key = server_key(msg)
    assert key.branch is None
    assert key.call_id == msg.call_id


# ------------------------------------------ RFC 4475 §3.3: application semantics


def test_insuf_missing_required_headers():
    """§3.3.1: 400."""
    assert reject("insuf").status_hint == 400


def test_unkscm_unknown_scheme_in_request_uri():
    """§3.3.2: parses; 416 Unsupported URI Scheme."""
    msg = parse_message(load("unkscm"))
    assert isinstance(msg, Request)
    assert isinstance(msg.request_uri, AbsoluteURI)
    assert reject("unkscm").status_hint == 416


def test_novelsc_known_but_atypical_scheme():
    """§3.3.3: soap.beep parses; a B2BUA that never serves it answers 416."""
    assert reject("novelsc").status_hint == 416


def test_unksm2_unknown_schemes_in_headers():
    """§3.3.4: isbn:, http: and name: URIs in To/From/Contact are fine."""
    msg = request("unksm2")
    assert str(msg.to.uri) == "isbn:2983792873"
    assert str(msg.from_.uri) == "http://www.example.com"
    assert str(msg.contact[0].uri) == "name:John_Smith"


def test_bext01_unknown_require():
    """§3.3.5: a UAS answers 420 with Unsupported listing the Require tags."""
    err = reject("bext01", supported=frozenset({"100rel"}))
    assert err.status_hint == 420
    assert err.headers == (("Unsupported", "nothingSupportsThis, nothingSupportsThisEither"),)


def test_invut_unknown_content_type():
    """§3.3.6: an endpoint answers 415 with Accept."""
    request("invut")
    err = reject("invut", accepted_types=frozenset({"application/sdp"}))
    assert err.status_hint == 415
    assert err.headers == (("Accept", "application/sdp"),)


def test_regaut01_unknown_authorization_scheme():
    """§3.3.7: syntactically fine; the registrar's 401 is an application matter."""
    msg = request("regaut01")
    assert msg.headers.get("authorization") == "NoOneKnowsThisScheme opaque-data=here"


def test_multi01_multiple_single_value_headers():
    """§3.3.8: two To/From/Call-ID/CSeq/Max-Forwards: 400."""
    assert reject("multi01").status_hint == 400


def test_mcl01_multiple_content_length():
    """§3.3.9: 400."""
    assert reject("mcl01").status_hint == 400


def test_bcast_response_with_two_vias():
    """§3.3.10: a UA discards a response with more than one Via (§8.1.3.3)."""
    msg = parse_message(load("bcast"))
    assert isinstance(msg, Response)
    assert msg.via[1].host == "255.255.255.255"
    reject("bcast")


def test_zeromf_max_forwards_zero():
    """§3.3.11: valid; an endpoint processes it (a proxy would send 483)."""
    assert request("zeromf").max_forwards == 0


def test_cparam01_contact_header_parameter():
    """§3.3.12: 'unknownparam' is a Contact header parameter."""
    [contact] = request("cparam01").contact
    assert contact.params == {"unknownparam": None}
    assert sip_uri(contact.uri).params == {}


def test_cparam02_uri_parameter():
    """§3.3.13: inside <> 'unknownparam' is a URI parameter."""
    [contact] = request("cparam02").contact
    assert contact.params == {}
    assert sip_uri(contact.uri).params == {"unknownparam": None}


def test_regescrt_escaped_uri_header_in_contact():
    """§3.3.14: the Contact URI carries a Route header to be unescaped."""
    [contact] = request("regescrt").contact
    assert sip_uri(contact.uri).headers == {"Route": "<sip:sip.example.com>"}


def test_sdp01_unacceptable_accept():
    """§3.3.15: valid; the Accept excludes SDP, so the answer is 406 (application)."""
    msg = request("sdp01")
    assert not accepts(msg, "application/sdp")


# ------------------------------------------------ RFC 4475 §3.4: backward compat


def test_inv2543_rfc2543_syntax():
    """§3.4.1: no branch, no From tag, no Content-Length, no Max-Forwards: accepted."""
    msg = request("inv2543")
    assert msg.top_via.branch is None
    assert msg.from_tag is None
    assert msg.max_forwards is None
    assert msg.body.startswith(b"v=0\r\n")
    assert server_key(msg).branch is None


def test_archive_test_dat():
    """The archive's test.dat has no SIP-Version in its Request-Line: 400."""
    assert reject("test").status_hint == 400


# ---------------------------------------------------------------- RFC 5118 §4 (IPv6)


def test_ipv6_good():
    """§4.1: IPv6 references in Request-URI, Via and Contact."""
    msg = request("ipv6-good")
    assert sip_uri(msg.request_uri).host == "[2001:db8::10]"
    assert msg.top_via.bare_host == "2001:db8::9:1"
    assert sip_uri(msg.contact[0].uri).bare_host == "2001:db8::1"


def test_ipv6_bad():
    """§4.2: an IPv6 address without brackets in the Request-URI: 400."""
    assert reject("ipv6-bad").status_hint == 400


def test_port_ambiguous():
    """§4.3: well-formed; the whole bracket content is the address, no port."""
    uri = sip_uri(request("port-ambiguous").request_uri)
    assert uri.bare_host == "2001:db8::10:5070"
    assert uri.port is None


def test_port_unambiguous():
    """§4.4: the port follows the closing bracket."""
    uri = sip_uri(request("port-unambiguous").request_uri)
    assert uri.bare_host == "2001:db8::10"
    assert uri.port == 5070


def test_via_received_with_and_without_delimiters():
    """§4.5: received=[v6] and received=v6 are both accepted."""
    assert request("via-received-param-with-delim").top_via.received == "2001:db8::9:255"
    assert request("via-received-param-no-delim").top_via.received == "2001:db8::9:255"


def test_ipv6_in_sdp():
    """§4.6: IPv6 in the SDP body is simply body bytes."""
    msg = request("ipv6-in-sdp")
    assert b"c=IN IP6 2001:db8::20" in msg.body


def test_mult_ip_in_header():
    """§4.7: IPv6 and IPv4 Vias in one message."""
    msg = request("mult-ip-in-header")
    assert [(v.bare_host, v.port) for v in msg.via] == [
        ("2001:db8::9:1", 6050),
        ("192.0.2.1", None),
        ("2001:db8::9:255", None),
    ]
    assert msg.via[2].received == "192.0.2.200"


def test_mult_ip_in_sdp():
    """§4.8: IPv4 and IPv6 connection lines in the body."""
    msg = request("mult-ip-in-sdp")
    assert b"c=IN IP4 192.0.2.1" in msg.body
    assert b"c=IN IP6 2001:db8::1" in msg.body


def test_ipv4_mapped_ipv6():
    """§4.9: ::ffff:192.0.2.10 style addresses parse."""
    msg = request("ipv4-mapped-ipv6")
    assert msg.top_via.bare_host == "::ffff:192.0.2.10"
    assert msg.top_via.port == 19823
    assert sip_uri(msg.contact[0].uri).bare_host == "::ffff:192.0.2.2"


def test_ipv6_abnf_bug_three_and_two_colons():
    """§4.10: both the RFC 3261 ':::' form and the correct '::' form are tolerated."""
    bug = sip_uri(request("ipv6-bug-abnf-3-colons").request_uri)
    good = sip_uri(request("ipv6-correct-abnf-2-colons").request_uri)
    assert bug.bare_host == "2001:db8:::192.0.2.1"
    assert good.bare_host == "2001:db8::192.0.2.1"


ACCEPTED = {
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq",
    "semiuri", "transports", "mpart01", "unreason", "noreason", "baddate", "badbranch",
    "unksm2", "bext01", "invut", "regaut01", "zeromf", "cparam01", "cparam02",
    "regescrt", "sdp01", "inv2543",
    "ipv6-good", "port-ambiguous", "port-unambiguous", "via-received-param-with-delim",
    "via-received-param-no-delim", "ipv6-in-sdp", "mult-ip-in-header", "mult-ip-in-sdp",
    "ipv4-mapped-ipv6", "ipv6-bug-abnf-3-colons", "ipv6-correct-abnf-2-colons",
}  # fmt: skip
REJECTED = {
    "badinv01", "clerr", "ncl", "scalar02", "scalarlg", "quotbal", "ltgtruri", "lwsruri",
    "lwsstart", "trws", "escruri", "regbadct", "badaspec", "baddn", "badvers",
    "mismatch01", "mismatch02", "bigcode", "insuf", "unkscm", "novelsc", "multi01",
    "mcl01", "bcast", "test", "ipv6-bad",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_accepted_messages_reserialize_stably(name):
    """Every accepted message re-serializes to bytes that parse to the same bytes."""
    once = accept(name).serialize()
    assert parse_message(once).serialize() == once


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected_messages_raise_only_sip_parse_error(name):
    """Every rejected message fails with SipParseError, never another exception."""
    reject(name)
