"""A lossy UDP relay for fault tests: drops a seeded-random share of the datagrams it carries.

Run as a process next to the daemon (``python -m tests.support.lossy_udp``), one relay per
``--pair FRONT:TARGET``: what arrives on 127.0.0.1:FRONT from anyone (the "client") goes to
127.0.0.1:TARGET from a back socket, and what TARGET sends to the back socket goes to the
client from FRONT, so both directions cross the relay and both may be lost. Each datagram is
dropped with probability ``--loss``, drawn from one ``random.Random(--seed)`` per pair, so a
run is repeatable up to the order in which datagrams arrive; the first ``--drop-count``
datagrams that start with ``--drop-start`` (e.g. ``BYE``) are always lost. The reactor
drives it; it stops by itself after ``--lifetime`` seconds or ``--max-datagrams``
datagrams, and prints one JSON line of counters per pair on exit.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import react

HOST = "127.0.0.1"


@dataclass
class Counters:
    """What one relay pair carried and dropped."""

    forwarded: int = 0
    dropped: int = 0
    dropped_by_start: dict[str, int] = field(default_factory=dict)


class _Side(DatagramProtocol):
    """One socket of a pair: hands what it receives to the pair."""

    def __init__(self, pair: LossyPair, front: bool) -> None:
        self.pair = pair
        self.front = front

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.pair.received(datagram, addr, front=self.front)


class LossyPair:
    """FRONT <-> TARGET with loss; the client is whoever last sent to FRONT."""

    def __init__(
        self, target: int, loss: float, seed: int, budget: list[int], drop: tuple[bytes, int]
    ) -> None:
        self.target = (HOST, target)
        self.loss = loss
        self.drop_start, self.drop_left = drop  # the first N datagrams starting so are lost
        self.random = random.Random(seed)
        self.budget = budget  # shared remaining datagram count of the process
        self.client: tuple[str, int] | None = None
        self.front = _Side(self, front=True)
        self.back = _Side(self, front=False)
        self.counters = Counters()

    def received(self, datagram: bytes, addr: Any, *, front: bool) -> None:
        self.budget[0] -= 1
        if front:
            self.client = (addr[0], addr[1])
        if self.drop_left > 0 and datagram.startswith(self.drop_start):
            self.drop_left -= 1
            lose = True
        else:
            lose = self.random.random() < self.loss
        if lose:
            self.counters.dropped += 1
            start = datagram.split(b" ", 2)[1 if datagram.startswith(b"SIP/") else 0][:12]
            key = start.decode("ascii", "replace")
            self.counters.dropped_by_start[key] = self.counters.dropped_by_start.get(key, 0) + 1
            return
        self.counters.forwarded += 1
        if front:
            assert self.back.transport is not None
            self.back.transport.write(datagram, self.target)
        elif self.client is not None:
            assert self.front.transport is not None
            self.front.transport.write(datagram, self.client)


def relay(reactor: Any, args: argparse.Namespace) -> Deferred[None]:
    """Bind every pair; the Deferred fires when a bound is reached, after the counters print."""
    budget = [args.max_datagrams]
    pairs: list[LossyPair] = []
    for index, spec in enumerate(args.pair):
        front, target = (int(port) for port in spec.split(":"))
        drop = (args.drop_start.encode(), args.drop_count)
        pair = LossyPair(target, args.loss, args.seed + index, budget, drop)
        reactor.listenUDP(front, pair.front, interface=HOST)
        reactor.listenUDP(0, pair.back, interface=HOST)
        pairs.append(pair)
    print("relaying", flush=True)
    done: Deferred[None] = Deferred()
    deadline = reactor.seconds() + args.lifetime

    def report() -> None:
        for pair in pairs:
            print(json.dumps(pair.counters.__dict__), flush=True)

    def check() -> None:
        if budget[0] <= 0 or reactor.seconds() >= deadline:
            done.callback(None)
        else:
            reactor.callLater(0.1, check)

    reactor.addSystemEventTrigger("before", "shutdown", report)  # on SIGTERM too

    reactor.callLater(0.1, check)
    return done


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and relay until a bound is reached (or SIGTERM)."""
    parser = argparse.ArgumentParser(description="a lossy UDP relay for fault tests")
    parser.add_argument("--pair", action="append", required=True, help="FRONT:TARGET ports")
    parser.add_argument("--loss", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--lifetime", type=float, default=60.0)
    parser.add_argument("--max-datagrams", type=int, default=20_000)
    parser.add_argument("--drop-start", default="", help="e.g. 'BYE ': lose such datagrams")
    parser.add_argument("--drop-count", type=int, default=0, help="how many of them, per pair")
    args = parser.parse_args(argv)
    react(relay, [args])


if __name__ == "__main__":
    main()
