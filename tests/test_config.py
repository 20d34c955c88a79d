"""The configuration validator: every problem reported once, with file, line, section, key."""

from __future__ import annotations

from pathlib import Path

import pytest

from b2bua.config import ConfigError, ListenAddress, load_config, parse_config_text, schema


def problems_of(text: str, path: str = "conf/test.conf") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, path)
    return info.value.problems


def test_empty_file_gives_defaults() -> None:
    """A file with no sections yields every default."""
    config = parse_config_text("", "x.conf")
    assert config.sip.listen == (ListenAddress("udp", "127.0.0.1", 5060),)
    assert config.sip.t1 == 0.5
    assert config.log.level == "info"


def test_negative_timer_names_file_line_section_key_and_expectation() -> None:
    """A value out of range gives one line naming where it is and what is expected."""
    assert problems_of("[sip]\n\nt1 = -3\n") == [
        "conf/test.conf:3: [sip] t1 = -3: expected a number > 0 and <= 60"
    ]


def test_misspelt_key_is_named_with_a_suggestion() -> None:
    """An unknown key is refused, and the closest known key is suggested."""
    (problem,) = problems_of("[sip]\nmax_mesage_size = 100\n")
    assert problem.startswith("conf/test.conf:2: [sip] max_mesage_size: unknown key")
    assert "did you mean 'max_message_size'?" in problem


def test_unknown_section_is_refused() -> None:
    """An unknown section is a problem, listing the sections that exist."""
    (problem,) = problems_of("[sipp]\nlisten = udp:127.0.0.1:5060\n")
    assert problem.startswith("conf/test.conf:1: [sipp]: unknown section (did you mean 'sip'?)")


def test_every_problem_is_reported_at_once() -> None:
    """Several mistakes give several lines, in file order, in one run."""
    problems = problems_of("[sip]\nt1 = x\nt2 = 0\nbogus = 1\n[log]\nlevel = loud\n")
    assert [p.split(":")[1] for p in problems] == ["2", "3", "4", "6"]
    assert "expected one of debug, info, warn, error, critical" in problems[-1]


def test_integer_range_is_checked() -> None:
    """An integer parameter refuses text and values outside its range."""
    assert problems_of("[sip]\nmax_message_size = big\n") == [
        "conf/test.conf:2: [sip] max_message_size = big: expected an integer from 1024 to 1048576"
    ]
    assert len(problems_of("[sip]\nmax_message_size = 10\n")) == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("udp:127.0.0.1:5060", [ListenAddress("udp", "127.0.0.1", 5060)]),
        (
            "udp:127.0.0.1:5060, tls:[::1]:5061",
            [ListenAddress("udp", "127.0.0.1", 5060), ListenAddress("tls", "::1", 5061)],
        ),
        ("TCP:0.0.0.0:5070", [ListenAddress("tcp", "0.0.0.0", 5070)]),
    ],
)
def test_listen_addresses_parse(raw: str, expected: list[ListenAddress]) -> None:
    """Listen lists accept udp/tcp/tls with IPv4 or bracketed IPv6 addresses."""
    assert list(parse_config_text(f"[sip]\nlisten = {raw}\n").sip.listen) == expected


@pytest.mark.parametrize(
    "raw", ["", "sctp:127.0.0.1:5060", "udp:localhost:5060", "udp:127.0.0.1:0", "udp:::1:5060"]
)
def test_bad_listen_addresses_are_refused(raw: str) -> None:
    """Listen items with an unknown transport, a host name, port 0 or bare IPv6 are refused."""
    (problem,) = problems_of(f"[sip]\nlisten = {raw}\n")
    assert "[sip] listen" in problem and "expected a comma-separated list" in problem


def test_booleans() -> None:
    """Booleans accept the usual spellings and refuse others."""
    assert parse_config_text(
        "[sip]\ntls_require_client_certificate = Yes\n"
    ).sip.tls_require_client_certificate
    assert len(problems_of("[sip]\ntls_require_client_certificate = maybe\n")) == 1


