"""Where the log goes and in which format: text as twistd writes it, or one JSON per line.

twistd picks the log destination (``-n``: standard output; ``--logfile FILE``, default
``twistd.log``: a file it rotates at 1 MB; ``--syslog``) and builds its observer after
the plugin parsed its options.  :func:`take_over` (called from ``Options.postOptions``)
hands twistd a factory of our own through its ``--logger`` option, the documented hook
for that; the factory builds the same destination, in ``[log] format``:

- ``text``: twistd's own lines, unchanged;
- ``json``: one JSON object per line for log shippers: ``time`` (ISO 8601 UTC),
  ``level``, ``namespace``, ``system``, ``message`` (the formatted text), the event's
  named fields, and ``traceback`` for a failure.

Events below ``[log] level`` are dropped here, the libraries' too (b2bua's own are
already filtered at the source, see :mod:`b2bua.logs`).  Owning the file also lets SIGHUP
reopen it after logrotate moved it (:meth:`LogDestination.reopen`).  An explicit
``--logger`` or ``--syslog`` is left alone.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile

from b2bua.ops.cdr import iso

__all__ = ["LogDestination", "current", "format_json", "take_over"]

#: Keys of legacy (twisted.python.log) events that are not named fields.
_LEGACY_KEYS = frozenset({"message", "isError", "system", "time", "format", "why", "failure"})


def _plain(value: object) -> object:
    """A JSON-friendly form of a field's value (text for what JSON cannot hold)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return str(value)


def format_json(event: LogEvent) -> str | None:
    """One event as one line of JSON (newline-terminated); None for an empty event."""
    message = formatEvent(event)
    failure = event.get("log_failure")
    if not message and failure is None:
        return None
    level = event.get("log_level")
    record: dict[str, object] = {
        "time": iso(event.get("log_time")),
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace", "-"),
        "system": event.get("log_system", "-"),
        "message": message,
    }
    for key, value in event.items():
        if key.startswith("log_") or key in _LEGACY_KEYS or key in record:
            continue
        record[key] = _plain(value)
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


class LogDestination:
    """twistd's log destination, in ``[log] format``; reopens its file on demand."""

    def __init__(self, format: str, logfile: str, nodaemon: bool, level: str = "debug") -> None:
        self.format = format
        self.level = level
        self.logfile = logfile
        self.nodaemon = nodaemon
        self.file: LogFile | None = None

    def __call__(self) -> ILogObserver:
        """The observer twistd installs (its ``--logger`` factory); opens the file."""
        out: IO[Any]
        if self.logfile == "-" or (self.nodaemon and not self.logfile):
            out = sys.stdout  # twistd refuses "-" without -n before it gets here
        else:
            self.file = LogFile.fromFullPath(self.logfile or "twistd.log")
            out = self.file  # type: ignore[assignment]  # a file-like LogFile
        observer = (
            FileLogObserver(out, format_json) if self.format == "json" else textFileLogObserver(out)
        )
        # The libraries' debug lines (conch's key exchange...) obey [log] level as well.
        least = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(self.level))
        return FilteringLogObserver(observer, [least])

    def reopen(self) -> None:
        """Open the log file again by name (logrotate moved it); stdout stays."""
        if self.file is not None:
            self.file.reopen()

    def rotate(self) -> None:
        """FILE -> FILE.1 (older ones shifted) and a new FILE: twistd's SIGUSR1."""
        if self.file is not None:
            self.file.rotate()


_current: LogDestination | None = None

#: What ``--logger`` names (twistd resolves it by name after the options are parsed).
observer_factory: LogDestination | None = None


def take_over(twistd_options: Any, format: str, level: str = "debug") -> LogDestination | None:
    """Make twistd log through a `LogDestination` in ``format``; None when left to twistd.

    ``twistd_options`` is twistd's ServerOptions (our Options' ``parent``); an operator's
    ``--logger`` or ``--syslog`` wins.
    """
    global _current, observer_factory
    if twistd_options is None or twistd_options.get("logger") or twistd_options.get("syslog"):
        return None
    _current = LogDestination(
        format, twistd_options.get("logfile") or "", bool(twistd_options.get("nodaemon")), level
    )
    observer_factory = _current
    twistd_options["logger"] = f"{__name__}.observer_factory"
    return _current


def current() -> LogDestination | None:
    """The destination :func:`take_over` set up in this process, if any."""
    return _current
