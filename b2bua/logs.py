"""Logging for b2bua's own events, with the level set by ``[log] level``.

twistd owns the log destination (``--logfile``, ``--syslog``, stdout with ``-n``); b2bua
only decides which of its own events pass. Every b2bua logger publishes through
`publisher`, a level filter in front of twisted.logger's global publisher, so per-packet
debug lines cost one predicate call when debug is off.
"""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

_predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
publisher = FilteringLogObserver(globalLogPublisher, [_predicate])


def logger(namespace: str) -> Logger:
    """A Logger for `namespace` (pass ``__name__``) that honours ``[log] level``."""
    return Logger(namespace=namespace, observer=publisher)


def set_level(level: str) -> None:
    """Let through b2bua events at `level` (debug, info, warn, error, critical) and above."""
    _predicate.setLogLevelForNamespace("", LogLevel.levelWithName(level))
