"""The manhole: password hashes, the checker, and logins over a real loopback socket."""

from __future__ import annotations

import io
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin

from b2bua.ops import passwd
from b2bua.ops.manhole import PasswdChecker
from tests.support.daemon import Daemon, twistd
from tests.support.ports import free_port
from tests.support.telnet import TelnetClient

FAST = 1000  # iterations: the file's own count is used, so tests need not be slow


def line(user: str, password: str) -> str:
    return f"{user}:{passwd.hash_password(password, iterations=FAST)}\n"


def test_a_hash_verifies_its_password_only() -> None:
    """hash_password and verify_password agree; another password or a bad hash fails."""
    stored = passwd.hash_password("s3cret", iterations=FAST)
    assert stored.startswith("$pbkdf2-sha256$1000$")
    assert passwd.verify_password("s3cret", stored)
    assert not passwd.verify_password("s3cret!", stored)
    assert not passwd.verify_password("s3cret", "s3cret")
    assert passwd.hash_password("x", iterations=FAST) != passwd.hash_password("x", iterations=FAST)


def test_passwd_file_parsing_names_the_bad_line() -> None:
    """Comments and blank lines are skipped; a plain-text password is refused with its line."""
    users = passwd.parse_passwd("# operators\n\n" + line("alice", "a") + line("bob", "b"))
    assert sorted(users) == ["alice", "bob"]
    with pytest.raises(passwd.PasswdError, match="line 2: the hash of 'bob'"):
        passwd.parse_passwd(line("alice", "a") + "bob:hunter2\n")
    with pytest.raises(passwd.PasswdError, match="line 1 is not user:hash"):
        passwd.parse_passwd("just-a-name\n")
    with pytest.raises(passwd.PasswdError, match="appears twice"):
        passwd.parse_passwd(line("alice", "a") + line("alice", "b"))


def test_the_passwd_tool_prints_a_line_and_never_the_password(monkeypatch, capsys) -> None:
    """python -m b2bua.ops.passwd USER reads the password and prints USER:HASH."""
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert passwd.main(["alice"]) == 0
    out = capsys.readouterr().out
    assert "correct horse" not in out
    users = passwd.parse_passwd(out)
    assert passwd.verify_password("correct horse", users["alice"])
    assert passwd.main(["bad user"]) == 2


def login(checker: PasswdChecker, user: bytes, password: bytes) -> object:
    outcome: list[object] = []
    checker.requestAvatarId(UsernamePassword(user, password)).addBoth(outcome.append)
    return outcome[0]


def test_the_checker_accepts_the_right_password_only() -> None:
    """The cred checker gives the user name for a right password, UnauthorizedLogin else."""
    checker = PasswdChecker(passwd.parse_passwd(line("alice", "pw")), in_thread=False)
    assert login(checker, b"alice", b"pw") == b"alice"
    for user, password in ((b"alice", b"PW"), (b"mallory", b"pw"), (b"mallory", b"")):
        failure = login(checker, user, password)
        assert getattr(failure, "check", lambda _: False)(UnauthorizedLogin), failure


# ------------------------------------------------------------------ over a socket


class Console:
    """The daemon (no calls, no Diameter) with its manhole on a free loopback port."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.port = free_port()
        self.passwd = workdir / "manhole.passwd"
        self.passwd.write_text(line("alice", "secret"))
        self.config = workdir / "b2bua.conf"
        self.config.write_text(self.text())
        self.daemon = Daemon(self.config, log_path=workdir / "b2bua.log")
        self.daemon.wait_for_log("manhole listening on")

    def text(self, routes: str = "[route:all]\nnext_hop = 127.0.0.1:5999\n") -> str:
        return (
            f"[sip]\nlisten = udp:127.0.0.1:{free_port()}\n{routes}"
            "[metrics]\nlisten =\n"
            f"[manhole]\nlisten = tcp:{self.port}:interface=127.0.0.1\npasswd = manhole.passwd\n"
        )

    def client(self) -> TelnetClient:
        return TelnetClient("127.0.0.1", self.port, timeout=10)

    def hup(self, needle: str) -> None:
        os.kill(self.daemon.process.pid, signal.SIGHUP)
        self.daemon.wait_for_log(needle)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    console = Console(tmp_path)
    yield console
    console.daemon.stop()
    log = console.daemon.log_text()
    assert "Traceback" not in log, log
    assert "secret" not in log, log


def test_wrong_password_is_refused_and_the_right_one_gets_a_prompt(console: Console) -> None:
    """A wrong password gets 'Authentication failed'; the right one a prompt where calls() runs."""
    with console.client() as client:
        client.read_until("Username: ")
        client.send_line("alice")
        client.read_until("Password: ")
        client.send_line("wrong")
        assert "Authentication failed" in client.read_until("Username: ")
        client.send_line("alice")
        client.read_until("Password: ")
        client.send_line("secret")
        client.read_until(">>> ")
        assert client.run("calls()") == "no calls"
        assert "kill(id, reason='operator')" in client.run("help()")
        assert client.run("routes()").splitlines()[1].split()[0] == "all"
    assert "manhole: login refused for 'alice'" in console.daemon.log_text()


def test_three_failures_close_the_connection(console: Console) -> None:
    """After three wrong passwords the console hangs up."""
    with console.client() as client:
        for _ in range(3):
            client.read_until("Username: ")
            client.send_line("alice")
            client.read_until("Password: ")
            client.send_line("nope")
            client.read_until("Authentication failed")
        client.sock.settimeout(5)
        try:
            rest = client.sock.recv(1024)
            while rest and b"Username" not in rest:
                rest = client.sock.recv(1024)
        except ConnectionResetError:
            rest = b""
        assert rest == b""


def test_sighup_reloads_routes_and_users_and_a_bad_file_changes_nothing(
    console: Console,
) -> None:
    """SIGHUP applies new routes and users; a bad file is logged line by line and ignored."""
    console.config.write_text(console.text("[route:first]\n[route:second]\n"))
    console.passwd.write_text(line("alice", "secret") + line("bob", "hunter2!"))
    console.hup("configuration reloaded")
    with console.client() as client:
        client.login("bob", "hunter2!")
        assert [row.split()[0] for row in client.run("routes()").splitlines()[1:]] == [
            "first",
            "second",
        ]
        console.config.write_text(console.text("[route:third]\nbogus = 1\n") + "[sip]\nt1 = -1\n")
        console.hup("reload refused: the configuration in use stays")
        log = console.daemon.log_text()
        assert "reload refused: " in log and "[sip]: section appears twice" in log
        assert client.run("routes()").count("\n") == 2  # still first and second
        assert "reload refused; the old configuration stays:" in client.run("reload()")


def test_manhole_port_in_use_stops_start_up_with_one_line(tmp_path: Path) -> None:
    """A manhole port already bound ends start-up with exit status 1 and no traceback."""
    (tmp_path / "manhole.passwd").write_text(line("alice", "secret"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "b2bua.conf").write_text(
            f"[sip]\nlisten = udp:127.0.0.1:{free_port()}\n[metrics]\nlisten =\n"
            f"[manhole]\nlisten = tcp:{port}:interface=127.0.0.1\npasswd = manhole.passwd\n"
        )
        result = twistd(
            "-n", "--pidfile=", "b2bua", "--config", str(tmp_path / "b2bua.conf")
        )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "cannot start" in output and "Traceback" not in output
