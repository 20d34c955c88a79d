"""Structured header values: URIs, name-addr, Via, CSeq, Max-Forwards, Call-ID."""

from __future__ import annotations

import pytest

from b2bua.sip.errors import SipParseError
from b2bua.sip.headers import (
    AbsoluteURI,
    CSeq,
    NameAddr,
    SipURI,
    TelURI,
    Via,
    escape,
    format_params,
    parse_call_id,
    parse_cseq,
    parse_max_forwards,
    parse_name_addr,
    parse_params,
    parse_uri,
    parse_via,
    quote_string,
    split_header_values,
    strip_brackets,
)

# ------------------------------------------------------------------------ SIP URIs


def test_sip_uri_components():
    """A full SIP URI splits into user, password, host, port, params and headers."""
    uri = SipURI.parse("sip:alice:secret@atlanta.com:5070;transport=TCP;lr?subject=hi&x=1")
    assert uri.scheme == "sip"
    assert uri.user == "alice"
    assert uri.password == "secret"
    assert uri.host == "atlanta.com"
    assert uri.port == 5070
    assert uri.params == {"transport": "TCP", "lr": None}
    assert uri.headers == {"subject": "hi", "x": "1"}
    assert uri.transport == "tcp"
    assert uri.lr
    assert uri.maddr is None


def test_sips_uri_is_secure_and_scheme_is_case_insensitive():
    """The scheme is matched case-insensitively and sips: is flagged secure."""
    uri = parse_uri("SIPS:bob@biloxi.com")
    assert isinstance(uri, SipURI)
    assert uri.scheme == "sips"
    assert uri.secure


def test_sip_uri_without_user():
    """A URI without userinfo has user None."""
    uri = SipURI.parse("sip:example.com;maddr=239.255.255.1")
    assert uri.user is None
    assert uri.host == "example.com"
    assert uri.maddr == "239.255.255.1"


def test_param_names_are_lowercased_values_kept():
    """URI parameter names are case-insensitive (lower-cased); values are kept."""
    uri = SipURI.parse("sip:a@b;Transport=UDP;Foo=BaR")
    assert uri.params == {"transport": "UDP", "foo": "BaR"}


def test_escaped_components_are_decoded():
    """%-escapes in user, params and headers decode (§19.1.2)."""
    uri = SipURI.parse("sip:I%20have%20spaces@example.net;%6C%72;n%61me=v%61lue%25%34%31")
    assert uri.user == "I have spaces"
    assert uri.params == {"lr": None, "name": "value%41"}


def test_escaping_round_trip():
    """str() re-escapes unsafe characters so that parsing gives the same values."""
    uri = SipURI("example.net", user="sips:user@example.com", params={"name": "a b%"})
    text = str(uri)
    assert text == "sip:sips%3Auser%40example.com@example.net;name=a%20b%25"
    again = SipURI.parse(text)
    assert again.user == "sips:user@example.com"
    assert again.params == {"name": "a b%"}


def test_non_utf8_escapes_survive():
    """Escaped bytes that are not UTF-8 come back out as the same escapes."""
    uri = SipURI.parse("sip:%FF%00x@example.com")
    assert str(uri) == "sip:%FF%00x@example.com"


def test_ipv6_host_with_and_without_port():
    """An IPv6 reference keeps its brackets; the port follows the closing bracket."""
    a = SipURI.parse("sip:[2001:db8::10]:5070")
    assert a.host == "[2001:db8::10]"
    assert a.port == 5070
    assert a.bare_host == "2001:db8::10"
    b = SipURI.parse("sip:user@[2001:db8::10:5070]")
    assert b.host == "[2001:db8::10:5070]"
    assert b.port is None


