"""Reloading the configuration (SIGHUP) on a service tree built in memory."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from twisted.internet.testing import MemoryReactorClock

from b2bua.config import load_config
from b2bua.ops.passwd import hash_password
from b2bua.ops.reload import reload_config
from b2bua.tap import build_service


def write(path: Path, routes: str, trusted: str = "127.0.0.0/8", extra: str = "") -> None:
    path.write_text(
        "[sip]\nlisten = udp:127.0.0.1:5060\n[metrics]\nlisten =\n"
        f"[calls]\ntrusted = {trusted}\n{routes}"
        "[manhole]\nlisten = tcp:2323:interface=127.0.0.1\npasswd = manhole.passwd\n" + extra
    )


def tree(tmp_path: Path) -> tuple[object, Path]:
    (tmp_path / "manhole.passwd").write_text(f"alice:{hash_password('a', iterations=1000)}\n")
    config = tmp_path / "b2bua.conf"
    write(config, "[route:all]\nnext_hop = 127.0.0.1:5080\n")
    return build_service(load_config(str(config)), MemoryReactorClock()), config


def test_reload_applies_routes_trusted_and_users(tmp_path: Path) -> None:
    """Routes, [calls] trusted and the manhole users change; nothing else is touched."""
    root, config = tree(tmp_path)
    write(config, "[route:a]\n[route:b]\n", trusted="10.0.0.0/8")
    (tmp_path / "manhole.passwd").write_text(
        f"alice:{hash_password('a', iterations=1000)}\nbob:{hash_password('b', iterations=1000)}\n"
    )
    assert reload_config(root) == []
    calls = root.calls  # type: ignore[attr-defined]
    assert [route.name for route in calls.router.routes] == ["a", "b"]
    assert calls.settings.trusted == (ipaddress.ip_network("10.0.0.0/8"),)
    assert sorted(root.manhole.checker.users) == ["alice", "bob"]  # type: ignore[attr-defined]
    assert [route.name for route in root.config.routes] == ["a", "b"]  # type: ignore[attr-defined]


def test_a_bad_file_changes_nothing_and_returns_every_problem(tmp_path: Path) -> None:
    """Each problem comes back (and is logged) on one line; routes and users stay."""
    root, config = tree(tmp_path)
    write(config, "[route:a]\nbogus = 1\n", extra="[log]\nlevel = loud\n")
    problems = reload_config(root)
    assert len(problems) == 2 and all(p.startswith(str(config)) for p in problems)
    assert [route.name for route in root.calls.router.routes] == ["all"]  # type: ignore[attr-defined]
    (tmp_path / "manhole.passwd").write_text("alice:plain-text\n")
    write(config, "[route:a]\n")
    (problem,) = reload_config(root)
    assert "[manhole] passwd" in problem
    assert [route.name for route in root.calls.router.routes] == ["all"]  # type: ignore[attr-defined]
    assert list(root.manhole.checker.users) == ["alice"]  # type: ignore[attr-defined]
