"""Session timers (RFC 4028), per leg, sans-IO.

Each leg of a call negotiates its own session interval and refresher:

* toward the caller b2bua is the UAS (§9): a Session-Expires below ``min_se`` gets 422
  with our Min-SE; a larger one is lowered to ``session_expires`` when the request's
  Min-SE allows; without one, ``session_expires`` is used.  The refresher named in the
  request is kept; otherwise a UAC that supports ``timer`` refreshes (fewer messages
  for us), and one that does not leaves it to us (``refresher=uas``, no Require);
* toward the callee b2bua is the UAC (§7): the INVITE carries Session-Expires (no
  refresher: the UAS chooses), Min-SE and ``Supported: timer``; a 422 is retried once
  with its Min-SE (§7.4); the 2xx fixes interval and refresher.  A 2xx without
  Session-Expires means the callee does not run timers; b2bua then refreshes anyway,
  as a proxy in the path would (§8), so that a vanished callee is still noticed.

The refresher sends a refresh at half the interval (§10); the other side's session ends
``min(32, interval/3)`` seconds before the interval elapses without a refresh (§10).
``Refresher.US`` / ``THEM`` are absolute; the ``uac``/``uas`` of the header field depend
on who sends the request carrying it, which :func:`refresher_param` translates.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from b2bua.sip.message import Message, Request, Response

__all__ = [
    "RFC_MIN_SE",
    "Refresher",
    "SessionTimer",
    "TimerSettings",
    "TooSmall",
    "min_se_of",
    "parse_session_expires",
    "refresher_param",
    "supports_timer",
    "uac_request_headers",
    "uac_timer_from_response",
    "uas_response_headers",
    "uas_timer",
]

#: RFC 4028 §4: the Min-SE floor every implementation must accept.
RFC_MIN_SE: Final = 90


class Refresher(Enum):
    """Who refreshes a leg's session: b2bua (US) or the far end of that leg (THEM)."""

    US = "us"
    THEM = "them"


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """``[calls] session_expires`` (0: off) and ``min_se``, in seconds."""

    session_expires: int = 1800
    min_se: int = RFC_MIN_SE

    @property
    def enabled(self) -> bool:
        return self.session_expires > 0


@dataclass(frozen=True, slots=True)
class SessionTimer:
    """The negotiated session interval of one leg and who refreshes it."""

    interval: int
    refresher: Refresher

    def deadline(self, since: float) -> float:
        """When our timer for this leg fires: a refresh (US) or the expiry (THEM)."""
        if self.refresher is Refresher.US:
            return since + self.interval / 2
        return since + self.interval - min(32.0, self.interval / 3)


class TooSmall(Exception):
    """The request's Session-Expires is below our Min-SE: answer 422 with ``min_se``."""

    def __init__(self, min_se: int) -> None:
        super().__init__(f"Session-Expires below {min_se}")
        self.min_se = min_se


def parse_session_expires(value: str | None) -> tuple[int, str | None] | None:
    """``"1800;refresher=uac"`` -> ``(1800, "uac")``; None if absent or malformed."""
    if value is None:
        return None
    head, *params = value.split(";")
    head = head.strip()
    if not head.isdigit() or not head.isascii():
        return None
    refresher = None
    for item in params:
        name, _, param_value = item.partition("=")
        if name.strip().lower() == "refresher":
            word = param_value.strip().lower()
            refresher = word if word in ("uac", "uas") else None
    return int(head), refresher


def _delta(value: str | None) -> int | None:
    if value is None:
        return None
    head = value.split(";")[0].strip()
    return int(head) if head.isdigit() and head.isascii() else None


def supports_timer(message: Message) -> bool:
    """Whether ``message`` lists ``timer`` in Supported or Require."""
    tags = message.headers.get_all("supported") + message.headers.get_all("require")
    return any(tag.strip().lower() == "timer" for tag in tags)


