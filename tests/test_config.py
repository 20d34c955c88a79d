"""The configuration validator: every problem reported once, with file, line, section, key."""

from __future__ import annotations

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
        if isinstance(entry.default, tuple):
            raw = ", ".join(str(item) for item in entry.default)
        elif isinstance(entry.default, bool):
            raw = "yes" if entry.default else "no"
        else:
            raw = str(entry.default)
        assert entry.kind.parse(raw) == entry.default, (entry.section, entry.key)
