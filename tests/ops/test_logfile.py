"""[log] format: JSON lines for log shippers, and SIGHUP reopening the log and CDR files."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, cast

from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.python.failure import Failure

from b2bua.ops import logfile
from b2bua.ops.logfile import LogDestination, format_json, take_over
from tests.support.daemon import Daemon
from tests.support.ports import free_port
from tests.support.sipp import Sipp, run_until_done


def captured(destination: LogDestination) -> list[dict[str, Any]]:
    """What one Logger's events become through ``destination``'s observer, parsed."""
    observer = destination()
    events: list[dict[str, Any]] = []
    log = Logger(namespace="b2bua.test", observer=cast(ILogObserver, events.append))
    log.info("call {call}: answered", call="c1")
    log.warn("peer {name} down", name="ocs", addr=("127.0.0.1", 3868))
    try:
        1 / 0  # noqa: B018 - a real failure for its traceback
    except ZeroDivisionError:
        log.failure("boom in {what}", Failure(), what="test")
    for event in events:
        observer(event)
    return events


def test_json_format_is_one_object_per_line_with_the_named_fields(monkeypatch) -> None:
    """Each event: time, level, namespace, message and its fields; a failure's traceback."""
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    captured(LogDestination("json", "", nodaemon=True))
    lines = out.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3
    first, second, third = records
    assert first["level"] == "info" and first["namespace"] == "b2bua.test"
    assert first["message"] == "call c1: answered" and first["call"] == "c1"
    assert str(first["time"]).endswith("Z")
    assert second["level"] == "warn" and second["addr"] == ["127.0.0.1", 3868]
    assert third["level"] == "critical" and third["message"] == "boom in test"
    assert "ZeroDivisionError" in third["traceback"]


def test_text_format_is_twistds_own_lines(monkeypatch) -> None:
    """format = text writes what twistd writes: a timestamp, [namespace#level] and the text."""
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    captured(LogDestination("text", "", nodaemon=True))
    first = out.getvalue().splitlines()[0]
    assert first.endswith("[b2bua.test#info] call c1: answered"), first


def test_an_event_without_text_writes_nothing() -> None:
    """An event with no format and no failure is not a line."""
    assert format_json({"log_level": LogLevel.info, "log_namespace": "x"}) is None


def test_take_over_hands_twistd_a_named_factory_unless_told_otherwise(monkeypatch) -> None:
    """twistd's --logger gets our factory's name; an explicit --logger or --syslog wins."""
    monkeypatch.setattr(logfile, "_current", None)
    monkeypatch.setattr(logfile, "observer_factory", None)
    assert take_over(None, "json") is None
    assert take_over({"logger": object(), "syslog": False}, "json") is None
    assert take_over({"logger": None, "syslog": True}, "json") is None
    options: dict[str, object] = {"logger": None, "syslog": False, "logfile": "b.log"}
    destination = take_over(options, "json")
    assert destination is not None and destination.logfile == "b.log"
    assert options["logger"] == "b2bua.ops.logfile.observer_factory"
    assert logfile.observer_factory is destination is logfile.current()


def test_reopen_writes_to_a_new_file_after_a_rename(tmp_path: Path) -> None:
    """After the file is renamed, reopen() starts a new one under the configured name."""
    path = tmp_path / "b2bua.log"
    destination = LogDestination("json", str(path), nodaemon=False)
    observer = destination()
    log = Logger(namespace="t", observer=observer)
    log.info("before")
    os.rename(path, tmp_path / "b2bua.log.1")
    destination.reopen()
    log.info("after")
    assert destination.file is not None
    destination.file.close()
    assert [
        json.loads(x)["message"] for x in (tmp_path / "b2bua.log.1").read_text().splitlines()
    ] == ["before"]
    assert [json.loads(x)["message"] for x in path.read_text().splitlines()] == ["after"]


# ------------------------------------------------------------------ the real daemon


def open_files(pid: int) -> set[str]:
    """The paths the process has open (Linux /proc)."""
    fds = Path(f"/proc/{pid}/fd")
    paths = set()
    for fd in fds.iterdir():
        try:
            paths.add(os.readlink(fd))
        except OSError:
            continue
    return paths


def wait_for(check: object, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout}s")


