# mypy: disable-error-code="union-attr,arg-type,comparison-overlap,unreachable,index,misc"
# (tests poke Optional results and state attributes mypy narrows too eagerly)
"""Dictionary table tests (RFC 6733 4.5, RFC 4006 8, TS 32.299 7.2)."""

from __future__ import annotations

import pytest

from b2bua.diameter import dictionary as d


@pytest.mark.parametrize(
    ("name", "code", "vendor", "typ"),
    [
        ("Session-Id", 263, 0, d.AvpType.UTF8_STRING),
        ("Origin-Host", 264, 0, d.AvpType.DIAMETER_IDENTITY),
        ("Host-IP-Address", 257, 0, d.AvpType.ADDRESS),
        ("Event-Timestamp", 55, 0, d.AvpType.TIME),
        ("Redirect-Host", 292, 0, d.AvpType.DIAMETER_URI),
        ("Failed-AVP", 279, 0, d.AvpType.GROUPED),
        ("Inband-Security-Id", 299, 0, d.AvpType.UNSIGNED32),
        ("CC-Request-Type", 416, 0, d.AvpType.ENUMERATED),
        ("Multiple-Services-Credit-Control", 456, 0, d.AvpType.GROUPED),
        ("Value-Digits", 447, 0, d.AvpType.INTEGER64),
        ("Service-Context-Id", 461, 0, d.AvpType.UTF8_STRING),
        ("Restriction-Filter-Rule", 438, 0, d.AvpType.IP_FILTER_RULE),
        ("Service-Information", 873, 10415, d.AvpType.GROUPED),
        ("IMS-Information", 876, 10415, d.AvpType.GROUPED),
        ("Reporting-Reason", 872, 10415, d.AvpType.ENUMERATED),
        ("Time-Quota-Threshold", 868, 10415, d.AvpType.UNSIGNED32),
        ("SIP-Request-Timestamp-Fraction", 2301, 10415, d.AvpType.UNSIGNED32),
        ("Access-Network-Information", 1263, 10415, d.AvpType.OCTET_STRING),
        ("Cause-Code", 861, 10415, d.AvpType.INTEGER32),
    ],
)
def test_lookup_both_ways(name, code, vendor, typ):
    """Name and (code, vendor) lookups return the same definition."""
    defn = d.avp_by_name(name)
    assert (defn.code, defn.vendor, defn.type) == (code, vendor, typ)
    assert d.avp_by_code(code, vendor) is defn


def test_flag_rules_from_rfc_tables():
    """M MUST NOT for Error-Message, Product-Name, Firmware-Revision, Error-Reporting-Host."""
    for name in ("Error-Message", "Product-Name", "Firmware-Revision", "Error-Reporting-Host"):
        assert d.avp_by_name(name).m_rule is d.FlagRule.MUST_NOT
        assert d.avp_by_name(name).flags == 0
    assert d.avp_by_name("Origin-Host").flags == d.FLAG_M
    assert d.avp_by_name("CC-Correlation-Id").m_rule is d.FlagRule.MAY
    assert d.avp_by_name("IMS-Information").flags == d.FLAG_V | d.FLAG_M


def test_unknown_lookups():
    """Unknown codes give None; unknown names raise KeyError."""
    assert d.avp_by_code(263, 10415) is None
    with pytest.raises(KeyError):
        d.avp_by_name("No-Such-AVP")


def test_aliases():
    """Common alternative spellings resolve to the same AVP."""
    assert d.avp_by_name("Role-of-Node") is d.avp_by_name("Role-Of-Node")


def test_enum_tables():
    """Enumerated labels and values from the RFC text."""
    assert d.enum_name("Disconnect-Cause", 2) == "DO_NOT_WANT_TO_TALK_TO_YOU"
    assert d.enum_name("CC-Request-Type", 4) == "EVENT_REQUEST"
    assert d.enum_name("Final-Unit-Action", 1) == "REDIRECT"
    assert d.enum_name("Subscription-Id-Type", 99) is None
    assert d.enum_name("CC-Time", 1) is None
    assert d.avp_by_name("Reporting-Reason").enum_value("QUOTA_EXHAUSTED") == 3
    with pytest.raises(KeyError):
        d.avp_by_name("CC-Time").enum_value("X")


def test_result_codes():
    """Result-Code constants, names and the protocol-error class."""
    assert d.DIAMETER_SUCCESS == 2001
    assert d.DIAMETER_UNKNOWN_PEER == 3010
    assert d.DIAMETER_NO_COMMON_APPLICATION == 5010
    assert d.DIAMETER_CREDIT_LIMIT_REACHED == 4012
    assert d.result_code_name(5030) == "DIAMETER_USER_UNKNOWN"
    assert d.result_code_name(4003) == "ELECTION_LOST"
    assert d.result_code_name(9999) == "RESULT_9999"
    assert d.is_protocol_error(3008) and not d.is_protocol_error(5005)


def test_commands():
    """Command lookups by code and by every name form."""
    ccr = d.command_by_code(272)
    assert ccr is d.command_by_name("CCR") is d.command_by_name("Credit-Control-Answer")
    assert ccr.app_ids == frozenset({4}) and ccr.proxiable
    for name in ("Session-Id", "Service-Context-Id", "CC-Request-Number", "Destination-Realm"):
        assert ccr.request_rules[name] == (1, 1)
    assert ccr.request_rules["Multiple-Services-Credit-Control"] == (0, None)
    assert d.command_by_name("CER").request_rules["Host-IP-Address"] == (1, None)
    assert not d.command_by_name("DWR").proxiable
    assert d.command_by_code(999) is None
    assert {c.code for c in d.ALL_COMMANDS} == {257, 258, 272, 274, 275, 280, 282}


def test_rules_reference_known_avps():
    """Every AVP named in a command or group grammar exists in the dictionary."""
    names = set()
    for cmd in d.ALL_COMMANDS:
        names |= set(cmd.request_rules) | set(cmd.answer_rules)
    for defn in d.ALL_AVPS:
        if defn.rules:
            names |= set(defn.rules)
    names |= set(d.ERROR_ANSWER_RULES)
    missing = [n for n in names if n not in d.AVPS_BY_NAME]
    assert not missing


def test_lookup_tables_are_dicts():
    """Both indexes are plain dicts keyed as documented (O(1) access)."""
    assert isinstance(d.AVPS_BY_NAME, dict) and isinstance(d.AVPS_BY_CODE, dict)
    assert len(d.AVPS_BY_CODE) == len(d.ALL_AVPS)
    assert d.avp_by_name("CC-Time").fixed_size == 4
    assert d.avp_by_name("Session-Id").fixed_size is None
