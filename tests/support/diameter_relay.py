"""A Diameter relay that injects one OCS fault between b2bua and a real OCS (fault tests).

Run as a process (``python -m tests.support.diameter_relay``): b2bua's peer URI points at
``--listen``; each connection b2bua opens gets its own connection to the OCS at
``--upstream`` and every message is framed (`MessageFramer`) and passed on, except that the
``--nth`` Credit-Control request of CC-Request-Type ``--on`` (1 initial, 2 update,
3 termination; counted over the whole run) meets ``--fault``:

``late``       its answer is held ``--hold`` seconds (past b2bua's Tx timer), then delivered;
``drop``       its answer is never delivered;
``garbage``    b2bua gets bytes that are no Diameter message instead of the answer;
``close``      the connection to b2bua is closed when the request arrives (not passed on);
``reset``      the request is passed on, then the connection to b2bua is reset (RST)
               before the answer comes back;
``duplicate``  its answer is delivered twice.

Every CCR b2bua sends and every CCA it is given are written to ``--log`` as JSON lines
(``dir`` ``request`` / ``answer``; ``fault`` names what was done to it), which the tests
read to check that each opened Ro session got exactly one CCR-Termination and that the
seconds reported add up to the talk time. The reactor drives it; it stops by itself after
``--lifetime`` seconds.
"""

from __future__ import annotations

import argparse
import json
from typing import IO, Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.task import react
from twisted.python.failure import Failure

from b2bua.diameter.errors import DecodeError
from b2bua.diameter.message import FLAG_RETRANSMIT, Message, MessageFramer

HOST = "127.0.0.1"
CMD_CREDIT_CONTROL = 272
GARBAGE = b"\xde\xad\xbe\xef" * 16  # version 0xde: the stream's framing is lost


class Relay:
    """The shared state of a run: the fault plan, the request counters and the log."""

    def __init__(self, reactor: Any, args: argparse.Namespace, log: IO[str]) -> None:
        self.reactor = reactor
        self.upstream = args.upstream
        self.fault = args.fault
        self.nth: int = args.nth
        self.hold = args.hold
        self.log_file = log
        self.seen = 0  # CCRs of type `on` so far
        self.on: int = args.on

    def log(self, direction: str, message: Message, fault: str = "") -> None:
        used = message.get_path("Multiple-Services-Credit-Control", "Used-Service-Unit", "CC-Time")
        record = {
            "t": round(self.reactor.seconds(), 3),
            "dir": direction,
            "session": message.get("Session-Id"),
            "type": message.get("CC-Request-Type"),
            "number": message.get("CC-Request-Number"),
            "used": used,
            "result": message.result_code if not message.is_request else None,
            "retransmit": bool(message.flags & FLAG_RETRANSMIT),
            "hbh": message.hop_by_hop,
            "fault": fault,
        }
        self.log_file.write(json.dumps(record) + "\n")
        self.log_file.flush()

    def faulted(self, message: Message) -> bool:
        """Whether this CCR is the one the plan picks (counts it)."""
        if self.fault == "none" or message.get("CC-Request-Type") != self.on:
            return False
        if message.flags & FLAG_RETRANSMIT:
            return False
        self.seen += 1
        return self.seen == self.nth


class FrontConnection(Protocol):
    """b2bua's side: one upstream connection each, messages passed on with the fault."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.framer = MessageFramer()
        self.upstream: UpstreamConnection | None = None
        self.waiting: list[bytes] = []
        self.faulted_hbh: set[int] = set()
        self.closed = False

    def connectionMade(self) -> None:
        self.relay.reactor.connectTCP(HOST, self.relay.upstream, _UpstreamFactory(self), timeout=5)

    def drop(self) -> None:
        if not self.closed and self.transport is not None:
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        for item in self.framer.feed(data):
            if isinstance(item, DecodeError):
                self.drop()
                return
            self.from_b2bua(item)

    def from_b2bua(self, message: Message) -> None:
        fault = ""
        if message.command_code == CMD_CREDIT_CONTROL and message.is_request:
            if self.relay.faulted(message):
                fault = self.relay.fault
            self.relay.log("request", message, fault)
        if fault == "close":
            self.drop()
            return
        if fault:
            self.faulted_hbh.add(message.hop_by_hop)
        self.to_ocs(message.encode())
        if fault == "reset":
            self.closed = True
            assert self.transport is not None
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def to_ocs(self, data: bytes) -> None:
        if self.upstream is None:
            self.waiting.append(data)
        elif self.upstream.transport is not None:
            self.upstream.transport.write(data)

    def from_ocs(self, message: Message) -> None:
        if self.closed or self.transport is None:
            return
        fault = ""
        if message.hop_by_hop in self.faulted_hbh and not message.is_request:
            self.faulted_hbh.discard(message.hop_by_hop)
            fault = self.relay.fault
        data = message.encode()
        if message.command_code == CMD_CREDIT_CONTROL and not message.is_request:
            self.relay.log("answer", message, fault)
        if fault == "late":
            self.relay.reactor.callLater(self.relay.hold, self.write, data)
        elif fault == "drop":
            pass
        elif fault == "garbage":
            self.write(GARBAGE)
        elif fault == "duplicate":
            self.write(data + data)
        else:
            self.write(data)

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.closed = True
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.loseConnection()


class _UpstreamFactory(ClientFactory):
    """Connects one front connection to the OCS; a failure closes the front too."""

    def __init__(self, front: FrontConnection) -> None:
        self.front = front

    def buildProtocol(self, addr: Any) -> UpstreamConnection:
        return UpstreamConnection(self.front)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.front.drop()


class UpstreamConnection(Protocol):
    """The OCS side of one front connection."""

    def __init__(self, front: FrontConnection) -> None:
        self.front = front
        self.framer = MessageFramer()

    def connectionMade(self) -> None:
        front = self.front
        front.upstream = self
        assert self.transport is not None
        if front.closed:
            self.transport.loseConnection()
            return
        for data in front.waiting:
            self.transport.write(data)
        front.waiting.clear()

    def dataReceived(self, data: bytes) -> None:
        for item in self.framer.feed(data):
            if isinstance(item, DecodeError):
                self.front.drop()
                return
            self.front.from_ocs(item)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.front.drop()


def run(reactor: Any, args: argparse.Namespace) -> Deferred[None]:
    """Listen, relay until ``--lifetime`` is over."""
    log = open(args.log, "a")  # noqa: SIM115 - closed when the run ends
    relay = Relay(reactor, args, log)
    reactor.listenTCP(
        args.listen, Factory.forProtocol(lambda: FrontConnection(relay)), interface=HOST
    )
    print("relaying", flush=True)
    done: Deferred[None] = Deferred()

    def finish() -> None:
        log.close()
        done.callback(None)

    reactor.callLater(args.lifetime, finish)
    return done


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and relay."""
    parser = argparse.ArgumentParser(description="a fault-injecting Diameter relay")
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument(
        "--fault",
        choices=["none", "late", "drop", "garbage", "close", "reset", "duplicate"],
        default="none",
    )
    parser.add_argument("--on", type=int, default=1, help="CC-Request-Type to fault")
    parser.add_argument("--nth", type=int, default=1)
    parser.add_argument("--hold", type=float, default=3.0)
    parser.add_argument("--lifetime", type=float, default=120.0)
    react(run, [parser.parse_args(argv)])


if __name__ == "__main__":
    main()
