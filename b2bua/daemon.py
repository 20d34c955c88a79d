"""What every twistd plugin of b2bua shares: exit statuses, start-up and stop boundaries.

``twistd b2bua`` and ``twistd ocs`` both validate their configuration before anything
binds (a bad file: one line per problem on stderr, exit status 2), and both turn a child
service that cannot start (a port in use, an unreadable certificate) into one critical
log line and exit status 1 instead of a traceback.

A stop asked for by SIGTERM or SIGINT is a normal end: `StopOnSignals` stops the reactor
itself, so twistd does not re-raise the signal at exit and the status is 0 once the
services have stopped (calls drained, CCR-Ts answered, DPR sent).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from twisted.application.service import MultiService, Service
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ReactorNotRunning
from twisted.python.failure import Failure

from b2bua import logs

log = logs.logger(__name__)

EXIT_CONFIG_ERROR = 2
EXIT_START_FAILED = 1


def refuse_configuration(problems: Iterable[str]) -> NoReturn:
    """Print each problem on its own line and exit with status 2."""
    for line in problems:
        sys.stderr.write(line + "\n")
    raise SystemExit(EXIT_CONFIG_ERROR)


class DaemonRoot(MultiService):
    """A root service whose start-up failures end the process with one clear line."""

    def startService(self) -> None:
        try:
            super().startService()
        except SystemExit:
            raise
        except Exception as err:  # start-up boundary: any failure ends the process cleanly
            text = str(err).replace("\n", " ") or err.__class__.__name__
            log.critical("cannot start: {error}", error=text)
            raise SystemExit(EXIT_START_FAILED) from None


class StopOnSignals(Service):
    """SIGTERM and SIGINT stop the daemon as an operator's stop, ending with exit status 0.

    The reactor's own handlers record the signal and twistd kills itself with it after
    the reactor stopped (exit status -15).  These handlers replace them once the reactor
    runs (after its own are installed) and only ask the reactor to stop; the service tree
    then stops in order, as with any stop.  A second signal while stopping is logged and
    changes nothing.
    """

    name = "signals"

    def __init__(
        self,
        reactor: Any,
        signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
        install: Callable[[int, Any], Any] = signal.signal,
    ) -> None:
        self.reactor = reactor
        self.signals = signals
        self._install = install
        self.stopping = False

    def startService(self) -> None:
        super().startService()
        self.reactor.callWhenRunning(self._take_over)

    def _take_over(self) -> None:
        if not self.running:
            return
        # The reactor puts back the handlers it found when it stops running.
        for number in self.signals:
            self._install(number, self._signalled)

    def _signalled(self, number: int, frame: object) -> None:
        """A signal handler: schedule the stop on the reactor, nothing else."""
        self.reactor.callFromThread(self._stop, signal.Signals(number).name)

    def _stop(self, name: str) -> None:
        if self.stopping:
            log.info("{signal}: already stopping", signal=name)
            return
        self.stopping = True
        log.info("{signal}: stopping", signal=name)
        try:
            self.reactor.stop()
        except ReactorNotRunning:  # already on its way down for another reason
            pass


class ListenError(RuntimeError):
    """A listener of ours could not bind; the message names it, the address and why."""


def listen_now(reactor: Any, listen: str, factory: Any, what: str) -> Any:
    """Bind ``factory`` at the endpoint string ``listen`` now; the listening port.

    For ``startService``: TCP and UNIX endpoints bind synchronously, so a port in use
    raises here (`ListenError`) and `DaemonRoot` ends start-up with one line.
    """
    outcome: list[Any] = []
    serverFromString(reactor, listen).listen(factory).addBoth(outcome.append)
    if not outcome:
        raise ListenError(f"{what}: {listen} did not start listening")
    if isinstance(outcome[0], Failure):
        raise ListenError(f"{what} cannot listen on {listen}: {outcome[0].getErrorMessage()}")
    return outcome[0]


def abort_start(reactor: Any, reason: str) -> None:
    """A start-up step that finishes after the reactor runs failed: exit status 1.

    For what `DaemonRoot` cannot see because it happens later (Redis answering at start):
    one critical line, the services stop as usual, then the process exits with 1.
    """
    log.critical("cannot start: {error}", error=reason)

    def exit_failed() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_START_FAILED)

    reactor.addSystemEventTrigger("after", "shutdown", exit_failed)
    try:
        reactor.stop()
    except ReactorNotRunning:
        exit_failed()