def test_unreadable_file_parameter_is_refused(tmp_path) -> None:
    """A path parameter naming a missing file is refused at validation time."""
    missing = tmp_path / "nope.pem"
    (problem,) = problems_of(f"[sip]\ntls_certificate = {missing}\n")
    assert "expected the path of a readable file" in problem


def test_duplicate_key_is_refused() -> None:
    """A key given twice in a section is a problem, not a silent override."""
    assert problems_of("[sip]\nt1 = 1\nt1 = 2\n") == [
        "conf/test.conf:3: [sip] t1: key appears twice"
    ]


def test_key_outside_section_is_refused() -> None:
    """A key before any section header is reported with its line."""
    (problem,) = problems_of("t1 = 1\n")
    assert problem.startswith("conf/test.conf:1: a key before any [section] header")


def test_missing_file_is_reported(tmp_path) -> None:
    """An unreadable configuration file gives one message naming it."""
    path = tmp_path / "absent.conf"
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.problems == [
        f"{path}: cannot read the configuration file: No such file or directory"
    ]


def test_quotes_around_values_are_removed() -> None:
    """A value in matching quotes is read without them."""
    assert parse_config_text('[log]\nlevel = "debug"\n').log.level == "debug"


def test_schema_defaults_parse_back() -> None:
    """Every declared default is itself a value the validator accepts."""
    for entry in schema():
        if entry.required:
            continue  # a required parameter ([peer:NAME] uri) has no default
        if isinstance(entry.default, tuple):
            raw = ", ".join(str(item) for item in entry.default)
        elif isinstance(entry.default, bool):
            raw = "yes" if entry.default else "no"
        else:
            raw = str(entry.default)
        assert entry.kind.parse(raw) == entry.default, (entry.section, entry.key)


# -- [charging] ----------------------------------------------------------------------------


def test_charging_defaults_are_kamailios() -> None:
    """[charging] defaults are ims_charging's, and build the session's ChargingConfig."""
    from b2bua.charging.session import DEFAULT_RESULT_CODES, Ccfh, ChargingConfig
    from b2bua.charging.units import BillingRounding

    charging = parse_config_text("").charging
    assert (charging.interim_update_credits, charging.timer_buffer) == (30, 8)
    assert (charging.ro_auth_expiry, charging.single_ro_session_per_dialog) == (7200, 0)
    assert (charging.vendor_specific_chargeinfo, charging.vendor_specific_id) == (0, 10)
    assert (charging.custom_user, charging.app_provided_party) == ("", "")
    assert charging.charging_config() == ChargingConfig(
        interim_update_credits=30,
        timer_buffer=8,
        ro_auth_expiry=7200,
        billing_rounding=BillingRounding.UP,
        failure_handling=Ccfh.TERMINATE,
        reservation_units=30,
        result_codes=dict(DEFAULT_RESULT_CODES),
    )


def test_charging_defaults_build_the_message_settings() -> None:
    """The Service-Context-Id, service ids, rating groups and node come from [charging]."""
    settings = parse_config_text("").charging.ro_settings()
    assert settings.service_context_id == "ext.01.001.8.32260@3gpp.org"
    assert (settings.voice_service_identifier, settings.voice_rating_group) == (1000, 100)
    assert (settings.video_service_identifier, settings.video_rating_group) == (1001, 200)
    assert settings.node_functionality == 6


