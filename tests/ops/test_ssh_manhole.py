"""The manhole over SSH: key files, configuration rules, and logins with conch's client."""

from __future__ import annotations

import re
import stat
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch.ssh.keys import Key
from twisted.internet.defer import Deferred

from b2bua.config import ConfigError, parse_config_text
from b2bua.ops import passwd
from b2bua.ops.sshkeys import (
    SshKeyError,
    fingerprint,
    load_or_create_host_key,
    parse_authorized_keys,
)
from tests.support.daemon import Daemon
from tests.support.ports import free_port
from tests.support.ssh import open_console

P = ParamSpec("P")


def in_reactor(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, Deferred[None]]:
    """pytest_twisted.ensureDeferred, typed: the coroutine test runs in the reactor."""
    wrapped: Callable[P, Deferred[None]] = pytest_twisted.ensureDeferred(test)
    return wrapped


def the_reactor() -> Any:
    from twisted.internet import reactor  # noqa: TID251 - pytest-twisted's running reactor

    return reactor


def new_key() -> Key:
    return Key(ed25519.Ed25519PrivateKey.generate())


def public_line(key: Key, comment: str = "ops@laptop") -> str:
    text: bytes = key.public().toString("openssh")
    return text.decode() + f" {comment}\n"


def test_authorized_keys_are_parsed_and_a_bad_line_is_named() -> None:
    """Keys with comments are read, blank and # lines skipped; options and junk are refused."""
    first, second = new_key(), new_key()
    text = "# operators\n\n" + public_line(first) + public_line(second, "")
    assert parse_authorized_keys(text) == [first.public(), second.public()]
    with pytest.raises(SshKeyError, match="line 2: expected a public key"):
        parse_authorized_keys(public_line(first) + 'from="10.0.0.1" ' + public_line(second))
    with pytest.raises(SshKeyError, match="line 1: not a valid public key"):
        parse_authorized_keys("ssh-ed25519 AAAAnotbase64!!\n")


def test_the_host_key_is_created_once_owner_only_and_then_kept(tmp_path: Path) -> None:
    """No file: an Ed25519 key is written with mode 0600; the next start loads the same one."""
    path = tmp_path / "host_key"
    key, created = load_or_create_host_key(str(path))
    assert created and key.sshType() == b"ssh-ed25519" and not key.isPublic()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created = load_or_create_host_key(str(path))
    assert not created and fingerprint(again) == fingerprint(key)
    assert re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", fingerprint(key))
    (tmp_path / "public").write_text(public_line(key))
    with pytest.raises(SshKeyError, match="is a public key"):
        load_or_create_host_key(str(tmp_path / "public"))
    (tmp_path / "junk").write_text("not a key\n")
    with pytest.raises(SshKeyError, match="SSH host key"):
        load_or_create_host_key(str(tmp_path / "junk"))


def problems(text: str, tmp_path: Path) -> list[str]:
    try:
        parse_config_text(text, str(tmp_path / "b2bua.conf"))
    except ConfigError as err:
        return err.problems
    return []


def test_ssh_settings_that_cannot_work_are_configuration_errors(tmp_path: Path) -> None:
    """Off loopback without authorized keys, or without a host key file: refused at start."""
    (tmp_path / "keys").write_text(public_line(new_key()))
    (tmp_path / "users").write_text(f"ops:{passwd.hash_password('pw', iterations=1000)}\n")
    host = f"ssh_host_key = {tmp_path}/host_key\n"
    wide = problems(f"[manhole]\nssh_listen = tcp:2222\n{host}passwd = users\n", tmp_path)
    assert len(wide) == 1 and "non-loopback address needs [manhole] ssh_authorized_keys" in wide[0]
    local = "ssh_listen = tcp:2222:interface=127.0.0.1\n"
    no_host_key = problems(f"[manhole]\n{local}ssh_authorized_keys = keys\n", tmp_path)
    assert len(no_host_key) == 1 and "needs [manhole] ssh_host_key" in no_host_key[0]
    nobody = problems(f"[manhole]\n{local}{host}", tmp_path)
    assert len(nobody) == 1 and "ssh_authorized_keys (or passwd, on loopback)" in nobody[0]
    (tmp_path / "bad_keys").write_text("ssh-rsa nope\n")
    bad = problems(f"[manhole]\n{local}{host}ssh_authorized_keys = bad_keys\n", tmp_path)
    assert len(bad) == 1 and "line 1: not a valid public key" in bad[0]
    assert problems(f"[manhole]\n{local}{host}passwd = users\n", tmp_path) == []
    wide_ok = f"[manhole]\nssh_listen = tcp:2222\n{host}ssh_authorized_keys = keys\n"
    assert problems(wide_ok, tmp_path) == []


# ------------------------------------------------------------------ the real daemon