def refresher_param(refresher: Refresher, *, we_are_uac: bool) -> str:
    """The ``refresher`` value naming ``refresher`` in a transaction where we are UAC/UAS."""
    if refresher is Refresher.US:
        return "uac" if we_are_uac else "uas"
    return "uas" if we_are_uac else "uac"


def _named(param: str, *, we_are_uac: bool) -> Refresher:
    us = "uac" if we_are_uac else "uas"
    return Refresher.US if param == us else Refresher.THEM


def uas_timer(
    request: Request, settings: TimerSettings, current: SessionTimer | None = None
) -> SessionTimer | None:
    """§9: the timer of the leg ``request`` came in on (we answer it as UAS).

    Raises :class:`TooSmall` when its Session-Expires is below ``settings.min_se``.
    ``current`` is the leg's timer before an in-dialog request; a re-INVITE or UPDATE
    without Session-Expires keeps it.  None: timers are off.
    """
    if not settings.enabled:
        return None
    asked = parse_session_expires(request.headers.get("session-expires"))
    their_min = _delta(request.headers.get("min-se")) or 0
    supports = supports_timer(request)
    if asked is None:
        if current is not None:
            return current
        interval = max(settings.session_expires, their_min, 1)
        refresher = Refresher.THEM if supports else Refresher.US
        return SessionTimer(interval, refresher)
    interval, named = asked
    if interval < settings.min_se:
        raise TooSmall(settings.min_se)
    interval = max(min(interval, settings.session_expires), their_min, settings.min_se)
    if not supports:
        refresher = Refresher.US
    elif named is not None:
        refresher = _named(named, we_are_uac=False)
    elif current is not None:
        refresher = current.refresher
    else:
        refresher = Refresher.THEM
    return SessionTimer(interval, refresher)


def uas_response_headers(timer: SessionTimer, request: Request) -> list[tuple[str, str]]:
    """Session-Expires (and Require: timer when the UAC supports it) for our 2xx (§9)."""
    headers = [
        (
            "Session-Expires",
            f"{timer.interval};refresher={refresher_param(timer.refresher, we_are_uac=False)}",
        )
    ]
    if supports_timer(request):
        headers.append(("Require", "timer"))
    return headers


def uac_request_headers(
    settings: TimerSettings, current: SessionTimer | None = None, *, min_se: int | None = None
) -> list[tuple[str, str]]:
    """Session-Expires and Min-SE for an INVITE or UPDATE we send (§7.1).

    The first INVITE asks for ``session_expires`` and lets the UAS choose the refresher;
    later requests keep the leg's interval and refresher.  ``min_se`` overrides the
    interval after a 422.
    """
    if not settings.enabled:
        return []
    floor = max(settings.min_se, min_se or 0)
    if current is None:
        value = str(max(settings.session_expires, floor))
    else:
        interval = max(current.interval, floor)
        value = f"{interval};refresher={refresher_param(current.refresher, we_are_uac=True)}"
    return [("Session-Expires", value), ("Min-SE", str(floor))]


def uac_timer_from_response(
    response: Response, settings: TimerSettings, asked: int | None = None
) -> SessionTimer | None:
    """§7.2: the leg's timer after a 2xx to our INVITE/UPDATE.

    Without Session-Expires the far end runs no timer and b2bua refreshes at the
    interval it asked for (``asked``, default ``session_expires``).
    """
    if not settings.enabled:
        return None
    got = parse_session_expires(response.headers.get("session-expires"))
    if got is None:
        return SessionTimer(max(asked or settings.session_expires, 1), Refresher.US)
    interval, named = got
    refresher = Refresher.US if named is None else _named(named, we_are_uac=True)
    return SessionTimer(max(interval, 1), refresher)


def min_se_of(response: Response) -> int | None:
    """The Min-SE of a 422 (§7.4), None when absent or malformed."""
    return _delta(response.headers.get("min-se"))