def one_call(workdir: Path, sip_port: int, callee_port: int) -> None:
    callee = Sipp("uas", workdir, callee_port, timeout=20).start()
    caller = Sipp(
        "b2b_uac.xml", workdir, free_port(), remote=f"127.0.0.1:{sip_port}", timeout=20
    ).start()
    try:
        assert run_until_done(caller, callee, timeout=30) == [0, 0], (
            caller.report() + callee.report()
        )
    finally:
        caller.stop()
        callee.stop()


def test_sighup_reopens_the_json_log_file_and_the_cdr_file(tmp_path: Path) -> None:
    """Both files renamed, then SIGHUP: the daemon lets go of the old ones and starts new
    ones under the configured names; every log line is one JSON object; SIGTERM exits 0."""
    sip_port, callee_port = free_port(), free_port()
    config = tmp_path / "b2bua.conf"
    config.write_text(
        f"[sip]\nlisten = udp:127.0.0.1:{sip_port}\n"
        f"[route:all]\nnext_hop = 127.0.0.1:{callee_port}\n"
        "[log]\nformat = json\n[metrics]\nlisten =\n[cdr]\nfile = cdr.jsonl\n"
    )
    log, cdr = tmp_path / "b2bua.log", tmp_path / "cdr.jsonl"
    daemon = Daemon(
        config, log_path=tmp_path / "stdout.txt", options=(f"--logfile={log}",), cwd=tmp_path
    )
    try:
        wait_for(lambda: log.exists() and "b2bua started" in log.read_text(), "start-up")
        one_call(tmp_path, sip_port, callee_port)
        wait_for(lambda: cdr.exists() and cdr.read_text().count("\n") == 1, "the first CDR")
        os.rename(log, tmp_path / "b2bua.log.old")
        os.rename(cdr, tmp_path / "cdr.jsonl.1")
        os.kill(daemon.process.pid, signal.SIGHUP)
        wait_for(lambda: log.exists() and "configuration reloaded" in log.read_text(), "reload")
        still_open = open_files(daemon.process.pid)
        assert str(tmp_path / "b2bua.log.old") not in still_open, still_open
        assert str(tmp_path / "cdr.jsonl.1") not in still_open, still_open
        one_call(tmp_path, sip_port, callee_port)
        wait_for(lambda: cdr.exists() and cdr.read_text().count("\n") == 1, "the second CDR")
        os.kill(daemon.process.pid, signal.SIGUSR1)  # twistd's rotation still works
        wait_for((tmp_path / "b2bua.log.1").exists, "the rotation")
    finally:
        status = daemon.stop()
    assert status == 0, log.read_text() if log.exists() else daemon.log_text()
    old = [json.loads(line) for line in (tmp_path / "b2bua.log.old").read_text().splitlines()]
    new = [
        json.loads(line)
        for name in ("b2bua.log.1", "b2bua.log")
        for line in (tmp_path / name).read_text().splitlines()
    ]
    assert all({"time", "level", "namespace", "message"} <= set(r) for r in old + new)
    ended = [
        r for r in old + new if r["namespace"] == "b2bua.call.callmap" and "ended" in r["message"]
    ]
    assert len(ended) == 2 and all(r["level"] == "info" and "call" in r for r in ended), ended
    assert old[-1]["message"] == f"SIGHUP: reloading {config}"  # then the file is reopened
    assert any(str(r["message"]).startswith("configuration reloaded") for r in new)
    assert any(r["message"] == "SIGTERM: stopping" for r in new)
    (first,) = [json.loads(x) for x in (tmp_path / "cdr.jsonl.1").read_text().splitlines()]
    (second,) = [json.loads(x) for x in cdr.read_text().splitlines()]
    assert first["call_id"] != second["call_id"]
    assert "Traceback" not in log.read_text()


def test_events_below_the_level_are_dropped_the_libraries_too(monkeypatch) -> None:
    """At level info a library's debug line (conch's key exchange) is not written."""
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    observer = LogDestination("json", "", nodaemon=True, level="info")()
    conch = Logger(namespace="twisted.conch.ssh.transport", observer=observer)
    conch.debug("kex alg={alg}", alg="curve25519-sha256")
    conch.info("connection made")
    (line,) = out.getvalue().splitlines()
    assert json.loads(line)["message"] == "connection made"