@in_reactor
async def test_ssh_login_with_the_right_key_only_runs_the_helpers(tmp_path: Path) -> None:
    """The daemon creates its host key (0600) and logs its fingerprint; the listed key gets
    a prompt where help() and calls() run; another key is refused and logged."""
    reactor = the_reactor()
    operator, stranger = new_key(), new_key()
    (tmp_path / "authorized_keys").write_text(public_line(operator))
    ssh_port = free_port()
    config = tmp_path / "b2bua.conf"
    config.write_text(
        f"[sip]\nlisten = udp:127.0.0.1:{free_port()}\n"
        "[route:all]\nnext_hop = 127.0.0.1:5999\n[metrics]\nlisten =\n"
        f"[manhole]\nssh_listen = tcp:{ssh_port}:interface=127.0.0.1\n"
        "ssh_host_key = host_key\nssh_authorized_keys = authorized_keys\n"
    )
    daemon = Daemon(config, log_path=tmp_path / "b2bua.log")
    try:
        daemon.wait_for_log("manhole SSH listening on")
        host_key_file = tmp_path / "host_key"
        assert stat.S_IMODE(host_key_file.stat().st_mode) == 0o600
        expected = fingerprint(Key.fromFile(str(host_key_file)))
        assert f"host key {expected}" in daemon.log_text()
        assert "manhole: SSH host key created in" in daemon.log_text()

        shell, host_key = await open_console(reactor, ssh_port, "alice", operator)
        assert host_key is not None and fingerprint(host_key) == expected
        assert "kill(id, reason='operator')" in await shell.run(reactor, "help()")
        assert await shell.run(reactor, "calls()") == "no calls"
        assert (await shell.run(reactor, "routes()")).splitlines()[1].split()[0] == "all"
        shell.conn.transport.loseConnection()

        with pytest.raises(Exception):  # noqa: B017 - the server closes: no more methods
            await open_console(reactor, ssh_port, "mallory", stranger)
        daemon.wait_for_log("manhole: SSH key refused for 'mallory'")
        assert "manhole: alice logged in over SSH with key SHA256:" in daemon.log_text()
    finally:
        status = daemon.stop()
    assert status == 0, daemon.log_text()
    assert "Traceback" not in daemon.log_text(), daemon.log_text()


@in_reactor
async def test_on_loopback_a_passwd_user_logs_in_over_ssh_with_the_password(
    tmp_path: Path,
) -> None:
    """ssh_listen on loopback with passwd only: the right password gets a prompt, a wrong
    one is refused."""
    reactor = the_reactor()
    (tmp_path / "users").write_text(f"alice:{passwd.hash_password('s3cret', iterations=1000)}\n")
    ssh_port = free_port()
    config = tmp_path / "b2bua.conf"
    config.write_text(
        f"[sip]\nlisten = udp:127.0.0.1:{free_port()}\n[metrics]\nlisten =\n"
        f"[manhole]\nssh_listen = tcp:{ssh_port}:interface=127.0.0.1\n"
        "ssh_host_key = host_key\npasswd = users\n"
    )
    daemon = Daemon(config, log_path=tmp_path / "b2bua.log")
    try:
        daemon.wait_for_log("manhole SSH listening on")
        shell, _ = await open_console(reactor, ssh_port, "alice", password="s3cret")
        assert await shell.run(reactor, "calls()") == "no calls"
        shell.conn.transport.loseConnection()
        with pytest.raises(Exception):  # noqa: B017 - the server closes: no more methods
            await open_console(reactor, ssh_port, "alice", password="wrong")
        daemon.wait_for_log("manhole: login refused for 'alice'")
    finally:
        status = daemon.stop()
    assert status == 0, daemon.log_text()
    log = daemon.log_text()
    assert "manhole: alice logged in" in log and "s3cret" not in log and "Traceback" not in log


def test_a_second_start_keeps_the_host_key(tmp_path: Path) -> None:
    """An existing host key file is used as it is: same fingerprint, no 'created' line."""
    key, _ = load_or_create_host_key(str(tmp_path / "host_key"))
    (tmp_path / "authorized_keys").write_text(public_line(new_key()))
    config = tmp_path / "b2bua.conf"
    config.write_text(
        f"[sip]\nlisten = udp:127.0.0.1:{free_port()}\n[metrics]\nlisten =\n"
        f"[manhole]\nssh_listen = tcp:{free_port()}:interface=127.0.0.1\n"
        "ssh_host_key = host_key\nssh_authorized_keys = authorized_keys\n"
    )
    daemon = Daemon(config, log_path=tmp_path / "b2bua.log")
    try:
        daemon.wait_for_log("manhole SSH listening on")
    finally:
        assert daemon.stop() == 0
    log = daemon.log_text()
    assert f"host key {fingerprint(key)}" in log and "created" not in log
