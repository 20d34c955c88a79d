"""SIGHUP (and the manhole's ``reload()``): re-read the configuration file.

What changes without a restart: the routes and ``[calls] trusted`` for new calls, and the
manhole's users and SSH keys; the CDR file and the log file are reopened (logrotate moved them).
Calls in progress keep their route.  A file with problems changes nothing: each problem
is logged on one line and the configuration in use stays.  Changes to any other section
are noted in the log as needing a restart.
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
    # After logrotate: new files under the same names, whatever the configuration says.
    for output in (getattr(root, "cdr", None), getattr(root, "log_output", None)):
        if output is not None and hasattr(output, "reopen"):
            output.reopen()
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
        manhole.reload_users(new.manhole.passwd, new.manhole.ssh_authorized_keys)
    applied_calls = dataclasses.replace(old.calls, trusted=trusted)
    applied_manhole = dataclasses.replace(
        old.manhole, passwd=new.manhole.passwd, ssh_authorized_keys=new.manhole.ssh_authorized_keys
    )
    if applied_calls != new.calls:
        log.warn("reload: [calls] changes other than trusted take effect at the next restart")
    if applied_manhole != new.manhole:
        log.warn("reload: [manhole] listen and ssh_* changes take effect at the next restart")
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
    """The user files were valid when parsed; read them once more as the manhole will."""
    from b2bua.ops.passwd import PasswdError, read_passwd
    from b2bua.ops.sshkeys import SshKeyError, read_authorized_keys

    if config.manhole.passwd:
        try:
            read_passwd(config.manhole.passwd)
        except PasswdError as err:
            raise ConfigError([f"{config.path}: [manhole] passwd: {err}"]) from None
    if config.manhole.ssh_authorized_keys:
        try:
            read_authorized_keys(config.manhole.ssh_authorized_keys)
        except SshKeyError as err:
            raise ConfigError([f"{config.path}: [manhole] ssh_authorized_keys: {err}"]) from None


class SighupService(Service):
    """Reloads on SIGHUP while running (``twistd b2bua`` only; tests call reload directly).

    With a log file of our own (``root.log_output``), SIGUSR1 also rotates it, as twistd
    does for the log file it opens itself.  The signal handlers only schedule the work on
    the reactor, which runs it between events, never inside one.
    """

    name = "sighup"

    def __init__(self, root: Any, reactor: Any) -> None:
        self.root = root
        self.reactor = reactor
        self._previous: dict[int, Any] = {}

    def startService(self) -> None:
        super().startService()
        self._previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._signalled)
        output = getattr(self.root, "log_output", None)
        has_file = output is not None and output.file is not None
        if has_file and not signal.getsignal(signal.SIGUSR1):  # nobody else wants it
            self._previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._rotate)

    def stopService(self) -> None:
        super().stopService()
        for number, previous in self._previous.items():
            if previous is not None:
                signal.signal(number, previous)
        self._previous.clear()

    def _signalled(self, signum: int, frame: object) -> None:
        self.reactor.callFromThread(self._reload)

    def _rotate(self, signum: int, frame: object) -> None:
        self.reactor.callFromThread(self.root.log_output.rotate)

    def _reload(self) -> None:
        log.info("SIGHUP: reloading {path}", path=self.root.config.path)
        try:
            reload_config(self.root)
        except Exception:  # signal boundary: a reload bug must not stop the daemon
            log.failure("reload failed; the configuration in use stays")