def test_ipv6_three_colon_form_is_tolerated():
    """RFC 5118 §4.10: the RFC 3261 ABNF ':::' before an IPv4 tail is accepted."""
    uri = SipURI.parse("sip:user@[2001:db8:::192.0.2.1]")
    assert uri.host == "[2001:db8:::192.0.2.1]"


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:user@",
        "sip:2001:db8::10",
        "sip:host:99999",
        "sip:host:",
        "sip:host:12a",
        "sip:[2001:db8::1",
        "sip:[2001:db8::zz]",
        "sip:[::1]x",
        "sip:a b@host",
        "sip:user@host;",
        "sip:user@host;a=b c",
        "sip:%4@host",
        "sip:user@host?x",
        "sip:user@ho st",
        "sip:us<er@host",
        "sip:user:pa@ss@host",
        "<sip:user@host>",
        ":nothing",
        "nocolon",
        "1abc:rest",
        "foo:",
        "foo:has space",
        "tel:",
        "tel:+1 555",
        "tel:xyz",
        "sip:u:p<@host",
        "sip:[2001:::1]",
        "sip:[1:2:3:4:5:6:7:::1.2.3.4]",
        'sip:"quoted"@host',
    ],
)
def test_bad_uris_are_rejected(text):
    """Malformed URIs raise SipParseError(400) and nothing else."""
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert info.value.status_hint == 400


def test_sipuri_parse_rejects_other_schemes():
    """SipURI.parse insists on sip/sips."""
    with pytest.raises(SipParseError):
        SipURI.parse("tel:+15551234567")


def test_sip_uri_str_round_trip():
    """A URI in canonical form serializes back to the same text."""
    assert str(SipURI.parse("sip:alice:pw@atlanta.com")) == "sip:alice:pw@atlanta.com"
    text = "sip:alice@atlanta.com:5060;transport=tcp;lr?subject=project"
    assert str(SipURI.parse(text)) == text
    assert repr(SipURI.parse(text)) == f"SipURI({text!r})"


def test_copy_is_independent():
    """copy() gives params and headers dicts of its own."""
    uri = SipURI.parse("sip:a@b;x=1?h=v")
    other = uri.copy()
    other.params["y"] = None
    other.headers["h"] = "w"
    assert "y" not in uri.params
    assert uri.headers == {"h": "v"}
    assert other == SipURI.parse("sip:a@b;x=1;y?h=w")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanta.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ),
    ],
)
def test_uri_equivalence(a, b):
    """§19.1.4: these pairs are equivalent (and hash alike)."""
    ua, ub = SipURI.parse(a), SipURI.parse(b)
    assert ua == ub
    assert hash(ua) == hash(ub)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SIP:ALICE@AtLanta.CoM;Transport=udp", "sip:alice@AtLanta.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ("sip:bob@biloxi.com", "sips:bob@biloxi.com"),
    ],
)
def test_uri_non_equivalence(a, b):
    """§19.1.4: these pairs are not equivalent."""
    assert SipURI.parse(a) != SipURI.parse(b)


def test_uri_comparison_with_other_types():
    """A SIP URI never equals a tel URI or a string."""
    assert SipURI.parse("sip:a@b") != TelURI("+1")
    assert SipURI.parse("sip:a@b") != "sip:a@b"


# ----------------------------------------------------------------------- tel, other


def test_tel_uri():
    """tel: URIs keep the number as written plus parameters."""
    uri = parse_uri("tel:+1-201-555-0123;ext=42")
    assert isinstance(uri, TelURI)
    assert uri.number == "+1-201-555-0123"
    assert uri.is_global
    assert uri.params == {"ext": "42"}
    assert str(uri) == "tel:+1-201-555-0123;ext=42"
    assert repr(uri) == "TelURI('tel:+1-201-555-0123;ext=42')"
    assert uri == TelURI("+12015550123", {"ext": "42"})
    assert hash(uri) == hash(TelURI("+12015550123"))
    assert uri.copy() == uri
    assert uri != AbsoluteURI("tel", "+1")


def test_local_tel_number():
    """A local number without + is not global."""
    uri = parse_uri("tel:7042;phone-context=example.com")
    assert isinstance(uri, TelURI)
    assert not uri.is_global


