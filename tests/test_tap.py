"""``twistd b2bua`` as an operator runs it: help, --check, bad configs, foreground and daemon."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.support.daemon import REPO, Daemon, twistd
from tests.support.ports import free_port


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "b2bua.conf"
    # Metrics off unless asked for: daemons of parallel tests must not share its port.
    path.write_text(body if "[metrics]" in body else body + "[metrics]\nlisten =\n")
    return path


def test_help_lists_the_options() -> None:
    """`twistd b2bua --help` names --config and --check."""
    result = twistd("b2bua", "--help")
    assert result.returncode == 0
    assert "--config" in result.stdout and "--check" in result.stdout


def test_twistd_lists_the_plugin() -> None:
    """twistd finds the b2bua plugin."""
    assert "b2bua" in twistd("--help").stdout


def test_check_accepts_the_shipped_configs() -> None:
    """The template and the lab configuration both validate."""
    for name in ("conf/b2bua.conf", "conf/lab.conf"):
        result = twistd("b2bua", "--config", name, "--check")
        assert result.returncode == 0, result.stderr
        assert f"{name}: configuration OK" in result.stdout


def test_misspelt_key_stops_start_up_before_anything_happens(tmp_path: Path) -> None:
    """A misspelt key exits 2 with one line naming it; no pid or log file is written."""
    config = write_config(tmp_path, "[sip]\nlisten = udp:127.0.0.1:5060\nmax_mesage_size = 9000\n")
    result = twistd(
        "--pidfile",
        "b2bua.pid",
        "--logfile",
        "b2bua.log",
        "b2bua",
        "--config",
        str(config),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"{config}:3: [sip] max_mesage_size: unknown key (did you mean 'max_message_size'?); "
        "[sip] knows listen, t1, "
    )
    assert not (tmp_path / "b2bua.pid").exists()
    assert not (tmp_path / "b2bua.log").exists()


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    """A configuration file that does not exist exits 2 naming it."""
    result = twistd("b2bua", "--config", str(tmp_path / "none.conf"))
    assert result.returncode == 2
    assert "none.conf: cannot read the configuration file" in result.stderr


def lab_config(tmp_path: Path) -> Path:
    port = free_port()
    return write_config(tmp_path, f"[sip]\nlisten = udp:127.0.0.1:{port}, tcp:127.0.0.1:{port}\n")


def test_foreground_run_starts_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`twistd -n b2bua` runs in the foreground; SIGTERM stops it cleanly with status 0."""
    daemon = Daemon(lab_config(tmp_path), log_path=tmp_path / "out.log")
    try:
        daemon.wait_for_log("b2bua started")
    finally:
        status = daemon.stop()
    assert status == 0, daemon.log_text()
    assert "b2bua stopping" in daemon.log_text()
    assert "Traceback" not in daemon.log_text()


def wait_for_daemon(pidfile: Path, logfile: Path, timeout: float = 30) -> int:
    """The daemon's pid once its pid file is written and its log says it started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = pidfile.read_text().strip() if pidfile.exists() else ""
        started = logfile.exists() and "b2bua started" in logfile.read_text()
        if text.isdigit() and started:
            return int(text)
        time.sleep(0.05)
    log = logfile.read_text() if logfile.exists() else "(no log file)"
    raise AssertionError(f"daemon did not start within {timeout}s:\n{log}")


def test_daemon_mode_writes_pidfile_and_logfile(tmp_path: Path) -> None:
    """Without -n, twistd detaches, writes the pid file and log file, and SIGTERM ends it."""
    config = lab_config(tmp_path)
    result = twistd(
        "--pidfile",
        "b2bua.pid",
        "--logfile",
        "b2bua.log",
        "b2bua",
        "--config",
        str(config),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    pidfile, logfile = tmp_path / "b2bua.pid", tmp_path / "b2bua.log"
    pid = wait_for_daemon(pidfile, logfile)
    try:
        assert "b2bua started" in logfile.read_text()
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and pidfile.exists():
        time.sleep(0.05)
    assert not pidfile.exists(), "twistd removes its pid file on a clean stop"
    assert REPO.exists()


def test_port_in_use_stops_start_up_with_one_line_and_status_1(tmp_path: Path) -> None:
    """A SIP port already bound by someone else ends start-up: one critical line, exit 1."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        config = write_config(tmp_path, f"[sip]\nlisten = udp:127.0.0.1:{port}\n")
        result = twistd("-n", "--pidfile=", "b2bua", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    critical = [line for line in result.stdout.splitlines() if "#critical]" in line]
    assert len(critical) == 1 and f"Couldn't listen on 127.0.0.1:{port}" in critical[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_lab_setup_runs_the_ocs_in_process_and_connects_to_it(tmp_path: Path) -> None:
    """With [ocs] enabled and a peer pointing at it, the daemon opens its own Diameter link."""
    sip, diameter = free_port(), free_port()
    accounts = REPO / "conf/accounts.json"
    config = write_config(
        tmp_path,
        f"[sip]\nlisten = udp:127.0.0.1:{sip}\n"
        "[diameter]\norigin_host = b2bua.test\norigin_realm = test\nreconnect_interval = 1\n"
        f"[peer:ocs]\nuri = aaa://127.0.0.1:{diameter}\nhost = ocs.test\n"
        f"[ocs]\nenabled = yes\nlisten = aaa://127.0.0.1:{diameter}\n"
        f"origin_host = ocs.test\norigin_realm = test\naccounts = {accounts}\n",
    )
    daemon = Daemon(config, log_path=tmp_path / "out.log")
    try:
        daemon.wait_for_log("Diameter peer ocs open")
    finally:
        status = daemon.stop()
    assert status == 0, daemon.log_text()
    assert "DPR/DPA" in daemon.log_text()
    assert "Traceback" not in daemon.log_text()
