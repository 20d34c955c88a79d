"""What every twistd plugin of b2bua shares: exit statuses and the start-up boundary.

``twistd b2bua`` and ``twistd ocs`` both validate their configuration before anything
binds (a bad file: one line per problem on stderr, exit status 2), and both turn a child
service that cannot start (a port in use, an unreadable certificate) into one critical
log line and exit status 1 instead of a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import NoReturn

from twisted.application.service import MultiService

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
