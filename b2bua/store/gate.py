"""The charging engine's CCRs that the store cannot let go yet wait here (glue).

The engine sends its CCRs through a :class:`CcrGate` in front of the Diameter service
when a store is configured. Two things make the gate hold a request:

* A restored session while no Diameter peer is usable. A restore (at start-up, or an
  adoption) resends a CCR in flight at the crash, a kept CCR-T or a CCR-U due at once,
  one reactor turn after the start, while the peers are still connecting: sent then, it
  fails as NO_PEER (a CCR-T is kept for ``termination_retry_interval``, a CCR-U under
  CCFH TERMINATE ends the call). The SIP side of the call is restored at once (in-dialog
  requests find it); its CCRs, and those its timers make meanwhile, go when a peer is
  usable (``DiameterService.when_usable``), or after ``[store] diameter_wait`` seconds
  anyway, with a warning (and then fail as before).
* Fencing. While this instance's lease may have run out (no renewal confirmed for
  ``lease_time``) and other instances share the store, a survivor may have adopted its
  calls and be charging them. Every CCR except a new call's CCR-I (whose call is in no
  record yet) waits for the next renewal: calls still ours go on; the requests of calls
  a survivor took are dropped with those calls (:meth:`CcrGate.drop`). Never charged
  twice, and no CCR-T lost: a held CCR-T is sent once the calls are known to be ours.

To the session a held request is a slow OCS: its own deadlines (a final grant running
out) still apply. The answer Deferred fires once the request went and was answered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from b2bua import logs
from b2bua.diameter.message import Message

__all__ = ["CcrGate", "UsablePeers"]

log = logs.logger(__name__)

#: CC-Request-Type INITIAL_REQUEST (RFC 4006 §8.3).
_INITIAL = 1


class UsablePeers(Protocol):
    """What the gate needs of ``b2bua.diameter.service.DiameterService``."""

    def send_request(
        self, message: Message, *, destination_host: str | None = None
    ) -> Deferred[Message]: ...

    def has_usable_peer(self, realm: str | None = None) -> bool: ...

    def when_usable(self) -> Deferred[None]: ...


@dataclass(eq=False)
class _Held:
    message: Message
    destination_host: str | None
    answer: Deferred[Message]


class CcrGate:
    """A Diameter client for the engine that holds what the store cannot vouch for yet."""

    def __init__(self, client: UsablePeers, clock: IReactorTime) -> None:
        self.client = client
        self.clock = clock
        #: True while the calls may belong to a survivor (set by the store service).
        self.fenced: Callable[[], bool] = lambda: False
        self.released = 0  # requests sent after being held
        self.dropped = 0  # requests dropped with a call a survivor took
        self._restoring: set[str] = set()
        self._held: list[_Held] = []
        self._wait: Deferred[None] | None = None
        self._deadline: IDelayedCall | None = None

    @property
    def held(self) -> int:
        """Requests waiting now."""
        return len(self._held)

    def __repr__(self) -> str:
        return (
            f"<CcrGate held={len(self._held)} restoring={len(self._restoring)} "
            f"released={self.released} dropped={self.dropped}>"
        )

    # -- the client ------------------------------------------------------------------------

    def send_request(
        self, message: Message, *, destination_host: str | None = None
    ) -> Deferred[Message]:
        """Send now, or hold until the store can let it go (module docstring)."""
        if not self._holds(message):
            return self.client.send_request(message, destination_host=destination_host)
        answer: Deferred[Message] = Deferred(self._cancelled)
        self._held.append(_Held(message, destination_host, answer))
        return answer

    def _holds(self, message: Message) -> bool:
        if self._restoring and message.session_id in self._restoring:
            return True
        return self.fenced() and message.get("CC-Request-Type") != _INITIAL

    def _cancelled(self, answer: Deferred[Message]) -> None:
        self._held = [held for held in self._held if held.answer is not answer]

    # -- restored sessions -----------------------------------------------------------------

    def hold_restored(self, session_ids: Iterable[str], seconds: float) -> None:
        """Hold these sessions' CCRs until a peer is usable, ``seconds`` at most."""
        if self.client.has_usable_peer():
            return
        self._restoring.update(session_ids)
        if self._wait is not None or not self._restoring:
            return
        log.info(
            "store: restored calls' CCRs wait for a usable Diameter peer (at most {seconds} s)",
            seconds=seconds,
        )
        wait = self._wait = self.client.when_usable()
        self._deadline = self.clock.callLater(seconds, self._gave_up, seconds)
        wait.addCallbacks(self._peer_up, self._wait_cancelled)

    def _peer_up(self, _: object) -> None:
        self._wait = None
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        log.info("store: a Diameter peer is usable; sending the restored calls' CCRs")
        self._restoring.clear()
        self.release()

    def _gave_up(self, seconds: float) -> None:
        self._deadline = None
        log.warn(
            "store: no Diameter peer usable after {seconds} s; sending the restored calls' "
            "CCRs anyway",
            seconds=seconds,
        )
        wait, self._wait = self._wait, None
        self._restoring.clear()
        if wait is not None:
            wait.cancel()
        self.release()

    def _wait_cancelled(self, failure: Failure) -> None:
        failure.trap(CancelledError)

    # -- fencing ---------------------------------------------------------------------------

    def release(self) -> None:
        """Send every held request that need not wait any longer, in the order held."""
        held, self._held = self._held, []
        for entry in held:
            if self._holds(entry.message):
                self._held.append(entry)
                continue
            self.released += 1
            try:
                sent = self.client.send_request(
                    entry.message, destination_host=entry.destination_host
                )
            except Exception as error:  # a client that raises instead of failing
                sent = fail(error)
            sent.chainDeferred(entry.answer)

    def drop(self, session_ids: Iterable[str]) -> None:
        """Forget the held requests of sessions dropped here (a survivor owns them)."""
        gone = set(session_ids)
        self._restoring -= gone
        kept = [held for held in self._held if held.message.session_id not in gone]
        self.dropped += len(self._held) - len(kept)
        self._held = kept

    def stop(self) -> None:
        """Stop waiting; held requests stay unsent (their records say so: the next start
        resends them)."""
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        wait, self._wait = self._wait, None
        if wait is not None:
            wait.cancel()