def test_charging_values_are_read() -> None:
    """Every [charging] kind reads its values: numbers, choices, texts and the code map."""
    from b2bua.charging.session import Ccfh
    from b2bua.charging.units import BillingRounding

    charging = parse_config_text(
        "[charging]\n"
        "interim_update_credits = 60\ntimer_buffer = 0\nsingle_ro_session_per_dialog = 1\n"
        "service_context_id_ext = \nservice_context_id_mnc = 260\n"
        "service_context_id_mcc = 262\nservice_context_id_release = 11\n"
        "service_context_id_root = 32275@3gpp.org\n"
        "custom_user = X-Charged-Party\nnode_functionality = 0\n"
        "billing_rounding = Nearest\nfailure_handling = retry_and_terminate\n"
        "result_code_map = 4010:403 Forbidden, 5031 : 480 Temporarily Unavailable\n"
        "reservation_units = 0\n"
    ).charging
    config = charging.charging_config()
    assert (config.interim_update_credits, config.timer_buffer) == (60, 0)
    assert config.billing_rounding is BillingRounding.NEAREST
    assert config.failure_handling is Ccfh.RETRY_AND_TERMINATE
    assert config.reservation_units == 0
    assert dict(config.result_codes) == {
        4010: (403, "Forbidden"),
        5031: (480, "Temporarily Unavailable"),
    }
    assert config.reject_for(4012).sip_status == 402  # not listed: 402 with the code
    settings = charging.ro_settings()
    assert settings.service_context_id == "260.262.11.32275@3gpp.org"
    assert (settings.custom_user, settings.node_functionality) == ("X-Charged-Party", 0)


def test_empty_result_code_map_maps_nothing() -> None:
    """An empty result_code_map answers every refusal with 402 and the code."""
    config = parse_config_text("[charging]\nresult_code_map =\n").charging.charging_config()
    assert dict(config.result_codes) == {}
    assert config.reject_for(4010).reason == "Payment Required (4010)"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("timer_buffer = -1", "expected an integer >= 0"),
        ("interim_update_credits = 0", "expected an integer >= 1"),
        ("single_ro_session_per_dialog = 2", "expected an integer from 0 to 1"),
        ("service_context_id_mcc = 12", "expected a mobile country code of 3 digits"),
        ("service_context_id_mnc = 1x", "expected a mobile network code of 2 or 3 digits"),
        ("voice_rating_group = 4294967296", "expected an integer from 0 to 4294967295"),
        ("billing_rounding = half", "expected one of up, nearest, down"),
        ("failure_handling = retry", "expected one of terminate, continue, retry_and_terminate"),
        ("custom_user = X Charged", "expected a SIP header name"),
        ("result_code_map = 4010:200 OK", "expected a comma-separated list of result_code"),
        ("result_code_map = 4010:402", "is not"),
        ("result_code_map = 4010:402 A, 4010:403 B", "Result-Code 4010 appears twice"),
    ],
)
def test_charging_mistakes_are_reported(line: str, expected: str) -> None:
    """A bad [charging] value is one problem naming the key and what was expected."""
    (problem,) = problems_of(f"[charging]\n{line}\n")
    key = line.partition(" =")[0]
    assert problem.startswith(f"conf/test.conf:2: [charging] {key} = ")
    assert expected in problem


# -- [ocs] ---------------------------------------------------------------------------------


def test_ocs_defaults() -> None:
    """[ocs] is off by default, listens on aaa://127.0.0.1:3868, voice/video/SMS tariffs."""
    from b2bua.ocs.rating import Rating

    ocs = parse_config_text("").ocs
    assert not ocs.enabled
    assert (ocs.listen.tls, ocs.listen.host, ocs.listen.port) == (False, "127.0.0.1", 3868)
    assert (ocs.origin_host, ocs.origin_realm) == ("ocs.lab.example", "lab.example")
    assert (ocs.backend, ocs.accounts, ocs.ledger) == ("memory", "", "")
    assert (ocs.final_unit_style, ocs.validity_time, ocs.stale_grace) == ("fui", 600, 60)
    assert dict(ocs.rates.tariffs) == dict(Rating.default().tariffs)
    assert str(ocs.redis_url) == "redis://127.0.0.1:6379/0"


