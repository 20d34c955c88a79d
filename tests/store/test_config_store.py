"""[store] in the configuration file: URLs with TLS and ACL users, leases, clear refusals."""

from __future__ import annotations

import pytest

from b2bua.config import ConfigError, RedisUrl, parse_config_text


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text, "b2bua.conf")
    return caught.value.problems


def test_defaults_keep_nothing() -> None:
    """Without [store], mode is memory and Redis is the local default."""
    store = parse_config_text("").store
    assert (store.mode, store.adopt) == ("memory", "end")
    assert str(store.url) == "redis://127.0.0.1:6379/0"


def test_rediss_url_with_acl_user_is_parsed_and_printed_masked() -> None:
    """rediss://user:password@host:port/db: TLS on, user and password kept, printed masked."""
    store = parse_config_text(
        "[store]\nmode = realtime\nurl = rediss://b2bua:p%40ss%3Aword@redis.example.net:6380/3\n"
    ).store
    assert store.url == RedisUrl("redis.example.net", 6380, 3, "p@ss:word", "b2bua", True)
    assert str(store.url) == "rediss://b2bua:***@redis.example.net:6380/3"
    assert "p@ss" not in repr(store)


def test_sentinel_addresses_are_parsed() -> None:
    """sentinels: host:port items, IPv6 in brackets."""
    store = parse_config_text("[store]\nsentinels = 10.0.0.1:26379, [::1]:26380\n").store
    assert store.sentinels == (("10.0.0.1", 26379), ("::1", 26380))


def test_ocs_redis_url_still_refuses_tls_and_users() -> None:
    """[ocs] redis_url keeps its narrower syntax: no rediss://, no ACL user."""
    (line,) = problems("[ocs]\nredis_url = rediss://u:p@h:1/0\n")
    assert "[ocs] redis_url = rediss://u:p@h:1/0: expected redis://[:password@]host" in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[store]\nlease_time = 5\nrenew_interval = 5\n",
            "b2bua.conf:3: [store] renew_interval = 5: must be shorter than lease_time",
        ),
        (
            "[store]\nmode = redis\n",
            "b2bua.conf:2: [store] mode = redis: expected one of memory, realtime, shutdown",
        ),
        (
            "[store]\nsentinels = 10.0.0.1\n",
            "b2bua.conf:2: [store] sentinels = 10.0.0.1: expected a comma-separated list of "
            "host:port",
        ),
        (
            "[store]\nurl = http://h\n",
            "b2bua.conf:2: [store] url = http://h: expected redis[s]://[[user]:password@]host",
        ),
        (
            "[store]\nurl = rediss://h\nsentinels = h:26379\n",
            "b2bua.conf:2: [store] url = rediss://h: rediss:// cannot be combined with sentinels",
        ),
        (
            "[store]\ninstance_id = a b\n",
            "b2bua.conf:2: [store] instance_id = a b: expected letters, digits",
        ),
    ],
)
def test_mistakes_name_file_line_section_key_and_expectation(text: str, expected: str) -> None:
    """Each mistake is one line with file, line, section, key, value and what was expected."""
    (line,) = problems(text)
    assert line.startswith(expected), line
