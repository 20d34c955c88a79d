"""``twistd ocs`` as an operator runs it: help, --check, bad files, start, stop, port in use."""

from __future__ import annotations

import socket
from pathlib import Path

from b2bua.diameter.message import MessageFramer
from tests.diameter import factories
from tests.support.daemon import REPO, start_plugin, twistd
from tests.support.ports import free_port


def write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def test_help_lists_the_options() -> None:
    """`twistd ocs --help` names --config and --check."""
    result = twistd("ocs", "--help")
    assert result.returncode == 0
    assert "--config" in result.stdout and "--check" in result.stdout


def test_twistd_lists_the_plugin() -> None:
    """twistd finds the ocs plugin next to b2bua's."""
    assert "ocs" in twistd("--help").stdout


def test_check_accepts_the_shipped_configs() -> None:
    """conf/ocs.conf (6 demo accounts) and the b2bua template both validate for the OCS."""
    result = twistd("ocs", "--config", "conf/ocs.conf", "--check")
    assert result.returncode == 0, result.stderr
    assert "conf/ocs.conf: configuration OK (6 accounts)" in result.stdout
    result = twistd("ocs", "--config", "conf/b2bua.conf", "--check")
    assert result.returncode == 0, result.stderr


def test_bad_value_stops_start_up_before_anything_happens(tmp_path: Path) -> None:
    """A wrong [ocs] value exits 2 with one line naming it; no pid or log file is written."""
    config = write(tmp_path, "ocs.conf", "[ocs]\nlisten = aaas://127.0.0.1:3868\n")
    result = twistd(
        "--pidfile", "ocs.pid", "--logfile", "ocs.log", "ocs", "--config", str(config),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"{config}:2: [ocs] listen = aaas://127.0.0.1:3868: expected aaa://")
    assert not (tmp_path / "ocs.pid").exists()
    assert not (tmp_path / "ocs.log").exists()


def test_bad_accounts_file_exits_2(tmp_path: Path) -> None:
    """An accounts file with a bad entry exits 2 naming the file and the entry."""
    accounts = write(
        tmp_path, "accounts.json", '{"accounts": [{"subscriber": "+1", "seconds": -5}]}'
    )
    config = write(tmp_path, "ocs.conf", f"[ocs]\naccounts = {accounts}\n")
    result = twistd("ocs", "--config", str(config), "--check")
    assert result.returncode == 2
    assert f"[ocs] accounts: {accounts}: accounts[0]" in result.stderr
    assert "non-negative" in result.stderr


def test_runs_answers_a_cer_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`twistd -n ocs` listens where configured, answers a CER; SIGTERM stops it with status 0."""
    port = free_port()
    config = write(
        tmp_path,
        "ocs.conf",
        f"[ocs]\nlisten = aaa://127.0.0.1:{port}\naccounts = {REPO / 'conf/accounts.json'}\n",
    )
    daemon = start_plugin("ocs", config, log_path=tmp_path / "out.log")
    try:
        daemon.wait_for_log("ocs started")
        assert "6 accounts" in daemon.log_text()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(factories.cer().encode())
            framer = MessageFramer()
            replies: list[object] = []
            while not replies:
                data = conn.recv(65536)
                assert data, "the OCS closed the connection"
                replies = list(framer.feed(data))
        (cea,) = replies
        assert getattr(cea, "result_code", None) == 2001
    finally:
        status = daemon.stop()
    assert status == 0, daemon.log_text()
    assert "OCS stopped" in daemon.log_text()
    assert "Traceback" not in daemon.log_text()


def test_port_in_use_ends_start_up_with_one_line(tmp_path: Path) -> None:
    """A listen port already taken: one critical line, no traceback, exit status 1."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write(tmp_path, "ocs.conf", f"[ocs]\nlisten = aaa://127.0.0.1:{port}\n")
        daemon = start_plugin("ocs", config, log_path=tmp_path / "out.log")
        try:
            daemon.process.wait(timeout=30)
        finally:
            daemon.stop()
    assert daemon.process.returncode == 1
    assert "cannot start" in daemon.log_text()
    assert "Traceback" not in daemon.log_text()


def test_operator_console_tops_up_and_shows_an_account(tmp_path: Path) -> None:
    """`twistd ocs` with [manhole]: an operator logs in, tops up +15550100 and sees 75 + 25."""
    from b2bua.ops.passwd import hash_password
    from tests.support.telnet import TelnetClient

    port, console = free_port(), free_port()
    (tmp_path / "console.passwd").write_text(f"ops:{hash_password('s3cret', iterations=1000)}\n")
    config = write(
        tmp_path,
        "ocs.conf",
        f"[ocs]\nlisten = aaa://127.0.0.1:{port}\naccounts = {REPO / 'conf/accounts.json'}\n"
        f"[manhole]\nlisten = tcp:{console}:interface=127.0.0.1\npasswd = console.passwd\n",
    )
    daemon = start_plugin("ocs", config, log_path=tmp_path / "out.log")
    try:
        daemon.wait_for_log("manhole listening on")
        with TelnetClient("127.0.0.1", console) as client:
            client.login("ops", "s3cret")
            topped = client.run('top_up("+15550100", 25)')
            shown = client.run('show("+15550100")')
        assert "BalanceChange(subscriber='15550100', kind='seconds', balance=100" in topped
        assert "balances={'seconds': 100" in shown, shown
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.log_text()
    assert "s3cret" not in daemon.log_text()