def test_ocs_values_parse(tmp_path: Path) -> None:
    """Rates with kinds and default units, a Redis URL with password and database, files."""
    from b2bua.ocs.rating import Tariff, UnitKind

    accounts = tmp_path / "accounts.json"
    accounts.write_text('{"accounts": []}')
    ocs = parse_config_text(
        "[ocs]\nenabled = yes\nlisten = aaa://[::1]:3999\nbackend = redis\n"
        "redis_url = redis://:s3cret@redis.lab:6380/2\n"
        f"accounts = {accounts}\nledger = {tmp_path / 'new.jsonl'}\n"
        "rates = 100:1, 200:3, 300:2:events, 400:0:seconds:60\nfinal_unit_style = 4012\n"
    ).ocs
    assert ocs.enabled and (ocs.listen.host, ocs.listen.port) == ("::1", 3999)
    url = ocs.redis_url
    assert (url.host, url.port, url.db, url.password) == ("redis.lab", 6380, 2, "s3cret")
    assert "s3cret" not in str(url)
    assert ocs.rates.tariff(200) == Tariff(UnitKind.SECONDS, 3, 30)
    assert ocs.rates.tariff(300) == Tariff(UnitKind.EVENTS, 2, 1)
    assert ocs.rates.tariff(400) == Tariff(UnitKind.SECONDS, 0, 60)
    assert ocs.final_unit_style == "4012"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("listen = aaas://127.0.0.1:5658", "aaas:// (TLS) is not supported here"),
        ("listen = aaa://ocs.lab:3868", "is not an IP address"),
        ("listen = 127.0.0.1:3868", "expected aaa://ADDRESS:PORT"),
        ("origin_host = not a host", "expected a DiameterIdentity"),
        ("backend = postgres", "expected one of memory, redis"),
        ("redis_url = http://127.0.0.1", "expected redis://"),
        ("redis_url = redis://127.0.0.1:99999", "out of range"),
        ("accounts = /nonexistent/accounts.json", "expected the path of a readable file"),
        ("ledger = /nonexistent/dir/ledger.jsonl", "expected the path of a writable file"),
        ("final_unit_style = both", "expected one of fui, 4012"),
        ("validity_time = 0", "expected an integer from 1 to 86400"),
        ("stale_grace = -1", "expected an integer from 0 to 86400"),
        ("rates = 100", "is not"),
        ("rates = 100:1:minutes", "'minutes' is not a kind"),
        ("rates = 100:1, 100:2", "rating group 100 repeated"),
        ("rates =", "expected a comma-separated list of rating_group:rate"),
        ("default_rating_group = -1", "expected an integer from 0 to 4294967295"),
    ],
)
def test_ocs_mistakes_are_reported(line: str, expected: str) -> None:
    """A bad [ocs] value is one problem naming the key and what was expected."""
    (problem,) = problems_of(f"[ocs]\n{line}\n")
    key = line.partition(" =")[0]
    assert problem.startswith(f"conf/test.conf:2: [ocs] {key} = ")
    assert expected in problem


def test_shipped_ocs_config_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    """conf/ocs.conf holds a valid [ocs] with the demo accounts and a ledger beside it."""
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    config = load_config("conf/ocs.conf")
    assert config.ocs.accounts == "conf/accounts.json"
    assert config.ocs.ledger == "conf/ocs-ledger.jsonl"


# -- [diameter] and [peer:NAME] -------------------------------------------------------------


def test_diameter_defaults_are_kamailios() -> None:
    """[diameter] defaults: ims_charging's latency logging, RFC Tx/Tw/Tc, no listener."""
    diameter = parse_config_text("").diameter
    assert (diameter.origin_host, diameter.destination_host, diameter.ro_forced_peer) == (
        "",
        "",
        "",
    )
    assert diameter.cdp_event_latency is True
    assert (diameter.cdp_event_threshold, diameter.cdp_event_latency_log) == (500, 0)
    assert (diameter.tx_timeout, diameter.watchdog_interval, diameter.reconnect_interval) == (
        10.0,
        30.0,
        30.0,
    )
    assert diameter.listen == ()
    assert diameter.tls_require_client_certificate is True
    assert parse_config_text("").peers == ()


