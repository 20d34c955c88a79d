"""An in-memory Diameter link between the charging engine and the lab OCS, in virtual time.

:class:`OcsPipe` is the engine's :class:`~b2bua.charging.engine.DiameterClient` and the
OCS's :class:`~b2bua.ocs.operator.SessionSignaller` at once. Every message crosses it as
bytes: a CCR is encoded, decoded and checked against the dictionary before the real
:class:`~b2bua.ocs.handler.CreditControlHandler` sees it, and its CCA is encoded and
decoded again before the engine sees it. Requests the OCS starts (RAR, ASR, built with
:func:`~b2bua.ocs.handler.build_rar` and :func:`~b2bua.ocs.handler.build_asr`) go the other
way to :meth:`ChargingEngine.handle_rar` and ``handle_asr``, and so do their answers.

Time is the test's: answers are delivered ``delay`` seconds later through the same
:class:`~b2bua.timers.driver.WheelDriver` the engine uses, and every CCR has a Tx timer on
that wheel that fails the request with the Diameter service's
:class:`~b2bua.diameter.errors.RequestTimeout` when no answer came within ``tx_timeout``.
Three switches make the link misbehave:

* ``hold``: the OCS handles the request at once, its answer waits in :attr:`OcsPipe.held`
  until :meth:`OcsPipe.release`;
* ``drop``: requests never reach the OCS (lost on the way), so only Tx ends them;
* ``lose_answers``: the OCS handles the next N requests but their answers are lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from twisted.internet.defer import Deferred, fail, succeed

from b2bua.charging.engine import ChargingEngine
from b2bua.diameter.dictionary import CMD_ABORT_SESSION, CMD_RE_AUTH
from b2bua.diameter.errors import RequestTimeout
from b2bua.diameter.message import Message, check_command, decode
from b2bua.ocs.handler import CreditControlHandler, OpenSession, build_asr, build_rar
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerHandle

__all__ = ["Exchange", "OcsPipe", "Outcome"]

#: Result-Code with which the client says it does not know the session.
_UNKNOWN_SESSION_ID = 5002

Builder = Callable[..., Message]


class Outcome(Enum):
    """What became of one request sent through the pipe."""

    PENDING = "pending"
    ANSWERED = "answered"
    TIMED_OUT = "timed out"


@dataclass(eq=False)
class Exchange:
    """One CCR on the pipe: the request as the OCS decoded it, and its fate."""

    request: Message
    destination_host: str | None
    sent_at: float
    deferred: Deferred[Message]
    tx: TimerHandle | None = None
    answer_wire: bytes | None = None  # what the OCS answered, once it did
    answer: Message | None = None  # that answer as the engine decoded it
    outcome: Outcome = Outcome.PENDING


class OcsPipe:
    """Engine <-> lab OCS over encoded messages, on one wheel (see the module docstring)."""

    def __init__(
        self,
        driver: WheelDriver,
        handler: CreditControlHandler,
        *,
        delay: float = 0.0,
        tx_timeout: float = 10.0,
    ) -> None:
        self._driver = driver
        self._handler = handler
        self.delay = delay
        self.tx_timeout = tx_timeout
        self.hold = False
        self.drop = False
        self.lose_answers = 0
        self.client: ChargingEngine | None = None  # set once the engine exists
        self.exchanges: list[Exchange] = []
        self.held: list[Exchange] = []
        self.signals: list[tuple[Message, Message]] = []  # RAR/ASR and answer, as decoded
        self._hop_by_hop = 0x0100
        self._end_to_end = 0x2000
        self._ocs_hop_by_hop = 0x7000
        self._ocs_end_to_end = 0x9000

    # -- b2bua -> OCS ----------------------------------------------------------------------

    def send_request(
        self, message: Message, *, destination_host: str | None = None
    ) -> Deferred[Message]:
        """Carry a CCR to the OCS as bytes; the Deferred fires with the decoded CCA."""
        # As the Diameter service does on the request it is given: a new hop-by-hop id,
        # an end-to-end id only when the caller has none (a retransmission keeps its own).
        self._hop_by_hop += 1
        message.hop_by_hop = self._hop_by_hop
        if not message.end_to_end:
            self._end_to_end += 1
            message.end_to_end = self._end_to_end
        received = decode(message.encode())
        check_command(received)
        now = self._driver.seconds()
        exchange = Exchange(received, destination_host, now, Deferred())
        self.exchanges.append(exchange)
        exchange.tx = self._driver.call_later(self.tx_timeout, self._tx_expired, exchange)
        if not self.drop:
            answered = self._handler.handle(received, now)
            answered.addCallback(self._ocs_answered, exchange)
        return exchange.deferred

    def _ocs_answered(self, answer: Message, exchange: Exchange) -> None:
        wire = answer.encode()
        exchange.answer_wire = wire
        if self.lose_answers > 0:
            self.lose_answers -= 1
            return
        if exchange.outcome is not Outcome.PENDING:
            return
        if self.hold:
            self.held.append(exchange)
        else:
            self._driver.call_later(self.delay, self._deliver, exchange)

    def release(self, index: int = 0) -> Exchange:
        """Deliver a held answer now."""
        exchange = self.held.pop(index)
        self._deliver(exchange)
        return exchange

    def _deliver(self, exchange: Exchange) -> None:
        if exchange.outcome is not Outcome.PENDING:
            return
        assert exchange.answer_wire is not None
        if exchange.tx is not None:
            exchange.tx.cancel()
            exchange.tx = None
        answer = decode(exchange.answer_wire)
        check_command(answer)
        request = exchange.request
        assert not answer.is_request
        assert (answer.command_code, answer.hop_by_hop, answer.end_to_end) == (
            request.command_code,
            request.hop_by_hop,
            request.end_to_end,
        )
        exchange.answer = answer
        exchange.outcome = Outcome.ANSWERED
        exchange.deferred.callback(answer)

    def _tx_expired(self, exchange: Exchange) -> None:
        exchange.tx = None
        if exchange.outcome is not Outcome.PENDING:
            return
        exchange.outcome = Outcome.TIMED_OUT
        if exchange in self.held:
            self.held.remove(exchange)
        exchange.deferred.errback(
            RequestTimeout(
                f"no answer to {exchange.request.name} within Tx ({self.tx_timeout:g} s)",
                peer="ocs",
                host=self._handler.origin_host,
            )
        )

    def requests(self) -> list[Message]:
        """Every CCR sent, as the OCS decoded it (or would have, for dropped ones)."""
        return [exchange.request for exchange in self.exchanges]

    # -- OCS -> b2bua ----------------------------------------------------------------------

    def request_for(self, session: OpenSession, build: Builder = build_rar) -> Message:
        """A RAR (or ASR, with ``build=build_asr``) from the OCS to the client of ``session``."""
        self._ocs_hop_by_hop += 1
        self._ocs_end_to_end += 1
        handler = self._handler
        return build(
            session,
            origin_host=handler.origin_host,
            origin_realm=handler.origin_realm,
            hop_by_hop=self._ocs_hop_by_hop,
            end_to_end=self._ocs_end_to_end,
            origin_state_id=handler.origin_state_id,
        )

    def to_client(self, request: Message) -> Message:
        """Deliver an OCS request to the engine as bytes; its answer, decoded from bytes."""
        engine = self.client
        assert engine is not None, "attach the engine first: pipe.client = engine"
        received = decode(request.encode())
        check_command(received)
        if received.command_code == CMD_RE_AUTH:
            answer = engine.handle_rar(received)
        elif received.command_code == CMD_ABORT_SESSION:
            answer = engine.handle_asr(received)
        else:
            raise ValueError(f"the client serves RAR and ASR, not {received.name}")
        back = decode(answer.encode())
        check_command(back)
        assert not back.is_request
        assert (back.command_code, back.hop_by_hop, back.end_to_end) == (
            received.command_code,
            received.hop_by_hop,
            received.end_to_end,
        )
        self.signals.append((received, back))
        return back

    def send_rar(self, session_id: str) -> Deferred[int]:
        """Re-Auth-Request to the session's client; the RAA's Result-Code."""
        return self._signal(session_id, build_rar)

    def send_asr(self, session_id: str) -> Deferred[int]:
        """Abort-Session-Request to the session's client; the ASA's Result-Code."""
        return self._signal(session_id, build_asr)

    def _signal(self, session_id: str, build: Builder) -> Deferred[int]:
        registry = self._handler.registry
        session = registry.get(session_id)
        if session is None:
            return fail(LookupError(f"no open session {session_id!r}"))
        answer = self.to_client(self.request_for(session, build))
        code = int(answer.result_code or 0)
        if code == _UNKNOWN_SESSION_ID:  # as the OCS server does
            registry.close(session_id)
        return succeed(code)