def test_absolute_uri_kept_opaque():
    """Unknown schemes are accepted and kept as written (RFC 4475 §3.3.2)."""
    uri = parse_uri("soap.beep://192.0.2.103:3002")
    assert isinstance(uri, AbsoluteURI)
    assert uri.scheme == "soap.beep"
    assert uri.rest == "//192.0.2.103:3002"
    assert str(uri) == "soap.beep://192.0.2.103:3002"
    assert repr(uri) == "AbsoluteURI('soap.beep://192.0.2.103:3002')"
    assert uri == AbsoluteURI("SOAP.BEEP", "//192.0.2.103:3002")
    assert hash(uri) == hash(uri.copy())
    assert uri != SipURI("x")


# ------------------------------------------------------------------------ name-addr


def test_name_addr_quoted_display_and_tag():
    """A quoted display name, a URI in <> and a tag parameter."""
    na = parse_name_addr('"Alice \\"A\\" Example" <sip:alice@example.com>;tag=1928301774')
    assert na.display_name == 'Alice "A" Example'
    assert na.tag == "1928301774"
    assert isinstance(na.uri, SipURI)
    assert na.uri.user == "alice"


def test_name_addr_token_display_without_space():
    """A token display name may touch the < (RFC 4475 §3.1.1.6)."""
    na = parse_name_addr("caller<sip:caller@example.com>;tag=323")
    assert na.display_name == "caller"
    assert na.tag == "323"


def test_addr_spec_params_belong_to_the_header():
    """In addr-spec form ;params are header params, not URI params (§20.10)."""
    na = parse_name_addr("sip:+19725552222@gw1.example.net;unknownparam;tag=5")
    assert na.display_name is None
    assert na.params == {"unknownparam": None, "tag": "5"}
    assert isinstance(na.uri, SipURI)
    assert na.uri.params == {}


def test_name_addr_uri_params_stay_in_uri():
    """Inside <> the ;params belong to the URI."""
    na = parse_name_addr("<sip:gw1.example.net;unknownparam>")
    assert na.params == {}
    assert isinstance(na.uri, SipURI)
    assert na.uri.params == {"unknownparam": None}


def test_name_addr_lws_everywhere():
    """LWS around ; and = in header params is allowed."""
    na = parse_name_addr('"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam = newvalue ;'
                         " secondparam ; q = 0.33")  # fmt: skip
    assert na.display_name == 'Quoted string ""'
    assert na.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}


def test_wildcard_contact():
    """The Contact wildcard * parses and serializes as *."""
    na = parse_name_addr(" * ")
    assert na.is_wildcard
    assert str(na) == "*"


def test_name_addr_serialization_and_with_tag():
    """str() always uses <>; with_tag adds the tag on a copy."""
    na = parse_name_addr("Bob <sip:bob@biloxi.com>")
    tagged = na.with_tag("a6c85cf")
    assert na.tag is None
    assert str(tagged) == '"Bob" <sip:bob@biloxi.com>;tag=a6c85cf'
    assert repr(tagged) == "NameAddr('\"Bob\" <sip:bob@biloxi.com>;tag=a6c85cf')"
    assert str(parse_name_addr("sip:bob@biloxi.com")) == "<sip:bob@biloxi.com>"
    copied = tagged.copy()
    copied.params["x"] = "1"
    assert "x" not in tagged.params


def test_name_addr_built_from_objects():
    """A NameAddr built from a URI object serializes it, and uri can be replaced."""
    na = NameAddr(SipURI("example.com", "bob"), "Bob", {"tag": "x"})
    assert str(na) == '"Bob" <sip:bob@example.com>;tag=x'
    na.uri = TelURI("+1555")
    assert str(na.copy()) == '"Bob" <tel:+1555>;tag=x'
    assert str(na.with_tag("y")) == '"Bob" <tel:+1555>;tag=y'


def test_name_addr_slow_path_quoted_params():
    """Quoted parameter values with ; inside survive."""
    na = parse_name_addr('<sip:a@b> ;x="a;b" ;tag=1')
    assert na.params == {"x": '"a;b"', "tag": "1"}
    assert str(na) == '<sip:a@b>;x="a;b";tag=1'