def test_peers_are_named_sections_with_uris() -> None:
    """Each [peer:NAME] becomes a PeerSettings; URIs default their port by scheme."""
    config = parse_config_text(
        "[peer:ocs1]\nuri = aaa://ocs1.example.net;transport=tcp\nrealm = example.net\n"
        "[peer:ocs2]\nuri = aaas://[2001:db8::2]:5999\npriority = 2\nhost = ocs2.example.net\n"
        "accept_incoming = yes\n"
    )
    first, second = config.peers
    assert (first.name, str(first.uri), first.uri.tls, first.priority) == (
        "ocs1",
        "aaa://ocs1.example.net:3868",
        False,
        1,
    )
    assert (first.realm, first.host, first.accept_incoming) == ("example.net", "", False)
    assert (second.name, second.uri.host, second.uri.port, second.uri.tls) == (
        "ocs2",
        "2001:db8::2",
        5999,
        True,
    )
    assert str(second.uri) == "aaas://[2001:db8::2]:5999"
    assert second.uri.host_is_ip and not first.uri.host_is_ip
    assert (second.priority, second.host, second.accept_incoming) == (2, "ocs2.example.net", True)
    assert str(parse_config_text("[peer:x]\nuri = aaas://ocs\n").peers[0].uri) == "aaas://ocs:5658"


def test_peer_without_uri_is_refused() -> None:
    """uri is required: a [peer:NAME] without it is one problem naming the section."""
    (problem,) = problems_of("[peer:ocs1]\nrealm = example.net\n")
    assert problem.startswith("conf/test.conf:1: [peer:ocs1] uri: missing; expected aaa://")


@pytest.mark.parametrize(
    ("section", "line", "expected"),
    [
        ("peer:a", "uri = http://ocs.example.net", "expected aaa://HOST:PORT"),
        ("peer:a", "uri = aaa://ocs.example.net:0", "port 0 is out of range"),
        ("peer:a", "uri = aaa://ocs.example.net;transport=sctp", "only ;transport=tcp"),
        ("peer:a", "uri = aaa://[ocs.example.net]", "expected aaa://HOST:PORT"),
        ("peer:a", "uri = aaa://[fe80::zz]", "expected aaa://HOST:PORT"),
        ("peer:a", "uri = aaa://[1.2.3]", "is not an IP address"),
        ("peer:a", "priority = -1", "expected an integer from 0 to 65535"),
        ("peer:a", "host = not a host", "expected a DiameterIdentity"),
        ("peer:a", "accept_incoming = maybe", "expected a boolean"),
        ("diameter", "listen = aaa://localhost:3868", "is not an IP address"),
        ("diameter", "origin_host = -bad-.example.com", "expected a DiameterIdentity"),
        ("diameter", "origin_realm = bad realm", "expected a Diameter realm"),
        ("diameter", "watchdog_interval = 5", "expected a number >= 6 and <= 3600"),
        ("diameter", "tx_timeout = 0", "expected a number > 0 and <= 300"),
        ("diameter", "cdp_event_latency_log = 4", "expected an integer from -1 to 3"),
        ("diameter", "tls_certificate = /nonexistent.pem", "expected the path of a readable"),
    ],
)
def test_diameter_mistakes_are_reported(section: str, line: str, expected: str) -> None:
    """A bad [diameter] or [peer:NAME] value is one problem naming the key and the rule."""
    text = f"[{section}]\n{line}\n"
    if section.startswith("peer:") and not line.startswith("uri"):
        text += "uri = aaa://ocs.example.net\n"
    problems = problems_of(text)
    key = line.partition(" =")[0]
    (problem,) = [p for p in problems if f"[{section}] {key}" in p]
    assert problem.startswith(f"conf/test.conf:2: [{section}] {key} = ")
    assert expected in problem


def test_listen_lists_several_uris() -> None:
    """[diameter] listen takes TCP and TLS listeners with IPv4 or IPv6 addresses."""
    listen = parse_config_text(
        "[diameter]\nlisten = aaa://127.0.0.1:3868, aaas://[::1]\n"
    ).diameter.listen
    assert [str(uri) for uri in listen] == ["aaa://127.0.0.1:3868", "aaas://[::1]:5658"]


