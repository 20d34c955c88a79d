"""SIGHUP (and the manhole's ``reload()``): re-read the configuration file.

What changes without a restart: the routes and ``[calls] trusted`` for new calls, and the
manhole's users.  Calls in progress keep their route.  A file with problems changes
nothing: each problem is logged on one line and the configuration in use stays.  Changes
to any other section are noted in the log as needing a restart.
"""

from __future__ import annotations

import dataclasses
import signal
from typing import Any

from twisted.application.service import Service

from b2bua import logs
from b2bua.config import Config, ConfigError, load_config

__all__ = ["SighupService", "reload_config"]

log = logs.logger(__name__)

#: Config fields that reload applies; any other difference needs a restart.
_APPLIED = ("path", "routes", "calls", "manhole")


def reload_config(root: Any) -> list[str]:
    """Apply what can change of ``root.config.path`` to the running ``root``; the problems."""
    old: Config = root.config
    cdr = getattr(root, "cdr", None)
    if cdr is not None and hasattr(cdr, "reopen"):
        cdr.reopen()  # after logrotate: a new file, whatever the configuration says
    try:
        new = load_config(old.path)
        _check_users(new)
    except ConfigError as err:
        for problem in err.problems:
            log.error("reload refused: {problem}", problem=problem)
        log.error("reload refused: the configuration in use stays")
        return list(err.problems)
    calls = root.calls
    calls.reload_routes(new.routes)
    trusted = new.calls.trusted
    calls.settings = dataclasses.replace(calls.settings, trusted=trusted)
    manhole = getattr(root, "manhole", None)
    if manhole is not None:
        manhole.reload_users(new.manhole.passwd)
    applied_calls = dataclasses.replace(old.calls, trusted=trusted)
    applied_manhole = dataclasses.replace(old.manhole, passwd=new.manhole.passwd)
    if applied_calls != new.calls:
        log.warn("reload: [calls] changes other than trusted take effect at the next restart")
    if applied_manhole != new.manhole:
        log.warn("reload: [manhole] listen takes effect at the next restart")
    for f in dataclasses.fields(new):
        if f.name not in _APPLIED and getattr(old, f.name) != getattr(new, f.name):
            log.warn("reload: [{section}] changes take effect at the next restart", section=f.name)
    root.config = dataclasses.replace(
        old, routes=new.routes, calls=applied_calls, manhole=applied_manhole
    )
    log.info(
        "configuration reloaded from {path}: {routes} route(s), {trusted} trusted network(s)",
        path=old.path,
        routes=len(new.routes),
        trusted=len(trusted),
    )
    return []


def _check_users(config: Config) -> None:
    """The passwd file was valid when parsed; read it once more as the manhole will."""
    from b2bua.ops.passwd import PasswdError, read_passwd

    if config.manhole.passwd:
        try:
            read_passwd(config.manhole.passwd)
        except PasswdError as err:
            raise ConfigError([f"{config.path}: [manhole] passwd: {err}"]) from None


class SighupService(Service):
    """Reloads on SIGHUP while running (``twistd b2bua`` only; tests call reload directly).

    The signal handler only schedules the reload on the reactor, which runs it between
    events, never inside one.
    """

    name = "sighup"

    def __init__(self, root: Any, reactor: Any) -> None:
        self.root = root
        self.reactor = reactor
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._signalled)

    def stopService(self) -> None:
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None

    def _signalled(self, signum: int, frame: object) -> None:
        self.reactor.callFromThread(self._reload)

    def _reload(self) -> None:
        log.info("SIGHUP: reloading {path}", path=self.root.config.path)
        try:
            reload_config(self.root)
        except Exception:  # signal boundary: a reload bug must not stop the daemon
            log.failure("reload failed; the configuration in use stays")
