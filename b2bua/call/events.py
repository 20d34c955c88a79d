"""What a call is doing and why it ended, and the hooks charging and operations act on.

The call layer tells its observers (:class:`CallObserver`) about each call at four
moments, and the store about two more (``call_changed``, ``call_restored``).
``call_received`` is the charging hook: an observer that returns True HOLDS the initial
INVITE (the caller has had its 100 Trying) until someone calls ``CallMap.admit(call)`` or
``CallMap.reject(call, status, reason, reason_header)``; no B-leg leaves before every
holding observer has admitted the call.
"""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from b2bua.call.bridge import Call

__all__ = ["CallObserver", "CallState", "EndReason", "Side"]


class Side(Enum):
    """The two legs: A (the caller, b2bua is its UAS) and B (the callee, b2bua is its UAC)."""

    A = "A"
    B = "B"

    @property
    def other(self) -> Side:
        return Side.B if self is Side.A else Side.A


class CallState(Enum):
    """Where a call is, from the INVITE received to the last transaction done."""

    #: INVITE received; waiting for the observers to admit it (charging).
    ADMITTING = "admitting"
    #: B-leg INVITE sent, no provisional with a To tag yet.
    CALLING = "calling"
    #: The callee is ringing (an early dialog exists).
    EARLY = "early"
    #: 2xx relayed to the caller; waiting for its ACK.
    ANSWERED = "answered"
    #: The caller's ACK arrived: the call is up.
    CONFIRMED = "confirmed"
    #: Ended (``end_reason`` is set); BYEs, CANCELs or ACKs are still being exchanged.
    ENDING = "ending"
    #: Nothing is left; the call is gone from the call map.
    ENDED = "ended"


class EndReason(StrEnum):
    """Why a call ended; the value is the text used in logs and Reason headers."""

    CALLER_HANGUP = "caller hung up"
    CALLEE_HANGUP = "callee hung up"
    CANCELLED = "cancelled"
    #: The callee (or b2bua, before the B-leg) answered a final error; see ``end_status``.
    REJECTED = "rejected"
    NO_ANSWER = "no answer"
    CREDIT_EXHAUSTED = "credit exhausted"
    OCS_ABORT = "aborted by OCS"
    SESSION_TIMER = "session timer expired"
    MAX_DURATION = "max call duration"
    ACK_TIMEOUT = "no ACK for the 2xx"
    OPERATOR_KILL = "operator kill"
    SHUTDOWN = "shutdown"
    #: A transport failure, a timeout of a needed transaction, or an internal error.
    ERROR = "error"


class CallObserver:
    """Hooks on the life of every call; override what you need (the defaults do nothing).

    Observers must not raise; the call map logs and ignores what they raise.
    """

    def call_received(self, call: Call) -> bool:
        """An initial INVITE was accepted for routing; return True to HOLD it for admission."""
        return False

    def call_answered(self, call: Call) -> None:
        """The callee answered (2xx) and the answer was relayed to the caller."""

    def media_changed(self, call: Call, side: Side, body: bytes) -> None:
        """A re-INVITE or UPDATE from ``side`` carrying a new session description succeeded."""

    def call_ended(self, call: Call) -> None:
        """The call ended: ``call.end_reason``, ``call.ended_at`` and ``duration`` are set."""

    def call_changed(self, call: Call) -> None:
        """What a restart needs of the call changed (confirmed, target or timer refreshed)."""

    def call_restored(self, call: Call) -> None:
        """A confirmed call was put back after a restart (``CallMap.install_call``)."""