def test_calls_section_parses_networks_headers_and_timers() -> None:
    """[calls]: trusted networks, pass_headers, session timers and limits."""
    calls = parse_config_text(
        "[calls]\ntrusted = 10.0.0.1, 192.0.2.0/24, 2001:db8::/32\n"
        "pass_headers = P-Asserted-Identity, History-Info\nmax_calls = 500\n"
        "session_expires = 0\nmin_se = 30\n"
    ).calls
    assert [str(network) for network in calls.trusted] == [
        "10.0.0.1/32",
        "192.0.2.0/24",
        "2001:db8::/32",
    ]
    assert calls.pass_headers == ("P-Asserted-Identity", "History-Info")
    assert (calls.max_calls, calls.session_expires, calls.min_se) == (500, 0, 30)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("trusted = 10.0.0.300", "a comma-separated list of IP addresses or networks"),
        ("pass_headers = Via, Privacy", "b2bua writes via itself"),
        ("pass_headers = Bad Header", "header field names"),
        ("min_se = 0", "an integer from 1 to 86400"),
    ],
)
def test_calls_section_refuses_bad_values(line: str, expected: str) -> None:
    """Bad networks, headers b2bua writes itself and out-of-range timers are refused."""
    (problem,) = problems_of(f"[calls]\n{line}\n")
    assert problem.startswith(f"conf/test.conf:2: [calls] {line.partition(' =')[0]} = ")
    assert expected in problem


def test_route_sections_are_named_and_parsed() -> None:
    """[route:NAME] sections become a tuple of routes with their match and charging keys."""
    routes = parse_config_text(
        "[route:pstn]\npriority = 10\nsource = 10.1.0.0/24\nuser_prefix = +49, 0049\n"
        "next_hop = [2001:db8::7]:5070;transport=tcp\ncharging = orig\n"
        "incoming_trunk_id = in1\n[route:rest]\n"
    ).routes
    assert [route.name for route in routes] == ["pstn", "rest"]
    pstn = routes[0]
    assert pstn.user_prefix == ("+49", "0049")
    assert pstn.next_hop == "[2001:db8::7]:5070;transport=tcp"
    assert (pstn.charging, pstn.incoming_trunk_id, pstn.reservation_units) == ("orig", "in1", 0)
    assert routes[1].next_hop == "" and routes[1].charging == "off"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("next_hop = 10.0.0.1:99999", "host[:port][;transport=udp|tcp|tls]"),
        ("next_hop = 10.0.0.1;transport=sctp", "host[:port][;transport=udp|tcp|tls]"),
        ("charging = both", "one of off, orig, term"),
        ("source = somewhere", "IP addresses or networks"),
    ],
)
def test_route_section_refuses_bad_values(line: str, expected: str) -> None:
    """A next hop that is not host:port;transport, an unknown charging mode..."""
    (problem,) = problems_of(f"[route:x]\n{line}\n")
    assert problem.startswith(f"conf/test.conf:2: [route:x] {line.partition(' =')[0]} = ")
    assert expected in problem


def test_relative_paths_are_taken_from_the_config_files_directory(tmp_path) -> None:
    """A relative path in a value is resolved against the directory of the configuration file."""
    (tmp_path / "cert.pem").write_text("x")
    config_file = tmp_path / "b2bua.conf"
    config_file.write_text("[sip]\ntls_certificate = cert.pem\n")
    assert load_config(str(config_file)).sip.tls_certificate == str(tmp_path / "cert.pem")