@pytest.mark.parametrize(
    "text",
    [
        "",
        '"Mr. J. User <sip:j.user@example.com>',
        "Bell, Alexander <sip:a.g.bell@example.com>",
        '"Watson, Thomas" < sip:t.watson@example.org >',
        "<sip:user@example.com",
        "<>",
        '"x" sip:a@b',
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        "<sip:a@b>;;;",
        "<sip:a@b>;tag=",
        "<sip:a@b> junk",
        '<sip:a@b>;x="unterminated',
        '"trailing backslash\\',
    ],
)
def test_bad_name_addrs(text):
    """Malformed addresses raise SipParseError(400)."""
    with pytest.raises(SipParseError) as info:
        na = parse_name_addr(text)
        na.uri  # noqa: B018 - URI errors surface on access
    assert info.value.status_hint == 400


def test_bad_uri_surfaces_on_access():
    """The URI is parsed lazily: a bad one raises only when .uri is read."""
    na = parse_name_addr("<1x:y>;tag=1")
    assert na.tag == "1"
    with pytest.raises(SipParseError):
        na.uri  # noqa: B018


# ----------------------------------------------------------------------------- Via


def test_via_fields():
    """transport, host, port and the well-known parameters."""
    via = parse_via("SIP/2.0/udp pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport;ttl=16"
                    ";maddr=239.255.255.1;received=192.0.2.1")  # fmt: skip
    assert via.transport == "UDP"
    assert via.host == "pc33.atlanta.com"
    assert via.port == 5066
    assert via.branch == "z9hG4bK776asdhds"
    assert via.rport_requested
    assert via.rport is None
    assert via.ttl == 16
    assert via.maddr == "239.255.255.1"
    assert via.received == "192.0.2.1"
    assert via.sent_by == ("pc33.atlanta.com", 5066)
    assert via.protocol == "SIP/2.0"


def test_via_rport_with_value():
    """RFC 3581 §4: a server fills rport with the source port."""
    via = parse_via("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx;rport=5070;received=192.0.2.7")
    assert via.rport_requested
    assert via.rport == 5070


def test_via_ipv6_sent_by_and_received():
    """IPv6 sent-by keeps brackets; received with or without brackets (RFC 5118 §4.5)."""
    a = parse_via("SIP/2.0/UDP [2001:db8::9:1]:6050;received=[2001:db8::9:255];branch=z9hG4bKa")
    assert a.host == "[2001:db8::9:1]"
    assert a.bare_host == "2001:db8::9:1"
    assert a.port == 6050
    assert a.received == "2001:db8::9:255"
    b = parse_via("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKa")
    assert b.received == "2001:db8::9:255"


def test_via_with_lws():
    """LWS around the slashes, before the host and around ;/= (§7.3.1, §25.1)."""
    via = parse_via("SIP  /   2.0 /UDP    192.0.2.2 : 5060 ;  branch  =   z9hG4bK9ikj8")
    assert via.transport == "UDP"
    assert via.host == "192.0.2.2"
    assert via.port == 5060
    assert via.branch == "z9hG4bK9ikj8"
    assert str(via) == "SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bK9ikj8"


def test_via_other_protocol_version():
    """A Via of another SIP version parses; the version check is the validator's."""
    via = parse_via("SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw")
    assert via.protocol == "SIP/7.0"


def test_via_serialization_and_copy():
    """str() gives the canonical form; copy() detaches params."""
    via = Via("TCP", "[::1]", 5061, {"branch": "z9hG4bKabc", "rport": None})
    assert str(via) == "SIP/2.0/TCP [::1]:5061;branch=z9hG4bKabc;rport"
    assert repr(via) == "Via('SIP/2.0/TCP [::1]:5061;branch=z9hG4bKabc;rport')"
    other = via.copy()
    other.params["received"] = "1.2.3.4"
    assert "received" not in via.params
    assert parse_via(str(via)).params == via.params


