"""Sans-IO cores never import the reactor layer; only the glue does."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "b2bua"

# Modules that own sockets, timers or services. Everything else in b2bua/ is a core.
GLUE = {
    "tap.py",
    "daemon.py",
    "logs.py",
    "testing.py",
    "sip/transport.py",
    "sip/endpoint.py",
    "sip/service.py",
    "sip/tls.py",
    "diameter/tls.py",
    "diameter/protocol.py",
    "diameter/service.py",
    "charging/controller.py",
    "call/callmap.py",
    "timers/driver.py",
    "store/redis.py",
    "store/service.py",
    "store/gate.py",
    "ops/manhole.py",
    "ops/metrics.py",
    "ocs/backend_redis.py",
    "ocs/server.py",
    "ocs/tap.py",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_cores_do_not_import_the_reactor_layer() -> None:
    """No core module imports twisted.internet, except the Deferred plumbing of .defer."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative in GLUE:
            continue
        for name in imported_modules(path):
            if name.startswith("twisted.internet") and not name.startswith(
                "twisted.internet.defer"
            ):
                offenders.append(f"{relative} imports {name}")
    assert offenders == []


def test_glue_list_names_existing_modules_only_when_present() -> None:
    """The glue allow-list holds module paths, not packages or typos of core modules."""
    for relative in GLUE:
        assert relative.endswith(".py")