def test_metrics_and_cdr_defaults_and_values(tmp_path) -> None:
    """[metrics] listens on loopback 9201 by default; [cdr] is off until a file is named."""
    config = parse_config_text("", "x.conf")
    assert config.metrics.listen == "tcp:9201:interface=127.0.0.1"
    assert (config.cdr.file, config.cdr.max_bytes, config.cdr.keep) == ("", 0, 5)
    config_file = tmp_path / "b2bua.conf"
    config_file.write_text(
        "[metrics]\nlisten =\n[cdr]\nfile = cdr.jsonl\nmax_bytes = 1000000\nkeep = 2\n"
    )
    config = load_config(str(config_file))
    assert config.metrics.listen == ""
    assert config.cdr.file == str(tmp_path / "cdr.jsonl")
    assert (config.cdr.max_bytes, config.cdr.keep) == (1000000, 2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[metrics]\nlisten = http://0.0.0.0:9090\n", "Twisted server endpoint"),
        ("[cdr]\nfile = /nonexistent-dir/cdr.jsonl\n", "writable file"),
        ("[cdr]\nmax_bytes = -1\n", "an integer from 0"),
        ("[cdr]\nkeep = many\n", "an integer from 0 to 1000"),
    ],
)
def test_metrics_and_cdr_refuse_bad_values(text: str, expected: str) -> None:
    """A listen value that is no endpoint string, an unwritable CDR file, bad numbers."""
    (problem,) = problems_of(text)
    assert expected in problem


def _manhole_passwd(tmp_path: Path) -> Path:
    from b2bua.ops.passwd import hash_password

    path = tmp_path / "manhole.passwd"
    path.write_text(f"alice:{hash_password('pw', iterations=1000)}\n")
    return path


def test_manhole_is_off_by_default_and_takes_an_endpoint_and_a_passwd_file(tmp_path) -> None:
    """[manhole] defaults to no console; listen and a relative passwd path are read."""
    assert parse_config_text("").manhole.listen == ""
    _manhole_passwd(tmp_path)
    config_file = tmp_path / "b2bua.conf"
    config_file.write_text(
        "[manhole]\nlisten = tcp6:2323:interface=\\:\\:1\npasswd = manhole.passwd\n"
    )
    config = load_config(str(config_file))
    assert config.manhole.listen == "tcp6:2323:interface=\\:\\:1"
    assert config.manhole.passwd == str(tmp_path / "manhole.passwd")


def test_manhole_on_a_public_address_without_passwd_is_one_line() -> None:
    """Binding every address (or a non-loopback one) without a passwd file is refused."""
    for listen in ("tcp:2323", "tcp:2323:interface=192.0.2.7"):
        assert problems_of(f"[manhole]\nlisten = {listen}\n") == [
            f"conf/test.conf:2: [manhole] listen = {listen}: "
            "a console on a non-loopback address needs [manhole] passwd"
        ]
    (problem,) = problems_of("[manhole]\nlisten = tcp:2323:interface=127.0.0.1\n")
    assert "always asks for a password: set [manhole] passwd" in problem


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("listen = telnet:2323", "a Twisted server endpoint tcp:PORT"),
        ("listen = tcp:70000", "a Twisted server endpoint tcp:PORT"),
        ("listen = tcp:2323:interface=localhost", "interface must be an IP address"),
        ("passwd = /nonexistent/manhole.passwd", "readable passwd file"),
    ],
)
def test_manhole_refuses_bad_values(line: str, expected: str) -> None:
    """A listen value that is no TCP endpoint string, or a passwd file that cannot be read."""
    (problem,) = problems_of(f"[manhole]\n{line}\n")
    assert problem.startswith("conf/test.conf:2: [manhole] ") and expected in problem


def test_manhole_passwd_with_a_plain_text_password_is_refused(tmp_path) -> None:
    """A passwd line that is not user:$pbkdf2-sha256$... names the line."""
    (tmp_path / "manhole.passwd").write_text("alice:hunter2\n")
    config_file = tmp_path / "b2bua.conf"
    config_file.write_text(
        "[manhole]\nlisten = tcp:2323:interface=127.0.0.1\npasswd = manhole.passwd\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(str(config_file))
    (problem,) = info.value.problems
    assert "[manhole] passwd" in problem and "line 1: the hash of 'alice'" in problem