@pytest.mark.parametrize(
    "text",
    [
        "",
        ";",
        "SIP/2.0/UDP",
        "SIP/2.0 host",
        "SIP/2.0/UDP 192.0.2.15;;",
        "SIP/2.0/UDP host:0x10",
        "SIP/2.0/UDP host:70000",
        "SIP/2.0/UDP host;rport=abc",
        "SIP/2.0/UDP host;rport=0",
        "SIP/2.0/UDP host;ttl=256",
        "SIP/2.0/UDP host;ttl",
        "SIP/2.0/UDP host;received",
        "SIP/2.0/UDP host;received=",
        "SIP/2.0/UDP host;received=bad!host",
        "SIP/2.0/UDP [2001:db8::1",
        "SIP/2.0/UDP [2001:db8::1]x",
        "SIP/2.0/UDP ho st",
        "SIP/2.0/U DP host",
    ],
)
def test_bad_vias(text):
    """Malformed Via values raise SipParseError(400)."""
    with pytest.raises(SipParseError) as info:
        parse_via(text)
    assert info.value.status_hint == 400


# ---------------------------------------------------------- CSeq, Max-Forwards, etc.


def test_cseq():
    """CSeq parses number and method, tolerating LWS, and serializes back."""
    cseq = parse_cseq(" 0009   INVITE ")
    assert cseq == CSeq(9, "INVITE")
    assert str(cseq) == "9 INVITE"
    assert repr(cseq) == "CSeq(9, 'INVITE')"
    assert hash(cseq) == hash(CSeq(9, "INVITE"))
    assert cseq != "9 INVITE"
    assert parse_cseq("4294967295 NEWMETHOD").seq == 2**32 - 1


@pytest.mark.parametrize(
    "text", ["", "1", "INVITE", "1 2 INVITE", "x INVITE", "-1 INVITE", "4294967296 INVITE",
             "1 INV/ITE", "\u0661 INVITE"]
)  # fmt: skip
def test_bad_cseq(text):
    """Malformed or out-of-range CSeq values are rejected (RFC 4475 §3.1.2.4)."""
    with pytest.raises(SipParseError):
        parse_cseq(text)


def test_max_forwards():
    """Max-Forwards is 0..255 with leading zeros allowed."""
    assert parse_max_forwards("0068") == 68
    assert parse_max_forwards(" 0 ") == 0
    for bad in ("", "-1", "256", "ten", "1 2"):
        with pytest.raises(SipParseError):
            parse_max_forwards(bad)


def test_call_id():
    """Call-ID is any word without LWS."""
    assert parse_call_id(" intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{ ").startswith("intmeth")
    for bad in ("", "  ", "a b", "a\tb"):
        with pytest.raises(SipParseError):
            parse_call_id(bad)


# ----------------------------------------------------------------------- utilities


def test_split_header_values():
    """Commas inside quotes and <> do not split (§7.3.1)."""
    assert split_header_values("a") == ["a"]
    assert split_header_values("a, b ,c") == ["a", "b", "c"]
    assert split_header_values('"Doe, J" <sip:j@x;a=1,2>, <sip:k@y>') == [
        '"Doe, J" <sip:j@x;a=1,2>',
        "<sip:k@y>",
    ]
    assert split_header_values('"a\\", b" <sip:x>, c') == ['"a\\", b" <sip:x>', "c"]
    assert split_header_values("a,,b") == ["a", "", "b"]
    assert split_header_values("<unterminated, x") == ["<unterminated, x"]


def test_params_helpers():
    """parse_params and format_params are inverse on canonical text."""
    params = parse_params(' ;a=1; B ;c="x y"')
    assert params == {"a": "1", "b": None, "c": '"x y"'}
    assert format_params(params) == ';a=1;b;c="x y"'
    assert parse_params("") == {}
    assert format_params({}) == ""
    for bad in ("a=1", ";", ";a=", ";a b", ';a="x', ";=1"):
        with pytest.raises(SipParseError):
            parse_params(bad)


def test_quote_and_escape_helpers():
    """quote_string escapes quotes and backslashes; escape %-encodes unsafe chars."""
    assert quote_string('a"b\\c') == '"a\\"b\\\\c"'
    assert quote_string("plain") == '"plain"'
    assert escape("abc") == "abc"
    assert escape("a b/é") == "a%20b%2F%C3%A9"
    assert strip_brackets("[::1]") == "::1"
    assert strip_brackets("host") == "host"
